package app_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
)

// TestApp_RetryParkedJob: Slack refuses a post for good, so its deliver job
// is parked and listed; once the cause is fixed, POST
// /api/v1/jobs/{id}/retry queues it again and the post goes out.
func TestApp_RetryParkedJob(t *testing.T) {
	t.Parallel()
	slackToken := "xoxb-" + rand.Text()
	fake := routingtest.NewFakeSlack(t, slackToken)
	channel := fake.AddChannel("#incidents")
	fake.FailNext(routingtest.SlackPostMessage, 1, routingtest.SlackResponse{Error: "not_in_channel"})
	r := startE2EResponder(t, lostPostConfig(fake.URL(), slackToken, filepath.Join(t.TempDir(), "responder.db")), crashToken)

	body, _ := crashPayload(t, 3)
	code, out := post(t, "http://"+r.addr+"/webhook/alertmanager", crashToken, string(body))
	require.Equal(t, http.StatusOK, code, out)

	var parked []incident.Job
	r.eventually(t, "the deliver job parked", func() (bool, any, error) {
		var jobs struct {
			Jobs []incident.Job `json:"jobs"`
		}
		err := r.get(t.Context(), "/api/v1/jobs?state=parked", &jobs)
		parked = jobs.Jobs
		return err == nil && len(parked) == 1, jobs, err
	})
	require.Equal(t, incident.JobDeliver, parked[0].Kind)
	require.Contains(t, parked[0].LastError, "not_in_channel")
	require.Empty(t, fake.Messages(channel))

	retry := func(id int64) int {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, fmt.Sprintf("http://%s/api/v1/jobs/%d/retry", r.addr, id), strings.NewReader(""))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+crashToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, retry(parked[0].ID))
	r.eventually(t, "the retried job posted the parent", func() (bool, any, error) {
		return len(fake.Messages(channel)) == 1, len(fake.Messages(channel)), nil
	})
	require.Equal(t, http.StatusNotFound, retry(parked[0].ID), "only a parked job can be retried")
	require.Equal(t, http.StatusBadRequest, retry(0))
}
