package app

// Storm mode, the glue (the storage half is documented at the top of
// internal/store/storm.go).
//
// When a route job plans a Slack delivery for a new incident, storage counts
// the channel's new incidents within storm.window; above storm.threshold the
// channel is in a storm and the delivery joins it (as do the incident's
// PagerDuty deliveries), with a "storm" decision on the incident. Members'
// deliver jobs send nothing: they only tell the storm that something its
// digest shows has changed (syncStormMember). The storm job (notifier.storm)
// does the sending, one storm at a time under a lease, like a deliver job:
//
//  1. end the storm once nothing joined it for storm.quiet;
//  2. post the digest, storing its ts at once, or update it in place when
//     the storm changed since (the per-channel pacer spaces the updates, and
//     one queued job per storm absorbs every change made meanwhile);
//  3. trigger PagerDuty once for the storm (dedup key: hex SHA-256 of
//     "storm:" + channel + storm id), and resolve it when the storm has
//     ended and all its incidents have resolved;
//  4. while the storm is active, queue itself for the moment it may end.
//
// Each step compares stored state with the storm, so a job that runs twice
// (retry, expired lease, restart) repeats nothing. A digest is posted with
// its storm as message metadata and looked for in the channel's history
// before it is posted, so a digest Slack accepted but whose answer was
// lost is adopted rather than posted again.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/slack"
	"github.com/responder/responder/internal/store"
)

// stormDedupKey is the dedup key of a storm's one PagerDuty page.
func stormDedupKey(target string, stormID int64) string {
	return pagerduty.DedupKey(stormGroupKey(target, stormID))
}

func stormGroupKey(target string, stormID int64) string {
	return "storm:" + target + strconv.FormatInt(stormID, 10)
}

// syncStormMember handles a deliver job of a delivery that is part of a
// storm: the storm's job sends for it, so it only tells the storm when its
// incident changed.
func (n *notifier) syncStormMember(ctx context.Context, d *incident.Dispatch, inc *incident.Incident) (string, error) {
	if d.SyncedVersion >= inc.Version && d.LastAction == actionStorm {
		return "", nil
	}
	if err := n.db.QueueStorm(ctx, d.StormID, n.now(), d.LastAction == actionStorm); err != nil {
		return "", err
	}
	n.metrics.skipped(d.Integration)
	d.LastAction = actionStorm
	synced(d, inc)
	return actionStorm, nil
}

// storm handles a storm job: job.RefID is the storm. See the top of this
// file.
func (n *notifier) storm(ctx context.Context, j incident.Job) error {
	owner := fmt.Sprintf("%s#%d", j.Owner, j.ID)
	st, err := n.db.LeaseStorm(ctx, j.RefID, owner, n.lease)
	if err != nil {
		return permanentIfNotFound(err)
	}
	saved := false
	defer func() {
		if !saved {
			_ = n.saveStorm(ctx, st, owner, true) // saveStorm logs its failure
		}
	}()
	cfg := n.cur.Load()
	if st.EndedAt == nil {
		ended, err := n.db.EndStorm(ctx, st.ID, n.now().Add(-cfg.storm.Quiet))
		if err != nil {
			return err
		}
		if ended {
			// Re-read: the storm's end and version are the ones to show.
			fresh, err := n.db.GetStorm(ctx, st.ID)
			if err != nil {
				return err
			}
			fresh.ChannelID, fresh.TS, fresh.Permalink, fresh.SyncedVersion, fresh.PDLastAction = st.ChannelID, st.TS, st.Permalink, st.SyncedVersion, st.PDLastAction
			st = fresh
			n.console.stormEnded(ctx, st)
		}
	}
	members, version, err := n.db.StormIncidents(ctx, st.ID)
	if err != nil {
		return err
	}
	// A join since the lease is in members already: the digest shows it,
	// and is marked as showing it, so that the job the join queued finds
	// nothing left to update.
	st.Version = max(st.Version, version)
	digest := slack.Digest{StormID: st.ID, Channel: st.Target, StartedAt: st.StartedAt, EndedAt: st.EndedAt}
	firing := 0
	for _, m := range members {
		f := m.Status != incident.StatusResolved
		if f {
			firing++
		}
		digest.Incidents = append(digest.Incidents, slack.DigestIncident{ID: m.ID, Alertname: m.Alertname, Summary: m.Summary, Firing: f})
	}
	st.LastError = ""
	err = n.syncDigest(ctx, cfg, st, owner, digest)
	if err == nil {
		err = n.syncStormPage(ctx, cfg, st, digest, firing)
	}
	if err != nil {
		st.LastError = err.Error()
	}
	saved = true
	if serr := n.saveStorm(ctx, st, owner, true); serr != nil && err == nil {
		err = serr
	}
	if err == nil && st.EndedAt == nil {
		// Come back when the storm may end; a join before then moves this
		// earlier.
		err = n.db.QueueStorm(ctx, st.ID, st.LastIncidentAt.Add(cfg.storm.Quiet), false)
	}
	return err
}

