package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/kubeapi"
	"github.com/responder/responder/internal/remediation"
	"github.com/responder/responder/internal/routing"
	"github.com/responder/responder/internal/routing/pagerduty"
	"github.com/responder/responder/internal/routing/slack"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/webhook"
)

// remediationLease is the lease of remediation jobs and runs: the longest
// call out a job of the runbooks in force may make (a step's timeout, a
// verification query) plus the queue's lease as a margin, and a quarter
// more, so that the attempt's timeout (four fifths of the lease) still
// covers the step and its margin. A step never outlives the lease of the
// job that runs it, and a run whose replica died resumes elsewhere soon
// after: in seconds for short steps, not minutes.
func remediationLease(set *remediation.Set, queueLease time.Duration) time.Duration {
	return (set.LongestStep() + queueLease) * 5 / 4
}

// remediator runs the remediate and remediation_step jobs, and takes the
// pause and approval decisions people make.
//
// A remediate job (one per incident change) checks the guards and records
// the decision; an admitted run queues a remediation_step job in the same
// commit. Each remediation_step job advances its run by one step: it
// records the step's start durably, executes it, records its end and queues
// the next job, so that a crash never repeats a step (a started step with
// no end is marked unknown and escalated, except the idempotent ones). Waits
// and verification polls are jobs due later, not sleeping workers.
type remediator struct {
	logger   *slog.Logger
	db       *store.Store
	notifier *notifier
	now      func() time.Time
	cur      atomic.Pointer[remediationConfig]
	metrics  *remediationMetrics
	// kube, when set (tests), replaces the client built from the config.
	kube remediation.KubeClient
	// killSwitchErr is the last error the kill switch check gave ("" when
	// it could be checked), so that an unreadable kill switch file is
	// logged when that starts and ends, not on every check.
	killSwitchErr atomic.Pointer[string]
}

// remediationConfig is what one configuration generation remediates with.
type remediationConfig struct {
	cfg      remediation.Config
	set      *remediation.Set
	exec     *remediation.Executor
	external string
	lease    time.Duration
}

func newRemediator(logger *slog.Logger, db *store.Store, n *notifier, reg prometheus.Registerer) *remediator {
	return &remediator{logger: logger.With("component", "remediation"), db: db, notifier: n, now: time.Now, metrics: newRemediationMetrics(reg)}
}

// inConfigFile names cfg's file before err, as the loader names it before
// each of its problems (a runbook's problems name the runbook's file).
func inConfigFile(cfg *config.Config, err error) error {
	if f := cfg.File(); f != "" {
		return fmt.Errorf("%s: %w", f, err)
	}
	return err
}

// LoadRunbooks loads the runbooks cfg points to and cross-checks them
// against it (URLs the steps need, allowed namespaces, the escalation
// receiver). A missing runbooks directory holds no runbooks.
func LoadRunbooks(cfg *config.Config) (*remediation.Set, error) {
	rc := cfg.Remediation
	set, err := remediation.LoadDir(rc.RunbooksDir, true)
	if err != nil {
		return nil, err
	}
	if rc.DryRun || !rc.Enabled {
		// Nothing executes: the URLs and namespaces steps need do not
		// matter yet (the embedded default plans ./runbooks in dry-run).
		return set, nil
	}
	err = set.Check(remediation.Env{
		PrometheusURL: cfg.Global.PrometheusURL != "", AlertmanagerURL: cfg.Global.AlertmanagerURL != "", AllowedNamespaces: rc.AllowedNamespaces,
	})
	if err != nil {
		return nil, err
	}
	if name := rc.EscalationReceiver; name != "" {
		i := slices.IndexFunc(cfg.Receivers, func(r routing.Receiver) bool { return r.Name == name })
		if i < 0 || len(cfg.Receivers[i].PagerDutyConfigs) == 0 {
			return nil, inConfigFile(cfg, fmt.Errorf("remediation: escalation_receiver %q must name a receiver with pagerduty_configs", name))
		}
	}
	return set, nil
}

// maxRemediationWorkers caps the remediation workers that execute steps:
// runs admitted beyond it wait in the queue rather than each holding a
// polling worker (and a database connection).
const maxRemediationWorkers = 16

// setupRemediation builds the remediator and its own pipeline, and
// registers the remediation jobs on it. Remediation has its own workers and
// lease, derived from the runbooks in force (remediationLease): a step may
// run for up to remediation.MaxStepTimeout, longer than the main queue's
// lease.
func (a *App) setupRemediation(cfg *config.Config, db *store.Store, reg prometheus.Registerer, poll time.Duration) error {
	a.remediator = newRemediator(a.logger, db, a.notifier, reg)
	rc, err := a.remediator.build(cfg)
	if err != nil {
		return err
	}
	a.remediator.install(rc)
	a.remPipeline = incident.NewPipeline(a.logger.With("component", "remediation_queue"), db, incident.PipelineOptions{
		Owner: a.opts.Owner + "/remediation", Workers: min(cfg.Remediation.MaxConcurrent, maxRemediationWorkers) + 2, PollInterval: poll,
		LeaseFunc:  func() time.Duration { return a.remediator.cur.Load().lease },
		MinBackoff: cfg.Storage.Queue.MinBackoff, MaxBackoff: cfg.Storage.Queue.MaxBackoff,
		StorageFailed: a.db.failed, Metrics: a.queueMetrics,
	})
	a.remPipeline.Register(incident.JobRemediate, incident.HandlerFunc(a.remediator.remediate))
	a.remPipeline.Register(incident.JobRemediationStep, incident.HandlerFunc(a.remediator.step))
	return nil
}

// wake tells every pipeline's idle workers that work was committed.
func (a *App) wake() {
	a.pipeline.Wake()
	a.remPipeline.Wake()
	a.ctxPipeline.Wake()
}

