package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

func TestStore_Storm(t *testing.T) {
	t.Parallel()
	c := storetest.NewClock()
	s := open(t, c, nil)
	ctx := t.Context()
	policy := store.StormPolicy{Enabled: true, Threshold: 2, Window: time.Minute}
	plan := func(id int64) []store.StormJoin {
		t.Helper()
		planned, joins, err := s.PlanDeliveriesStorm(ctx, id,
			incident.Decision{Kind: incident.DecisionRoute, Summary: "receivers: incidents", At: c.Now()},
			[]incident.Dispatch{
				{Receiver: "incidents", Integration: incident.IntegrationSlack, Target: "#incidents"},
				{Receiver: "pd", Integration: incident.IntegrationPagerDuty, Target: "key"},
			}, policy, time.Time{})
		require.NoError(t, err)
		require.True(t, planned)
		return joins
	}
	for id := range 4 {
		_, err := s.DB().ExecContext(ctx, `INSERT INTO incidents (id, group_key, episode, status, receiver, group_labels, common_labels, common_annotations, external_url, opened_at, updated_at)
			VALUES (?, ?, 1, 'firing', 'incidents', '{}', ?, '{"summary":"s"}', '', 0, 0)`, id+1, fmt.Sprintf("g%d", id+1), fmt.Sprintf(`{"alertname":"A%d"}`, id+1))
		require.NoError(t, err)
	}
	require.Empty(t, plan(1))
	// Incident 1's parent is posted before the storm; incident 2's is not,
	// so the storm takes it into the digest when it starts.
	_, err := s.DB().ExecContext(ctx, `UPDATE deliveries SET ts = '1.000001', channel_id = 'C1' WHERE incident_id = 1 AND integration = 'slack'`)
	require.NoError(t, err)
	require.Empty(t, plan(2))
	joins := plan(3)
	require.Len(t, joins, 1)
	require.True(t, joins[0].Started)
	require.Equal(t, 3, joins[0].Recent)
	joins = plan(4)
	require.Len(t, joins, 1)
	require.False(t, joins[0].Started)
	id := joins[0].StormID

	for inc, want := range map[int64]map[string]int64{
		1: {incident.IntegrationSlack: 0, incident.IntegrationPagerDuty: 0},
		2: {incident.IntegrationSlack: id, incident.IntegrationPagerDuty: 0}, // folded: not posted yet
		3: {incident.IntegrationSlack: id, incident.IntegrationPagerDuty: id},
		4: {incident.IntegrationSlack: id, incident.IntegrationPagerDuty: id},
	} {
		ds, err := s.Deliveries(ctx, inc)
		require.NoError(t, err)
		require.Len(t, ds, 2)
		for _, d := range ds {
			require.Equal(t, want[d.Integration], d.StormID, "incident %d %s", inc, d.Integration)
		}
	}
	// A repeated route job joins nothing twice.
	planned, joins, err := s.PlanDeliveriesStorm(ctx, 4, incident.Decision{Kind: incident.DecisionRoute, At: c.Now()}, nil, policy, time.Time{})
	require.NoError(t, err)
	require.False(t, planned)
	require.Empty(t, joins)

	st, err := s.GetStorm(ctx, id)
	require.NoError(t, err)
	require.Equal(t, 3, st.IncidentCount, "incidents 2 (folded), 3 and 4")
	require.Equal(t, "pd", st.PDReceiver)
	require.Equal(t, 0, st.PDConfigIndex)

	// The digest's incidents, newest first, and the version they are as of.
	members, version, err := s.StormIncidents(ctx, id)
	require.NoError(t, err)
	require.Equal(t, st.Version, version)
	var ids []int64
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	require.Equal(t, []int64{4, 3, 2}, ids, "incident 1 was posted before the storm")
	require.Equal(t, store.StormIncident{ID: 4, Alertname: "A4", Summary: "s", Status: incident.StatusFiring}, members[0])
	_, version, err = s.StormIncidents(ctx, id+1)
	require.NoError(t, err)
	require.Zero(t, version, "no such storm")

	// One queued storm job, however many joins.
	require.Equal(t, 1, queuedJobs(t, s, incident.JobStorm))

	// The lease keeps a second worker out.
	_, err = s.LeaseStorm(ctx, id, "a", time.Minute)
	require.NoError(t, err)
	_, err = s.LeaseStorm(ctx, id, "b", time.Minute)
	require.Equal(t, incident.Conflict, incident.KindOf(err))
	st.TS, st.ChannelID = "1.0", "C1"
	require.NoError(t, s.SaveStorm(ctx, *st, "a", true))
	_, err = s.LeaseStorm(ctx, id, "b", time.Minute)
	require.NoError(t, err)

	// Not quiet yet, then quiet.
	ended, err := s.EndStorm(ctx, id, c.Now().Add(-time.Second))
	require.NoError(t, err)
	require.False(t, ended)
	c.Advance(5 * time.Minute)
	ended, err = s.EndStorm(ctx, id, c.Now().Add(-5*time.Minute))
	require.NoError(t, err)
	require.True(t, ended)
	total, active, err := s.StormStats(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, total)
	require.Empty(t, active)
	got, err := s.GetStorm(ctx, id)
	require.NoError(t, err)
	require.NotNil(t, got.EndedAt)
	require.Equal(t, "1.0", got.TS)
}
