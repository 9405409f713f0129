-- PostgreSQL mirror of migrations/sqlite/0003_delivery_state.sql.

-- What a delivery last showed (the alert counts of synced_version), so that
-- the next thread reply can say what changed; and a lease, so that two
-- workers (of any replica) never bring the same target in step at once.
ALTER TABLE deliveries ADD COLUMN synced_firing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN synced_resolved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
