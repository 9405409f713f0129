package kubeapi_test

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/responder/responder/internal/context/kube"
	"github.com/responder/responder/internal/kubeapi"
	"github.com/responder/responder/internal/kubeapi/kubeapitest"
	"github.com/responder/responder/internal/remediation"
)

// Both clients satisfy what the components call.
var (
	_ kube.API               = (*kubeapi.Client)(nil)
	_ remediation.KubeClient = (*kubeapi.Client)(nil)
	_ kube.API               = (*kubeapitest.Client)(nil)
	_ remediation.KubeClient = (*kubeapitest.Client)(nil)
)

// request is what the fake API server saw.
type request struct {
	Method, Path, Query, ContentType, Accept, UserAgent, Auth string
	Body                                                      []byte
}

// apiServer answers like kube-apiserver for the paths in replies
// ("METHOD path"), and with a NotFound Status for any other.
func apiServer(t *testing.T, replies map[string]any) (*httptest.Server, func() []request) {
	t.Helper()
	return apiServerTLS(t, false, replies)
}

func apiServerTLS(t *testing.T, useTLS bool, replies map[string]any) (*httptest.Server, func() []request) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []request
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, ContentType: r.Header.Get("Content-Type"),
			Accept: r.Header.Get("Accept"), UserAgent: r.UserAgent(), Auth: r.Header.Get("Authorization"), Body: body,
		})
		mu.Unlock()
		reply, ok := replies[r.Method+" "+r.URL.Path]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
				Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: "not found",
			})
			return
		}
		if s, ok := reply.(string); ok {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, s)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply)
	}))
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), got...)
	}
}

func client(t *testing.T, srv *httptest.Server) *kubeapi.Client {
	t.Helper()
	c, err := kubeapi.NewForConfig(&rest.Config{Host: srv.URL, BearerToken: "sa-token"})
	require.NoError(t, err)
	return c
}

func TestClient_Reads(t *testing.T) {
	t.Parallel()
	replicas := int32(3)
	dep := appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop", ResourceVersion: "42", Annotations: map[string]string{"deployment.kubernetes.io/revision": "4"}},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}}},
	}
	srv, got := apiServer(t, map[string]any{
		"GET /apis/apps/v1/namespaces/shop/deployments/checkout": dep,
		"GET /apis/apps/v1/namespaces/shop/deployments": appsv1.DeploymentList{
			TypeMeta: metav1.TypeMeta{Kind: "DeploymentList", APIVersion: "apps/v1"}, Items: []appsv1.Deployment{dep, dep},
		},
		"GET /apis/apps/v1/namespaces/shop/replicasets": appsv1.ReplicaSetList{
			TypeMeta: metav1.TypeMeta{Kind: "ReplicaSetList", APIVersion: "apps/v1"},
			Items:    []appsv1.ReplicaSet{{ObjectMeta: metav1.ObjectMeta{Name: "checkout-a"}}},
		},
		"GET /api/v1/namespaces/shop/pods": corev1.PodList{
			TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			Items:    []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "checkout-a-1"}}, {ObjectMeta: metav1.ObjectMeta{Name: "checkout-a-2"}}},
		},
		"GET /api/v1/namespaces/shop/pods/checkout-a-1/log": "2026-03-02T10:00:00Z panic: boom\n",
	})
	c := client(t, srv)
	ctx := t.Context()

	d, err := c.GetDeployment(ctx, "shop", "checkout")
	require.NoError(t, err)
	require.Equal(t, "42", d.ResourceVersion)
	require.Equal(t, int32(3), *d.Spec.Replicas)
	require.Equal(t, "4", d.Annotations["deployment.kubernetes.io/revision"])

	deps, err := c.ListDeployments(ctx, "shop", "app.kubernetes.io/name=checkout")
	require.NoError(t, err)
	require.Len(t, deps, 2)
	rss, err := c.ListReplicaSets(ctx, "shop", "app=checkout")
	require.NoError(t, err)
	require.Equal(t, "checkout-a", rss[0].Name)
	pods, err := c.ListPods(ctx, "shop", "app=checkout")
	require.NoError(t, err)
	require.Len(t, pods, 2)

	tail, since := int64(500), int64(3600)
	rc, err := c.PodLogs(ctx, "shop", "checkout-a-1", &corev1.PodLogOptions{Container: "app", TailLines: &tail, SinceSeconds: &since, Timestamps: true})
	require.NoError(t, err)
	logs, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, "2026-03-02T10:00:00Z panic: boom\n", string(logs))

	reqs := got()
	require.Len(t, reqs, 5)
	for _, r := range reqs {
		require.Equal(t, http.MethodGet, r.Method)
		require.Equal(t, kubeapi.UserAgent, r.UserAgent)
		require.Equal(t, "Bearer sa-token", r.Auth)
	}
	require.Empty(t, reqs[0].Query)
	require.Equal(t, "labelSelector=app.kubernetes.io%2Fname%3Dcheckout", reqs[1].Query)
	require.Equal(t, "labelSelector=app%3Dcheckout", reqs[2].Query)
	require.Equal(t, "labelSelector=app%3Dcheckout", reqs[3].Query)
	require.Equal(t, "container=app&sinceSeconds=3600&tailLines=500&timestamps=true", reqs[4].Query)
}

