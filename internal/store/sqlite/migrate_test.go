package sqlite_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

// schemaOf0009 turns a migrated database back into what migration 0009
// left, rows included: the alert states, the alert groups and the context
// tables as rowid tables with an index on their keys, the notifications'
// index on their incident over every row, and the jobs' indexes of 0005.
// It adds an incident context and a context post, which the tests here do
// not make.
const schemaOf0009 = `
CREATE TABLE notification_states_old (
    state_hash      TEXT    PRIMARY KEY,
    notification_id INTEGER NOT NULL
);
INSERT INTO notification_states_old SELECT state_hash, notification_id FROM notification_states;
DROP TABLE notification_states;
ALTER TABLE notification_states_old RENAME TO notification_states;
DROP INDEX notifications_orphans;
DROP INDEX notifications_incident;
CREATE INDEX notifications_incident ON notifications (incident_id);

CREATE TABLE alert_groups_old (
    group_key   TEXT    PRIMARY KEY,
    episode     INTEGER NOT NULL DEFAULT 0,
    incident_id INTEGER
);
INSERT INTO alert_groups_old SELECT group_key, episode, incident_id FROM alert_groups;
DROP TABLE alert_groups;
ALTER TABLE alert_groups_old RENAME TO alert_groups;

DROP TABLE incident_context;
CREATE TABLE incident_context (
    incident_id BIGINT  PRIMARY KEY,
    gathered_at BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
INSERT INTO incident_context VALUES (1, 5, '{"sections":[]}');
DROP TABLE context_posts;
CREATE TABLE context_posts (
    delivery_id BIGINT  PRIMARY KEY,
    incident_id BIGINT  NOT NULL,
    step        INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL
);
INSERT INTO context_posts VALUES (7, 1, 2, 0, 5);

DROP INDEX jobs_kind_due;
CREATE INDEX jobs_kind_due ON jobs (kind, state, run_at);
CREATE INDEX jobs_leases ON jobs (state, lease_until);

DELETE FROM schema_migrations WHERE name IN ('0010_ingest_pages.sql', '0011_table_keys.sql', '0012_lease_in_kind_index.sql');
`

// TestSQLite_UpgradeFrom0009KeepsEveryRow upgrades a database with
// notifications, an incident, its context and a context post in it:
// what was delivered before the upgrade is a duplicate after it, the
// group's next notification updates the same incident, the context and
// the post are where they were, and the tables and indexes are the new
// ones.
func TestSQLite_UpgradeFrom0009KeepsEveryRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "responder.db")
	c := storetest.NewClock()
	firing := storetest.Payload(t, "am_v4_firing.json")
	// run opens the database, runs its writer loop for fn, and closes it.
	run := func(fn func(db *sqlite.DB)) {
		t.Helper()
		db, err := sqlite.Open(ctx, path, store.Options{Now: c.Now})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- db.Run(runCtx) }()
		fn(db)
		stop()
		require.NoError(t, <-done)
		require.NoError(t, db.Close())
	}
	accept := func(db *sqlite.DB, m *incident.Message) incident.Receipt {
		t.Helper()
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		rec, err := db.Accept(ctx, incident.Delivery{Message: m, Raw: raw, ReceivedAt: c.Now()})
		require.NoError(t, err)
		return rec
	}
	// variant is firing with each alert changed by change.
	variant := func(change func(a *template.Alert)) *incident.Message {
		m, data := *firing, *firing.Data
		m.Data = &data
		m.Alerts = append(firing.Alerts[:0:0], firing.Alerts...)
		for i := range m.Alerts {
			change(&m.Alerts[i])
		}
		return &m
	}
	run(func(db *sqlite.DB) {
		require.False(t, accept(db, firing).Duplicate)
		require.True(t, accept(db, firing).Duplicate)
		require.NoError(t, db.Settle(ctx))
		_, err := db.DB().ExecContext(ctx, schemaOf0009)
		require.NoError(t, err)
	})
	// Reopening runs 0010-0012 again; the schema is read once, after.
	run(func(db *sqlite.DB) {
		schema := func(name string) string {
			t.Helper()
			var sql string
			require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT coalesce(max(sql), '') FROM sqlite_master WHERE name = ?`, name).Scan(&sql))
			return sql
		}
		require.Contains(t, schema("notification_states"), "WITHOUT ROWID", "0010")
		require.Contains(t, schema("notifications_incident"), "WHERE incident_id IS NOT NULL")
		require.Contains(t, schema("notifications_orphans"), "WHERE incident_id IS NULL")
		require.Contains(t, schema("alert_groups"), "WITHOUT ROWID", "0011")
		require.Contains(t, schema("incident_context"), "incident_id INTEGER PRIMARY KEY")
		require.Contains(t, schema("context_posts"), "delivery_id INTEGER PRIMARY KEY")
		require.Contains(t, schema("context_posts_incident"), "(incident_id)")
		require.Contains(t, schema("jobs_kind_due"), "(kind, state, run_at, lease_until)", "0012")
		require.Empty(t, schema("jobs_leases"))
	})
	run(func(db *sqlite.DB) {
		var states, linked int
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM notification_states`).Scan(&states))
		require.Equal(t, 1, states, "the states of the first notification")
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM notifications INDEXED BY notifications_incident WHERE incident_id > 0`).Scan(&linked))
		require.Equal(t, 1, linked, "the applied notification is in the index on incidents; its duplicate is not")
		require.True(t, accept(db, firing).Duplicate, "delivered before the upgrade")

		resolved := variant(func(a *template.Alert) { a.Status = incident.StatusResolved })
		require.False(t, accept(db, resolved).Duplicate, "a new state")
		require.NoError(t, db.Settle(ctx))
		list, err := db.ListIncidents(ctx, incident.ListFilter{})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, incident.StatusResolved, list[0].Status)
		// The group fires again: its next episode, which the group's row
		// counts (episode 1 again would collide with the first incident).
		again := variant(func(a *template.Alert) { a.StartsAt = a.StartsAt.Add(time.Hour) })
		require.False(t, accept(db, again).Duplicate)
		require.NoError(t, db.Settle(ctx))
		list, err = db.ListIncidents(ctx, incident.ListFilter{})
		require.NoError(t, err)
		require.Len(t, list, 2, "a second episode")
		episodes := []int{list[0].Episode, list[1].Episode}
		require.ElementsMatch(t, []int{1, 2}, episodes, "the group's row kept its episode count")

		var body string
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT body FROM incident_context WHERE incident_id = 1`).Scan(&body))
		require.JSONEq(t, `{"sections":[]}`, body)
		posts, err := db.ContextPosts(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, map[int64]store.ContextPost{7: {DeliveryID: 7, Step: 2}}, posts)
		require.NoError(t, db.SaveContextPost(ctx, 1, store.ContextPost{DeliveryID: 7, Step: 3, Done: true}))
		posts, err = db.ContextPosts(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, map[int64]store.ContextPost{7: {DeliveryID: 7, Step: 3, Done: true}}, posts, "an upsert on the new key")
	})
}
