package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
)

// testRemediation checks the remediation guards storage enforces, the
// step-start record that keeps a step from running twice, and approvals.
func testRemediation(t *testing.T, open Opener) {
	c := NewClock()
	s, incID := openIncident(t, open, c)
	ctx := context.Background()
	adm := func(runbook, target string) store.Admission {
		return store.Admission{
			IncidentID: incID, Runbook: runbook, Target: target, Params: map[string]string{"host": "web"},
			Cooldown: 30 * time.Minute, MaxRuns: 2, Window: 24 * time.Hour, MaxConcurrent: 2, StormThreshold: 10,
		}
	}

	first, err := s.AdmitRun(ctx, adm("rb", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.True(t, first.Created)
	require.Empty(t, first.Guard)
	require.Equal(t, incident.RunRunning, first.Run.State)

	again, err := s.AdmitRun(ctx, adm("rb", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.False(t, again.Created, "one decision per incident and runbook")
	require.Equal(t, first.Run.ID, again.Run.ID)

	// Another incident would be a new row; a different runbook name on the
	// same incident stands in for it here.
	lock, err := s.AdmitRun(ctx, adm("rb2", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.Equal(t, "cooldown", lock.Guard, "the cooldown is checked before the lock")
	require.Contains(t, lock.Run.Reason, "cooldown")

	c.Advance(time.Hour)
	locked, err := s.AdmitRun(ctx, adm("rb3", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.Equal(t, "lock", locked.Guard, "run %d still holds the target", first.Run.ID)

	// Steps: a start is recorded once; the second attempt is refused.
	const owner = "w1"
	run, _, err := s.LeaseRun(ctx, first.Run.ID, owner, time.Minute)
	require.NoError(t, err)
	_, _, err = s.LeaseRun(ctx, first.Run.ID, "w2", time.Minute)
	require.Equal(t, incident.Conflict, incident.KindOf(err))
	rec := incident.AuditRecord{Step: "mark", StepIndex: 0, Kind: "exec", Input: "argv [/bin/true]", Actor: "responder"}
	require.NoError(t, s.StartStep(ctx, run.ID, rec))
	require.Equal(t, incident.Conflict, incident.KindOf(s.StartStep(ctx, run.ID, rec)), "a step is started at most once")
	code := 0
	end := rec
	end.Phase, end.Outcome, end.ExitCode = incident.AuditEnd, "ok", &code
	require.NoError(t, s.SaveRun(ctx, run, owner, store.RunUpdate{State: incident.RunSucceeded, Reason: "done", NextStep: 1, Audit: []incident.AuditRecord{end}}))

	got, err := s.RemediationRun(ctx, run.ID)
	require.NoError(t, err)
	require.Equal(t, incident.RunSucceeded, got.State)
	require.NotNil(t, got.FinishedAt)
	phases := []string{}
	for _, a := range got.Audit {
		phases = append(phases, a.Phase)
	}
	require.Equal(t, []string{incident.AuditDecision, incident.AuditStart, incident.AuditEnd}, phases)
	require.Equal(t, 0, *got.Audit[2].ExitCode)

	// Budget: the window counts every admitted run.
	c.Advance(time.Hour)
	second, err := s.AdmitRun(ctx, adm("rb4", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.Empty(t, second.Guard, "the lock was released and the cooldown has passed")
	c.Advance(time.Hour)
	budget, err := s.AdmitRun(ctx, adm("rb5", "rb{host=\"db\"}"))
	require.NoError(t, err)
	require.Empty(t, budget.Guard, "another target has its own budget")
	c.Advance(time.Hour)
	over, err := s.AdmitRun(ctx, adm("rb6", "rb{host=\"web\"}"))
	require.NoError(t, err)
	require.Equal(t, "max_runs", over.Guard, "web ran twice in the window, its max_runs")
	require.Contains(t, over.Run.Reason, "budget")

	// Concurrency: two runs execute (rb4, rb5); a third target is refused.
	conc, err := s.AdmitRun(ctx, adm("rb7", "rb{host=\"mq\"}"))
	require.NoError(t, err)
	require.Equal(t, "max_concurrent", conc.Guard)

	// Pause is durable and checked first.
	require.NoError(t, s.SetRemediationPaused(ctx, true, "api"))
	paused, by, err := s.RemediationPaused(ctx)
	require.NoError(t, err)
	require.True(t, paused)
	require.Equal(t, "api", by)
	p, err := s.AdmitRun(ctx, adm("rb8", "rb{host=\"x\"}"))
	require.NoError(t, err)
	require.Equal(t, "paused", p.Guard)
	require.NoError(t, s.SetRemediationPaused(ctx, false, "api"))

	// Dry runs are recorded but never count or lock.
	dry := adm("rb9", "rb{host=\"web\"}")
	dry.DryRun = true
	d, err := s.AdmitRun(ctx, dry)
	require.NoError(t, err)
	require.Equal(t, incident.RunDryRun, d.Run.State)

	inc, err := s.GetIncident(ctx, incID)
	require.NoError(t, err)
	require.Len(t, inc.Remediation, 9, "every decision is on the incident")
}

// testRemediationApproval checks that only the first decision counts, even
// when clicks race, and that an expired request cannot be approved.
func testRemediationApproval(t *testing.T, open Opener) {
	c := NewClock()
	s, incID := openIncident(t, open, c)
	ctx := context.Background()
	a := store.Admission{
		IncidentID: incID, Runbook: "rb", Target: "rb{}", RequireApproval: true, ApprovalTimeout: time.Hour,
		Cooldown: time.Minute, MaxRuns: 5, Window: time.Hour, MaxConcurrent: 5, StormThreshold: 10,
	}
	res, err := s.AdmitRun(ctx, a)
	require.NoError(t, err)
	require.Equal(t, incident.RunAwaitingApproval, res.Run.State)

	var wg sync.WaitGroup
	var mu sync.Mutex
	changed := 0
	for range 5 {
		wg.Go(func() {
			_, ok, _, err := s.DecideRun(ctx, store.Approval{RunID: res.Run.ID, User: "U1", Approve: true})
			require.NoError(t, err)
			if ok {
				mu.Lock()
				changed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, changed, "one click counts")
	run, err := s.RemediationRun(ctx, res.Run.ID)
	require.NoError(t, err)
	require.Equal(t, incident.RunRunning, run.State)
	require.Equal(t, "U1", run.ApprovedBy)

	a.Runbook, a.Target = "rb2", "rb2{}"
	exp, err := s.AdmitRun(ctx, a)
	require.NoError(t, err)
	c.Advance(2 * time.Hour)
	_, ok, why, err := s.DecideRun(ctx, store.Approval{RunID: exp.Run.ID, User: "U1", Approve: true})
	require.NoError(t, err)
	require.False(t, ok)
	require.Contains(t, why, "expired")
}

// testRemediationApprovalConcurrency: a run waiting for approval holds its
// place under max_concurrent, since approving it starts it without checking
// the limit again; approving every waiting run never makes more runs
// execute than the limit. The run records the runbook's digest.
func testRemediationApprovalConcurrency(t *testing.T, open Opener) {
	c := NewClock()
	s, incID := openIncident(t, open, c)
	ctx := context.Background()
	var ids []int64
	for i, tgt := range []string{"a", "b", "c"} {
		res, err := s.AdmitRun(ctx, store.Admission{
			IncidentID: incID, Runbook: "rb" + tgt, Target: "rb" + tgt + "{}", RequireApproval: true, ApprovalTimeout: time.Hour,
			Cooldown: time.Minute, MaxRuns: 5, Window: time.Hour, MaxConcurrent: 2, StormThreshold: 10, RunbookDigest: "d-" + tgt,
		})
		require.NoError(t, err)
		if i < 2 {
			require.Empty(t, res.Guard, "admission %d", i)
			require.Equal(t, incident.RunAwaitingApproval, res.Run.State)
			ids = append(ids, res.Run.ID)
			continue
		}
		require.Equal(t, "max_concurrent", res.Guard, "two runs wait for approval: a third would exceed max_concurrent once they are approved")
		require.Contains(t, res.Run.Reason, "waiting for approval")
	}
	for _, id := range ids {
		r, ok, _, err := s.DecideRun(ctx, store.Approval{RunID: id, User: "U1", Approve: true})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, incident.RunRunning, r.State)
	}
	run, err := s.RemediationRun(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, "d-a", run.RunbookDigest)
}
