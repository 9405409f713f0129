package app

import (
	"database/sql"
	"time"
)

// WriterDBForTest is the storage's writer pool, for tests that make its
// commits fail (a SQLite max_page_count).
func (a *App) WriterDBForTest() *sql.DB { return a.db.DB() }

// BackoffsForTest are the retry delays (first, longest) of the App's job
// pipelines, by name.
func (a *App) BackoffsForTest() map[string][2]time.Duration {
	out := map[string][2]time.Duration{}
	for name, p := range map[string]interface {
		Backoff() (time.Duration, time.Duration)
	}{
		"incident": a.pipeline, "context": a.ctxPipeline, "remediation": a.remPipeline,
	} {
		lo, hi := p.Backoff()
		out[name] = [2]time.Duration{lo, hi}
	}
	return out
}
