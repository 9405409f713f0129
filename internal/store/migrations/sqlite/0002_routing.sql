-- Bumped on every applied change, so that deliveries know whether Slack and
-- PagerDuty already show the latest state.
ALTER TABLE incidents ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- Decisions taken for an incident, with the reason a person can read: the
-- route (which receivers, and why), storm digests, delivery outcomes.
CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX decisions_incident ON decisions (incident_id, id);
CREATE UNIQUE INDEX decisions_route_once ON decisions (incident_id) WHERE kind = 'route';

-- One row per incident and notification target: where the Slack parent is,
-- what PagerDuty was last told, and which incident version they show.
CREATE TABLE deliveries (
    id             INTEGER PRIMARY KEY,
    incident_id    INTEGER NOT NULL,
    receiver       TEXT    NOT NULL,
    integration    TEXT    NOT NULL,            -- slack | pagerduty
    config_index   INTEGER NOT NULL,
    target         TEXT    NOT NULL,            -- Slack channel as configured; PagerDuty dedup key
    channel_id     TEXT    NOT NULL DEFAULT '',
    ts             TEXT    NOT NULL DEFAULT '',
    permalink      TEXT    NOT NULL DEFAULT '',
    last_action    TEXT    NOT NULL DEFAULT '',
    last_error     TEXT    NOT NULL DEFAULT '',
    synced_version INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    UNIQUE (incident_id, receiver, integration, config_index)
);
