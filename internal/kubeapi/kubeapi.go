// Package kubeapi is a client for the few Kubernetes API calls responder
// makes: reading Deployments, ReplicaSets, Pods and pod logs for incident
// context, and the rollout restart, scale and pod delete of remediation
// steps.
//
// It is client-go's REST client with a scheme of only the apps/v1 and
// core/v1 types. client-go's typed clientset registers every API group of
// Kubernetes when the process starts, whether it is used or not: linking it
// made the binary 28 MB larger and its idle RSS 19 MB higher
// (docs/benchmarks.md). The components declare the methods they call as
// their own interfaces; this package is what app wires in.
package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// FieldManager names responder in the managed fields of what it writes.
const FieldManager = "responder"

// UserAgent is the User-Agent of responder's API requests.
const UserAgent = "responder"

// codecs holds the scheme of the two API groups used, built on first use.
var codecs = sync.OnceValues(func() (serializer.CodecFactory, runtime.ParameterCodec) {
	s := runtime.NewScheme()
	// AddToScheme of each group also registers the meta/v1 types of that
	// group version (ListOptions, Status, ...), which the parameter codec
	// and the decoding of error responses need.
	if err := appsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := corev1.AddToScheme(s); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(s), runtime.NewParameterCodec(s)
})

// Client calls the Kubernetes API. It is safe for concurrent use.
type Client struct {
	apps   *rest.RESTClient
	core   *rest.RESTClient
	params runtime.ParameterCodec
}

// New connects with a kubeconfig file, or with the in-cluster service
// account when kubeconfig is empty.
//
// Its errors never quote a credential of the file: client-go's quote a
// server or proxy URL that does not parse, user information included, and
// YAML decoding errors quote values. They are scrubbed of every token,
// password, key and URL credential the file holds, and of every YAML value.
func New(kubeconfig string) (*Client, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return NewForConfig(cfg)
	}
	c, err := fromFile(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %q: %w", kubeconfig, err)
	}
	return c, nil
}

// fromFile connects with a kubeconfig file. Its errors do not name the
// file: New does.
func fromFile(path string) (*Client, error) {
	secrets, err := readKubeconfig(path)
	if err != nil {
		return nil, err
	}
	// client-go reads the file again: it also resolves the relative paths
	// in it (certificate files, a token file) against its directory.
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, scrub(err, secrets)
	}
	c, err := NewForConfig(cfg)
	if err != nil {
		return nil, scrub(err, secrets)
	}
	return c, nil
}

// maxKubeconfig is the largest kubeconfig file read. Kubeconfigs of many
// clusters, each with its CA, stay far below it; a path to the wrong file
// (a log) must fail rather than fill the memory.
const maxKubeconfig = 4 << 20

// readKubeconfig reads and parses a kubeconfig file, and returns the
// credentials it holds (see credentials).
func readKubeconfig(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, withoutPath(err)
	case !fi.Mode().IsRegular():
		// A device or a FIFO (/dev/zero, /dev/stdin) never ends.
		return nil, errors.New("not a regular file")
	case fi.Size() > maxKubeconfig:
		return nil, fmt.Errorf("larger than %d MiB: not a kubeconfig", maxKubeconfig>>20)
	}
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		if errors.As(err, new(*fs.PathError)) {
			return nil, withoutPath(err)
		}
		// The file's values are unknown: take every value out of the
		// YAML decoder's message instead.
		msg := yamlValueRE.ReplaceAllString(err.Error(), "")
		msg = yamlMapKeyRE.ReplaceAllString(msg, "invalid map key")
		return nil, errors.New(msg)
	}
	return credentials(raw), nil
}

// withoutPath returns the error of a file operation without the path,
// which the caller names.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// The parts of YAML decoding errors that quote the document: values
// ("cannot decode !!str `abc` as a !!int") and keys that are not scalars
// ("invalid map key: map[interface {}]interface {}{"abc":1}").
var (
	yamlValueRE  = regexp.MustCompile(" `[^`]*`")
	yamlMapKeyRE = regexp.MustCompile(`invalid map key: .*`)
)

// credentials maps every credential of a kubeconfig to what it prints as:
// each token, password, key, auth provider setting and exec plugin
// environment value to xxxxx, and each server or proxy URL with user
// information or a query to the URL without them.
func credentials(c *clientcmdapi.Config) map[string]string {
	out := map[string]string{}
	secret := func(s string) {
		if s != "" {
			out[s] = "xxxxx"
		}
	}
	for _, u := range c.AuthInfos {
		secret(u.Token)
		secret(u.Password)
		secret(string(u.ClientKeyData))
		if p := u.AuthProvider; p != nil {
			for _, v := range p.Config {
				secret(v)
			}
		}
		if e := u.Exec; e != nil {
			for _, v := range e.Env {
				secret(v.Value)
			}
		}
	}
	for _, cl := range c.Clusters {
		for _, s := range []string{cl.Server, cl.ProxyURL} {
			if r := redactURL(s); r != s {
				out[s] = r
			}
		}
	}
	return out
}

