package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/config"
	"github.com/responder/responder/internal/testenv"
)

// kubeSecret is in every kubeconfig of these tests: no error may print it.
const kubeSecret = "kube-s3cr3t"

// kubeconfigText is a valid kubeconfig; its server is never called.
const kubeconfigText = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: ` + kubeSecret + `}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

// brokenKubeconfig cannot be used: its server URL does not parse, and
// client-go's error quotes it, password included.
var brokenKubeconfig = strings.Replace(kubeconfigText, "https://127.0.0.1:1", "https://admin:"+kubeSecret+"@k:port", 1)

// kubeRunbookText restarts a deployment.
const kubeRunbookText = `name: %s
match: ['alertname="%s"']
dry_run: %t
steps:
  - name: restart
    kubernetes: { action: rollout_restart, namespace: shop, deployment: checkout }
`

// writeKubeSetup writes a runbooks directory under dir with the runbooks
// given (name: text), and returns the remediation section that points to
// it, with extra keys.
func writeKubeSetup(t *testing.T, dir string, runbooks map[string]string, extra string) string {
	t.Helper()
	rbDir := filepath.Join(dir, "runbooks")
	require.NoError(t, os.MkdirAll(rbDir, 0o750))
	for name, text := range runbooks {
		require.NoError(t, os.WriteFile(filepath.Join(rbDir, name+".yaml"), []byte(text), 0o600))
	}
	return fmt.Sprintf("remediation:\n  runbooks_dir: %s\n%s", rbDir, extra)
}

// notInCluster makes the in-cluster service account unavailable, as it is
// outside a pod (client-go needs KUBERNETES_SERVICE_HOST).
func notInCluster(t *testing.T) {
	t.Helper()
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
}

func TestCheckRemediation_Kubeconfig(t *testing.T) {
	notInCluster(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(good, []byte(kubeconfigText), 0o600))
	broken := filepath.Join(dir, "broken")
	require.NoError(t, os.WriteFile(broken, []byte(brokenKubeconfig), 0o600))
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("users:\n- user: {token: \""+kubeSecret+"}\n"), 0o600))
	missing := filepath.Join(dir, "missing")
	restart := fmt.Sprintf(kubeRunbookText, "restart", "Slow", false)
	watched := fmt.Sprintf(kubeRunbookText, "watched", "Watched", true)
	noKube := "name: note\nmatch: ['alertname=\"Note\"']\nsteps:\n  - name: wait\n    wait: { duration: 1s }\n"

	tests := []struct {
		name     string
		runbooks map[string]string
		extra    string
		err      string // what the error says, when there is one
		warning  string // what the warning says, when there is one
	}{
		{
			"a missing kubeconfig_file is an error in dry-run",
			map[string]string{"restart": restart},
			"  kubeconfig_file: " + missing + "\n",
			`remediation: kubeconfig_file: kubeconfig "` + missing + `": no such file or directory`, "",
		},
		{"and with remediation disabled", nil, "  enabled: false\n  kubeconfig_file: " + missing + "\n", "no such file or directory", ""},
		{"and executing", map[string]string{"restart": restart}, "  dry_run: false\n  kubeconfig_file: " + missing + "\n", "no such file or directory", ""},
		{
			"a kubeconfig_file that does not parse", nil, "  kubeconfig_file: " + garbage + "\n",
			`remediation: kubeconfig_file: kubeconfig "` + garbage + `": yaml: line 3: found unexpected end of stream`, "",
		},
		{
			"a kubeconfig_file that client-go refuses", nil, "  kubeconfig_file: " + broken + "\n",
			`host must be a URL or a host:port pair: "https://xxxxx@k:port"`, "",
		},
		{"a kubeconfig_file that is a directory", nil, "  kubeconfig_file: " + dir + "\n", "not a regular file", ""},
		{"a valid kubeconfig_file", map[string]string{"restart": restart}, "  dry_run: false\n  kubeconfig_file: " + good + "\n", "", ""},
		{
			"no kubeconfig_file outside a cluster warns when kubernetes steps execute",
			map[string]string{"restart": restart, "watched": watched, "note": noKube},
			"  dry_run: false\n", "",
			"remediation: the kubernetes steps of runbook restart will fail, audited, when they run: remediation.kubeconfig_file is not set and responder is not in a cluster (in-cluster config: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined); set kubeconfig_file, or run responder in the cluster with a service account",
		},
		{
			"every such runbook is named",
			map[string]string{"restart": restart, "again": fmt.Sprintf(kubeRunbookText, "again", "Again", false)},
			"  dry_run: false\n", "",
			"the kubernetes steps of runbooks again, restart will fail",
		},
		{"not in dry-run", map[string]string{"restart": restart}, "", "", ""},
		{"not when remediation is disabled", map[string]string{"restart": restart}, "  enabled: false\n  dry_run: false\n", "", ""},
		{"not when the runbook is in dry-run", map[string]string{"watched": watched}, "  dry_run: false\n", "", ""},
		{"not without kubernetes steps", map[string]string{"note": noKube}, "  dry_run: false\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(writeKubeSetup(t, t.TempDir(), tt.runbooks, tt.extra))
			require.NoError(t, err)
			warnings, err := app.CheckRemediation(cfg)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.NotContains(t, err.Error(), kubeSecret)
				return
			}
			require.NoError(t, err)
			if tt.warning == "" {
				require.Empty(t, warnings)
				return
			}
			require.Len(t, warnings, 1)
			require.Contains(t, warnings[0], tt.warning)
		})
	}
}