// build loads the runbooks and builds the executor for cfg; nothing is put
// in force until the caller stores the result, so that a bad runbook never
// replaces a good set.
func (r *remediator) build(cfg *config.Config) (*remediationConfig, error) {
	set, err := LoadRunbooks(cfg)
	if err != nil {
		return nil, err
	}
	rc := cfg.Remediation
	ex := &remediation.Executor{
		AlertmanagerURL:   cfg.Global.AlertmanagerURL,
		HTTP:              &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		AllowedNamespaces: rc.AllowedNamespaces,
		Now:               r.now,
	}
	if u := cfg.Global.PrometheusURL; u != "" {
		c, err := api.NewClient(api.Config{Address: u})
		if err != nil {
			return nil, errors.New("global: prometheus_url: cannot build a client")
		}
		ex.Prometheus = promv1.NewAPI(c)
	}
	kc, noCluster, err := kubeClient(cfg, set)
	if err != nil {
		return nil, err
	}
	switch {
	case r.kube != nil:
		ex.Kube = r.kube
	case kc != nil:
		// Only a client that is there: a nil *kubeapi.Client in the
		// interface would not be nil, and the executor would call it.
		ex.Kube = kc
	case noCluster != nil:
		if _, executing := kubeRunbooks(rc, set); len(executing) > 0 {
			// Not fatal: the same configuration is valid in a cluster.
			// The steps fail, audited, until there is a client.
			r.logger.Warn("no kubernetes client: the kubernetes steps of these runbooks will fail until responder runs in a cluster or remediation.kubeconfig_file is set",
				"runbooks", strings.Join(executing, ","), "err", noCluster)
		} else {
			// Nothing executes: say so without alarm.
			r.logger.Info("runbooks have kubernetes steps but no cluster is configured: fine while they do not execute (dry run or disabled); before executing, run in a cluster or set remediation.kubeconfig_file", "err", noCluster)
		}
	}
	if rc.Enabled && len(set.Runbooks) == 0 {
		r.logger.Info("no runbooks loaded", "dir", rc.RunbooksDir)
	}
	return &remediationConfig{cfg: rc, set: set, exec: ex, external: cfg.Global.ExternalURL, lease: remediationLease(set, cfg.Storage.Queue.Lease)}, nil
}

// kubeRunbooks names the runbooks with kubernetes steps, and of them the
// ones whose steps execute: remediation is enabled and not in dry-run, and
// neither is the runbook.
func kubeRunbooks(rc remediation.Config, set *remediation.Set) (all, executing []string) {
	for _, rb := range set.Runbooks {
		if !slices.ContainsFunc(rb.Steps, func(s remediation.Step) bool { return s.Kubernetes != nil }) {
			continue
		}
		all = append(all, rb.Name)
		if rc.Enabled && !rc.DryRun && !rb.DryRun {
			executing = append(executing, rb.Name)
		}
	}
	return all, executing
}

// kubeClient returns the client of kubernetes steps.
//
// With remediation.kubeconfig_file, it comes from that file, and a file
// that cannot be read or parsed is a configuration error (err) whatever
// dry_run says: the operator asked for that file. LoadFile already made a
// relative path relative to the configuration file.
//
// Without it, the in-cluster service account serves when runbooks have
// kubernetes steps. When there is none, noCluster says why, and the
// client is nil: that is no configuration error, since the same
// configuration is valid in a cluster.
func kubeClient(cfg *config.Config, set *remediation.Set) (kc *kubeapi.Client, noCluster, err error) {
	if f := cfg.Remediation.KubeconfigFile; f != "" {
		kc, err := kubeapi.New(f)
		if err != nil {
			return nil, nil, inConfigFile(cfg, fmt.Errorf("remediation: kubeconfig_file: %w", err))
		}
		return kc, nil, nil
	}
	if all, _ := kubeRunbooks(cfg.Remediation, set); len(all) == 0 {
		return nil, nil, nil
	}
	kc, noCluster = kubeapi.New("")
	return kc, noCluster, nil
}

// CheckRemediation checks what remediation loads when responder starts or
// reloads: the runbooks (LoadRunbooks) and the kubeconfig_file. It returns
// warnings for what is no error but will fail: kubernetes steps that
// execute with neither a kubeconfig_file nor an in-cluster service account.
func CheckRemediation(cfg *config.Config) (warnings []string, err error) {
	set, err := LoadRunbooks(cfg)
	if err != nil {
		return nil, err
	}
	_, noCluster, err := kubeClient(cfg, set)
	if err != nil {
		return nil, err
	}
	if _, executing := kubeRunbooks(cfg.Remediation, set); noCluster != nil && len(executing) > 0 {
		which := "runbook " + executing[0]
		if len(executing) > 1 {
			which = "runbooks " + strings.Join(executing, ", ")
		}
		warnings = append(warnings, fmt.Sprintf("remediation: the kubernetes steps of %s will fail, audited, when they run: "+
			"remediation.kubeconfig_file is not set and responder is not in a cluster (%v); "+
			"set kubeconfig_file, or run responder in the cluster with a service account", which, noCluster))
	}
	return warnings, nil
}

// labelSet is what guards and runbooks see of an incident: its common
// labels, with its group labels.
func labelSet(inc *incident.Incident) map[string]string {
	lset := maps.Clone(inc.CommonLabels)
	if lset == nil {
		lset = map[string]string{}
	}
	maps.Copy(lset, inc.GroupLabels)
	return lset
}

