package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/slack"
	"github.com/responder/responder/internal/store"
)

// The actions a deliver job reports to the console.
const (
	actionPosted    = "posted"
	actionUpdated   = "updated"
	actionTriggered = "triggered"
	actionResolved  = "resolved"
	// actionPosting is stored before a Slack parent is posted: found on
	// the next attempt, it says the post may have gone through.
	actionPosting = "posting"
	// actionStorm: the target is part of a storm, whose job sends for it.
	actionStorm = "storm"
)

// saveTimeout bounds storing a delivery's state after the call out. It runs
// on a context that shutdown does not cancel: a Slack ts that is not stored
// means a second post on the next attempt.
const saveTimeout = 5 * time.Second

// notifier is the glue between storage, the router and the Slack and
// PagerDuty notifiers: it runs the route and deliver jobs.
//
// Every incident change queues one route job (a store follow-up, committed
// with the change). The first routes the incident and plans its deliveries;
// every one queues a deliver job per delivery. A deliver job compares what
// the target was last sent (stored in the delivery) with the incident, and
// calls out only when they differ, so that it is safe to run twice.
type notifier struct {
	logger  *slog.Logger
	db      *store.Store
	console *console
	// lease bounds how long a deliver job holds its delivery; the job's own
	// timeout is shorter.
	lease   time.Duration
	now     func() time.Time
	cur     atomic.Pointer[notifyConfig]
	metrics *notifyMetrics
}

// notifyConfig is what one configuration generation routes and sends with.
type notifyConfig struct {
	router    *routing.Router
	receivers map[string]routing.Receiver
	slack     *slack.Notifier
	slackID   string // API URL and token the Slack notifier was built with
	pagerduty *pagerduty.Notifier
	storm     routing.StormConfig
	// channels are the configured Slack channels, for the storm gauge.
	channels []string
}

func newNotifier(logger *slog.Logger, db *store.Store, c *console, lease time.Duration, reg prometheus.Registerer) *notifier {
	if lease <= 0 {
		lease = store.DefaultQueueConfig.Lease
	}
	n := &notifier{logger: logger.With("component", "notify"), db: db, console: c, lease: lease, now: time.Now, metrics: newNotifyMetrics(reg)}
	reg.MustRegister(newStormCollector(db, n.channels))
	return n
}

// channels returns the Slack channels of the configuration in force.
func (n *notifier) channels() []string {
	if c := n.cur.Load(); c != nil {
		return c.channels
	}
	return nil
}

// apply builds the router and notifiers for cfg and puts them in force. On
// error the ones in force stay. The Slack notifier is kept across reloads
// that change neither its token nor its URL, so that its per-channel rate
// limits carry over.
func (n *notifier) apply(cfg *config.Config) error {
	router, err := routing.NewRouter(cfg.Route, cfg.TimeIntervals)
	if err != nil {
		return fmt.Errorf("build router: %w", err)
	}
	next := &notifyConfig{router: router, receivers: make(map[string]routing.Receiver, len(cfg.Receivers))}
	for _, r := range cfg.Receivers {
		next.receivers[r.Name] = r
		for _, sc := range r.SlackConfigs {
			if !slices.Contains(next.channels, sc.Channel) {
				next.channels = append(next.channels, sc.Channel)
			}
		}
	}
	next.storm = cfg.Storm
	g := cfg.Global
	next.slackID = g.SlackAPIURL + "\x00" + g.SlackBotToken.Value()
	if prev := n.cur.Load(); prev != nil && prev.slackID == next.slackID {
		next.slack = prev.slack
	} else {
		next.slack = slack.New(g.SlackBotToken.Value(), g.SlackAPIURL, slack.Options{ExternalURL: g.ExternalURL, Logger: n.logger})
	}
	next.pagerduty = pagerduty.New(g.PagerDutyEventsURL, pagerduty.Options{ExternalURL: g.ExternalURL, Logger: n.logger})
	n.cur.Store(next)
	return nil
}

