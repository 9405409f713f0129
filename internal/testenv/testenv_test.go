package testenv_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/testenv"
)

const amConfig = `
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
`

func TestStartAlertmanager(t *testing.T) {
	t.Parallel()
	am := testenv.StartAlertmanager(t, amConfig)
	require.Regexp(t, `^http://127\.0\.0\.1:[1-9][0-9]*$`, am.URL())

	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	am.PostAlerts(t, []testenv.PostableAlert{{
		Labels:       map[string]string{"alertname": "TestenvAlert", "instance": "a"},
		Annotations:  map[string]string{"summary": "posted by testenv"},
		StartsAt:     startsAt,
		GeneratorURL: "http://prometheus.example/graph",
	}})

	// The API answers from the alert store, which holds the alert as soon as
	// the POST has returned.
	got := am.Alerts(t)
	require.Len(t, got, 1)
	require.Equal(t, map[string]string{"alertname": "TestenvAlert", "instance": "a"}, got[0].Labels)
	require.Equal(t, "posted by testenv", got[0].Annotations["summary"])
	require.True(t, got[0].StartsAt.Equal(startsAt), "startsAt %s, want %s", got[0].StartsAt, startsAt)
	require.True(t, got[0].EndsAt.After(time.Now()), "endsAt %s is not in the future", got[0].EndsAt)
	require.Len(t, got[0].Fingerprint, 16)
	require.Len(t, got[0].Receivers, 1)
	require.Equal(t, "blackhole", got[0].Receivers[0].Name)
}

func TestBinary_FromEnv(t *testing.T) {
	// Not parallel: t.Setenv.
	am := testenv.Binary(t, testenv.AlertmanagerEnv, testenv.AlertmanagerNames...)
	t.Setenv("RESPONDER_TEST_TESTENV_BINARY", am)
	require.Equal(t, am, testenv.Binary(t, "RESPONDER_TEST_TESTENV_BINARY", "no-such-binary-responder"))
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	p := testenv.FreePort(t)
	require.Positive(t, p)
	require.Less(t, p, 1<<16)
}