// remediate handles a remediate job: job.RefID is the incident.
func (r *remediator) remediate(ctx context.Context, j incident.Job) error {
	inc, err := r.db.ReadIncident(ctx, j.RefID, handlerParts)
	if err != nil {
		return permanentIfNotFound(err)
	}
	rc := r.cur.Load()
	if inc.Status == incident.StatusResolved {
		// Wake the incident's active runs now: each cancels its remaining
		// steps unless its runbook continues on resolve.
		for _, run := range inc.Remediation {
			if run.Active() {
				if err := r.db.WakeRun(ctx, run.ID, run.IncidentID); err != nil {
					return err
				}
			}
		}
		return nil
	}
	lset := labelSet(inc)
	sel := remediation.Select(rc.cfg, rc.set, lset)
	if sel.Guard == "" || sel.Guard == remediation.GuardKillSwitch {
		// Select reached the kill switch.
		r.noteKillSwitch(ctx, rc.cfg.KillSwitchFile, sel.KillSwitchErr)
	}
	if !sel.OptedIn {
		return nil
	}
	adm := store.Admission{
		IncidentID: inc.ID, Target: sel.Target, Params: sel.Params, Labels: lset, Guard: sel.Guard, Refusal: sel.Reason, DryRun: sel.DryRun,
		MaxConcurrent: rc.cfg.MaxConcurrent, StormThreshold: rc.cfg.StormThreshold, ApprovalTimeout: time.Duration(rc.cfg.ApprovalTimeout),
	}
	if rb := sel.Runbook; rb != nil {
		g := rb.Guards
		adm.Runbook, adm.RequireApproval = rb.Name, g.RequireApproval
		adm.Cooldown, adm.MaxRuns, adm.Window = time.Duration(g.Cooldown), g.MaxRuns, time.Duration(g.Window)
		adm.RunbookDigest = rb.Digest
		if !sel.Refused() {
			// Every step is rendered before the run is admitted, dry or
			// not: a plan that cannot be rendered (a parameter that is not
			// a valid Kubernetes name, say) refuses the run before its
			// first step, rather than failing it after some have run.
			plan, err := rb.Plan(sel.Params, lset)
			switch {
			case err != nil:
				adm.Guard, adm.Refusal = remediation.GuardParams, "cannot plan: "+err.Error()
			case sel.DryRun:
				for _, a := range plan {
					adm.Plan = append(adm.Plan, incident.AuditRecord{
						Phase: incident.AuditPlan, Step: a.Name, StepIndex: a.Index, Kind: a.Kind,
						Input: a.Describe(), Outcome: remediation.OutcomeDryRun, Actor: "responder", At: r.now(),
					})
				}
			}
		}
	}
	res, err := r.db.AdmitRun(ctx, adm)
	if err != nil {
		return err
	}
	if !res.Created {
		return nil
	}
	run := res.Run
	log := r.logger.With("incident_id", inc.ID, "runbook", run.Runbook, "run_id", run.ID)
	switch run.State {
	case incident.RunRefused:
		r.metrics.refused(res.Guard, run.Runbook)
		log.InfoContext(ctx, "remediation refused", "guard", res.Guard, "reason", run.Reason)
		r.say(ctx, inc, fmt.Sprintf(":no_entry: Remediation%s refused: %s", runbookText(run), slack.Escape(run.Reason)))
	case incident.RunDryRun:
		r.metrics.runs.WithLabelValues(run.Runbook, incident.RunDryRun).Inc()
		log.InfoContext(ctx, "remediation planned (dry run)", "target", run.Target)
		var b strings.Builder
		fmt.Fprintf(&b, ":clipboard: Dry run of runbook *%s* for `%s`: nothing was executed. It would run:", slack.Escape(run.Runbook), slack.Escape(run.Target))
		for _, p := range adm.Plan {
			fmt.Fprintf(&b, "\n%d. %s: `%s`", p.StepIndex+1, slack.Escape(p.Step), slack.Escape(p.Input))
		}
		r.say(ctx, inc, b.String())
	default:
		r.metrics.runs.WithLabelValues(run.Runbook, "admitted").Inc()
		log.InfoContext(ctx, "remediation admitted", "target", run.Target, "state", run.State)
	}
	return nil
}

func runbookText(run *incident.RemediationRun) string {
	if run.Runbook == "" {
		return ""
	}
	return " with runbook *" + slack.Escape(run.Runbook) + "*"
}

// stepRetry is how soon a step job whose run is leased elsewhere tries
// again.
const stepRetry = time.Second

// step handles a remediation_step job: job.RefID is the run. It advances
// the run by one step (or one verification poll) under the run's lease.
func (r *remediator) step(ctx context.Context, j incident.Job) error {
	owner := fmt.Sprintf("%s#%d", j.Owner, j.ID)
	rc := r.cur.Load()
	run, verifyUntil, err := r.db.LeaseRun(ctx, j.RefID, owner, rc.lease)
	if err != nil {
		if incident.KindOf(err) == incident.Conflict {
			return incident.Busy(err, stepRetry)
		}
		return permanentIfNotFound(err)
	}
	saved := false
	defer func() {
		if !saved {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
			defer cancel()
			_ = r.db.ReleaseRun(rctx, run.ID, owner) // the lease expires anyway
		}
	}()
	s := &stepRun{r: r, rc: rc, job: j, run: run, owner: owner, verifyUntil: verifyUntil}
	done, err := s.advance(ctx)
	saved = done
	return err
}

// stepRun is one remediation_step job at work.
type stepRun struct {
	r  *remediator
	rc *remediationConfig
	// job is the remediation_step job at work: its attempts tell a
	// failure that will be retried from the last one, after which the job
	// is parked and nothing advances the run.
	job         incident.Job
	run         *incident.RemediationRun
	owner       string
	verifyUntil *time.Time
	inc         *incident.Incident
	rb          *remediation.Runbook
	audit       []incident.AuditRecord
}

