package sqlite_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
	"github.com/responder/responder/internal/store/storetest"
)

// schemaBefore0010 turns a migrated database back into what 0009 left:
// the alert states in a rowid table with an index on the hash, and the
// notifications' index on their incident over every row.
const schemaBefore0010 = `
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
DELETE FROM schema_migrations WHERE name = '0010_ingest_pages.sql';
`

// TestSQLite_Migration0010KeepsTheAlertStates upgrades a database with
// notifications in it: the alert states survive the new table, so what
// was delivered before the upgrade is a duplicate after it, and the
// notifications' indexes are the new ones.
func TestSQLite_Migration0010KeepsTheAlertStates(t *testing.T) {
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
	run(func(db *sqlite.DB) {
		require.False(t, accept(db, firing).Duplicate)
		require.True(t, accept(db, firing).Duplicate)
		require.NoError(t, db.Settle(ctx))
		_, err := db.DB().ExecContext(ctx, schemaBefore0010)
		require.NoError(t, err)
	})
	schema := func(name string) string {
		t.Helper()
		db, err := sqlite.Open(ctx, path, store.Options{Now: c.Now})
		require.NoError(t, err)
		defer func() { require.NoError(t, db.Close()) }()
		var sql string
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = ?`, name).Scan(&sql))
		return sql
	}
	require.Contains(t, schema("notification_states"), "WITHOUT ROWID", "reopening ran 0010 again")
	require.Contains(t, schema("notifications_incident"), "WHERE incident_id IS NOT NULL")
	require.Contains(t, schema("notifications_orphans"), "WHERE incident_id IS NULL")
	run(func(db *sqlite.DB) {
		var states, linked int
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM notification_states`).Scan(&states))
		require.Equal(t, 1, states, "the states of the first notification")
		require.NoError(t, db.DB().QueryRowContext(ctx, `SELECT count(*) FROM notifications INDEXED BY notifications_incident WHERE incident_id > 0`).Scan(&linked))
		require.Equal(t, 1, linked, "the applied notification is in the index on incidents; its duplicate is not")
		require.True(t, accept(db, firing).Duplicate, "delivered before the upgrade")
		resolved := *firing
		data := *firing.Data
		resolved.Data = &data
		resolved.Alerts = append(firing.Alerts[:0:0], firing.Alerts...)
		resolved.Alerts[0].Status = incident.StatusResolved
		require.False(t, accept(db, &resolved).Duplicate, "a new state")
	})
}