// TestCheckRemediation_RelativeKubeconfig loads a kubeconfig_file relative
// to a configuration file named by a relative path: it was made relative
// to the configuration's directory twice (conf/conf/kubeconfig).
func TestCheckRemediation_RelativeKubeconfig(t *testing.T) {
	t.Chdir(t.TempDir())
	require.NoError(t, os.Mkdir("conf", 0o750))
	require.NoError(t, os.WriteFile(filepath.Join("conf", "kubeconfig"), []byte(kubeconfigText), 0o600))
	text := writeKubeSetup(t, "conf", map[string]string{"restart": fmt.Sprintf(kubeRunbookText, "restart", "Slow", false)}, "  dry_run: false\n  kubeconfig_file: kubeconfig\n")
	require.NoError(t, os.WriteFile(filepath.Join("conf", "responder.yml"), []byte(text), 0o600))
	cfg, err := config.LoadFile(filepath.Join("conf", "responder.yml"))
	require.NoError(t, err)
	warnings, err := app.CheckRemediation(cfg)
	require.NoError(t, err)
	require.Empty(t, warnings)
}

// TestApp_Kubeconfig starts responder with remediation's Kubernetes client
// configured in each way: a kubeconfig_file that cannot be used stops the
// start, whatever dry_run says; no client outside a cluster is logged, as
// a warning when kubernetes steps execute.
func TestApp_Kubeconfig(t *testing.T) {
	notInCluster(t)
	restart := fmt.Sprintf(kubeRunbookText, "restart", "Slow", false)
	var dir string
	start := func(t *testing.T, remediation string) (*testenv.LogBuffer, error) {
		t.Helper()
		dir = t.TempDir()
		file := filepath.Join(dir, "responder.yml")
		text := "storage:\n  dsn: sqlite://" + filepath.Join(dir, "r.db") + "\n" + writeKubeSetup(t, dir, map[string]string{"restart": restart}, remediation)
		require.NoError(t, os.WriteFile(file, []byte(text), 0o600))
		var logs testenv.LogBuffer
		ctx, cancel := context.WithCancel(context.Background())
		a, err := app.New(ctx, app.Options{ConfigFile: file, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			cancel()
			return &logs, err
		}
		runApp(t, ctx, cancel, a)
		return &logs, nil
	}

	t.Run("a missing kubeconfig_file stops the start", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing")
		_, err := start(t, "  kubeconfig_file: "+missing+"\n")
		require.ErrorContains(t, err, `remediation: kubeconfig_file: kubeconfig "`+missing+`": no such file or directory`)
		// before storage was opened: an older responder could still use it.
		require.NoFileExists(t, filepath.Join(dir, "r.db"))
	})
	t.Run("and a broken one, without printing its credentials", func(t *testing.T) {
		broken := filepath.Join(t.TempDir(), "kubeconfig")
		require.NoError(t, os.WriteFile(broken, []byte(brokenKubeconfig), 0o600))
		_, err := start(t, "  kubeconfig_file: "+broken+"\n")
		require.ErrorContains(t, err, "remediation: kubeconfig_file: ")
		require.NotContains(t, err.Error(), kubeSecret)
	})
	t.Run("no client while kubernetes steps execute is a warning", func(t *testing.T) {
		logs, err := start(t, "  dry_run: false\n")
		require.NoError(t, err)
		require.Contains(t, logs.String(), `level=WARN msg="no kubernetes client: the kubernetes steps of these runbooks will fail`)
		require.Contains(t, logs.String(), "runbooks=restart")
	})
	t.Run("and only information in dry-run", func(t *testing.T) {
		logs, err := start(t, "")
		require.NoError(t, err)
		require.Contains(t, logs.String(), `level=INFO msg="runbooks have kubernetes steps but no cluster is configured`)
		require.NotContains(t, logs.String(), "level=WARN")
	})
}