// route handles a route job: job.RefID is the incident.
func (n *notifier) route(ctx context.Context, j incident.Job) error {
	inc, err := n.db.ReadIncident(ctx, j.RefID, store.PartDecisions)
	if err != nil {
		return permanentIfNotFound(err)
	}
	cfg := n.cur.Load()
	lset := routeLabels(inc)
	if rd := routeDecision(inc); rd != nil {
		// A later change of a routed incident: bring every target in step.
		if _, err := n.db.QueueDeliveries(ctx, inc.ID); err != nil {
			return err
		}
		// It is not routed again: say so if alerts that joined differ in
		// a label the routes match on (a critical joining warnings).
		if strings.Contains(rd.Summary, splitNote) {
			return nil
		}
		// Only a diagnostic: a failed read must not retry the job, whose
		// deliveries are queued.
		if split, missed, err := n.splitLabels(ctx, cfg.router, inc.ID, lset, n.now(), chosenReceivers(inc)); err == nil && len(missed) > 0 {
			n.logger.WarnContext(ctx, "incident's alerts now differ in labels its routes match on; it was routed when they did not, and is not routed again: group by them in Alertmanager",
				"incident_id", inc.ID, "labels", strings.Join(split, ", "), "missed_receivers", strings.Join(missed, ", "))
		}
		return nil
	}
	now := n.now()
	at, err := n.routeTime(ctx, inc.ID, now)
	if err != nil {
		return err
	}
	d := cfg.router.Route(lset, at)
	detail, err := json.Marshal(d)
	if err != nil {
		return incident.Permanent(fmt.Errorf("encode route decision: %w", err))
	}
	reason := routeReason(d)
	split, missed, err := n.splitLabels(ctx, cfg.router, inc.ID, lset, at, d.Receivers)
	if err != nil {
		return err
	}
	if len(missed) > 0 {
		names := strings.Join(split, ", ")
		reason += " — " + splitNote + " " + names + ", which routes match on: alone, some of them would also go to " + strings.Join(missed, ", ") +
			"; routing sees only the labels all of them share: group by " + names + " in Alertmanager"
		n.logger.WarnContext(ctx, "incident routed without labels its routes match on: its alerts differ in them; group by them in Alertmanager",
			"incident_id", inc.ID, "labels", names, "missed_receivers", strings.Join(missed, ", "))
	}
	policy := store.StormPolicy{Enabled: cfg.storm.Enabled, Threshold: cfg.storm.Threshold, Window: cfg.storm.Window}
	// A receiver muted by its route's time intervals is chosen when they
	// stop muting it, if the incident still fires then (reroute).
	recheck, _ := cfg.router.NextUnmuted(d, at, rerouteHorizon)
	planned, joins, err := n.db.PlanDeliveriesStorm(ctx, inc.ID,
		incident.Decision{Kind: incident.DecisionRoute, Summary: reason, Detail: detail, At: now},
		cfg.plan(inc, d.Receivers), policy, recheck)
	if err != nil {
		return err
	}
	if planned {
		n.console.routed(ctx, inc.ID, d.Receivers, reason)
	}
	for _, j := range joins {
		n.console.stormJoined(ctx, inc.ID, j, cfg.storm.Window)
	}
	return nil
}

// splitNote starts the note a route decision gets when the incident's
// alerts differ in labels the routes match on.
const splitNote = "note: the alerts differ in"

// splitLabels returns the labels routes match on that only some of the
// incident's alerts carry, or with different values (routing sees the
// group's labels and the labels all its alerts share, lset, which lack
// them), and the receivers its firing alerts would get, each routed on its
// own labels at at as Alertmanager routes them, that chosen lacks: a
// critical alert grouped with warnings does not page. missed is empty when
// the split changes nothing.
func (n *notifier) splitLabels(ctx context.Context, router *routing.Router, id int64, lset map[string]string, at time.Time, chosen []string) (split, missed []string, _ error) {
	var absent []string
	for _, name := range router.MatchedLabels() {
		if _, ok := lset[name]; !ok {
			absent = append(absent, name)
		}
	}
	if len(absent) == 0 {
		return nil, nil, nil
	}
	inc, err := n.db.ReadIncident(ctx, id, store.PartAlerts)
	if err != nil {
		return nil, nil, permanentIfNotFound(err)
	}
	for _, name := range absent {
		if slices.ContainsFunc(inc.Alerts, func(a incident.Alert) bool { _, ok := a.Labels[name]; return ok }) {
			split = append(split, name)
		}
	}
	if len(split) == 0 {
		return nil, nil, nil
	}
	for _, a := range inc.Alerts {
		if a.Status != incident.StatusFiring {
			continue
		}
		labels := maps.Clone(lset)
		maps.Copy(labels, a.Labels)
		for _, r := range router.Route(labels, at).Receivers {
			if !slices.Contains(chosen, r) && !slices.Contains(missed, r) {
				missed = append(missed, r)
			}
		}
	}
	return split, missed, nil
}

