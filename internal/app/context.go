package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/context/deploys"
	"github.com/responder/responder/internal/context/gather"
	"github.com/responder/responder/internal/context/kube"
	"github.com/responder/responder/internal/context/logs"
	"github.com/responder/responder/internal/context/promql"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/kubeapi"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/slack"
	"github.com/responder/responder/internal/store"
)

// Context jobs run on their own pipeline (contextWorkers workers), so that
// slow sources never hold the workers that post and page.
const (
	contextWorkers = 8
	// contextLeaseMargin is added to the gathering budget for a context
	// job's lease: it must outlast the gathering and a thread's posts at
	// Slack's pace, and no more, so that a dead replica's jobs are taken
	// over soon.
	contextLeaseMargin = 30 * time.Second
	// contextPostPatience is how long a post job waits for the Slack
	// parent; a parent never posted (a resolved incident with
	// send_resolved off) is given up on then.
	contextPostPatience = 30 * time.Minute
)

// contexter runs the gather and context_post jobs.
//
// Every change of an incident queues a gather job (a store follow-up). The
// first gathers from every source under the budget and stores the result
// with a context_post job in one commit; later ones find it stored (the
// cache) and stop. The post job waits (Busy) until the incident is routed
// and its Slack parents are posted, then replies in each thread with the
// context and uploads one chart per PromQL snapshot, recording its progress
// per delivery so that a retry resumes where it stopped. PagerDuty alerts
// not triggered yet get the summary in custom_details with their first
// trigger; those already triggered get it by a repeated trigger only with
// context.pagerduty_update, so that by default each group is triggered once.
type contexter struct {
	logger   *slog.Logger
	db       *store.Store
	notifier *notifier
	metrics  *gather.Metrics
	cur      atomic.Pointer[gather.Gatherer]
	now      func() time.Time
	lease    time.Duration
	// config is the configuration in force.
	config func() *config.Config
}

func newContexter(logger *slog.Logger, db *store.Store, n *notifier, reg prometheus.Registerer) *contexter {
	return &contexter{logger: logger.With("component", "context"), db: db, notifier: n, metrics: gather.NewMetrics(reg), now: time.Now, lease: n.lease}
}

// setupContext builds the gatherer and the context pipeline.
func (a *App) setupContext(cfg *config.Config, db *store.Store, poll time.Duration) error {
	a.contexter = newContexter(a.logger, db, a.notifier, a.opts.Registry)
	a.contexter.config = a.Config
	g, err := a.contexter.build(cfg)
	if err != nil {
		return err
	}
	a.contexter.cur.Store(g)
	a.ctxPipeline = incident.NewPipeline(a.logger.With("component", "context_queue"), db, incident.PipelineOptions{
		Owner: a.opts.Owner + "/context", Workers: contextWorkers, Lease: max(cfg.Storage.Queue.Lease, cfg.Context.Budget+contextLeaseMargin), PollInterval: poll,
		MinBackoff: cfg.Storage.Queue.MinBackoff, MaxBackoff: cfg.Storage.Queue.MaxBackoff,
		StorageFailed: a.db.failed, Metrics: a.queueMetrics,
	})
	a.ctxPipeline.Register(incident.JobGather, incident.HandlerFunc(a.contexter.gather))
	a.ctxPipeline.Register(incident.JobContextPost, incident.HandlerFunc(a.contexter.post))
	return nil
}

// CheckContext builds the context sources cfg configures, as serve and a
// reload do, without storage: a kubeconfig, an http_config or a source
// that cannot be built is an error. Without a kubeconfig outside a
// cluster, the kubernetes section is a warning: serve would not start
// here, but the same file is valid in a pod.
func CheckContext(cfg *config.Config) (warnings []string, err error) {
	c := &contexter{logger: slog.New(slog.DiscardHandler), now: time.Now}
	if k := cfg.Context.Kubernetes; k != nil && k.Kubeconfig == "" {
		if _, err := kubeapi.New(""); err != nil {
			warnings = append(warnings, fmt.Sprintf("context: kubernetes: kubeconfig is not set and responder is not in a cluster (%v); "+
				"serve does not start here: set context.kubernetes.kubeconfig, or run responder in the cluster with a service account", err))
			outside := *cfg
			outside.Context.Kubernetes = nil
			cfg = &outside
		}
	}
	if _, err := c.build(cfg); err != nil {
		return nil, inConfigFile(cfg, err)
	}
	return warnings, nil
}

