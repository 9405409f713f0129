package app_test

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

// With max_alerts: 1, a real Alertmanager sends a group of two alerts as
// the first of them (by labels) and counts the other in truncatedAlerts,
// with a status computed from the one it kept. When the kept alert resolves
// while the other still fires, the notification says "resolved". With
// reconciliation on, responder keeps the incident open (resolving it would
// end the page while the outage goes on, and reconciliation would open the
// group again as a new incident); reconciliation then adds the alert that
// was left out to the same incident, which resolves when that alert does.
func TestApp_TruncatedResolveIsHeld(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	token := rand.Text()
	gate := newWebhookGate(t)
	am := testenv.StartAlertmanager(t, amWebhookConfig(gate.srv.URL+"/webhook/alertmanager", token, "['alertname']", "500ms", "max_alerts: 1"))
	// The grace period is long enough for Alertmanager's resolved
	// notification to come before reconciliation adds the alert it leaves
	// out, which is the case the hold is for.
	r := startE2EResponder(t, reconcilingConfig(t, am.URL(), token, "4s"), token)
	gate.forwardTo(t, r.addr)

	group := "Truncated"
	incidents := func() ([]incident.Incident, error) {
		list, err := r.incidents(t.Context(), "")
		var out []incident.Incident
		for _, inc := range list {
			if inc.GroupLabels["alertname"] == group {
				out = append(out, inc)
			}
		}
		return out, err
	}
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	alert := func(pod string, resolved bool) testenv.PostableAlert {
		a := testenv.PostableAlert{Labels: map[string]string{"alertname": group, "pod": pod}, StartsAt: start}
		if resolved {
			a.EndsAt = time.Now().Add(-time.Second)
		}
		return a
	}

	// Both fire; the notification carries a-1 and leaves b-1 out.
	am.PostAlerts(t, []testenv.PostableAlert{alert("a-1", false), alert("b-1", false)})
	r.eventually(t, "the incident opened with the alert Alertmanager kept", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusFiring, l, err
	})
	// a-1 resolves: Alertmanager sends a-1 resolved, status "resolved",
	// one alert left out.
	am.PostAlerts(t, []testenv.PostableAlert{alert("a-1", true)})
	r.eventually(t, "a-1 resolved and the incident kept open", func() (bool, any, error) {
		l, err := incidents()
		if err != nil || len(l) != 1 {
			return false, l, err
		}
		inc, err := r.incident(t.Context(), l[0].ID)
		truncated := false
		for _, n := range inc.Notifications {
			truncated = truncated || n.TruncatedAlerts > 0
		}
		return err == nil && inc.ResolvedAlerts >= 1 && truncated, inc, err
	})
	l, err := incidents()
	require.NoError(t, err)
	require.Len(t, l, 1)
	require.Equal(t, incident.StatusFiring, l[0].Status, "a resolve that counts only the alerts Alertmanager kept is held: %+v", l[0])

	// Reconciliation adds b-1, still firing in Alertmanager, to the same
	// incident.
	r.eventually(t, "b-1 added to the held incident by reconciliation", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusFiring && l[0].FiringAlerts == 1, l, err
	})
	inc, err := r.incident(t.Context(), l[0].ID)
	require.NoError(t, err)
	require.Len(t, inc.Alerts, 2)

	// b-1 resolves: the incident resolves, one episode in all.
	am.PostAlerts(t, []testenv.PostableAlert{alert("b-1", true)})
	r.eventually(t, "the incident resolved with b-1", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusResolved, l, err
	})
	l, err = incidents()
	require.NoError(t, err)
	require.Equal(t, 1, l[0].Episode, "never resolved and reopened")

	// Another group whose two alerts resolve together: the notification
	// carries one, resolved, and leaves the other out. The incident is held
	// until Alertmanager has had no active alert of the group for the grace
	// period, then released by reconciliation (a notification with the
	// same alert states, which must not be taken for a duplicate).
	group = "TruncatedAll"
	am.PostAlerts(t, []testenv.PostableAlert{alert("c-1", false), alert("d-1", false)})
	r.eventually(t, "the second incident opened", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusFiring, l, err
	})
	am.PostAlerts(t, []testenv.PostableAlert{alert("c-1", true), alert("d-1", true)})
	r.eventually(t, "the second incident held", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].ResolvedAlerts >= 1 && l[0].Status == incident.StatusFiring, l, err
	})
	r.eventually(t, "the second incident released by reconciliation", func() (bool, any, error) {
		l, err := incidents()
		if err != nil || len(l) != 1 || l[0].Status != incident.StatusResolved {
			return false, l, err
		}
		inc, err := r.incident(t.Context(), l[0].ID)
		for _, d := range inc.Decisions {
			if d.Kind == "reconcile" {
				return err == nil, d.Summary, err
			}
		}
		return false, inc.Decisions, err
	})
}

