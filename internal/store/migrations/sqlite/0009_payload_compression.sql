-- PostgreSQL's 0009 sets lz4 TOAST compression on notifications.payload;
-- SQLite stores payloads uncompressed and has nothing to change. The file
-- keeps both engines' migration lists in step.
SELECT 1;