// advance does the run's next piece of work. It reports whether it saved
// the run (which ends the lease).
func (s *stepRun) advance(ctx context.Context) (bool, error) {
	r, run := s.r, s.run
	var err error
	if s.inc, err = r.db.ReadIncident(ctx, run.IncidentID, handlerParts); err != nil {
		return false, permanentIfNotFound(err)
	}
	full, err := r.db.RemediationRun(ctx, run.ID)
	if err != nil {
		return false, err
	}
	s.audit = full.Audit
	if !run.Active() {
		if (run.State == incident.RunFailed || run.State == incident.RunUnknown) && !run.Escalated {
			return s.escalate(ctx)
		}
		return false, nil
	}
	s.rb = s.rc.set.Get(run.Runbook)
	if s.rb == nil {
		return s.finish(ctx, incident.RunCancelled, "runbook "+run.Runbook+" is no longer loaded; nothing more runs", nil)
	}
	now := r.now()
	if s.inc.Status == incident.StatusResolved && !s.rb.Guards.ContinueOnResolve {
		return s.finish(ctx, incident.RunCancelled, "the alert resolved: remaining steps cancelled (guards.continue_on_resolve is false)", nil)
	}
	if paused, by, err := r.db.RemediationPaused(ctx); err != nil {
		return false, err
	} else if paused {
		return s.finish(ctx, incident.RunCancelled, "remediation was paused"+byText(by)+": remaining steps cancelled", nil)
	}
	on, why, kerr := remediation.KillSwitchOn(s.rc.cfg)
	r.noteKillSwitch(ctx, s.rc.cfg.KillSwitchFile, kerr)
	if on {
		return s.finish(ctx, incident.RunCancelled, why+": remaining steps cancelled", nil)
	}
	// A reload can switch remediation off, or to dry-run, or change the
	// runbook under a run: the run then stops before its next step, as it
	// would for a pause. A changed runbook is not the one that was planned
	// and approved, and its step indexes may no longer name the same steps.
	switch {
	case !s.rc.cfg.Enabled:
		return s.finish(ctx, incident.RunCancelled, "remediation was disabled (remediation.enabled: false): remaining steps cancelled", nil)
	case s.rc.cfg.DryRun:
		return s.finish(ctx, incident.RunCancelled, "remediation was switched to dry-run (remediation.dry_run: true): remaining steps cancelled", nil)
	case s.rb.DryRun:
		return s.finish(ctx, incident.RunCancelled, "runbook "+run.Runbook+" was switched to dry-run: remaining steps cancelled", nil)
	case run.RunbookDigest != "" && run.RunbookDigest != s.rb.Digest:
		return s.finish(ctx, incident.RunCancelled, "runbook "+run.Runbook+" changed since the run was admitted (a reload): remaining steps cancelled", nil)
	}
	if run.State == incident.RunAwaitingApproval {
		return s.awaitApproval(ctx, now)
	}
	if run.NextStep < len(s.rb.Steps) {
		return s.runStep(ctx, now)
	}
	return s.verify(ctx, now)
}

// noteKillSwitch logs a kill switch file that cannot be checked (err, from
// remediation.KillSwitchOn), which stops remediation as the file would: at
// warn when that starts or its error changes, at info when the file can be
// checked again. The file is checked for every alert and before every
// step; a line per check would bury the one that says why nothing runs.
func (r *remediator) noteKillSwitch(ctx context.Context, file string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	prev := r.killSwitchErr.Swap(&msg)
	switch {
	case prev == nil && msg == "", prev != nil && *prev == msg:
	case msg != "":
		r.logger.WarnContext(ctx, "kill switch file cannot be checked, so it counts as present: new runs are refused and active runs cancelled until it can be checked",
			"file", file, "err", err)
	default:
		r.logger.InfoContext(ctx, "kill switch file can be checked again", "file", file)
	}
}

func byText(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}

// finish ends the run in state with reason, audited and told in Slack; a
// failed or unknown run is escalated right away.
func (s *stepRun) finish(ctx context.Context, state, reason string, extra []incident.AuditRecord) (bool, error) {
	r, run := s.r, s.run
	recs := append(s.unfinishedStep(extra, reason), incident.AuditRecord{Phase: incident.AuditDecision, StepIndex: -1, Outcome: state, Output: reason, Actor: "responder", At: r.now()})
	if err := r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: state, Reason: reason, NextStep: run.NextStep, VerifyUntil: s.verifyUntil, Audit: recs}); err != nil {
		return false, err
	}
	run.State, run.Reason = state, reason
	s.audit = append(s.audit, recs...)
	r.metrics.runs.WithLabelValues(run.Runbook, state).Inc()
	r.logger.InfoContext(ctx, "remediation run finished", "incident_id", run.IncidentID, "runbook", run.Runbook, "run_id", run.ID, "state", state, "reason", reason)
	icon := map[string]string{incident.RunSucceeded: ":white_check_mark:", incident.RunCancelled: ":stop_sign:"}[state]
	if icon == "" {
		icon = ":x:"
	}
	if state != incident.RunFailed && state != incident.RunUnknown {
		r.say(ctx, s.inc, fmt.Sprintf("%s Remediation run %d (*%s*) %s: %s", icon, run.ID, slack.Escape(run.Runbook), state, slack.Escape(reason)))
		return true, nil
	}
	// Failed: escalate under a fresh lease (the save ended this one).
	run2, _, err := r.db.LeaseRun(ctx, run.ID, s.owner, s.rc.lease)
	if err != nil {
		return true, err
	}
	s.run = run2
	done, err := s.escalate(ctx)
	if !done {
		_ = r.db.ReleaseRun(context.WithoutCancel(ctx), run.ID, s.owner) // the lease expires anyway
	}
	return true, err
}

// unfinishedStep returns extra with an end for the run's current step
// when the step started and has no end, in the audit or in extra: a run
// cancelled during a wait (or before a silence or PromQL check it resumes
// is run again) leaves no step without its end in the audit trail.
func (s *stepRun) unfinishedStep(extra []incident.AuditRecord, reason string) []incident.AuditRecord {
	i := s.run.NextStep
	start, end := s.stepRecords(i)
	if start == nil || end != nil {
		return extra
	}
	for _, a := range extra {
		if a.StepIndex == i && a.Phase == incident.AuditEnd {
			return extra
		}
	}
	now := s.r.now()
	rec := incident.AuditRecord{
		Phase: incident.AuditEnd, Step: start.Step, StepIndex: i, Kind: start.Kind, Input: start.Input, Actor: start.Actor,
		Outcome: remediation.OutcomeCancelled, Output: reason, Duration: max(now.Sub(start.At), 0), At: now,
	}
	return append(extra, rec)
}