// An incident held while reconciliation was on is released once a reload
// turns it off: nothing else would settle it, since Alertmanager sends a
// resolved group no further notification.
func TestApp_HeldIncidentReleasedWhenReconciliationTurnsOff(t *testing.T) {
	t.Parallel()
	testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	token := rand.Text()
	gate := newWebhookGate(t)
	am := testenv.StartAlertmanager(t, amWebhookConfig(gate.srv.URL+"/webhook/alertmanager", token, "['alertname']", "500ms", "max_alerts: 1"))
	// A grace period that outlasts the test: reconciliation never
	// releases the incident itself.
	on := reconcilingConfig(t, am.URL(), token, "1h")
	r, a, cfgFile := startE2EApp(t, on, token)
	gate.forwardTo(t, r.addr)

	group := "TruncatedOff"
	incidents := func() ([]incident.Incident, error) {
		list, err := r.incidents(t.Context(), "")
		var out []incident.Incident
		for _, inc := range list {
			if inc.GroupLabels["alertname"] == group {
				out = append(out, inc)
			}
		}
		return out, err
	}
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	alert := func(pod string, resolved bool) testenv.PostableAlert {
		a := testenv.PostableAlert{Labels: map[string]string{"alertname": group, "pod": pod}, StartsAt: start}
		if resolved {
			a.EndsAt = time.Now().Add(-time.Second)
		}
		return a
	}
	am.PostAlerts(t, []testenv.PostableAlert{alert("c-1", false), alert("d-1", false)})
	r.eventually(t, "the incident opened", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusFiring, l, err
	})
	am.PostAlerts(t, []testenv.PostableAlert{alert("c-1", true), alert("d-1", true)})
	r.eventually(t, "the incident held", func() (bool, any, error) {
		l, err := incidents()
		return err == nil && len(l) == 1 && l[0].ResolvedAlerts >= 1 && l[0].Status == incident.StatusFiring, l, err
	})
	// Held for a few reconciliation rounds (300 ms each).
	time.Sleep(time.Second)
	l, err := incidents()
	require.NoError(t, err)
	require.Equal(t, incident.StatusFiring, l[0].Status, "released before the grace period: %+v", l[0])

	require.NoError(t, os.WriteFile(cfgFile, []byte(on+"  enabled: false\n"), 0o600))
	require.NoError(t, a.Reload())
	r.eventually(t, "the held incident released once reconciliation is off", func() (bool, any, error) {
		l, err := incidents()
		if err != nil || len(l) != 1 || l[0].Status != incident.StatusResolved {
			return false, l, err
		}
		inc, err := r.incident(t.Context(), l[0].ID)
		for _, d := range inc.Decisions {
			if d.Kind == "reconcile" {
				return err == nil && strings.Contains(d.Summary, "reconciliation is off"), d.Summary, err
			}
		}
		return false, inc.Decisions, err
	})
	l, err = incidents()
	require.NoError(t, err)
	require.Equal(t, 1, l[0].Episode)
}
