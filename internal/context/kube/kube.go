// Package kube reads incident context from Kubernetes: the rollouts of the
// affected Deployments (from their ReplicaSets' revision annotations,
// rollbacks included) and error lines from their pods' logs.
package kube

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/responder/responder/internal/incident"
)

// The annotations the Deployment controller keeps on ReplicaSets (kubectl
// has the constants; client-go and k8s.io/api do not).
const (
	RevisionAnnotation        = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	ChangeCauseAnnotation     = "kubernetes.io/change-cause"
)

// API is the part of the Kubernetes API the sources read; kubeapi.Client
// implements it.
type API interface {
	GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error)
	ListDeployments(ctx context.Context, namespace, selector string) ([]appsv1.Deployment, error)
	ListReplicaSets(ctx context.Context, namespace, selector string) ([]appsv1.ReplicaSet, error)
	ListPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error)
	PodLogs(ctx context.Context, namespace, name string, o *corev1.PodLogOptions) (io.ReadCloser, error)
}

// Selector says how an incident's labels select workloads.
type Selector struct {
	// NamespaceLabel names the namespace; Namespace is the fallback.
	NamespaceLabel string
	Namespace      string
	// DeploymentLabel names the Deployment; without it the Deployments
	// whose ServiceSelector label equals the service are used.
	DeploymentLabel string
	ServiceSelector string
	// ServiceLabels are the alert labels naming the service, in order.
	ServiceLabels []string
}

// errNoTarget says that the incident's labels name no workload; the
// section is then empty, not failed.
var errNoTarget = errors.New("no namespace or workload in the alert labels")

// deployments returns the Deployments the incident's labels select. Label
// values are validated as Kubernetes names before they reach the API.
func (s Selector) deployments(ctx context.Context, cs API, inc *incident.Incident) ([]appsv1.Deployment, error) {
	lset := mergedLabels(inc)
	ns := lset[s.NamespaceLabel]
	if ns == "" {
		ns = s.Namespace
	}
	if ns == "" {
		return nil, errNoTarget
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("namespace label is not a namespace name: %s", strings.Join(errs, "; "))
	}
	if name := lset[s.DeploymentLabel]; name != "" && s.DeploymentLabel != "" {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("deployment label is not a deployment name: %s", strings.Join(errs, "; "))
		}
		d, err := cs.GetDeployment(ctx, ns, name)
		if err != nil {
			return nil, fmt.Errorf("get deployment: %w", apiError(err))
		}
		return []appsv1.Deployment{*d}, nil
	}
	svc := service(lset, s.ServiceLabels)
	if svc == "" || s.ServiceSelector == "" {
		return nil, errNoTarget
	}
	sel, err := labels.ValidatedSelectorFromSet(labels.Set{s.ServiceSelector: svc})
	if err != nil {
		return nil, fmt.Errorf("service label is not a label value: %w", err)
	}
	list, err := cs.ListDeployments(ctx, ns, sel.String())
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", apiError(err))
	}
	return list, nil
}

