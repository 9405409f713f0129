package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/sqlite"
)

func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("receivers:\n  - name: x\n    slack_configs: [{}]\nroute: {receiver: x}\n"), 0o600))
	routes := filepath.Join(dir, "routes.yml")
	require.NoError(t, os.WriteFile(routes, []byte(routesConfig), 0o600))
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "data", "responder.db"), store.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	withDB := filepath.Join(dir, "sqlite.yml")
	require.NoError(t, os.WriteFile(withDB, []byte("storage:\n  dsn: sqlite://data/responder.db\n"), 0o600))
	withPG := filepath.Join(dir, "postgres.yml")
	require.NoError(t, os.WriteFile(withPG, []byte("storage:\n  dsn: postgres://responder:hunter2@db.example/responder\n"), 0o600))
	copied := filepath.Join(dir, "copy.db")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "exists.db"), []byte("keep me"), 0o600))

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderr     string
		notContain string
	}{
		{"example config is valid", []string{"check-config", "--config.file=../../examples/responder.yml"}, 0, "SUCCESS", "", ""},
		{"embedded default is valid", []string{"check-config"}, 0, "embedded default: SUCCESS", "", ""},
		{"a bad config names file and field", []string{"check-config", "--config.file=" + bad}, 1, "", "slack_configs[0]", ""},
		{"a missing file fails", []string{"check-config", "--config.file=" + filepath.Join(dir, "nope.yml")}, 1, "", "nope.yml", ""},
		{"pages in business hours", []string{"routes", "test", "--config.file=" + routes, "--time=2026-11-25T10:00:00+01:00", "severity=critical"}, 0, "pagerduty, incidents\n", "", ""},
		{"only posts at night", []string{"routes", "test", "--config.file=" + routes, "--time=2026-11-25T22:00:00+01:00", "severity=critical"}, 0, "muted: outside active time interval business-hours", "", "pagerduty, incidents"},
		{"a bad time is a usage error", []string{"routes", "test", "--config.file=" + routes, "--time=tomorrow"}, 2, "", "RFC 3339", ""},
		{"a bad label is a usage error", []string{"routes", "test", "severity"}, 2, "", "name=value", ""},
		{"secrets never print", []string{"routes", "test", "--config.file=" + routes, "severity=warning"}, 0, "incidents", "", "0123456789abcdef"},
		{"backup", []string{"backup", "--config.file=" + withDB, copied}, 0, "copy.db: ", "", ""},
		{"backup never overwrites", []string{"backup", "--config.file=" + withDB, filepath.Join(dir, "exists.db")}, 1, "", "already exists", ""},
		{"backup of postgres", []string{"backup", "--config.file=" + withPG, filepath.Join(dir, "pg.db")}, 1, "", "pg_dump", "hunter2"},
		{"backup needs a file", []string{"backup"}, 2, "", "file", ""},
		{"version", []string{"version"}, 0, "responder, version", "", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", "see --help", ""},
		{"help", []string{"--help"}, 0, "", "usage: responder", "see --help"},
		{"help twice", []string{"--help", "--help"}, 0, "", "usage: responder", ""},
		{"no command is a usage error", nil, 2, "", "usage: responder <command>", ""},
		{"a command group without its command", []string{"runbooks"}, 2, "", "must select a subcommand of 'runbooks'", ""},
		{"help of serve does not serve", []string{"serve", "--help"}, 0, "", "--web.listen-address", "unknown name"},
		{"help of check-config does not check", []string{"check-config", "--help"}, 0, "", "--config.file", "SUCCESS"},
		{"help command", []string{"help", "serve"}, 0, "", "--web.listen-address", "unknown name"},
		{"help of an unknown command is a usage error", []string{"help", "frobnicate"}, 2, "", "frobnicate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
			require.Contains(t, stdout.String(), tt.stdout)
			require.Contains(t, stderr.String(), tt.stderr)
			if tt.notContain != "" {
				require.NotContains(t, stdout.String()+stderr.String(), tt.notContain)
			}
			// kingpin carried on after --help and printed it again.
			require.LessOrEqual(t, strings.Count(stdout.String()+stderr.String(), "usage: responder"), 1, "the usage is printed once")
		})
	}
}

// TestRun_helpFlags runs responder as a process of its own: kingpin writes
// --help-long and --help-man to os.Stdout, not to run's stdout.
func TestRun_helpFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flag  string
		once  string // a heading printed once
		never string
	}{
		{"--help-long", "usage: responder <command>", ""},
		{"--help-man", ".TH responder", "usage: responder"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			t.Parallel()
			//nolint:gosec,noctx // the test binary itself, see TestMain
			cmd := exec.Command(os.Args[0], tt.flag)
			cmd.Env = append(os.Environ(), mainEnv+"=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
			require.Equal(t, 1, strings.Count(stdout.String(), tt.once), "stdout: %s", stdout.String())
			require.Contains(t, stdout.String(), "backup [<flags>] <file>", "every command is listed")
			if tt.never != "" {
				require.NotContains(t, stdout.String(), tt.never)
			}
			require.Empty(t, stderr.String())
		})
	}
}
