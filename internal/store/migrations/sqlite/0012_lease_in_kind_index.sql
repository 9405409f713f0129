-- jobs_leases (state, lease_until) served the search for expired leases,
-- which always names the kinds it claims. With lease_until at the end of
-- jobs_kind_due, that index answers it alone: the running jobs of those
-- kinds, without reading their rows. Every claim and every completion
-- moved a job's entry in both indexes; now in one. (A lease changes only
-- with the job's state, which moves the entry anyway.)
DROP INDEX jobs_leases;
DROP INDEX jobs_kind_due;
CREATE INDEX jobs_kind_due ON jobs (kind, state, run_at, lease_until);
