-- PostgreSQL mirror of migrations/sqlite/0006_pending.sql.

-- Deferred deliveries are applied straight from the notifications table:
-- this index holds only the pending ones, so it stays small however long
-- the history is.
CREATE INDEX notifications_pending ON notifications (id) WHERE status = 'pending';