// build returns a Gatherer over the sources cfg configures. Nothing is put
// in force until the caller stores it.
func (c *contexter) build(cfg *config.Config) (*gather.Gatherer, error) {
	cc := cfg.Context
	var sources []gather.Source
	sources = append(sources, deploys.New(c.db.RecentDeployments, cc.ServiceLabels, cc.Deployments.Lookback, gather.MaxDeployments, c.now))
	var cs kube.API
	var sel kube.Selector
	if k := cc.Kubernetes; k != nil {
		kc, err := kubeapi.New(k.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("context: kubernetes: %w", err)
		}
		cs = kc
		sel = kube.Selector{NamespaceLabel: k.NamespaceLabel, Namespace: k.Namespace, DeploymentLabel: k.DeploymentLabel, ServiceSelector: k.ServiceSelector, ServiceLabels: cc.ServiceLabels}
		sources = append(sources, kube.NewRollouts(cs, sel, cc.Deployments.Lookback, c.now))
	}
	if u := cfg.Global.PrometheusURL; u != "" {
		rt, err := roundTripper(cc.PromQL.HTTPConfig, "prometheus")
		if err != nil {
			return nil, fmt.Errorf("context: promql: http_config: %w", err)
		}
		qs := make([]promql.Query, len(cc.PromQL.Queries))
		for i, q := range cc.PromQL.Queries {
			qs[i] = promql.Query{Name: q.Name, Query: q.Query}
		}
		src, err := promql.New(promql.Options{
			URL: u, RoundTripper: rt, AlertExpression: cc.PromQL.AlertExpressionEnabled(), Queries: qs,
			Range: cc.PromQL.Range, Step: cc.PromQL.Step, Logger: c.logger, Now: c.now,
		})
		if err != nil {
			return nil, fmt.Errorf("context: promql: %w", err)
		}
		sources = append(sources, src)
	}
	red, err := logs.NewRedactor(cc.Logs.Redact, cc.Logs.RedactDefaultsEnabled())
	if err != nil {
		return nil, fmt.Errorf("context: logs: %w", err)
	}
	shaper := logs.Shaper{Redactor: red, MaxLines: cc.Logs.MaxLines}
	if l := cc.Logs.Loki; l != nil {
		rt, err := roundTripper(l.HTTPConfig, "loki")
		if err != nil {
			return nil, fmt.Errorf("context: logs: loki: http_config: %w", err)
		}
		src, err := logs.NewLoki(logs.LokiOptions{URL: l.URL, Query: l.Query, Lookback: cc.Logs.Lookback, Client: &http.Client{Transport: rt}, Shaper: shaper, Now: c.now})
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		sources = append(sources, src)
	}
	if e := cc.Logs.Elasticsearch; e != nil {
		rt, err := roundTripper(e.HTTPConfig, "elasticsearch")
		if err != nil {
			return nil, fmt.Errorf("context: logs: elasticsearch: http_config: %w", err)
		}
		src, err := logs.NewElasticsearch(logs.ElasticsearchOptions{
			URL: e.URL, Index: e.Index, Query: e.Query, MessageField: e.MessageField, TimestampField: e.TimestampField,
			Lookback: cc.Logs.Lookback, Client: &http.Client{Transport: rt}, Shaper: shaper, Now: c.now,
		})
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		sources = append(sources, src)
	}
	if p := cc.Logs.Kubernetes; p != nil && cs != nil {
		filter, err := regexp.Compile(p.Filter)
		if err != nil {
			return nil, fmt.Errorf("context: logs: kubernetes: filter: %w", err)
		}
		sources = append(sources, kube.NewPodLogs(cs, kube.PodLogsOptions{
			Selector: sel, Filter: filter, Container: p.Container, TailLines: p.TailLines, MaxPods: p.MaxPods, Lookback: cc.Logs.Lookback, Now: c.now,
			Shape: func(lines []kube.Line) []incident.LogLine {
				ls := make([]logs.Line, len(lines))
				for i, l := range lines {
					ls[i] = logs.Line(l)
				}
				return shaper.Shape(ls)
			},
		}))
	}
	return gather.New(sources, gather.Options{Budget: cc.Budget, Timeout: cc.Timeout, Logger: c.logger, Metrics: c.metrics, Now: c.now}), nil
}

// roundTripper builds the transport of an http_config, or the default one.
func roundTripper(hc *commoncfg.HTTPClientConfig, name string) (http.RoundTripper, error) {
	if hc == nil {
		return http.DefaultTransport, nil
	}
	return commoncfg.NewRoundTripperFromConfig(*hc, name)
}

