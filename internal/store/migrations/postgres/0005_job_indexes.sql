-- PostgreSQL mirror of migrations/sqlite/0005_job_indexes.sql.

-- Workers claim jobs by kind, so that a backlog of deferred ingest jobs is
-- never scanned by a claim (nor sorted by the writer loop).
DROP INDEX jobs_due;
CREATE INDEX jobs_kind_due ON jobs (kind, state, run_at);
CREATE INDEX jobs_leases ON jobs (state, lease_until);
CREATE INDEX jobs_state ON jobs (state, id);