// awaitApproval asks for approval in Slack once, then waits (a job due at
// the expiry) for the decision.
func (s *stepRun) awaitApproval(ctx context.Context, now time.Time) (bool, error) {
	r, run := s.r, s.run
	if run.ExpiresAt != nil && !now.Before(*run.ExpiresAt) {
		return s.finish(ctx, incident.RunCancelled, "the approval request expired unanswered after "+time.Duration(s.rc.cfg.ApprovalTimeout).String(), nil)
	}
	for _, a := range s.audit {
		if a.Outcome == "approval_requested" {
			// Asked already; the job due at the expiry checks again.
			return false, nil
		}
	}
	ref, ok, wait := thread(s.inc)
	if !ok {
		// Not routed yet (the remediation and route jobs of a new incident
		// run side by side), or routed to Slack and not posted yet: wait.
		// Only a routed incident without a Slack delivery has no thread
		// to ask in.
		if wait || routeDecision(s.inc) == nil {
			return false, incident.Busy(errors.New("the incident's Slack message is not posted yet"), 2*time.Second)
		}
		return s.finish(ctx, incident.RunCancelled, "the runbook requires approval, but the incident has no Slack thread to ask in", nil)
	}
	plan, err := s.rb.Plan(run.Params, s.labels(ctx))
	if err != nil {
		return s.finish(ctx, incident.RunFailed, "cannot plan: "+err.Error(), nil)
	}
	var b strings.Builder
	fmt.Fprintf(&b, ":raising_hand: Runbook *%s* wants to run for `%s` (run %d). Steps:", slack.Escape(run.Runbook), slack.Escape(run.Target), run.ID)
	for _, a := range plan {
		fmt.Fprintf(&b, "\n%d. %s: `%s`", a.Index+1, slack.Escape(a.Name), slack.Escape(a.Describe()))
	}
	if run.ExpiresAt != nil {
		fmt.Fprintf(&b, "\nThe request expires at %s.", run.ExpiresAt.UTC().Format(time.RFC3339))
	}
	id := strconv.FormatInt(run.ID, 10)
	blocks := []goslack.Block{
		goslack.NewSectionBlock(goslack.NewTextBlockObject(goslack.MarkdownType, slack.TruncateEscaped(b.String(), 2900), false, false), nil, nil),
		goslack.NewActionBlock("remediation_"+id,
			goslack.NewButtonBlockElement(webhook.ActionApprove, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Approve", false, false)).WithStyle(goslack.StylePrimary),
			goslack.NewButtonBlockElement(webhook.ActionReject, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Reject", false, false)).WithStyle(goslack.StyleDanger),
		),
	}
	cfg := r.notifier.cur.Load()
	if _, retry, err := cfg.slack.Reply(ctx, ref, "Approval needed for remediation run "+id, blocks...); err != nil {
		if retry && !s.lastAttempt(ctx) {
			return false, err
		}
		// Nobody can approve a request that was never shown. Parking the
		// job (at once for an error no retry fixes, or after its last
		// attempt) would leave the run waiting with no job to expire it,
		// holding its target's lock and a max_concurrent place until the
		// alert resolves, and nothing in the audit trail would say why.
		why := "the approval request could not be posted in the incident's Slack thread: " + err.Error()
		if retry {
			why = fmt.Sprintf("the approval request could not be posted in the incident's Slack thread in %d attempts (storage.queue.max_attempts): %v", s.job.Attempts, err)
		}
		return s.finish(ctx, incident.RunCancelled, why, nil)
	}
	u := store.RunUpdate{
		State: run.State, Reason: run.Reason, NextStep: run.NextStep, NextAt: run.ExpiresAt,
		Audit: []incident.AuditRecord{{Phase: incident.AuditDecision, StepIndex: -1, Outcome: "approval_requested", Output: "approve or reject in the Slack thread", Actor: "responder", At: now}},
	}
	return true, r.db.SaveRun(ctx, run, s.owner, u)
}

// lastAttempt reports whether the job is on its last attempt: a failure
// now parks it, and nothing advances the run after that. A job whose
// context is done is not: when responder is stopping, the job is handed
// back without spending the attempt, and nothing could be saved on that
// context anyway.
func (s *stepRun) lastAttempt(ctx context.Context) bool {
	return ctx.Err() == nil && s.job.MaxAttempts > 0 && s.job.Attempts >= s.job.MaxAttempts
}

// truncateText is incident.Clip for text that may not be UTF-8 (a step may
// print anything): invalid bytes become U+FFFD first, so that Slack and
// PagerDuty get valid text.
func truncateText(s string, n int) string {
	return incident.Clip(strings.ToValidUTF8(s, "\uFFFD"), n)
}

// labels returns the labels the run was decided on.
func (s *stepRun) labels(ctx context.Context) map[string]string {
	l, err := s.r.db.RunLabels(ctx, s.run.ID)
	if err != nil {
		return map[string]string{}
	}
	return l
}

// stepRecords returns the start and end records of step i.
func (s *stepRun) stepRecords(i int) (start, end *incident.AuditRecord) {
	for k := range s.audit {
		a := &s.audit[k]
		if a.StepIndex != i {
			continue
		}
		switch a.Phase {
		case incident.AuditStart:
			start = a
		case incident.AuditEnd:
			end = a
		}
	}
	return start, end
}

// runStep executes the run's next step: start recorded durably first, then
// the step, then its end with the next job, in one commit.
func (s *stepRun) runStep(ctx context.Context, now time.Time) (bool, error) {
	r, run := s.r, s.run
	i := run.NextStep
	a, err := s.rb.PlanStep(i, run.Params, s.labels(ctx))
	if err != nil {
		return s.finish(ctx, incident.RunFailed, "cannot plan step "+strconv.Itoa(i+1)+": "+err.Error(), nil)
	}
	base := incident.AuditRecord{Step: a.Name, StepIndex: i, Kind: a.Kind, Input: a.Describe(), Actor: actor(run)}
	start, end := s.stepRecords(i)
	if end != nil {
		// The end was recorded but next_step not advanced: impossible with
		// one commit for both, but harmless to repair.
		next := now
		return true, r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: i + 1, NextAt: &next})
	}
	resumed := start != nil
	if resumed {
		switch a.Kind {
		case remediation.KindWait:
			until := start.At.Add(a.Wait)
			if now.Before(until) {
				return true, r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: i, NextAt: &until})
			}
			rec := base
			rec.Phase, rec.Outcome, rec.Duration, rec.At = incident.AuditEnd, remediation.OutcomeOK, now.Sub(start.At), now
			next := now
			return true, r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: i + 1, NextAt: &next, Audit: []incident.AuditRecord{rec}})
		case remediation.KindSilence, remediation.KindPromQLCheck:
			// Idempotent: a silence carries the run's marker and is reused,
			// a query only reads. Run it again.
		default:
			rec := base
			rec.Phase, rec.Outcome, rec.At = incident.AuditEnd, remediation.OutcomeUnknown, now
			rec.Output = "started at " + start.At.Format(time.RFC3339) + " but its outcome was never recorded (the worker stopped); it is not executed again"
			return s.finish(ctx, incident.RunUnknown, fmt.Sprintf("step %d (%s) has an unknown outcome: %s", i+1, a.Name, rec.Output), []incident.AuditRecord{rec})
		}
	} else {
		if err := r.db.StartStep(ctx, run.ID, base); err != nil {
			if incident.KindOf(err) == incident.Conflict {
				return false, incident.Busy(err, stepRetry)
			}
			return false, err
		}
	}
	if a.Kind == remediation.KindWait {
		until := now.Add(a.Wait)
		return true, r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: i, NextAt: &until})
	}
	res := s.rc.exec.Run(ctx, a, "run-"+strconv.FormatInt(run.ID, 10))
	rec := base
	rec.Phase, rec.Outcome, rec.ExitCode, rec.HTTPStatus, rec.Output, rec.Duration, rec.At = incident.AuditEnd, res.Outcome, res.ExitCode, res.HTTPStatus, res.Output, res.Duration, r.now()
	if res.Err != nil {
		rec.Output = strings.TrimSpace(res.Err.Error() + "\n" + res.Output)
	}
	r.metrics.steps.WithLabelValues(run.Runbook, a.Kind, res.Outcome).Inc()
	r.metrics.stepDuration.WithLabelValues(a.Kind).Observe(res.Duration.Seconds())
	r.logger.InfoContext(ctx, "remediation step done", "incident_id", run.IncidentID, "runbook", run.Runbook, "run_id", run.ID, "step", a.Name, "outcome", res.Outcome, "duration", res.Duration)
	if res.Err != nil {
		s.sayStep(ctx, a, rec)
		return s.finish(ctx, incident.RunFailed, fmt.Sprintf("step %d (%s) %s: %s", i+1, a.Name, res.Outcome, res.Err), []incident.AuditRecord{rec})
	}
	next := r.now()
	if err := r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: i + 1, NextAt: &next, Audit: []incident.AuditRecord{rec}}); err != nil {
		return false, err
	}
	s.sayStep(ctx, a, rec)
	return true, nil
}