// gather handles a gather job: job.RefID is the incident.
func (c *contexter) gather(ctx context.Context, j incident.Job) error {
	inc, err := c.db.ReadIncident(ctx, j.RefID, store.PartAlerts|store.PartContext)
	if err != nil {
		return permanentIfNotFound(err)
	}
	if inc.Context != nil {
		// A later change of the incident: the context is reused.
		c.metrics.CacheHit()
		return nil
	}
	if inc.Status == incident.StatusResolved {
		// Resolved before anything was gathered: nobody needs it now.
		return nil
	}
	gc := c.cur.Load().Gather(ctx, inc)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	// Nothing is posted when every source found nothing (see
	// worthReplying), so that context needs no post job.
	post := ""
	if worthReplying(gc) {
		post = incident.JobContextPost
	}
	if _, err := c.db.SaveContext(sctx, inc.ID, gc, post); err != nil {
		return err
	}
	c.logger.DebugContext(ctx, "context gathered", "incident_id", inc.ID, "duration", time.Duration(gc.DurationMS)*time.Millisecond)
	return nil
}

var errParentNotPosted = errors.New("the slack parent message is not posted yet")

// post handles a context_post job: job.RefID is the incident.
func (c *contexter) post(ctx context.Context, j incident.Job) error {
	inc, err := c.db.ReadIncident(ctx, j.RefID, handlerParts)
	if err != nil {
		return permanentIfNotFound(err)
	}
	if inc.Context == nil {
		return incident.Permanent(fmt.Errorf("incident %d has no stored context", inc.ID))
	}
	age := c.now().Sub(j.CreatedAt)
	if routeDecision(inc) == nil {
		return c.wait(inc, age, errors.New("the incident is not routed yet"))
	}
	posts, err := c.db.ContextPosts(ctx, inc.ID)
	if err != nil {
		return err
	}
	cfg := c.notifier.cur.Load()
	waiting := false
	for _, d := range inc.Deliveries {
		p := posts[d.ID]
		if d.StormID != 0 || p.Done {
			continue
		}
		p.DeliveryID = d.ID
		switch d.Integration {
		case incident.IntegrationSlack:
			if d.TS == "" {
				waiting = true
				continue
			}
			err = c.postSlack(ctx, cfg, d, inc, &p)
		case incident.IntegrationPagerDuty:
			err = c.postPagerDuty(ctx, cfg, d, inc, &p)
		default:
			p.Done = true
		}
		if serr := c.db.SaveContextPost(context.WithoutCancel(ctx), inc.ID, p); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
	}
	if waiting {
		return c.wait(inc, age, errParentNotPosted)
	}
	return nil
}

// wait hands the post job back until the incident's messages exist, or
// gives up after contextPostPatience.
func (c *contexter) wait(inc *incident.Incident, age time.Duration, why error) error {
	if age > contextPostPatience {
		c.logger.Warn("incident context not posted: its slack message never appeared", "incident_id", inc.ID, "err", why)
		return nil
	}
	after := time.Second
	if age > time.Minute {
		after = 15 * time.Second
	}
	return incident.Busy(why, after)
}

// postSlack replies in the parent's thread with the context (step 0), then
// uploads one chart per snapshot with a range (steps 1..n).
func (c *contexter) postSlack(ctx context.Context, cfg *notifyConfig, d incident.Dispatch, inc *incident.Incident, p *store.ContextPost) error {
	ref := slack.Ref{Channel: d.ChannelID, TS: d.TS, Permalink: d.Permalink}
	if !worthReplying(inc.Context) {
		// Every source answered and found nothing: the API shows that; a
		// reply would only take a slot of the channel's pace from the next
		// incident's parent.
		p.Done = true
		return nil
	}
	if p.Step == 0 {
		text, blocks := slack.RenderContext(inc.Context, c.now())
		_, retry, err := cfg.slack.Reply(ctx, ref, text, blocks...)
		if err != nil {
			if retry {
				return err
			}
			c.logger.WarnContext(ctx, "slack refused the context reply", "incident_id", inc.ID, "channel", ref.Channel, "err", err)
		}
		p.Step = 1
	}
	charts := chartSnapshots(inc.Context)
	for p.Step-1 < len(charts) {
		sn := charts[p.Step-1]
		png, err := promql.Chart(sn)
		if err == nil {
			_, retry, uerr := cfg.slack.Upload(ctx, ref, slack.File{
				Name: fmt.Sprintf("promql-%d.png", p.Step), Title: sn.Name, Content: png,
				AltText: fmt.Sprintf("Chart of %s over the last %s", sn.Name, sn.End.Sub(sn.Start).Round(time.Minute)),
			})
			if uerr != nil && retry {
				return uerr
			}
			err = uerr
		}
		if err != nil {
			c.logger.WarnContext(ctx, "context chart not shared", "incident_id", inc.ID, "channel", ref.Channel, "err", err)
		}
		p.Step++
	}
	p.Done = true
	return nil
}

