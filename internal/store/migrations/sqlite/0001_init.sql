-- Times are Unix nanoseconds (UTC). Label sets are JSON objects.

-- Every webhook delivery, as received, before the 200 went back.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    group_key   TEXT    NOT NULL,
    state_hash  TEXT    NOT NULL,
    status      TEXT    NOT NULL,              -- pending | processed | duplicate
    reason      TEXT    NOT NULL DEFAULT '',
    receiver    TEXT    NOT NULL,
    alerts      INTEGER NOT NULL,
    incident_id INTEGER,
    payload     BLOB    NOT NULL
);
CREATE INDEX notifications_incident ON notifications (incident_id);

-- One row per distinct set of alert state changes of a group: the first
-- notification that carried it. Later identical deliveries are duplicates.
CREATE TABLE notification_states (
    state_hash      TEXT    PRIMARY KEY,
    notification_id INTEGER NOT NULL
);

-- One row per Alertmanager group: the episode counter and the open incident.
CREATE TABLE alert_groups (
    group_key   TEXT    PRIMARY KEY,
    episode     INTEGER NOT NULL DEFAULT 0,
    incident_id INTEGER
);

CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY,
    group_key          TEXT    NOT NULL,
    episode            INTEGER NOT NULL,
    status             TEXT    NOT NULL,       -- firing | resolved
    receiver           TEXT    NOT NULL,
    group_labels       TEXT    NOT NULL,
    common_labels      TEXT    NOT NULL,
    common_annotations TEXT    NOT NULL,
    external_url       TEXT    NOT NULL,
    opened_at          INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    resolved_at        INTEGER,
    firing_alerts      INTEGER NOT NULL DEFAULT 0,
    resolved_alerts    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_key, episode)
);
CREATE INDEX incidents_status ON incidents (status, id);

-- The current state of each alert (fingerprint, startsAt) of a group.
CREATE TABLE alerts (
    group_key     TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    starts_at     INTEGER NOT NULL,
    incident_id   INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    annotations   TEXT    NOT NULL,
    ends_at       INTEGER,
    generator_url TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (group_key, fingerprint, starts_at)
);
CREATE INDEX alerts_incident ON alerts (incident_id);

-- Each alert state change, exactly once.
CREATE TABLE changes (
    id              INTEGER PRIMARY KEY,
    incident_id     INTEGER NOT NULL,
    group_key       TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    starts_at       INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    notification_id INTEGER NOT NULL,
    UNIQUE (group_key, fingerprint, starts_at, status)
);
CREATE INDEX changes_incident ON changes (incident_id, id);

-- The durable work queue.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    ref_id       INTEGER NOT NULL,
    incident_id  INTEGER,
    args         BLOB,
    state        TEXT    NOT NULL,             -- queued | running | done | parked
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_incident ON jobs (incident_id);