// chosenReceivers returns the receivers the incident's route and reroute
// decisions chose.
func chosenReceivers(inc *incident.Incident) []string {
	var out []string
	for _, d := range inc.Decisions {
		if d.Kind != incident.DecisionRoute && d.Kind != incident.DecisionReroute {
			continue
		}
		var detail struct {
			Receivers []string `json:"receivers"`
		}
		if json.Unmarshal(d.Detail, &detail) == nil {
			out = append(out, detail.Receivers...)
		}
	}
	return out
}

// rerouteHorizon is how far ahead a muted receiver's time intervals are
// searched for the minute they stop muting it: a week and a day covers any
// weekly schedule (business hours, weekends, on-call rotations).
const rerouteHorizon = 8 * 24 * time.Hour

// routeLabels are the labels an incident is routed on: its group labels
// over its common labels.
func routeLabels(inc *incident.Incident) map[string]string {
	lset := maps.Clone(inc.CommonLabels)
	if lset == nil {
		lset = map[string]string{}
	}
	maps.Copy(lset, inc.GroupLabels)
	return lset
}

// reroute handles a reroute job (job.RefID is the incident), due when a
// route that muted a receiver at routing time stops muting it: if the
// incident still fires, it adds the deliveries of the receivers the route
// tree chooses now and the incident lacks, with a "reroute" decision that
// says why, and looks for the next such minute. As Alertmanager, which
// checks time intervals at each notification of a group that still fires,
// pages a critical alert of Saturday night on Monday morning. An incident
// in a storm is left to the storm's digest and page.
func (n *notifier) reroute(ctx context.Context, j incident.Job) error {
	inc, err := n.db.ReadIncident(ctx, j.RefID, store.PartDecisions|store.PartDeliveries)
	if err != nil {
		if incident.KindOf(err) == incident.NotFound {
			return nil // pruned
		}
		return err
	}
	if inc.Status != incident.StatusFiring || slices.ContainsFunc(inc.Decisions, func(d incident.Decision) bool { return d.Kind == incident.DecisionStorm }) {
		return nil
	}
	cfg := n.cur.Load()
	now := n.now()
	d := cfg.router.Route(routeLabels(inc), now)
	var added []incident.Dispatch
	for _, p := range cfg.plan(inc, d.Receivers) {
		if !slices.ContainsFunc(inc.Deliveries, func(have incident.Dispatch) bool {
			return have.Receiver == p.Receiver && have.Integration == p.Integration && have.ConfigIndex == p.ConfigIndex
		}) {
			added = append(added, p)
		}
	}
	recheck, _ := cfg.router.NextUnmuted(d, now, rerouteHorizon)
	if len(added) == 0 && recheck.IsZero() {
		return nil
	}
	detail, err := json.Marshal(d)
	if err != nil {
		return incident.Permanent(fmt.Errorf("encode reroute decision: %w", err))
	}
	var names []string
	for _, p := range added {
		if !slices.Contains(names, p.Receiver) {
			names = append(names, p.Receiver)
		}
	}
	reason := "added: " + strings.Join(names, ", ") + " — still firing when its route stopped being muted; " + routeReason(d)
	count, err := n.db.AddDeliveries(ctx, inc.ID, incident.Decision{Kind: incident.DecisionReroute, Summary: reason, Detail: detail, At: now}, added, recheck)
	if err != nil {
		return err
	}
	if count > 0 {
		n.console.routed(ctx, inc.ID, names, reason)
	}
	return nil
}