// chartSnapshots are the snapshots with something to draw.
func chartSnapshots(gc *incident.Context) []incident.Snapshot {
	var out []incident.Snapshot
	for _, sec := range gc.Sections {
		for _, sn := range sec.Snapshots {
			if sn.Error == "" && len(sn.Series) > 0 {
				out = append(out, sn)
			}
		}
	}
	return out
}

// worthReplying tells whether the context has anything to say in Slack:
// something found, or a source that timed out or failed (the reply says
// which).
func worthReplying(gc *incident.Context) bool {
	if gc == nil {
		return false
	}
	for _, sec := range gc.Sections {
		if sec.Status != incident.SourceEmpty {
			return true
		}
	}
	return false
}

// postPagerDuty adds the context summary to an alert triggered before the
// context was gathered, by repeating the trigger (PagerDuty keeps one
// alert per dedup key), when context.pagerduty_update is on. An alert not triggered yet gets the summary with
// its first trigger; a resolved one needs none. The delivery's lease keeps
// a resolve from racing the repeated trigger.
func (c *contexter) postPagerDuty(ctx context.Context, cfg *notifyConfig, d incident.Dispatch, inc *incident.Incident, p *store.ContextPost) error {
	if d.LastAction != pagerduty.ActionTrigger || inc.Status != incident.StatusFiring || c.config == nil || !c.config().Context.PagerDutyUpdate {
		p.Done = true
		return nil
	}
	owner := fmt.Sprintf("context#%d", inc.ID)
	ld, err := c.db.LeaseDelivery(ctx, d.ID, owner, c.lease)
	if err != nil {
		return permanentIfNotFound(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		defer cancel()
		_ = c.db.SaveDelivery(sctx, *ld, owner) // ends the lease; the state is unchanged
	}()
	r, ok := cfg.receivers[ld.Receiver]
	if ld.LastAction != pagerduty.ActionTrigger || !ok || ld.ConfigIndex >= len(r.PagerDutyConfigs) {
		p.Done = true
		return nil
	}
	pc := r.PagerDutyConfigs[ld.ConfigIndex]
	extra := pagerduty.Extra{SlackPermalink: slackPermalink(inc), Details: contextDetails(inc.Context)}
	if retry, err := cfg.pagerduty.Notify(ctx, pc.RoutingKey, pagerduty.ActionTrigger, inc, extra); err != nil {
		if retry {
			return err
		}
		c.logger.WarnContext(ctx, "pagerduty refused the context update", "incident_id", inc.ID, "err", err)
	}
	p.Done = true
	return nil
}

// contextDetails is the context summary for PagerDuty's custom_details:
// each source's status, the deployments, the error lines and the current
// values, as short lines. It is nil before the context is gathered.
func contextDetails(gc *incident.Context) map[string]any {
	if gc == nil {
		return nil
	}
	status := map[string]string{}
	var deps, lines, values []string
	for _, sec := range gc.Sections {
		status[sec.Source] = sec.Status
		for _, d := range sec.Deployments {
			s := d.Service
			if d.Name != "" {
				s = d.Namespace + "/" + d.Name + " revision " + fmt.Sprint(d.Revision)
			}
			if d.Version != "" {
				s += " " + d.Version
			}
			if d.Rollback {
				s += " (rollback)"
			}
			deps = append(deps, s+" at "+d.DeployedAt.Format(time.RFC3339))
		}
		for _, l := range sec.Logs {
			lines = append(lines, fmt.Sprintf("%dx %s", l.Count, l.Line))
		}
		for _, sn := range sec.Snapshots {
			for _, v := range sn.Values {
				values = append(values, sn.Name+" "+v.Labels+" = "+slack.FormatValue(v.Value))
			}
		}
	}
	out := map[string]any{"context_sources": status}
	if len(deps) > 0 {
		out["recent_deployments"] = deps
	}
	if len(lines) > 0 {
		out["error_logs"] = lines
	}
	if len(values) > 0 {
		out["metrics"] = values
	}
	return out
}
