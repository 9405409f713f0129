package app_test

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/testenv"
)

// alertGroup is one Alertmanager group of a test, by its alertname, with
// its alerts' common start.
type alertGroup struct {
	r     *e2eResponder
	name  string
	start time.Time
}

func newAlertGroup(r *e2eResponder, name string) *alertGroup {
	return &alertGroup{r: r, name: name, start: time.Now().Add(-time.Minute).UTC().Truncate(time.Second)}
}

// incidents are the group's incidents.
func (g *alertGroup) incidents(ctx context.Context) ([]incident.Incident, error) {
	list, err := g.r.incidents(ctx, "")
	var out []incident.Incident
	for _, inc := range list {
		if inc.GroupLabels["alertname"] == g.name {
			out = append(out, inc)
		}
	}
	return out, err
}

// alert is the group's alert of pod, firing or just resolved.
func (g *alertGroup) alert(pod string, resolved bool) testenv.PostableAlert {
	a := testenv.PostableAlert{Labels: map[string]string{"alertname": g.name, "pod": pod}, StartsAt: g.start}
	if resolved {
		a.EndsAt = time.Now().Add(-time.Second)
	}
	return a
}

// hold fires two alerts of the group and resolves both: with max_alerts: 1
// the resolved notification carries one and leaves the other out, and the
// incident is held. It waits for that.
func (g *alertGroup) hold(t *testing.T, am *testenv.Alertmanager) {
	t.Helper()
	am.PostAlerts(t, []testenv.PostableAlert{g.alert("c-1", false), g.alert("d-1", false)})
	g.r.eventually(t, g.name+" opened", func() (bool, any, error) {
		l, err := g.incidents(t.Context())
		return err == nil && len(l) == 1 && l[0].Status == incident.StatusFiring, l, err
	})
	am.PostAlerts(t, []testenv.PostableAlert{g.alert("c-1", true), g.alert("d-1", true)})
	g.r.eventually(t, g.name+" held", func() (bool, any, error) {
		l, err := g.incidents(t.Context())
		return err == nil && len(l) == 1 && l[0].ResolvedAlerts >= 1 && l[0].Status == incident.StatusFiring, l, err
	})
}

// waitReleased waits until the group's incident is resolved with a
// reconcile decision whose summary contains why.
func (g *alertGroup) waitReleased(t *testing.T, why string) {
	t.Helper()
	g.r.eventually(t, g.name+" released", func() (bool, any, error) {
		l, err := g.incidents(t.Context())
		if err != nil || len(l) != 1 || l[0].Status != incident.StatusResolved {
			return false, l, err
		}
		inc, err := g.r.incident(t.Context(), l[0].ID)
		for _, d := range inc.Decisions {
			if d.Kind == "reconcile" {
				return err == nil && strings.Contains(d.Summary, why), d.Summary, err
			}
		}
		return false, inc.Decisions, err
	})
}

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

	g := newAlertGroup(r, "Truncated")
	incidents := func() ([]incident.Incident, error) { return g.incidents(t.Context()) }
	alert := g.alert

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
	all := newAlertGroup(r, "TruncatedAll")
	all.hold(t, am)
	all.waitReleased(t, "")
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

	g := newAlertGroup(r, "TruncatedOff")
	g.hold(t, am)
	// Held for a few reconciliation rounds (300 ms each).
	time.Sleep(time.Second)
	l, err := g.incidents(t.Context())
	require.NoError(t, err)
	require.Equal(t, incident.StatusFiring, l[0].Status, "released before the grace period: %+v", l[0])

	require.NoError(t, os.WriteFile(cfgFile, []byte(on+"  enabled: false\n"), 0o600))
	require.NoError(t, a.Reload())
	g.waitReleased(t, "reconciliation is off")
	l, err = g.incidents(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, l[0].Episode)
}
