-- Deployments recorded through POST /api/v1/deployments (CI pipelines,
-- `responder deploy record`). Times are Unix nanoseconds (UTC).
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    service     TEXT    NOT NULL,
    environment TEXT    NOT NULL DEFAULT '',
    version     TEXT    NOT NULL DEFAULT '',
    commit_sha  TEXT    NOT NULL DEFAULT '',
    author      TEXT    NOT NULL DEFAULT '',
    url         TEXT    NOT NULL DEFAULT '',
    deployed_at BIGINT  NOT NULL,
    recorded_at BIGINT  NOT NULL
);
CREATE INDEX deployments_service ON deployments (service, deployed_at);

-- The context gathered for an incident, once: a JSON document with one
-- section per source (status, error, results). Its presence is the cache
-- that later notifications of the incident reuse.
CREATE TABLE incident_context (
    incident_id BIGINT  PRIMARY KEY,
    gathered_at BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);

-- How far the context was posted to each delivery (a Slack thread, a
-- PagerDuty alert): step counts the messages and files already sent, so
-- that a retry resumes instead of posting twice.
CREATE TABLE context_posts (
    delivery_id BIGINT  PRIMARY KEY,
    incident_id BIGINT  NOT NULL,
    step        INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL
);