// redactURL replaces the user information of a URL and its query. It
// works on the text, since the URLs that end up in errors are the ones
// that do not parse: every character before the last @ of the authority
// (a password may hold a /) is user information.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	} else {
		scheme += "://"
	}
	query := ""
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest, query = rest[:i], "?xxxxx"
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = "xxxxx" + rest[i:]
	}
	return scheme + rest + query
}

// scrub replaces every credential of secrets (see credentials) in err's
// text, also as %q escapes it. When it replaced one, the error it returns
// unwraps to nothing: no error of the chain can print it either.
func scrub(err error, secrets map[string]string) error {
	olds := make([]string, 0, 2*len(secrets))
	with := make(map[string]string, 2*len(secrets))
	for s, r := range secrets {
		q := strconv.Quote(s)
		for _, old := range []string{s, q[1 : len(q)-1]} {
			olds = append(olds, old)
			with[old] = r
		}
	}
	// The longest first: a credential may hold another one.
	slices.SortFunc(olds, func(a, b string) int { return len(b) - len(a) })
	msg := err.Error()
	for _, old := range olds {
		msg = strings.ReplaceAll(msg, old, with[old])
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// NewForConfig returns a client for the API server cfg names. cfg is not
// modified.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	cf, params := codecs()
	base := rest.CopyConfig(cfg)
	if base.UserAgent == "" {
		base.UserAgent = UserAgent
	}
	base.NegotiatedSerializer = cf.WithoutConversion()
	// One HTTP client, so that both groups share connections.
	hc, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	group := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(base)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		rc, err := rest.RESTClientForConfigAndClient(c, hc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
		return rc, nil
	}
	apps, err := group(appsv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := group(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	return &Client{apps: apps, core: core, params: params}, nil
}

// GetDeployment reads a Deployment.
func (c *Client) GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	err := c.apps.Get().Namespace(namespace).Resource("deployments").Name(name).Do(ctx).Into(d)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// ListDeployments lists the Deployments of a namespace that a label
// selector (in its string form) selects.
func (c *Client) ListDeployments(ctx context.Context, namespace, selector string) ([]appsv1.Deployment, error) {
	l := &appsv1.DeploymentList{}
	if err := c.list(ctx, c.apps, namespace, "deployments", selector, l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// ListReplicaSets lists the ReplicaSets of a namespace that a label
// selector selects.
func (c *Client) ListReplicaSets(ctx context.Context, namespace, selector string) ([]appsv1.ReplicaSet, error) {
	l := &appsv1.ReplicaSetList{}
	if err := c.list(ctx, c.apps, namespace, "replicasets", selector, l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// ListPods lists the Pods of a namespace that a label selector selects.
func (c *Client) ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	l := &corev1.PodList{}
	if err := c.list(ctx, c.core, namespace, "pods", selector, l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (c *Client) list(ctx context.Context, rc *rest.RESTClient, namespace, resource, selector string, into runtime.Object) error {
	return rc.Get().Namespace(namespace).Resource(resource).
		VersionedParams(&metav1.ListOptions{LabelSelector: selector}, c.params).
		Do(ctx).Into(into)
}

// PodLogs streams a pod's log; the caller closes it.
func (c *Client) PodLogs(ctx context.Context, namespace, name string, o *corev1.PodLogOptions) (io.ReadCloser, error) {
	return c.core.Get().Namespace(namespace).Resource("pods").Name(name).SubResource("log").
		VersionedParams(o, c.params).Stream(ctx)
}

// PatchDeployment patches a Deployment.
func (c *Client) PatchDeployment(ctx context.Context, namespace, name string, pt types.PatchType, patch []byte) error {
	return c.apps.Patch(pt).Namespace(namespace).Resource("deployments").Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: FieldManager}, c.params).
		Body(patch).Do(ctx).Error()
}

// UpdateDeployment replaces a Deployment; d's resourceVersion makes it fail
// with a conflict when the Deployment changed since it was read.
func (c *Client) UpdateDeployment(ctx context.Context, d *appsv1.Deployment) error {
	return c.apps.Put().Namespace(d.Namespace).Resource("deployments").Name(d.Name).
		VersionedParams(&metav1.UpdateOptions{FieldManager: FieldManager}, c.params).
		Body(d).Do(ctx).Error()
}

// DeletePod deletes a Pod.
func (c *Client) DeletePod(ctx context.Context, namespace, name string) error {
	return c.core.Delete().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Error()
}