func TestClient_Writes(t *testing.T) {
	t.Parallel()
	srv, got := apiServer(t, map[string]any{
		"PATCH /apis/apps/v1/namespaces/shop/deployments/checkout": appsv1.Deployment{TypeMeta: metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"}},
		"PUT /apis/apps/v1/namespaces/shop/deployments/checkout":   appsv1.Deployment{TypeMeta: metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"}},
		"DELETE /api/v1/namespaces/shop/pods/checkout-a-1": metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess,
		},
	})
	c := client(t, srv)
	ctx := t.Context()

	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-25T10:00:00Z"}}}}}`)
	require.NoError(t, c.PatchDeployment(ctx, "shop", "checkout", types.StrategicMergePatchType, patch))
	replicas := int32(5)
	require.NoError(t, c.UpdateDeployment(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop", ResourceVersion: "42"},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
	}))
	require.NoError(t, c.DeletePod(ctx, "shop", "checkout-a-1"))

	reqs := got()
	require.Len(t, reqs, 3)
	require.Equal(t, http.MethodPatch, reqs[0].Method)
	require.Equal(t, string(types.StrategicMergePatchType), reqs[0].ContentType)
	require.Equal(t, "fieldManager=responder", reqs[0].Query)
	require.JSONEq(t, string(patch), string(reqs[0].Body))

	require.Equal(t, http.MethodPut, reqs[1].Method)
	require.Equal(t, "fieldManager=responder", reqs[1].Query)
	var put map[string]any
	require.NoError(t, json.Unmarshal(reqs[1].Body, &put))
	require.Equal(t, "apps/v1", put["apiVersion"], "the body names its kind, as the API server requires")
	require.Equal(t, "Deployment", put["kind"])
	require.Equal(t, "42", put["metadata"].(map[string]any)["resourceVersion"], "an update is conditional on what was read")
	require.InDelta(t, 5, put["spec"].(map[string]any)["replicas"], 0)

	require.Equal(t, http.MethodDelete, reqs[2].Method)
	require.Equal(t, "/api/v1/namespaces/shop/pods/checkout-a-1", reqs[2].Path)
}

func TestClient_Errors(t *testing.T) {
	t.Parallel()
	srv, got := apiServer(t, nil)
	c := client(t, srv)
	ctx := t.Context()

	_, err := c.GetDeployment(ctx, "shop", "gone")
	require.True(t, apierrors.IsNotFound(err), "an API server Status is decoded into a StatusError: %v", err)
	var se interface{ Status() metav1.Status }
	require.ErrorAs(t, err, &se)
	require.Equal(t, int32(http.StatusNotFound), se.Status().Code)
	require.True(t, apierrors.IsNotFound(c.DeletePod(ctx, "shop", "gone")))

	// A name that is not a path segment never reaches the server.
	require.Error(t, c.DeletePod(ctx, "shop", "../kube-system"))
	_, err = c.GetDeployment(ctx, "..", "x")
	require.Error(t, err)
	require.Len(t, got(), 2)

	srv.Close()
	_, err = c.ListPods(ctx, "shop", "app=x")
	require.Error(t, err)
}

