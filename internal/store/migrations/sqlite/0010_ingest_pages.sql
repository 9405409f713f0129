-- What committing a new notification writes, in pages: each B-tree a
-- commit touches is one more WAL frame (two write calls) to write, fsync
-- and copy back at the next checkpoint. A notification committed alone
-- touched five B-trees; after this migration it touches three.

-- The alert states become a table without rowid: the state hash is its
-- key, stored once, instead of a rowid table plus an index on the hash.
CREATE TABLE notification_states_v2 (
    state_hash      TEXT    PRIMARY KEY,
    notification_id INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO notification_states_v2 (state_hash, notification_id)
    SELECT state_hash, notification_id FROM notification_states;
DROP TABLE notification_states;
ALTER TABLE notification_states_v2 RENAME TO notification_states;

-- A notification has no incident until it is applied: the index on the
-- incident leaves those out, so that committing one does not write it.
DROP INDEX notifications_incident;
CREATE INDEX notifications_incident ON notifications (incident_id) WHERE incident_id IS NOT NULL;

-- Prune finds the notifications of no incident (duplicates, and those
-- whose apply found nothing new) here, as it found them in the NULL
-- range of the index above. A new notification is pending, so not in it.
CREATE INDEX notifications_orphans ON notifications (id)
    WHERE incident_id IS NULL AND status IN ('duplicate', 'processed');
