package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestApp_Storm1000 posts 1,000 new alert groups to one channel within a
// minute, straight to the webhook (no Alertmanager, to keep it fast): none
// is lost, Slack gets the parents before the storm and one digest updated
// at most once a second, and PagerDuty is paged at most threshold+1 times.
func TestApp_Storm1000(t *testing.T) {
	if testing.Short() {
		t.Skip("posts 1,000 groups over 30s")
	}
	// Not parallel: the pacing and timing assertions want the machine to
	// itself. About 35s; under -race about 85s on 2 cores (105–125s before
	// job handlers' writes rode on the writer loop's commits), where the
	// single SQLite writer (modernc, instrumented) is slow, hence the
	// generous settle.
	const (
		groups    = 1000
		threshold = 10
	)
	start := time.Now()
	// The queue settings of the other storm tests: a job retried after a
	// lease conflict runs again within a second.
	res := runStorm(t, stormScenario{
		groups: groups, over: 30 * time.Second, threshold: threshold,
		queue: "{min_backoff: 100ms, max_backoff: 1s, poll_interval: 100ms}", settle: 3 * time.Minute,
	})
	t.Logf("%d incidents in %s: %d own parents, %d in the digest (count %d); %d posts + %d updates, max %d slack writes in any 1s (min gap %s, between digest updates %s); max commit → shown %s; pagerduty %d events (%d triggers), %d refused",
		res.incidents, time.Since(start).Round(time.Second), res.own, res.joined, res.digestCount, res.posts, res.updates,
		res.maxCallsPerSecond, res.minGap.Round(time.Millisecond), res.updateMinGap.Round(time.Millisecond), res.maxLag.Round(time.Millisecond),
		res.pdEvents, res.pdTriggers, res.pdRejected)

	require.Equal(t, groups, res.incidents)
	require.Zero(t, res.lost, "every incident has its own parent or is in the digest")
	require.Equal(t, groups, res.own+res.joined)
	require.LessOrEqual(t, res.own, threshold, "parents before the storm")
	require.Equal(t, 1, res.digests, "one digest")
	require.Equal(t, res.joined, res.digestCount, "the digest counts every incident that joined")
	require.LessOrEqual(t, res.posts, threshold+1, "the parents and one digest")
	// The pacer spaces the calls' starts by 1s; 100ms absorbs the jitter of
	// their arrival. (Parent posts before the storm can still land closer:
	// see docs/benchmarks.md, "Notifications".)
	require.Positive(t, res.updates, "the digest was updated in place")
	// The pacer spaces the updates' starts by 1s. Their arrivals are what
	// the fake Slack sees: a start held up by a busy machine (go test runs
	// packages side by side) can arrive just before the next one, on time
	// (96ms apart in one run), but not three in a row.
	require.LessOrEqual(t, res.updatesIn3s, 4, "digest updates at most 1/s, give or take one late arrival (min gap %s)", res.updateMinGap)
	require.LessOrEqual(t, res.updates, 30+int(time.Since(start)/time.Second), "digest updates are paced, not one per incident")
	require.LessOrEqual(t, res.pdTriggers, threshold+1, "pagerduty triggers: the pages before the storm and one for it")
	require.Zero(t, res.pdRejected, "no pagerduty event refused")
}