func actor(run *incident.RemediationRun) string {
	if run.ApprovedBy != "" {
		return "responder, approved by " + run.ApprovedBy
	}
	return "responder"
}

func (s *stepRun) sayStep(ctx context.Context, a remediation.Action, rec incident.AuditRecord) {
	icon := ":heavy_check_mark:"
	if rec.Outcome != remediation.OutcomeOK {
		icon = ":x:"
	}
	text := fmt.Sprintf("%s Step %d/%d *%s* (%s) %s in %s: `%s`", icon, a.Index+1, len(s.rb.Steps), slack.Escape(a.Name), a.Kind, rec.Outcome,
		rec.Duration.Round(time.Millisecond), slack.Escape(rec.Input))
	if rec.Output != "" {
		text += "\n```" + slack.Escape(truncateText(rec.Output, 1000)) + "```"
	}
	s.r.say(ctx, s.inc, text)
}

// verify polls the runbook's verification query until it holds or its
// window has passed.
func (s *stepRun) verify(ctx context.Context, now time.Time) (bool, error) {
	r, run, v := s.r, s.run, s.rb.Verify
	if v == nil {
		return s.finish(ctx, incident.RunSucceeded, "every step ran; the runbook has no verification", nil)
	}
	q, err := s.rb.VerifyQuery(run.Params, s.labels(ctx))
	if err != nil {
		return s.finish(ctx, incident.RunFailed, "cannot render verify.query: "+err.Error(), nil)
	}
	if s.verifyUntil == nil {
		until := now.Add(time.Duration(v.Within))
		s.verifyUntil = &until
	}
	qctx, cancel := context.WithTimeout(ctx, remediation.VerifyTimeout)
	ok, desc, qerr := s.rc.exec.Holds(qctx, q)
	cancel()
	rec := incident.AuditRecord{Phase: incident.AuditDecision, StepIndex: -1, Kind: "verify", Input: q, Actor: "responder", At: now, Output: desc}
	if ok {
		rec.Outcome = "verified"
		return s.finish(ctx, incident.RunSucceeded, "verified: the query holds", []incident.AuditRecord{rec})
	}
	if qerr != nil {
		rec.Output = qerr.Error()
	}
	if !now.Before(*s.verifyUntil) {
		rec.Outcome = "not_verified"
		return s.finish(ctx, incident.RunFailed, fmt.Sprintf("verification did not hold within %s (%s)", time.Duration(v.Within), rec.Output), []incident.AuditRecord{rec})
	}
	next := now.Add(time.Duration(v.Interval))
	if next.After(*s.verifyUntil) {
		next = *s.verifyUntil
	}
	return true, r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: "verifying: " + q, NextStep: run.NextStep, VerifyUntil: s.verifyUntil, NextAt: &next})
}

