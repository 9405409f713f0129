-- Storms: one row per channel episode in which more new incidents hit a
-- Slack channel than storm.threshold within storm.window. While a storm is
-- active (ended_at IS NULL) the channel's new incidents join it instead of
-- getting a parent message each; see internal/store/storm.go.
CREATE TABLE storms (
    id               INTEGER PRIMARY KEY,
    target           TEXT    NOT NULL,            -- the Slack channel as configured
    started_at       INTEGER NOT NULL,
    last_incident_at INTEGER NOT NULL,
    ended_at         INTEGER,
    incident_count   INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 1,  -- bumped on every change the digest shows
    -- the digest message
    channel_id       TEXT    NOT NULL DEFAULT '',
    ts               TEXT    NOT NULL DEFAULT '',
    permalink        TEXT    NOT NULL DEFAULT '',
    synced_version   INTEGER NOT NULL DEFAULT 0,
    -- the storm's one PagerDuty page: the config of the first incident
    -- that joined and would have paged, and what PagerDuty was last told
    pd_receiver      TEXT    NOT NULL DEFAULT '',
    pd_config_index  INTEGER NOT NULL DEFAULT -1,
    pd_last_action   TEXT    NOT NULL DEFAULT '',
    last_error       TEXT    NOT NULL DEFAULT '',
    lease_owner      TEXT    NOT NULL DEFAULT '',
    lease_until      INTEGER NOT NULL DEFAULT 0
);
-- At most one active storm per channel.
CREATE UNIQUE INDEX storms_active ON storms (target) WHERE ended_at IS NULL;

-- When a delivery was planned (to count a channel's new incidents), and the
-- storm it joined, if any.
ALTER TABLE deliveries ADD COLUMN planned_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN storm_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_planned ON deliveries (integration, target, planned_at);
CREATE INDEX deliveries_storm ON deliveries (storm_id) WHERE storm_id <> 0;
