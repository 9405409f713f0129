package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/store"
)

// testContext covers recorded deployments, the stored context (the cache
// that repeat notifications reuse) and the context posting progress.
func testContext(t *testing.T, open Opener) {
	c := NewClock()
	s, id := openIncident(t, open, c)
	ctx := context.Background()

	t.Run("deployments", func(t *testing.T) {
		base := c.Now()
		for i, d := range []incident.Deployment{
			{Service: "checkout", Environment: "prod", Version: "1.2.0", Commit: "abc123", Author: "ci", URL: "https://ci.example/1", DeployedAt: base.Add(-3 * time.Hour)},
			{Service: "checkout", Environment: "prod", Version: "1.3.0", Commit: "def456", DeployedAt: base.Add(-time.Hour)},
			{Service: "cart", Version: "9", DeployedAt: base.Add(-time.Minute)},
		} {
			got, err := s.RecordDeployment(ctx, d)
			require.NoError(t, err)
			require.Positive(t, got, i)
		}
		ds, err := s.RecentDeployments(ctx, "checkout", base.Add(-2*time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, "1.3.0", ds[0].Version)
		require.Equal(t, "def456", ds[0].Commit)
		require.Equal(t, "api", ds[0].Source)
		require.True(t, ds[0].DeployedAt.Equal(base.Add(-time.Hour)))
		ds, err = s.RecentDeployments(ctx, "checkout", base.Add(-6*time.Hour), 10)
		require.NoError(t, err)
		require.Len(t, ds, 2)
		require.Equal(t, "1.3.0", ds[0].Version, "newest first")
		require.Equal(t, "ci", ds[1].Author)
	})

	t.Run("context", func(t *testing.T) {
		got, err := s.IncidentContext(ctx, id)
		require.NoError(t, err)
		require.Nil(t, got, "nothing gathered yet")

		want := &incident.Context{GatheredAt: c.Now(), DurationMS: 120, Sections: []incident.Section{
			{Source: "loki", Kind: incident.ContextLogs, Status: incident.SourceOK, Logs: []incident.LogLine{{At: c.Now(), Line: "boom", Count: 3}}},
			{Source: "promql", Kind: incident.ContextMetrics, Status: incident.SourceTimeout, Error: "source promql timed out after 5s"},
		}}
		saved, err := s.SaveContext(ctx, id, want, incident.JobContextPost)
		require.NoError(t, err)
		require.True(t, saved)
		again, err := s.SaveContext(ctx, id, &incident.Context{GatheredAt: c.Now()}, incident.JobContextPost)
		require.NoError(t, err)
		require.False(t, again, "the first gathering is kept")

		inc, err := s.GetIncident(ctx, id)
		require.NoError(t, err)
		require.NotNil(t, inc.Context)
		require.Len(t, inc.Context.Sections, 2)
		require.Equal(t, "boom", inc.Context.Sections[0].Logs[0].Line)
		require.Equal(t, incident.SourceTimeout, inc.Context.Sections[1].Status)
		posts := 0
		for _, j := range inc.Jobs {
			if j.Kind == incident.JobContextPost {
				posts++
				require.Equal(t, id, j.RefID)
			}
		}
		require.Equal(t, 1, posts, "one post job, queued with the first save")
	})

	t.Run("posts", func(t *testing.T) {
		got, err := s.ContextPosts(ctx, id)
		require.NoError(t, err)
		require.Empty(t, got)
		require.NoError(t, s.SaveContextPost(ctx, id, store.ContextPost{DeliveryID: 7, Step: 1}))
		require.NoError(t, s.SaveContextPost(ctx, id, store.ContextPost{DeliveryID: 7, Step: 3, Done: true}))
		require.NoError(t, s.SaveContextPost(ctx, id, store.ContextPost{DeliveryID: 8, Step: 1}))
		got, err = s.ContextPosts(ctx, id)
		require.NoError(t, err)
		require.Equal(t, map[int64]store.ContextPost{7: {DeliveryID: 7, Step: 3, Done: true}, 8: {DeliveryID: 8, Step: 1}}, got)
	})
}
