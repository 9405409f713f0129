-- Remediation: one row per decision to run (or not) a runbook for an
-- incident, its audit trail, and the global pause switch.
-- Times are Unix nanoseconds (UTC).
CREATE TABLE remediation_runs (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL,
    runbook      TEXT    NOT NULL,            -- '' when no runbook matched
    target       TEXT    NOT NULL,            -- runbook{param="value",...}
    params       TEXT    NOT NULL,            -- JSON object
    labels       TEXT    NOT NULL,            -- JSON object: the labels the run was decided on
    state        TEXT    NOT NULL,            -- refused | dry_run | awaiting_approval | running | succeeded | failed | unknown | cancelled
    reason       TEXT    NOT NULL DEFAULT '',
    dry_run      INTEGER NOT NULL DEFAULT 0,
    counted      INTEGER NOT NULL DEFAULT 0,  -- 1: admitted to execute; counts for cooldown and max_runs
    active       INTEGER NOT NULL DEFAULT 0,  -- 1: holds its target's lock (awaiting_approval or running)
    approved_by  TEXT    NOT NULL DEFAULT '',
    approved_at  BIGINT,
    expires_at   BIGINT,                      -- when an approval request lapses
    next_step    INTEGER NOT NULL DEFAULT 0,
    verify_until BIGINT,                      -- set once the steps are done and verification polls
    escalated    INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT    NOT NULL DEFAULT '',
    lease_until  BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    finished_at  BIGINT,
    UNIQUE (incident_id, runbook)
);
-- One run at a time per target, across replicas.
CREATE UNIQUE INDEX remediation_runs_lock ON remediation_runs (target) WHERE active = 1;
CREATE INDEX remediation_runs_target ON remediation_runs (target, counted, created_at);
CREATE INDEX remediation_runs_state ON remediation_runs (state);

CREATE TABLE remediation_audit (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    phase       TEXT    NOT NULL,             -- decision | start | end
    step        TEXT    NOT NULL DEFAULT '',
    step_index  INTEGER NOT NULL DEFAULT -1,
    kind        TEXT    NOT NULL DEFAULT '',
    input       TEXT    NOT NULL DEFAULT '',
    outcome     TEXT    NOT NULL DEFAULT '',
    exit_code   INTEGER,
    http_status INTEGER NOT NULL DEFAULT 0,
    output      TEXT    NOT NULL DEFAULT '',
    duration_ns BIGINT  NOT NULL DEFAULT 0,
    actor       TEXT    NOT NULL DEFAULT '',
    at          BIGINT  NOT NULL
);
CREATE INDEX remediation_audit_run ON remediation_audit (run_id, id);
-- A step is started at most once and ended at most once: the start record is
-- committed before the step executes, so a second start (a retried job, a
-- replica racing) is refused instead of repeating the step.
CREATE UNIQUE INDEX remediation_audit_step_once ON remediation_audit (run_id, step_index, phase) WHERE phase <> 'decision';

-- The pause switch (POST /api/v1/remediation/pause). Its one row is also
-- the lock that serialises admissions, so that cooldowns, budgets and the
-- concurrency cap hold across replicas.
CREATE TABLE remediation_control (
    id         INTEGER PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    paused_by  TEXT    NOT NULL DEFAULT '',
    updated_at BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO remediation_control (id, paused, paused_by, updated_at) VALUES (1, 0, '', 0);