func TestNew_Kubeconfig(t *testing.T) {
	t.Parallel()
	// client-go reads a kubeconfig's credentials only for a TLS server.
	srv, got := apiServerTLS(t, true, map[string]any{"DELETE /api/v1/namespaces/shop/pods/p": metav1.Status{Status: metav1.StatusSuccess}})
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	file := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(file, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: `+srv.URL+`, certificate-authority-data: `+ca+`}}]
users: [{name: u, user: {token: from-kubeconfig}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	c, err := kubeapi.New(file)
	require.NoError(t, err)
	require.NoError(t, c.DeletePod(t.Context(), "shop", "p"))
	require.Equal(t, "Bearer from-kubeconfig", got()[0].Auth)

	missing := filepath.Join(t.TempDir(), "missing")
	_, err = kubeapi.New(missing)
	require.EqualError(t, err, `kubeconfig "`+missing+`": no such file or directory`)
}

// kubeconfig is a valid kubeconfig with a token, for the server and the
// user of each case.
func kubeconfig(server, user string) string {
	return `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: '` + server + `'}}]
users: [{name: u, user: ` + user + `}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
}

// TestNew_KubeconfigErrors checks that every problem of a kubeconfig file
// is named, and that no credential of the file appears in the error or in
// any error it wraps: client-go quotes a server or proxy URL that does not
// parse, user information included, and YAML errors quote values.
func TestNew_KubeconfigErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Value"
	dir := t.TempDir()
	token := "{token: " + secret + "}"
	tests := []struct {
		name, text, want string
	}{
		{"yaml syntax", "users:\n- name: u\n  user:\n    token: " + secret + "\n   bad: indent\n", "yaml: line 4: did not find expected key"},
		{"a yaml value of the wrong type", "users:\n- name: u\n  user:\n    token: !!int " + secret + "\n", "cannot decode !!str as a !!int"},
		{"a yaml key that is a map", "users:\n- name: u\n  user:\n    {" + secret + ": 1}: x\n", "invalid map key"},
		{"not a kubeconfig", secret + "\n", "couldn't get version/kind"},
		{"empty", "", "no configuration has been provided"},
		{"a token and a password", kubeconfig("https://k:6443", "{token: "+secret+", username: u, password: "+secret+"2}"), "more than one authentication method found for u"},
		{"a missing client certificate", kubeconfig("https://k:6443", "{client-certificate: /nonexistent/cert, client-key: /nonexistent/key}"), "unable to read client-cert /nonexistent/cert"},
		{"a CA that is not PEM", strings.Replace(kubeconfig("https://k:6443", token), "server:", "certificate-authority-data: c2VjcmV0, server:", 1), "unable to load root certificates"},
		{"a server without a scheme", kubeconfig("://admin:"+secret+"@k", token), `host must be a URL or a host:port pair: "://xxxxx@k"`},
		{"a server with a bad port", kubeconfig("https://admin:"+secret+"@k:port", token), `host must be a URL or a host:port pair: "https://xxxxx@k:port"`},
		{"a server with a bad escape", kubeconfig("https://admin:"+secret+"@k/%zz?token="+secret, token), `invalid URL escape "%zz"`},
		{"a slash in the server's password", kubeconfig("https://admin:"+secret+"/x@k:port", token), "host must be a URL"},
		{"a proxy URL", strings.Replace(kubeconfig("https://k:6443", token), "server:", "proxy-url: 'http://u:"+secret+"@p/%zz', server:", 1), `invalid 'proxy-url' "http://xxxxx@p/%zz" for cluster "c"`},
		{"a proxy URL with quotes", strings.Replace(kubeconfig("https://k:6443", token), "server:", `proxy-url: 'ftp://u:"`+secret+`"@p', server:`, 1), `invalid 'proxy-url' "ftp://xxxxx@p"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			require.NoError(t, os.WriteFile(file, []byte(tt.text), 0o600))
			_, err := kubeapi.New(file)
			require.ErrorContains(t, err, `kubeconfig "`+file+`": `)
			require.ErrorContains(t, err, tt.want)
			for e := err; e != nil; e = errors.Unwrap(e) {
				require.NotContains(t, e.Error(), secret)
			}
		})
	}
}

func TestNew_KubeconfigNotAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, make([]byte, 4<<20+1), 0o600))
	for file, want := range map[string]string{
		dir: "not a regular file",
		// A device never ends: it is refused before it is read.
		"/dev/zero": "not a regular file",
		big:         "larger than 4 MiB: not a kubeconfig",
	} {
		_, err := kubeapi.New(file)
		require.EqualError(t, err, `kubeconfig "`+file+`": `+want)
	}
}
