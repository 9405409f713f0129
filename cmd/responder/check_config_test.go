package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckConfig_Kubeconfig checks what check-config says of remediation's
// Kubernetes client: a kubeconfig_file that cannot be used is a problem
// (exit 1) whatever dry_run says; kubernetes steps that execute with no
// kubeconfig_file outside a cluster are a warning (exit 0: the same file is
// valid in a cluster).
func TestCheckConfig_Kubeconfig(t *testing.T) {
	// Outside a pod, whatever the machine running the test.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.Mkdir(rbDir, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(rbDir, "restart.yaml"), []byte(`name: restart-checkout
match: ['alertname="Slow"']
steps:
  - name: restart
    kubernetes: { action: rollout_restart, namespace: shop, deployment: checkout }
`), 0o600))
	const secret = "kube-s3cr3t"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken"), []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://admin:`+secret+`@k:port'}}]
users: [{name: u, user: {token: `+secret+`}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	write := func(name, remediation string) string {
		file := filepath.Join(dir, name+".yml")
		require.NoError(t, os.WriteFile(file, []byte("remediation:\n  runbooks_dir: runbooks\n"+remediation), 0o600))
		return file
	}
	tests := []struct {
		name, remediation string
		code              int
		stdout, stderr    string
	}{
		{
			"a missing kubeconfig_file in dry-run", "  kubeconfig_file: missing\n", 1, "",
			fmt.Sprintf("%s: remediation: kubeconfig_file: kubeconfig %q: no such file or directory\n", filepath.Join(dir, "0.yml"), filepath.Join(dir, "missing")),
		},
		{"a broken kubeconfig_file", "  dry_run: false\n  kubeconfig_file: broken\n", 1, "", `host must be a URL or a host:port pair: "https://xxxxx@k:port"`},
		{
			"no kubeconfig_file while kubernetes steps execute", "  dry_run: false\n", 0, "SUCCESS",
			": WARNING: remediation: the kubernetes steps of runbook restart-checkout will fail, audited, when they run: remediation.kubeconfig_file is not set and responder is not in a cluster",
		},
		{"no kubeconfig_file in dry-run", "", 0, "SUCCESS", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(fmt.Sprint(i), tt.remediation)
			var stdout, stderr bytes.Buffer
			code := run([]string{"check-config", "--config.file=" + file}, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
			require.Contains(t, stdout.String(), tt.stdout)
			require.Contains(t, stderr.String(), tt.stderr)
			if tt.stderr == "" {
				require.Empty(t, stderr.String())
			}
			require.NotContains(t, stdout.String()+stderr.String(), secret)
		})
	}
}

// check-config builds the context sources as serve does: a
// context.kubernetes.kubeconfig that cannot be loaded is a problem (serve
// would not start); none outside a cluster is a warning (valid in a pod).
// Before, check-config said SUCCESS for a file serve refused.
func TestCheckConfig_ContextKubernetes(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	for _, tt := range []struct {
		name, kubernetes string
		code             int
		stderr           string
	}{
		{"a missing kubeconfig", "{kubeconfig: missing}", 1, fmt.Sprintf("%s: context: kubernetes: kubeconfig %q: no such file or directory\n",
			filepath.Join(dir, "a missing kubeconfig.yml"), filepath.Join(dir, "missing"))},
		{"no kubeconfig outside a cluster", "{}", 0, ": WARNING: context: kubernetes: kubeconfig is not set and responder is not in a cluster"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, tt.name+".yml")
			require.NoError(t, os.WriteFile(file, []byte("context:\n  kubernetes: "+tt.kubernetes+"\n"), 0o600))
			var stdout, stderr bytes.Buffer
			code := run([]string{"check-config", "--config.file=" + file}, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
			require.Contains(t, stderr.String(), tt.stderr)
		})
	}
}

// The remediation and context problems show in one run.
func TestCheckConfig_AllClientProblems(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "r.yml")
	require.NoError(t, os.WriteFile(file, []byte("remediation:\n  kubeconfig_file: missing-a\ncontext:\n  kubernetes: {kubeconfig: missing-b}\n"), 0o600))
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, run([]string{"check-config", "--config.file=" + file}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "remediation: kubeconfig_file: kubeconfig "+strconv.Quote(filepath.Join(dir, "missing-a")))
	require.Contains(t, stderr.String(), "context: kubernetes: kubeconfig "+strconv.Quote(filepath.Join(dir, "missing-b")))
}
