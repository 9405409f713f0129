-- PostgreSQL mirror of migrations/sqlite/0013_runbook_digest.sql. Adding a
-- column with a constant default rewrites no rows.

-- The digest of the runbook a run was admitted with (remediation.Runbook's
-- Digest): a run whose runbook was edited since, by a reload, stops before
-- its next step instead of running steps that nobody approved or planned.
-- Runs admitted before this migration have none and are not checked.
ALTER TABLE remediation_runs ADD COLUMN runbook_digest TEXT NOT NULL DEFAULT '';