// routeTime is the instant an incident is routed at: when the
// notification that opened it was received, as Alertmanager evaluates time
// intervals when it sends. A route job that runs late (a retry after a
// storage outage, a backlog after a restart) must not turn a page decided
// at 17:59 into a mute at 18:05, or the reverse. It is never after now.
func (n *notifier) routeTime(ctx context.Context, id int64, now time.Time) (time.Time, error) {
	inc, err := n.db.ReadIncident(ctx, id, store.PartNotifications)
	if err != nil {
		return time.Time{}, permanentIfNotFound(err)
	}
	at := now
	for _, nr := range inc.Notifications {
		if !nr.ReceivedAt.IsZero() && nr.ReceivedAt.Before(at) {
			at = nr.ReceivedAt
		}
	}
	return at, nil
}

// plan returns one delivery per (receiver, integration, config index) of
// the chosen receivers. A receiver without configs gets none: the console
// line is all it sends.
func (c *notifyConfig) plan(inc *incident.Incident, receivers []string) []incident.Dispatch {
	var out []incident.Dispatch
	for _, name := range receivers {
		r := c.receivers[name]
		for i, sc := range r.SlackConfigs {
			out = append(out, incident.Dispatch{Receiver: name, Integration: incident.IntegrationSlack, ConfigIndex: i, Target: sc.Channel})
		}
		for i := range r.PagerDutyConfigs {
			out = append(out, incident.Dispatch{
				Receiver: name, Integration: incident.IntegrationPagerDuty, ConfigIndex: i, Target: pagerduty.DedupKey(inc.GroupKey),
			})
		}
	}
	return out
}

// routeReason is the decision's one-line summary followed by the reason of
// each final route that chose or muted a receiver, e.g. `receivers:
// incidents; muted: pagerduty — pagerduty: muted: outside active time
// interval business-hours (...); matched severity="critical" | incidents: no
// matchers: matches every alert`.
func routeReason(d routing.Decision) string {
	var parts []string
	for _, s := range d.Trace {
		if s.Final {
			parts = append(parts, s.Receiver+": "+s.Reason)
		}
	}
	if len(parts) == 0 {
		return d.Summary()
	}
	return d.Summary() + " — " + strings.Join(parts, " | ")
}

// handlerParts are the parts of an incident that job handlers use: the API
// shows more (history, notifications, jobs), which they never read.
const handlerParts = store.PartAlerts | store.PartDecisions | store.PartDeliveries | store.PartRemediation | store.PartContext

func routeDecision(inc *incident.Incident) *incident.Decision {
	for i := range inc.Decisions {
		if inc.Decisions[i].Kind == incident.DecisionRoute {
			return &inc.Decisions[i]
		}
	}
	return nil
}

// deliver handles a deliver job: job.RefID is the delivery.
//
// It is safe to run twice (a retry, a job whose lease expired, a restart
// after a crash): the delivery is leased, so no two workers send to one
// target at once, and the handler calls out only when the stored state (the
// Slack ts, the synced version, PagerDuty's last action) shows that the
// target is behind the incident.
//
// Slack's API has no idempotency key, so a post whose answer is lost (a
// timeout, a crash before SaveDelivery commits) would be posted again. To
// close that window, a post is marked "posting" in storage before it is
// sent and carries its delivery as message metadata; the next attempt that
// finds the mark searches the channel's history for the post and adopts it.
// PagerDuty has no such window: its events are idempotent by dedup key, and
// a repeated trigger or resolve changes nothing.
func (n *notifier) deliver(ctx context.Context, j incident.Job) error {
	owner := fmt.Sprintf("%s#%d", j.Owner, j.ID)
	d, err := n.db.LeaseDelivery(ctx, j.RefID, owner, n.lease)
	if err != nil {
		return permanentIfNotFound(err)
	}
	// From here on, SaveDelivery ends the lease whatever happens.
	saved := false
	defer func() {
		if !saved {
			_ = n.save(ctx, d, owner) // save logs its failure; the job's error is the one to return
		}
	}()
	inc, err := n.db.ReadIncident(ctx, d.IncidentID, handlerParts)
	if err != nil {
		d.LastError = err.Error()
		return permanentIfNotFound(err)
	}
	cfg := n.cur.Load()
	var action string
	switch {
	case d.StormID != 0:
		action, err = n.syncStormMember(ctx, d, inc)
	case d.Integration == incident.IntegrationSlack:
		action, err = n.syncSlack(ctx, cfg, d, inc, owner)
	case d.Integration == incident.IntegrationPagerDuty:
		action, err = n.syncPagerDuty(ctx, cfg, d, inc)
	default:
		err = incident.Permanent(fmt.Errorf("delivery %d: unknown integration %q", d.ID, d.Integration))
	}
	d.LastError = ""
	if err != nil {
		d.LastError = err.Error()
	}
	saved = true
	if serr := n.save(ctx, d, owner); serr != nil && err == nil {
		err = serr
	}
	if action != "" && action != actionStorm {
		n.console.delivered(ctx, *d, action)
	}
	return err
}