// apiError drops the request URL a client-go error may carry.
func apiError(err error) error {
	var se interface{ Status() metav1.Status }
	if errors.As(err, &se) {
		st := se.Status()
		return fmt.Errorf("%s (%d)", st.Reason, st.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return errors.New("kubernetes API unreachable")
}

func mergedLabels(inc *incident.Incident) map[string]string {
	out := make(map[string]string, len(inc.CommonLabels)+len(inc.GroupLabels))
	maps.Copy(out, inc.CommonLabels)
	maps.Copy(out, inc.GroupLabels)
	return out
}

func service(lset map[string]string, names []string) string {
	for _, n := range names {
		if v := lset[n]; v != "" {
			return v
		}
	}
	return ""
}

// Rollouts lists the Deployment rollouts of an incident's workloads within
// the lookback.
type Rollouts struct {
	cs       API
	sel      Selector
	lookback time.Duration
	now      func() time.Time
}

// NewRollouts returns the rollouts source.
func NewRollouts(cs API, sel Selector, lookback time.Duration, now func() time.Time) *Rollouts {
	if now == nil {
		now = time.Now
	}
	return &Rollouts{cs: cs, sel: sel, lookback: lookback, now: now}
}

// Name implements gather.Source.
func (r *Rollouts) Name() string { return "kubernetes" }

// Kind implements gather.Source.
func (r *Rollouts) Kind() string { return incident.ContextDeployments }

// Gather implements gather.Source. Each revision of a Deployment is one
// ReplicaSet it controls; a rollback reuses an old ReplicaSet, bumping its
// revision and recording the old number in revision-history, so rollouts
// are ordered by revision, not by creation time. A revision's rollout time
// is its ReplicaSet's creation, or, for the current revision brought back by
// a rollback, the Deployment's last Progressing update.
func (r *Rollouts) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	deps, err := r.sel.deployments(ctx, r.cs, inc)
	if errors.Is(err, errNoTarget) {
		return incident.Section{}, nil
	}
	if err != nil {
		return incident.Section{}, err
	}
	since := r.now().Add(-r.lookback)
	var out []incident.Deployment
	for i := range deps {
		d := &deps[i]
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			continue
		}
		rsl, err := r.cs.ListReplicaSets(ctx, d.Namespace, sel.String())
		if err != nil {
			return incident.Section{}, fmt.Errorf("list replicasets: %w", apiError(err))
		}
		current, _ := strconv.ParseInt(d.Annotations[RevisionAnnotation], 10, 64)
		for j := range rsl {
			rs := &rsl[j]
			if !metav1.IsControlledBy(rs, d) {
				continue
			}
			rev, err := strconv.ParseInt(rs.Annotations[RevisionAnnotation], 10, 64)
			if err != nil {
				continue
			}
			rollback := rs.Annotations[RevisionHistoryAnnotation] != ""
			at := rs.CreationTimestamp.Time
			if rollback && rev == current {
				if t := progressingAt(d); !t.IsZero() {
					at = t
				}
			}
			if at.Before(since) {
				continue
			}
			out = append(out, incident.Deployment{
				Service: d.Name, Environment: d.Namespace, Version: images(rs.Spec.Template.Spec.Containers),
				Author: rs.Annotations[ChangeCauseAnnotation], DeployedAt: at.UTC(), Source: "kubernetes",
				Namespace: d.Namespace, Name: d.Name, Revision: rev, Rollback: rollback,
			})
		}
	}
	slices.SortFunc(out, func(a, b incident.Deployment) int {
		if c := b.DeployedAt.Compare(a.DeployedAt); c != 0 {
			return c
		}
		return int(b.Revision - a.Revision)
	})
	return incident.Section{Deployments: out}, nil
}

func progressingAt(d *appsv1.Deployment) time.Time {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			return c.LastUpdateTime.Time
		}
	}
	return time.Time{}
}

func images(cs []corev1.Container) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Image
	}
	return strings.Join(out, ", ")
}

// PodLogsOptions configure the pod logs source.
type PodLogsOptions struct {
	Selector Selector
	// Filter keeps the matching lines.
	Filter    *regexp.Regexp
	Container string
	TailLines int64
	MaxPods   int
	Lookback  time.Duration
	// Shape redacts and folds the lines (logs.Shaper.Shape, adapted).
	Shape func(lines []Line) []incident.LogLine
	Now   func() time.Time
}

// Line is a raw pod log line.
type Line struct {
	At     time.Time
	Text   string
	Origin string
}

// PodLogs samples error lines from the logs of an incident's pods.
type PodLogs struct {
	cs   API
	opts PodLogsOptions
}

// NewPodLogs returns the pod logs source.
func NewPodLogs(cs API, opts PodLogsOptions) *PodLogs {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPods <= 0 {
		opts.MaxPods = 3
	}
	if opts.TailLines <= 0 {
		opts.TailLines = 500
	}
	return &PodLogs{cs: cs, opts: opts}
}

