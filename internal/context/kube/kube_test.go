package kube_test

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/responder/responder/internal/context/kube"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/kubeapi/kubeapitest"
)

var now = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func deployment(name, uid string, revision string, progressing time.Time) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "shop", UID: types.UID(uid),
			Labels:      map[string]string{"app.kubernetes.io/name": name},
			Annotations: map[string]string{kube.RevisionAnnotation: revision},
		},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
		Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable",
			LastUpdateTime: metav1.NewTime(progressing),
		}}},
	}
}

func replicaSet(owner *appsv1.Deployment, name, uid, revision, history, image string, created time.Time) *appsv1.ReplicaSet {
	ann := map[string]string{kube.RevisionAnnotation: revision}
	if history != "" {
		ann[kube.RevisionHistoryAnnotation] = history
	}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "shop", UID: types.UID(uid), CreationTimestamp: metav1.NewTime(created),
			Labels: map[string]string{"app": owner.Name}, Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}},
	}
}

func cluster() *kubeapitest.Client {
	checkout := deployment("checkout", "uid-checkout", "4", now.Add(-10*time.Minute))
	other := deployment("cart", "uid-cart", "1", now.Add(-time.Hour))
	// Revisions 1 (old, outside the lookback), 2 (superseded), 3 (created
	// an hour ago) and revision 4: the rollback that brought back the
	// ReplicaSet of revision 1, ten minutes ago.
	objs := []runtime.Object{
		checkout, other,
		replicaSet(checkout, "checkout-a", "uid-rs-a", "4", "1", "shop/checkout:1.0", now.Add(-72*time.Hour)),
		replicaSet(checkout, "checkout-b", "uid-rs-b", "2", "", "shop/checkout:1.1", now.Add(-3*time.Hour)),
		replicaSet(checkout, "checkout-c", "uid-rs-c", "3", "", "shop/checkout:1.2", now.Add(-time.Hour)),
		// Same labels, but controlled by another Deployment: not ours.
		replicaSet(other, "cart-x", "uid-rs-x", "9", "", "shop/cart:9", now.Add(-time.Minute)),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "checkout-a-1", Namespace: "shop", UID: "uid-pod", Labels: map[string]string{"app": "checkout"}, CreationTimestamp: metav1.NewTime(now)}},
	}
	// The cart ReplicaSet carries checkout's labels too, so that only the
	// owner reference tells them apart.
	objs[5].(*appsv1.ReplicaSet).Labels["app"] = "checkout"
	return kubeapitest.New(objs...)
}

func selector() kube.Selector {
	return kube.Selector{NamespaceLabel: "namespace", DeploymentLabel: "deployment", ServiceSelector: "app.kubernetes.io/name", ServiceLabels: []string{"service"}}
}

func TestRollouts(t *testing.T) {
	t.Parallel()
	src := kube.NewRollouts(cluster(), selector(), 6*time.Hour, func() time.Time { return now })
	for name, labels := range map[string]map[string]string{
		"by deployment label": {"namespace": "shop", "deployment": "checkout"},
		"by service selector": {"namespace": "shop", "service": "checkout"},
	} {
		t.Run(name, func(t *testing.T) {
			sec, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: labels})
			require.NoError(t, err)
			require.Len(t, sec.Deployments, 3)
			got := sec.Deployments
			require.Equal(t, int64(4), got[0].Revision)
			require.True(t, got[0].Rollback)
			require.Equal(t, now.Add(-10*time.Minute), got[0].DeployedAt)
			require.Equal(t, "shop/checkout:1.0", got[0].Version)
			require.Equal(t, int64(3), got[1].Revision)
			require.False(t, got[1].Rollback)
			require.Equal(t, int64(2), got[2].Revision)
			for _, d := range got {
				require.Equal(t, "checkout", d.Name)
				require.Equal(t, "kubernetes", d.Source)
			}
		})
	}
}

func TestRollouts_Labels(t *testing.T) {
	t.Parallel()
	src := kube.NewRollouts(cluster(), selector(), 6*time.Hour, func() time.Time { return now })
	sec, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"service": "checkout"}})
	require.NoError(t, err, "no namespace: nothing to look at, not an error")
	require.Empty(t, sec.Deployments)
	_, err = src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "../kube-system", "deployment": "x"}})
	require.ErrorContains(t, err, "not a namespace name")
	_, err = src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "service": "a b,c=d"}})
	require.ErrorContains(t, err, "not a label value")
}

func TestRollouts_APIError(t *testing.T) {
	t.Parallel()
	cs := cluster()
	cs.PrependReactor("list", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("https://10.0.0.1:6443/apis/apps/v1 connection refused")
	})
	src := kube.NewRollouts(cs, selector(), 6*time.Hour, func() time.Time { return now })
	_, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "10.0.0.1")
}

