package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// global.external_url is the base of the links in every Slack message and
// PagerDuty event: credentials in it are refused at load (and so at
// reload), without quoting them.
func TestLoad_externalURLCredentials(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://user:S3cret@responder.example:9096",
		"https://S3cret@responder.example",
		"https://user:@responder.example/",
	} {
		cfg, err := Load("global:\n  external_url: '" + u + "'\n")
		require.EqualError(t, err, "global: external_url: must not contain credentials", u)
		require.Nil(t, cfg)
	}
	for _, u := range []string{"https://responder.example", "http://responder.example:9096/sub/path?x=y@z"} {
		cfg, err := Load("global:\n  external_url: '" + u + "'\n")
		require.NoError(t, err, u)
		require.Equal(t, u, cfg.Global.ExternalURL)
	}
	// The other URLs may carry credentials: responder sends them to the
	// server they name, and prints them redacted.
	cfg, err := Load("global:\n  prometheus_url: 'http://user:S3cret@prometheus:9090'\n  alertmanager_url: 'http://user:S3cret@am:9093'\n")
	require.NoError(t, err)
	require.NotContains(t, cfg.String(), "S3cret")
}