// escalate pages PagerDuty for a failed run, whatever the hour, and says in
// Slack what was tried. It is retried until PagerDuty took the page.
func (s *stepRun) escalate(ctx context.Context) (bool, error) {
	r, run, inc := s.r, s.run, s.inc
	cfg := r.notifier.cur.Load()
	var targets []routing.PagerDutyConfig
	var names []string
	add := func(name string) {
		rcv, ok := cfg.receivers[name]
		if !ok || len(rcv.PagerDutyConfigs) == 0 || slices.Contains(names, name) {
			return
		}
		names = append(names, name)
		targets = append(targets, rcv.PagerDutyConfigs...)
	}
	if name := s.rc.cfg.EscalationReceiver; name != "" {
		add(name)
	} else {
		// The receivers the route tree chooses, muted ones included: a
		// failed remediation pages whatever the hour.
		for _, st := range cfg.router.Route(labelSet(inc), r.now()).Trace {
			if st.Final {
				add(st.Receiver)
			}
		}
	}
	tried := s.tried()
	summary := truncateText(fmt.Sprintf("Remediation failed: runbook %s for %s: %s", run.Runbook, run.Target, run.Reason), 1000)
	// A key of its own: the escalation stays open for a human even when
	// the incident's own page resolves.
	esc := *inc
	esc.GroupKey = inc.GroupKey + "/remediation/" + strconv.FormatInt(run.ID, 10)
	for _, pc := range targets {
		retry, err := cfg.pagerduty.Notify(ctx, pc.RoutingKey, pagerduty.ActionTrigger, &esc, pagerduty.Extra{
			Summary: summary, Severity: "critical", SlackPermalink: slackPermalink(inc),
			Details: map[string]any{"runbook": run.Runbook, "run_id": run.ID, "target": run.Target, "reason": run.Reason, "tried": tried},
		})
		if err != nil {
			if retry && !s.lastAttempt(ctx) {
				// Retried by the queue, with the error in the job's
				// last_error; only the final failure is audited, so that a
				// PagerDuty outage does not add a record per attempt.
				return false, err
			}
			s.escalationFailed(ctx, names, tried, retry, err)
			return false, outcome(retry, err)
		}
	}
	out := "escalated to PagerDuty via " + strings.Join(names, ", ")
	if len(targets) == 0 {
		out = "no PagerDuty receiver to escalate to (set remediation.escalation_receiver)"
	}
	rec := incident.AuditRecord{Phase: incident.AuditDecision, StepIndex: -1, Outcome: "escalated", Output: out, Actor: "responder", At: r.now()}
	if err := r.db.SaveRun(ctx, run, s.owner, store.RunUpdate{State: run.State, Reason: run.Reason, NextStep: run.NextStep, VerifyUntil: s.verifyUntil, Escalated: true, Audit: []incident.AuditRecord{rec}}); err != nil {
		return false, err
	}
	r.metrics.escalations.WithLabelValues(run.Runbook).Inc()
	r.say(ctx, inc, s.escalationText(tried, out))
	return true, nil
}

// escalationFailed records, in the audit trail and the incident's Slack
// thread, that the escalation page did not go out: PagerDuty refused it
// for good (retry false), or the job's last attempt failed. The job is
// then parked, the run stays unescalated, and retrying the parked job
// (POST /api/v1/jobs/{id}/retry) pages again. err names neither the
// routing key nor the URL (the PagerDuty notifier scrubs both).
func (s *stepRun) escalationFailed(ctx context.Context, names, tried []string, retry bool, err error) {
	r, run := s.r, s.run
	how, then := ", and no retry would fix it", "once the cause is fixed, "
	if retry {
		how, then = fmt.Sprintf(" after %d attempts (storage.queue.max_attempts)", s.job.Attempts), ""
	}
	out := fmt.Sprintf("the escalation page to PagerDuty via %s did not go out%s: %v; %sPOST /api/v1/jobs/%d/retry (the parked job) pages again",
		strings.Join(names, ", "), how, err, then, s.job.ID)
	rec := incident.AuditRecord{Phase: incident.AuditDecision, StepIndex: -1, Outcome: "escalation_failed", Output: out, Actor: "responder", At: r.now()}
	if aerr := r.db.AppendAudit(ctx, run.ID, rec); aerr != nil {
		// The parked job and its log line still say it.
		r.logger.WarnContext(ctx, "failed escalation not recorded in the audit trail", "incident_id", run.IncidentID, "run_id", run.ID, "err", aerr)
	}
	r.say(ctx, s.inc, s.escalationText(tried, out))
}

// escalationText is the Slack reply that says a run failed, what it tried
// and what became of its escalation (out).
func (s *stepRun) escalationText(tried []string, out string) string {
	run := s.run
	var b strings.Builder
	fmt.Fprintf(&b, ":rotating_light: Remediation run %d (*%s*) %s: %s\nTried:", run.ID, slack.Escape(run.Runbook), run.State, slack.Escape(run.Reason))
	for _, t := range tried {
		b.WriteString("\n• " + slack.Escape(t))
	}
	b.WriteString("\n" + slack.Escape(out) + ".")
	return b.String()
}

// tried lists the steps that ran, with their outcomes.
func (s *stepRun) tried() []string {
	var out []string
	for _, a := range s.audit {
		if a.Phase == incident.AuditEnd {
			out = append(out, fmt.Sprintf("%d. %s (%s): %s", a.StepIndex+1, a.Step, a.Input, a.Outcome))
		}
	}
	if len(out) == 0 {
		out = append(out, "no step completed")
	}
	return out
}

// thread returns the incident's Slack parent message. ok is false when
// there is none; wait is true when one is planned but not posted yet.
func thread(inc *incident.Incident) (ref slack.Ref, ok, wait bool) {
	for _, d := range inc.Deliveries {
		if d.Integration != incident.IntegrationSlack {
			continue
		}
		if d.TS != "" && d.ChannelID != "" {
			return slack.Ref{Channel: d.ChannelID, TS: d.TS, Permalink: d.Permalink}, true, false
		}
		wait = true
	}
	return slack.Ref{}, false, wait
}