// Name implements gather.Source.
func (p *PodLogs) Name() string { return "pod_logs" }

// Kind implements gather.Source.
func (p *PodLogs) Kind() string { return incident.ContextLogs }

// maxLineBytes bounds one log line read.
const maxLineBytes = 64 << 10

// Gather implements gather.Source: the pods of the selected Deployments,
// newest first, up to MaxPods, each read for TailLines lines within the
// lookback.
func (p *PodLogs) Gather(ctx context.Context, inc *incident.Incident) (incident.Section, error) {
	deps, err := p.opts.Selector.deployments(ctx, p.cs, inc)
	if errors.Is(err, errNoTarget) {
		return incident.Section{}, nil
	}
	if err != nil {
		return incident.Section{}, err
	}
	var pods []corev1.Pod
	for i := range deps {
		sel, err := metav1.LabelSelectorAsSelector(deps[i].Spec.Selector)
		if err != nil {
			continue
		}
		list, err := p.cs.ListPods(ctx, deps[i].Namespace, sel.String())
		if err != nil {
			return incident.Section{}, fmt.Errorf("list pods: %w", apiError(err))
		}
		pods = append(pods, list...)
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	if len(pods) > p.opts.MaxPods {
		pods = pods[:p.opts.MaxPods]
	}
	since := int64(p.opts.Lookback.Seconds())
	var (
		lines    []Line
		firstErr error
		read     int
	)
	for _, pod := range pods {
		o := &corev1.PodLogOptions{Container: p.opts.Container, TailLines: &p.opts.TailLines, Timestamps: true}
		if since > 0 {
			o.SinceSeconds = &since
		}
		rc, err := p.cs.PodLogs(ctx, pod.Namespace, pod.Name, o)
		if err != nil {
			if ctx.Err() != nil {
				return incident.Section{}, context.Cause(ctx)
			}
			// One pod's log may be unreadable while the others are not
			// (its container is still waiting to start, in the middle of
			// the very rollout that caused the incident): skip it.
			if firstErr == nil {
				firstErr = fmt.Errorf("read logs of pod %s: %w", pod.Name, apiError(err))
			}
			continue
		}
		read++
		lines = append(lines, p.read(rc, pod.Name)...)
		_ = rc.Close()
	}
	if read == 0 && firstErr != nil {
		return incident.Section{}, firstErr
	}
	return incident.Section{Logs: p.opts.Shape(lines)}, nil
}

// read keeps the lines that match the filter; each starts with the
// RFC 3339 timestamp that Timestamps asked for. A line longer than
// maxLineBytes is cut there, and reading goes on with the next line.
func (p *PodLogs) read(r io.Reader, pod string) []Line {
	var out []Line
	br := bufio.NewReaderSize(r, 4096)
	for {
		b, err := readLine(br, maxLineBytes)
		if len(b) > 0 || err == nil {
			text := strings.TrimRight(string(b), "\r")
			at := p.opts.Now()
			if ts, rest, ok := strings.Cut(text, " "); ok {
				if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
					at, text = t, rest
				}
			}
			if p.opts.Filter == nil || p.opts.Filter.MatchString(text) {
				out = append(out, Line{At: at.UTC(), Text: text, Origin: pod})
			}
		}
		if err != nil {
			// io.EOF, or the stream broke (the deadline): keep what was
			// read.
			return out
		}
	}
}

// readLine reads one line without its newline, keeping at most max bytes
// of it (cut on a rune boundary) and discarding the rest.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if room := limit - len(line); room > 0 {
			line = append(line, frag[:min(len(frag), room)]...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return trimRune(line, limit), err
		default:
			return trimRune(bytes.TrimSuffix(line, []byte("\n")), limit), nil
		}
	}
}

// trimRune drops a rune cut in two at the end of a line cut at limit.
func trimRune(b []byte, limit int) []byte {
	if len(b) < limit {
		return b
	}
	for len(b) > 0 && !utf8.Valid(b[max(0, len(b)-utf8.UTFMax):]) {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}
