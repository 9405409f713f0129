// Package kubeapitest gives tests the kubeapi.Client's methods over
// client-go's fake clientset, whose object tracker and reactors stand in for
// an API server. Only tests import it, so the binary does not link the typed
// clientset.
package kubeapitest

import (
	"context"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/responder/responder/internal/kubeapi"
)

// Client has the methods of kubeapi.Client, answered by a fake clientset.
type Client struct {
	// Clientset is the fake: add reactors to it, read objects back from it.
	*fake.Clientset
}

// New returns a Client over a fake clientset holding objs.
func New(objs ...runtime.Object) *Client {
	return &Client{Clientset: fake.NewClientset(objs...)}
}

// GetDeployment implements kubeapi.Client.GetDeployment.
func (c *Client) GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	return c.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
}

// ListDeployments implements kubeapi.Client.ListDeployments.
func (c *Client) ListDeployments(ctx context.Context, namespace, selector string) ([]appsv1.Deployment, error) {
	l, err := c.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// ListReplicaSets implements kubeapi.Client.ListReplicaSets.
func (c *Client) ListReplicaSets(ctx context.Context, namespace, selector string) ([]appsv1.ReplicaSet, error) {
	l, err := c.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// ListPods implements kubeapi.Client.ListPods.
func (c *Client) ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	l, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// PodLogs implements kubeapi.Client.PodLogs. The fake answers every log
// request with "fake logs".
func (c *Client) PodLogs(ctx context.Context, namespace, name string, o *corev1.PodLogOptions) (io.ReadCloser, error) {
	return c.CoreV1().Pods(namespace).GetLogs(name, o).Stream(ctx)
}

// PatchDeployment implements kubeapi.Client.PatchDeployment.
func (c *Client) PatchDeployment(ctx context.Context, namespace, name string, pt types.PatchType, patch []byte) error {
	_, err := c.AppsV1().Deployments(namespace).Patch(ctx, name, pt, patch, metav1.PatchOptions{FieldManager: kubeapi.FieldManager})
	return err
}

// UpdateDeployment implements kubeapi.Client.UpdateDeployment.
func (c *Client) UpdateDeployment(ctx context.Context, d *appsv1.Deployment) error {
	_, err := c.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{FieldManager: kubeapi.FieldManager})
	return err
}

// DeletePod implements kubeapi.Client.DeletePod.
func (c *Client) DeletePod(ctx context.Context, namespace, name string) error {
	return c.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{})
}
