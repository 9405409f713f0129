package app

import "database/sql"

// WriterDBForTest is the storage's writer pool, for tests that make its
// commits fail (a SQLite max_page_count).
func (a *App) WriterDBForTest() *sql.DB { return a.db.DB() }