// save stores d on a context that shutdown does not cut short.
func (n *notifier) save(ctx context.Context, d *incident.Dispatch, owner string) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	err := n.db.SaveDelivery(sctx, *d, owner)
	if err != nil {
		n.logger.WarnContext(ctx, "saving a delivery's state failed; its next attempt may send again", "incident_id", d.IncidentID, "receiver", d.Receiver, "err", err)
	}
	return err
}

// synced records that d shows inc as it is now.
func synced(d *incident.Dispatch, inc *incident.Incident) {
	d.SyncedVersion, d.SyncedFiring, d.SyncedResolved = inc.Version, inc.FiringAlerts, inc.ResolvedAlerts
}

// syncSlack posts the parent message, or updates it in place and replies in
// its thread with what changed. It returns the action taken, "" for none.
func (n *notifier) syncSlack(ctx context.Context, cfg *notifyConfig, d *incident.Dispatch, inc *incident.Incident, owner string) (string, error) {
	r, ok := cfg.receivers[d.Receiver]
	if !ok || d.ConfigIndex >= len(r.SlackConfigs) {
		return "", incident.Permanent(fmt.Errorf("receiver %q has no slack_configs[%d] any more", d.Receiver, d.ConfigIndex))
	}
	sc := r.SlackConfigs[d.ConfigIndex]
	sn := cfg.slack.WithTemplates(slack.Templates{Title: sc.Title, Text: sc.Text})
	resolved := inc.Status == incident.StatusResolved
	extra := slack.Extra{Notes: routeNotes(inc)}
	if wait := sn.Delay(d.Target); wait > maxPacerWait {
		// The channel is booked for a while: come back then rather than
		// hold a worker and a slot. Meanwhile a storm may take this
		// incident into its digest.
		return "", incident.Busy(fmt.Errorf("slack channel %s is paced for another %s", d.Target, wait.Round(time.Millisecond)), wait-maxPacerWait)
	}
	if d.TS == "" {
		if resolved && !sc.SendResolved {
			// Nothing was posted while it fired, and resolutions are not
			// wanted here.
			n.metrics.skipped(incident.IntegrationSlack)
			synced(d, inc)
			return "", nil
		}
		extra.Key = fmt.Sprintf("delivery-%d", d.ID)
		if d.LastAction == actionPosting {
			// An earlier attempt may have posted: its answer was lost, or
			// the process died before storing the ts.
			if action, done, err := n.adoptLostPost(ctx, sn, d, inc, extra); done || err != nil {
				return action, err
			}
		}
		// Committed before the call: if its answer is lost, the next
		// attempt looks for the post before posting again.
		if err := n.db.MarkDelivery(ctx, d.ID, owner, actionPosting); err != nil {
			return "", permanentIfNotFound(err)
		}
		prev := d.LastAction
		d.LastAction = actionPosting
		start := time.Now()
		ref, retry, err := sn.PostParent(ctx, d.Target, inc, extra)
		n.metrics.observe(incident.IntegrationSlack, start, retry, err)
		if err != nil {
			if !outcomeUnknown(retry, err) {
				d.LastAction = prev
			}
			return "", outcome(retry, err)
		}
		d.ChannelID, d.TS, d.Permalink, d.LastAction = ref.Channel, ref.TS, ref.Permalink, actionPosted
		synced(d, inc)
		return actionPosted, nil
	}
	if d.SyncedVersion >= inc.Version {
		return "", nil
	}
	if resolved && !sc.SendResolved {
		n.metrics.skipped(incident.IntegrationSlack)
		synced(d, inc)
		return "", nil
	}
	ref := slack.Ref{Channel: d.ChannelID, TS: d.TS, Permalink: d.Permalink}
	start := time.Now()
	retry, err := sn.UpdateParent(ctx, ref, inc, extra)
	n.metrics.observe(incident.IntegrationSlack, start, retry, err)
	if err != nil {
		return "", outcome(retry, err)
	}
	if text := changeText(d, inc); text != "" {
		// An update repeated by a retry is harmless; a reply is not, so it
		// comes last. A reply Slack refuses for good is not worth parking
		// the job over: the parent shows the state.
		start := time.Now()
		_, retry, err := sn.Reply(ctx, ref, text)
		n.metrics.observe(incident.IntegrationSlack, start, retry, err)
		if err != nil {
			if retry {
				return "", err
			}
			n.logger.WarnContext(ctx, "slack refused a thread reply; the parent message was updated", "incident_id", inc.ID, "channel", ref.Channel, "err", err)
		}
	}
	d.LastAction = actionUpdated
	synced(d, inc)
	return actionUpdated, nil
}