func TestPodLogs(t *testing.T) {
	t.Parallel()
	// The fake clientset answers every log request with "fake logs".
	var got []kube.Line
	src := kube.NewPodLogs(cluster(), kube.PodLogsOptions{
		Selector: selector(), Filter: regexp.MustCompile(`fake`), Lookback: time.Hour, Now: func() time.Time { return now },
		Shape: func(lines []kube.Line) []incident.LogLine {
			got = lines
			out := make([]incident.LogLine, len(lines))
			for i, l := range lines {
				out[i] = incident.LogLine{At: l.At, Line: l.Text, Count: 1, Origin: l.Origin}
			}
			return out
		},
	})
	sec, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "fake logs", sec.Logs[0].Line)
	require.Equal(t, "checkout-a-1", sec.Logs[0].Origin)

	src = kube.NewPodLogs(cluster(), kube.PodLogsOptions{Selector: selector(), Filter: regexp.MustCompile(`panic`), Shape: func(l []kube.Line) []incident.LogLine {
		require.Empty(t, l)
		return nil
	}})
	sec, err = src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.NoError(t, err)
	require.Empty(t, sec.Logs)
}

// podLogsAPI answers each pod's log from logs, or with err (as the API
// server answers for a pod whose container is still waiting to start).
type podLogsAPI struct {
	*kubeapitest.Client
	logs map[string]string
	errs map[string]error
}

func (a *podLogsAPI) PodLogs(_ context.Context, _, name string, _ *corev1.PodLogOptions) (io.ReadCloser, error) {
	if err := a.errs[name]; err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(a.logs[name])), nil
}

func podLogsCluster() *kubeapitest.Client {
	checkout := deployment("checkout", "uid-checkout", "1", now)
	pod := func(name string, age time.Duration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "shop", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "checkout"},
			CreationTimestamp: metav1.NewTime(now.Add(-age)),
		}}
	}
	return kubeapitest.New(checkout, pod("checkout-new", 0), pod("checkout-old", time.Hour))
}

func collect(got *[]kube.Line) func([]kube.Line) []incident.LogLine {
	return func(lines []kube.Line) []incident.LogLine {
		*got = lines
		out := make([]incident.LogLine, len(lines))
		for i, l := range lines {
			out[i] = incident.LogLine{At: l.At, Line: l.Text, Count: 1, Origin: l.Origin}
		}
		return out
	}
}

// TestPodLogs_PodNotStarted: the newest pod of a rollout is often still
// creating its container, and the API server answers its log with 400;
// the lines of the other pods must still be shown.
func TestPodLogs_PodNotStarted(t *testing.T) {
	t.Parallel()
	api := &podLogsAPI{
		Client: podLogsCluster(),
		logs:   map[string]string{"checkout-old": "2026-03-02T09:59:00Z ERROR payment refused\n"},
		errs: map[string]error{"checkout-new": apierrors.NewBadRequest(
			`container "app" in pod "checkout-new" is waiting to start: ContainerCreating`)},
	}
	var got []kube.Line
	src := kube.NewPodLogs(api, kube.PodLogsOptions{Selector: selector(), Filter: regexp.MustCompile(`ERROR`), Shape: collect(&got), Now: func() time.Time { return now }})
	sec, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.NoError(t, err)
	require.Len(t, sec.Logs, 1)
	require.Equal(t, "ERROR payment refused", sec.Logs[0].Line)
	require.Equal(t, "checkout-old", sec.Logs[0].Origin)

	// When no pod's log can be read, the section fails, without the URL.
	api.errs["checkout-old"] = errors.New(`Get "https://10.0.0.1:6443/api/v1/namespaces/shop/pods/checkout-old/log": connection refused`)
	_, err = src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "10.0.0.1")
}

// TestPodLogs_LongLine: a line longer than the read buffer (a JSON dump, a
// stack trace on one line) must not end the reading of the pod's log.
func TestPodLogs_LongLine(t *testing.T) {
	t.Parallel()
	log := "2026-03-02T09:58:00Z ERROR first\n" +
		"2026-03-02T09:58:30Z ERROR dump " + strings.Repeat("x", 200<<10) + "\n" +
		"2026-03-02T09:59:00Z ERROR after the long line\n"
	api := &podLogsAPI{Client: podLogsCluster(), logs: map[string]string{"checkout-new": log}}
	var got []kube.Line
	src := kube.NewPodLogs(api, kube.PodLogsOptions{Selector: selector(), Filter: regexp.MustCompile(`ERROR`), MaxPods: 1, Shape: collect(&got), Now: func() time.Time { return now }})
	_, err := src.Gather(t.Context(), &incident.Incident{CommonLabels: map[string]string{"namespace": "shop", "deployment": "checkout"}})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "ERROR first", got[0].Text)
	require.True(t, strings.HasPrefix(got[1].Text, "ERROR dump xxx"))
	require.LessOrEqual(t, len(got[1].Text), 64<<10)
	require.Equal(t, "ERROR after the long line", got[2].Text)
	require.Equal(t, time.Date(2026, 3, 2, 9, 59, 0, 0, time.UTC), got[2].At)
}
