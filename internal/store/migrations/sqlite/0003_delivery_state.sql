-- What a delivery last showed (the alert counts of synced_version), so that
-- the next thread reply can say what changed; and a lease, so that two
-- workers never bring the same target in step at once (two posts).
ALTER TABLE deliveries ADD COLUMN synced_firing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN synced_resolved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