// adoptLostPost looks in the channel's history for the parent an earlier
// attempt posted with extra.Key. Found, it adopts it (brought up to date in
// place) and done is true. Not found, or when the search fails for good
// (e.g. the token lacks the history scope), the caller posts: a possible
// second parent is better than none. A search that may succeed later is
// retried.
func (n *notifier) adoptLostPost(ctx context.Context, sn *slack.Notifier, d *incident.Dispatch, inc *incident.Incident, extra slack.Extra) (action string, done bool, err error) {
	since := inc.OpenedAt.Add(-postSearchMargin)
	ref, found, retry, err := sn.FindPosted(ctx, d.Target, extra.Key, since)
	switch {
	case err != nil && retry:
		return "", false, err
	case err != nil:
		n.metrics.postChecks.WithLabelValues("error").Inc()
		n.logger.WarnContext(ctx, "cannot tell whether an earlier slack post went through; posting again", "incident_id", inc.ID, "channel", d.Target, "err", err)
		return "", false, nil
	case !found:
		n.metrics.postChecks.WithLabelValues("not_found").Inc()
		return "", false, nil
	}
	n.metrics.postChecks.WithLabelValues("found").Inc()
	d.ChannelID, d.TS, d.Permalink, d.LastAction = ref.Channel, ref.TS, ref.Permalink, actionPosted
	// What the found post shows is unknown: bring it up to date in place,
	// and count its alerts as shown so that no thread reply repeats them.
	d.SyncedFiring, d.SyncedResolved = inc.FiringAlerts, inc.ResolvedAlerts
	start := time.Now()
	retry, err = sn.UpdateParent(ctx, ref, inc, extra)
	n.metrics.observe(incident.IntegrationSlack, start, retry, err)
	if err != nil {
		return "", true, outcome(retry, err)
	}
	synced(d, inc)
	return actionPosted, true, nil
}

// outcomeUnknown tells whether a failed post may have been carried out:
// its answer never came (a network error, a timeout), was a 5xx, or was an
// ok:false that Slack says may follow a request carried out in part
// (slack.PartlyDone). A 429, another ok:false answer or another 4xx means
// Slack did not post it.
func outcomeUnknown(retry bool, err error) bool {
	var ra *slack.RetryAfterError
	if !retry || errors.As(err, &ra) || rateLimited(err) {
		return false
	}
	return slack.ErrorCode(err) == "" || slack.PartlyDone(err)
}

// postSearchMargin is how far before the incident opened a search for a
// lost post starts, for clock skew between responder and Slack.
const postSearchMargin = 5 * time.Minute

