-- In SQLite only a column declared INTEGER PRIMARY KEY is the rowid: the
-- BIGINT PRIMARY KEY of incident_context and context_posts (0008) made
-- each a rowid table plus an index on its key, two B-trees written per
-- row. Here the key is the rowid.
CREATE TABLE incident_context_v2 (
    incident_id INTEGER PRIMARY KEY,
    gathered_at BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
INSERT INTO incident_context_v2 (incident_id, gathered_at, body)
    SELECT incident_id, gathered_at, body FROM incident_context;
DROP TABLE incident_context;
ALTER TABLE incident_context_v2 RENAME TO incident_context;

CREATE TABLE context_posts_v2 (
    delivery_id INTEGER PRIMARY KEY,
    incident_id BIGINT  NOT NULL,
    step        INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL
);
INSERT INTO context_posts_v2 (delivery_id, incident_id, step, done, updated_at)
    SELECT delivery_id, incident_id, step, done, updated_at FROM context_posts;
DROP TABLE context_posts;
ALTER TABLE context_posts_v2 RENAME TO context_posts;
-- The posts of an incident were found by reading the whole table.
CREATE INDEX context_posts_incident ON context_posts (incident_id);

-- One small row per Alertmanager group, found by its key: the key is the
-- table's, instead of a rowid table plus an index on the key.
CREATE TABLE alert_groups_v2 (
    group_key   TEXT    PRIMARY KEY,
    episode     INTEGER NOT NULL DEFAULT 0,
    incident_id INTEGER
) WITHOUT ROWID;
INSERT INTO alert_groups_v2 (group_key, episode, incident_id)
    SELECT group_key, episode, incident_id FROM alert_groups;
DROP TABLE alert_groups;
ALTER TABLE alert_groups_v2 RENAME TO alert_groups;
