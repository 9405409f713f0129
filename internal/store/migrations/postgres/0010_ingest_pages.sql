-- SQLite's 0010 cuts the B-trees that committing a new notification
-- writes. PostgreSQL keeps its indexes (rebuilding one there would block
-- writes for as long as the build takes); the file keeps both engines'
-- migration lists in step.
SELECT 1;
