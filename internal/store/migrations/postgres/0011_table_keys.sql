-- SQLite's 0011 gives three tables their key as rowid, which PostgreSQL
-- tables do not have. What applies here too: the context posts of an
-- incident were found by reading the whole table.
CREATE INDEX context_posts_incident ON context_posts (incident_id);