// changeText says in one line what changed since the target was synced:
// "resolved after 27m", "2 new alerts firing", "1 alert resolved, 2 still
// firing".
func changeText(d *incident.Dispatch, inc *incident.Incident) string {
	switch {
	case inc.Status == incident.StatusResolved:
		if inc.ResolvedAt == nil {
			return "resolved"
		}
		return "resolved after " + slack.HumanDuration(inc.ResolvedAt.Sub(inc.OpenedAt))
	case inc.FiringAlerts > d.SyncedFiring:
		k := inc.FiringAlerts - d.SyncedFiring
		return fmt.Sprintf("%d new %s firing", k, plural("alert", k))
	case inc.ResolvedAlerts > d.SyncedResolved:
		k := inc.ResolvedAlerts - d.SyncedResolved
		return fmt.Sprintf("%d %s resolved, %d still firing", k, plural("alert", k), inc.FiringAlerts)
	}
	return ""
}

// syncPagerDuty triggers while the incident fires and resolves once it has
// resolved, each only when PagerDuty was last told otherwise. It never
// resolves what it never triggered.
func (n *notifier) syncPagerDuty(ctx context.Context, cfg *notifyConfig, d *incident.Dispatch, inc *incident.Incident) (string, error) {
	r, ok := cfg.receivers[d.Receiver]
	if !ok || d.ConfigIndex >= len(r.PagerDutyConfigs) {
		return "", incident.Permanent(fmt.Errorf("receiver %q has no pagerduty_configs[%d] any more", d.Receiver, d.ConfigIndex))
	}
	pc := r.PagerDutyConfigs[d.ConfigIndex]
	want, done := pagerduty.ActionTrigger, actionTriggered
	if inc.Status == incident.StatusResolved {
		want, done = pagerduty.ActionResolve, actionResolved
	}
	if d.LastAction == want || (want == pagerduty.ActionResolve && (d.LastAction != pagerduty.ActionTrigger || !pc.SendResolved)) {
		synced(d, inc)
		return "", nil
	}
	// The context summary, when it was gathered before the trigger; a
	// context_post job adds it to alerts triggered earlier.
	extra := pagerduty.Extra{SlackPermalink: slackPermalink(inc), Details: contextDetails(inc.Context)}
	if !strings.Contains(pc.Severity, "{{") {
		// A templated severity is left to the notifier's derivation.
		extra.Severity = pc.Severity
	}
	start := time.Now()
	retry, err := cfg.pagerduty.Notify(ctx, pc.RoutingKey, want, inc, extra)
	n.metrics.observe(incident.IntegrationPagerDuty, start, retry, err)
	if err != nil {
		return "", outcome(retry, err)
	}
	d.LastAction = want
	synced(d, inc)
	return done, nil
}

// routeNotes are the Slack notes that say why the message was sent: the
// route decision, and the receivers added since (reroute).
func routeNotes(inc *incident.Incident) []string {
	var notes []string
	if d := routeDecision(inc); d != nil {
		notes = append(notes, d.Summary)
	}
	for _, d := range inc.Decisions {
		if d.Kind == incident.DecisionReroute {
			notes = append(notes, d.Summary)
		}
	}
	return notes
}

// slackPermalink is the link to the incident's first Slack message, if one
// is posted already, for the PagerDuty event.
func slackPermalink(inc *incident.Incident) string {
	for _, d := range inc.Deliveries {
		if d.Integration == incident.IntegrationSlack && d.Permalink != "" {
			return d.Permalink
		}
	}
	return ""
}

// outcome marks an error that no retry can fix as permanent, so that the
// pipeline parks the job at once instead of retrying it.
func outcome(retry bool, err error) error {
	if retry {
		return err
	}
	return incident.Permanent(err)
}

func permanentIfNotFound(err error) error {
	switch incident.KindOf(err) {
	case incident.NotFound:
		return incident.Permanent(err)
	case incident.Conflict:
		// Another worker holds the lease on the same target: come back soon
		// rather than back off, and without spending an attempt.
		return incident.Busy(err, busyRetry)
	}
	return err
}

// maxPacerWait is the longest a deliver job waits for its channel's rate
// limit while holding its worker.
const maxPacerWait = 1500 * time.Millisecond

// busyRetry is how soon a job whose target was leased by another one tries
// again.
const busyRetry = 250 * time.Millisecond

func plural(s string, n int) string {
	if n == 1 {
		return s
	}
	return s + "s"
}