// TestApp_ReloadKubeconfig refuses a reload whose kubeconfig_file cannot
// be used, and the configuration in force stays, as for any invalid file.
func TestApp_ReloadKubeconfig(t *testing.T) {
	t.Parallel()
	kdir := t.TempDir()
	kubeconfig := filepath.Join(kdir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(kubeconfigText), 0o600))
	withKube := func(token, file string) string {
		return strings.ReplaceAll(tokenConfig, "first-token", token) + "remediation:\n  runbooks_dir: $DIR/runbooks\n  kubeconfig_file: " + file + "\n"
	}
	a, file := startApp(t, withKube("first-token", kubeconfig))
	dir := filepath.Dir(file)
	base := "http://" + a.Addr()
	payload, err := os.ReadFile("../../testdata/am_v4_firing.json")
	require.NoError(t, err)
	accepted := func(token string) int {
		code, _ := post(t, base+"/webhook/alertmanager", token, string(payload))
		return code
	}
	write := func(text string) {
		require.NoError(t, os.WriteFile(file, []byte(strings.ReplaceAll(text, "$DIR", dir)), 0o600))
	}

	// A new token with a kubeconfig_file that does not exist: refused.
	missing := filepath.Join(kdir, "missing")
	write(withKube("second-token", missing))
	code, body := post(t, base+"/-/reload", "", "")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, `remediation: kubeconfig_file: kubeconfig \"`+missing+`\": no such file or directory`)
	require.Equal(t, http.StatusOK, accepted("first-token"), "the old configuration still runs")
	require.Equal(t, http.StatusUnauthorized, accepted("second-token"))
	require.Equal(t, "0", scrape(t, base, "responder_config_last_reload_successful"))

	// The configuration unchanged, its kubeconfig broken: refused too,
	// without printing the kubeconfig's credentials.
	write(withKube("second-token", kubeconfig))
	require.NoError(t, os.WriteFile(kubeconfig, []byte(brokenKubeconfig), 0o600))
	err = a.Reload()
	require.ErrorContains(t, err, "remediation: kubeconfig_file: ")
	require.NotContains(t, err.Error(), kubeSecret)
	require.Equal(t, http.StatusUnauthorized, accepted("second-token"), "the old configuration still runs")

	// Fixed, it loads.
	require.NoError(t, os.WriteFile(kubeconfig, []byte(kubeconfigText), 0o600))
	require.NoError(t, a.Reload())
	require.Equal(t, http.StatusOK, accepted("second-token"))
	require.Equal(t, "1", scrape(t, base, "responder_config_last_reload_successful"))
}