// syncDigest posts the storm's digest, or updates it when the storm changed
// since it was last shown.
func (n *notifier) syncDigest(ctx context.Context, cfg *notifyConfig, st *store.Storm, owner string, digest slack.Digest) error {
	if st.TS != "" && st.SyncedVersion >= st.Version {
		return nil
	}
	version := st.Version
	start := time.Now()
	if st.TS == "" {
		// A storm posts one digest in its life, so an earlier attempt
		// whose answer was lost (or a crash before its ts was stored)
		// is looked for every time, without a mark of its own.
		digest.Key = fmt.Sprintf("storm-%d", st.ID)
		ref, found, retry, err := cfg.slack.FindPosted(ctx, st.Target, digest.Key, st.StartedAt.Add(-postSearchMargin))
		switch {
		case err != nil && retry:
			return err
		case err != nil:
			n.metrics.postChecks.WithLabelValues("error").Inc()
			n.logger.WarnContext(ctx, "cannot tell whether an earlier storm digest went through; posting it", "storm_id", st.ID, "err", err)
		case found:
			n.metrics.postChecks.WithLabelValues("found").Inc()
			// Adopted; shown as of version 0 so that it is updated below.
			st.ChannelID, st.TS, st.Permalink, st.SyncedVersion = ref.Channel, ref.TS, ref.Permalink, 0
			if err := n.saveStorm(ctx, st, owner, false); err != nil {
				return err
			}
			return n.syncDigest(ctx, cfg, st, owner, digest)
		default:
			n.metrics.postChecks.WithLabelValues("not_found").Inc()
		}
		ref, retry, err = cfg.slack.PostDigest(ctx, st.Target, digest)
		n.metrics.observe(incident.IntegrationSlack, start, retry, err)
		if err != nil {
			return outcome(retry, err)
		}
		st.ChannelID, st.TS, st.Permalink, st.SyncedVersion = ref.Channel, ref.TS, ref.Permalink, version
		// Stored before anything else is tried: a lost ts is a second
		// digest.
		if err := n.saveStorm(ctx, st, owner, false); err != nil {
			return err
		}
		n.console.stormDigest(ctx, st)
		return nil
	}
	retry, err := cfg.slack.UpdateDigest(ctx, slack.Ref{Channel: st.ChannelID, TS: st.TS, Permalink: st.Permalink}, digest)
	n.metrics.observe(incident.IntegrationSlack, start, retry, err)
	if err != nil {
		return outcome(retry, err)
	}
	st.SyncedVersion = version
	return nil
}

// syncStormPage triggers the storm's PagerDuty page once, and resolves it
// once the storm has ended and all its incidents have resolved.
func (n *notifier) syncStormPage(ctx context.Context, cfg *notifyConfig, st *store.Storm, digest slack.Digest, firing int) error {
	if st.PDConfigIndex < 0 {
		return nil
	}
	r, ok := cfg.receivers[st.PDReceiver]
	if !ok || st.PDConfigIndex >= len(r.PagerDutyConfigs) {
		return incident.Permanent(fmt.Errorf("storm %d: receiver %q has no pagerduty_configs[%d] any more", st.ID, st.PDReceiver, st.PDConfigIndex))
	}
	pc := r.PagerDutyConfigs[st.PDConfigIndex]
	want := pagerduty.ActionTrigger
	if st.EndedAt != nil && firing == 0 {
		want = pagerduty.ActionResolve
	}
	if st.PDLastAction == want || (want == pagerduty.ActionResolve && (st.PDLastAction != pagerduty.ActionTrigger || !pc.SendResolved)) {
		return nil
	}
	// The storm is paged as an incident of its own, whose group key gives
	// the storm's dedup key.
	inc := &incident.Incident{
		GroupKey:     stormGroupKey(st.Target, st.ID),
		Status:       incident.StatusFiring,
		CommonLabels: map[string]string{"alertname": "AlertStorm", "severity": "critical"},
		OpenedAt:     st.StartedAt,
		FiringAlerts: firing,
	}
	var top []string
	for _, a := range digest.TopAlertnames(5) {
		top = append(top, fmt.Sprintf("%s×%d", a.Alertname, a.Count))
	}
	extra := pagerduty.Extra{
		SlackPermalink: st.Permalink,
		Summary:        digest.Title() + ": " + strings.Join(top, ", "),
		Details:        map[string]any{"storm_id": st.ID, "channel": st.Target, "incidents": len(digest.Incidents)},
	}
	if !strings.Contains(pc.Severity, "{{") {
		extra.Severity = pc.Severity
	}
	start := time.Now()
	retry, err := cfg.pagerduty.Notify(ctx, pc.RoutingKey, want, inc, extra)
	n.metrics.observe(incident.IntegrationPagerDuty, start, retry, err)
	if err != nil {
		return outcome(retry, err)
	}
	st.PDLastAction = want
	n.console.stormPaged(ctx, st, want)
	return nil
}

// saveStorm stores st on a context that shutdown does not cut short.
func (n *notifier) saveStorm(ctx context.Context, st *store.Storm, owner string, release bool) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	err := n.db.SaveStorm(sctx, *st, owner, release)
	if err != nil {
		n.logger.WarnContext(ctx, "saving a storm's state failed; its next attempt may send again", "storm_id", st.ID, "err", err)
	}
	return err
}