// say posts progress in the incident's Slack thread, best effort: the
// audit trail is the record, the thread a courtesy.
func (r *remediator) say(ctx context.Context, inc *incident.Incident, text string) {
	ref, ok, _ := thread(inc)
	if !ok {
		return
	}
	cfg := r.notifier.cur.Load()
	if _, _, err := cfg.slack.Reply(ctx, ref, text); err != nil {
		r.logger.WarnContext(ctx, "remediation progress not posted to slack; the audit trail has it", "incident_id", inc.ID, "err", err)
	}
}

// Pause implements webhook.Remediation.
func (r *remediator) Pause(ctx context.Context, paused bool, by string) (string, error) {
	// A pause while paused keeps the first pauser, whom people ask before
	// resuming; the check and the write race only with another pause.
	if paused {
		if already, first, err := r.db.RemediationPaused(ctx); err != nil {
			return "", err
		} else if already {
			r.logger.InfoContext(ctx, "remediation already paused; the pause stays recorded as the first pauser's", "by", first, "asked_by", by)
			return first, nil
		}
	}
	if err := r.db.SetRemediationPaused(ctx, paused, by); err != nil {
		return "", err
	}
	r.logger.InfoContext(ctx, "remediation pause changed", "paused", paused, "by", by)
	return by, nil
}

// Decide implements webhook.Remediation: only remediation.approvers may
// decide, and only the first decision counts.
func (r *remediator) Decide(ctx context.Context, runID int64, user string, approve bool) (string, error) {
	rc := r.cur.Load()
	if !slices.Contains(rc.cfg.Approvers, user) {
		rec := incident.AuditRecord{
			Phase: incident.AuditDecision, StepIndex: -1, Outcome: "refused_approver", Actor: user, At: r.now(),
			Output: "user " + user + " is not in remediation.approvers; the decision was ignored",
		}
		if err := r.db.AppendAudit(ctx, runID, rec); err != nil {
			return "", err
		}
		r.metrics.approvals.WithLabelValues("not_allowed").Inc()
		return "You are not allowed to approve remediation runs.", nil
	}
	run, changed, why, err := r.db.DecideRun(ctx, store.Approval{RunID: runID, User: user, Approve: approve})
	if err != nil {
		return "", err
	}
	if !changed {
		r.metrics.approvals.WithLabelValues("ignored").Inc()
		return why, nil
	}
	label := "approved"
	if !approve {
		label = "rejected"
		r.metrics.runs.WithLabelValues(run.Runbook, incident.RunCancelled).Inc()
	}
	r.metrics.approvals.WithLabelValues(label).Inc()
	r.logger.InfoContext(ctx, "remediation run decided", "run_id", runID, "runbook", run.Runbook, "decision", label, "user", user)
	if inc, err := r.db.ReadIncident(ctx, run.IncidentID, handlerParts); err == nil {
		r.say(ctx, inc, fmt.Sprintf(":ballot_box_with_check: Remediation run %d %s by <@%s>.", run.ID, label, user))
	}
	return fmt.Sprintf("Run %d %s.", run.ID, label), nil
}

// remediationMetrics count runs, steps, refusals and escalations.
type remediationMetrics struct {
	runs         *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	steps        *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	escalations  *prometheus.CounterVec
	approvals    *prometheus.CounterVec
}

func newRemediationMetrics(reg prometheus.Registerer) *remediationMetrics {
	m := &remediationMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_remediation_runs_total",
			Help: "Remediation decisions and run outcomes by runbook: admitted, refused, dry_run, succeeded, failed, unknown, cancelled.",
		}, []string{"runbook", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_remediation_refusals_total",
			Help: "Remediation runs refused, by the guard that refused them.",
		}, []string{"guard"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_remediation_steps_total",
			Help: "Remediation steps executed, by runbook, kind and outcome (ok, failed, timeout).",
		}, []string{"runbook", "kind", "outcome"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "responder_remediation_step_duration_seconds",
			Help:    "Duration of one remediation step, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"kind"}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_remediation_escalations_total",
			Help: "Failed remediation runs escalated to PagerDuty, by runbook.",
		}, []string{"runbook"}),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "responder_remediation_approvals_total",
			Help: "Approval clicks by result: approved, rejected, ignored (already decided or expired), not_allowed.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.runs, m.refusals, m.steps, m.stepDuration, m.escalations, m.approvals)
	return m
}

// install puts rc in force, and exports its runbooks' series at 0, so that
// a rule's increase() sees a runbook's first failure after a start or a
// reload (a series that appears at 1 has no increase).
func (r *remediator) install(rc *remediationConfig) {
	r.cur.Store(rc)
	m := r.metrics
	for _, g := range []string{
		remediation.GuardEnabled, remediation.GuardOptIn, remediation.GuardMatch, remediation.GuardParams, remediation.GuardKillSwitch,
		remediation.GuardPaused, remediation.GuardStorm, remediation.GuardCooldown, remediation.GuardBudget, remediation.GuardLock,
		remediation.GuardConcurrency, remediation.GuardDryRun, remediation.GuardApproval,
	} {
		m.refusals.WithLabelValues(g)
	}
	for _, res := range []string{"approved", "rejected", "ignored", "not_allowed"} {
		m.approvals.WithLabelValues(res)
	}
	for _, rb := range rc.set.Runbooks {
		for _, o := range []string{"admitted", incident.RunRefused, incident.RunDryRun, incident.RunSucceeded, incident.RunFailed, incident.RunUnknown, incident.RunCancelled} {
			m.runs.WithLabelValues(rb.Name, o)
		}
		m.escalations.WithLabelValues(rb.Name)
		for i := range rb.Steps {
			kind := rb.Steps[i].Kind()
			for _, o := range []string{remediation.OutcomeOK, remediation.OutcomeFailed, remediation.OutcomeTimeout} {
				m.steps.WithLabelValues(rb.Name, kind, o)
			}
			m.stepDuration.WithLabelValues(kind)
		}
	}
}

func (m *remediationMetrics) refused(guard, runbook string) {
	m.refusals.WithLabelValues(guard).Inc()
	m.runs.WithLabelValues(runbook, incident.RunRefused).Inc()
}
