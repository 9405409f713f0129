// Package helm_test renders the Helm chart in deploy/helm/responder with the
// real helm binary and checks the objects it produces: the pod's security
// context and probes, the checksum that rolls the pods, the RBAC generated
// only for enabled Kubernetes actions in allow-listed namespaces, the SQLite
// replica guard, the secrets mounted as files, and the rendered config, which
// must pass `responder check-config`; and the PrometheusRule with responder's
// own alerts, which must be docs/responder-alerts.rules.yml watching the job
// the chart's ServiceMonitor produces, and pass promtool; and the values
// schema, which refuses a misspelt key in any of the chart's own sections.
//
// helm is built from the Go module proxy (the version `make helm-lint` uses)
// into bin/, outside go.mod, or taken from RESPONDER_TEST_HELM. promtool
// comes from RESPONDER_TEST_PROMTOOL or PATH (internal/testenv.Binary).
package helm_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/testenv"
)

// The environment variables that override the helm and promtool binaries.
const (
	HelmEnv     = "RESPONDER_TEST_HELM"
	PromtoolEnv = "RESPONDER_TEST_PROMTOOL"
)

const (
	repoRoot  = "../.."
	chartDir  = "responder"
	namespace = "monitoring"
)

var tmpDir string // removed by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "responder-helm-test")
	if err != nil {
		panic(err)
	}
	tmpDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns the helm binary: RESPONDER_TEST_HELM, or
// bin/helm-$(HELM_VERSION)/helm as the Makefile builds it, built here with
// `go install` when it is missing.
func helmBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: renders the chart with a helm binary built from the module proxy, and -short is set")
	}
	helmOnce.Do(func() {
		if p := os.Getenv(HelmEnv); p != "" {
			helmPath = p
			return
		}
		mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
		if err != nil {
			helmErr = err
			return
		}
		m := regexp.MustCompile(`(?m)^HELM_VERSION\s*\?=\s*(\S+)`).FindSubmatch(mk)
		if m == nil {
			helmErr = errors.New("no HELM_VERSION in the Makefile")
			return
		}
		version := string(m[1])
		bin, err := filepath.Abs(filepath.Join(repoRoot, "bin", "helm-"+version))
		if err != nil {
			helmErr = err
			return
		}
		helmPath = filepath.Join(bin, "helm")
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		// The same command as the Makefile's; the Go build cache makes a
		// rebuild cheap.
		cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+version) //nolint:gosec,noctx // G204: a pinned module version.
		cmd.Env = append(os.Environ(), "GOBIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			helmErr = errors.New("go install helm: " + err.Error() + ": " + string(out))
		}
	})
	require.NoError(t, helmErr)
	return helmPath
}

var (
	responderOnce sync.Once
	responderPath string
	responderErr  error
)

// responderBinary builds cmd/responder once per test run.
func responderBinary(t *testing.T) string {
	t.Helper()
	responderOnce.Do(func() {
		responderPath = filepath.Join(tmpDir, "responder")
		cmd := exec.Command("go", "build", "-o", responderPath, "./cmd/responder") //nolint:noctx,gosec // our own module into a temp dir, bounded by the test timeout.
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			responderErr = errors.New("go build ./cmd/responder: " + err.Error() + ": " + string(out))
		}
	})
	require.NoError(t, responderErr)
	return responderPath
}

// render runs helm template with the ci/ values files and --set flags given
// as args, and returns its output and error.
func render(t *testing.T, args ...string) ([]object, error) {
	t.Helper()
	return renderChart(t, chartDir, args...)
}

// renderChart is render for the chart in dir.
func renderChart(t *testing.T, dir string, args ...string) ([]object, error) {
	t.Helper()
	helm := helmBinary(t)
	full := append([]string{"template", "responder", dir, "--namespace", namespace}, args...)
	cmd := exec.CommandContext(t.Context(), helm, full...) //nolint:gosec // G204: the test's own helm and arguments.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(strings.TrimSpace(stderr.String()))
	}
	return parse(t, stdout.String()), nil
}

// mustRender is render that fails the test on an error.
func mustRender(t *testing.T, args ...string) []object {
	t.Helper()
	objs, err := render(t, args...)
	require.NoError(t, err)
	return objs
}

// values turns ci/ file names into -f flags.
func values(files ...string) []string {
	var args []string
	for _, f := range files {
		args = append(args, "-f", filepath.Join(chartDir, "ci", f))
	}
	return args
}

// object is one rendered manifest: its header, and the whole of it decoded
// again into into, by kind.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	raw string
}

func parse(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	for doc := range strings.SplitSeq(out, "\n---\n") {
		var o object
		require.NoError(t, yaml.Unmarshal([]byte(doc), &o), doc)
		if o.Kind == "" {
			continue
		}
		o.raw = doc
		objs = append(objs, o)
	}
	return objs
}

func (o object) decode(t *testing.T, into any) {
	t.Helper()
	require.NoError(t, yaml.Unmarshal([]byte(o.raw), into), o.raw)
}

// find returns the objects of a kind.
func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the one object of a kind.
func only(t *testing.T, objs []object, kind string) object {
	t.Helper()
	found := find(objs, kind)
	require.Len(t, found, 1, "objects of kind %s", kind)
	return found[0]
}

type deployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Metadata struct {
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				ServiceAccountName           string          `yaml:"serviceAccountName"`
				AutomountServiceAccountToken *bool           `yaml:"automountServiceAccountToken"`
				SecurityContext              securityContext `yaml:"securityContext"`
				Containers                   []container     `yaml:"containers"`
				Volumes                      []volume        `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool `yaml:"privileged"`
	FSGroup                  *int  `yaml:"fsGroup"`
	SeccompProfile           struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
	Capabilities struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe   probe           `yaml:"livenessProbe"`
	ReadinessProbe  probe           `yaml:"readinessProbe"`
	StartupProbe    probe           `yaml:"startupProbe"`
	SecurityContext securityContext `yaml:"securityContext"`
	Resources       map[string]any  `yaml:"resources"`
	VolumeMounts    []volumeMount   `yaml:"volumeMounts"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	EmptyDir map[string]any `yaml:"emptyDir"`
}

type configMap struct {
	Data map[string]string `yaml:"data"`
}

type secret struct {
	Data map[string]string `yaml:"data"`
}

type rule struct {
	APIGroups []string `yaml:"apiGroups"`
	Resources []string `yaml:"resources"`
	Verbs     []string `yaml:"verbs"`
}

type role struct {
	Rules []rule `yaml:"rules"`
}

type roleBinding struct {
	RoleRef struct {
		Kind string `yaml:"kind"`
		Name string `yaml:"name"`
	} `yaml:"roleRef"`
	Subjects []struct {
		Kind      string `yaml:"kind"`
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"subjects"`
}

func theDeployment(t *testing.T, objs []object) deployment {
	t.Helper()
	var d deployment
	only(t, objs, "Deployment").decode(t, &d)
	return d
}

func theContainer(t *testing.T, d deployment) container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	require.Len(t, cs, 1)
	return cs[0]
}

func theVolume(t *testing.T, d deployment, name string) volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return volume{}
}

func configMapData(t *testing.T, objs []object, suffix string) map[string]string {
	t.Helper()
	for _, o := range find(objs, "ConfigMap") {
		if strings.HasSuffix(o.Metadata.Name, suffix) {
			var cm configMap
			o.decode(t, &cm)
			return cm.Data
		}
	}
	t.Fatalf("no ConfigMap named *%s", suffix)
	return nil
}

// checkConfig lays the rendered config out as the pod sees it (config/,
// secrets/ and runbooks/ side by side), with each mounted secret's value
// taken from the rendered Secret or made up for an existing one, and runs
// `responder check-config` on it.
func checkConfig(t *testing.T, objs []object) {
	t.Helper()
	bin := responderBinary(t)
	dir := t.TempDir()
	for _, sub := range []string{"config", "secrets", "runbooks"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, sub), 0o700))
	}
	cfg := filepath.Join(dir, "config", "config.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(configMapData(t, objs, "-config")["config.yml"]), 0o600))
	for name, text := range configMapData(t, objs, "-runbooks") {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "runbooks", name), []byte(text), 0o600))
	}
	var data map[string]string
	if s := find(objs, "Secret"); len(s) == 1 {
		var sec secret
		s[0].decode(t, &sec)
		data = sec.Data
	}
	if v := theVolume(t, theDeployment(t, objs), "secrets"); v.Secret != nil {
		for _, it := range v.Secret.Items {
			value := []byte("made-up-" + it.Key)
			if enc, ok := data[it.Key]; ok {
				var err error
				value, err = base64.StdEncoding.DecodeString(enc)
				require.NoError(t, err)
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets", it.Path), value, 0o600))
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, "check-config", "--config.file="+cfg) //nolint:gosec // G204: our own binary.
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "responder check-config:\n%s\nconfig.yml:\n%s", out, configMapData(t, objs, "-config")["config.yml"])
}

// rulesByNamespace returns the RBAC rules granted per namespace, checking
// that every Role is bound to the chart's ServiceAccount only.
func rulesByNamespace(t *testing.T, objs []object) map[string][]rule {
	t.Helper()
	require.Empty(t, find(objs, "ClusterRole"))
	require.Empty(t, find(objs, "ClusterRoleBinding"))
	out := map[string][]rule{}
	for _, o := range find(objs, "Role") {
		var r role
		o.decode(t, &r)
		out[o.Metadata.Namespace] = r.Rules
	}
	bound := map[string]bool{}
	for _, o := range find(objs, "RoleBinding") {
		var rb roleBinding
		o.decode(t, &rb)
		require.Equal(t, "Role", rb.RoleRef.Kind)
		require.Len(t, rb.Subjects, 1)
		require.Equal(t, "ServiceAccount", rb.Subjects[0].Kind)
		require.Equal(t, "responder", rb.Subjects[0].Name)
		require.Equal(t, namespace, rb.Subjects[0].Namespace)
		bound[o.Metadata.Namespace] = true
	}
	require.Len(t, bound, len(out), "one RoleBinding per Role")
	return out
}

// grants flattens rules into "group/resource:verb" strings, sorted.
func grants(rules []rule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+":"+v)
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func TestChart_defaults(t *testing.T) {
	t.Parallel()
	objs := mustRender(t)

	d := theDeployment(t, objs)
	require.Equal(t, 1, d.Spec.Replicas)
	require.Equal(t, "Recreate", d.Spec.Strategy.Type, "SQLite on a ReadWriteOnce volume")

	pod := d.Spec.Template.Spec
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.NotZero(t, *pod.SecurityContext.RunAsUser)
	require.NotNil(t, pod.SecurityContext.FSGroup)
	require.Equal(t, "RuntimeDefault", pod.SecurityContext.SeccompProfile.Type)
	require.False(t, *pod.AutomountServiceAccountToken, "no Kubernetes permission, no token")

	c := theContainer(t, d)
	sc := c.SecurityContext
	require.True(t, *sc.RunAsNonRoot)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.False(t, *sc.Privileged)
	require.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)
	require.Empty(t, sc.Capabilities.Add)
	require.Equal(t, "RuntimeDefault", sc.SeccompProfile.Type)

	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port)
	require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port)
	require.Len(t, c.Ports, 1)
	require.Equal(t, 9096, c.Ports[0].ContainerPort)
	require.Equal(t, "http", c.Ports[0].Name)
	require.Contains(t, c.Resources, "requests")
	require.Contains(t, c.Resources, "limits")
	require.Equal(t, []string{"/usr/local/bin/responder", "serve"}, c.Command)
	require.Equal(t, []string{
		"--config.file=/etc/responder/config/config.yml",
		"--web.listen-address=:9096",
		"--log.level=info",
		"--log.format=logfmt",
	}, c.Args)

	// Writable: the data volume and /tmp, nothing else.
	mounts := map[string]volumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if m.MountPath != "/var/lib/responder" && m.MountPath != "/tmp" {
			require.True(t, m.ReadOnly, "%s is read-only", m.MountPath)
		}
	}
	require.Equal(t, "data", mounts["/var/lib/responder"].Name)
	require.Equal(t, "tmp", mounts["/tmp"].Name)
	require.NotNil(t, theVolume(t, d, "tmp").EmptyDir)
	require.Equal(t, "responder-data", theVolume(t, d, "data").PersistentVolumeClaim.ClaimName)
	require.Len(t, find(objs, "PersistentVolumeClaim"), 1)

	// The generated webhook token, mounted as a file.
	v := theVolume(t, d, "secrets")
	require.NotNil(t, v.Secret)
	require.Equal(t, "responder-secrets", v.Secret.SecretName)
	require.Len(t, v.Secret.Items, 1)
	require.Equal(t, "webhook-token", v.Secret.Items[0].Path)
	require.Contains(t, configMapData(t, objs, "-config")["config.yml"], "credentials_file: ../secrets/webhook-token")

	var svc struct {
		Spec struct {
			Ports []struct {
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	only(t, objs, "Service").decode(t, &svc)
	require.Equal(t, 9096, svc.Spec.Ports[0].Port)
	require.Equal(t, "http", svc.Spec.Ports[0].TargetPort)

	require.Empty(t, find(objs, "Role"))
	require.Empty(t, find(objs, "RoleBinding"))
	require.Empty(t, find(objs, "PodDisruptionBudget"), "no PDB for a single replica")
	require.Empty(t, find(objs, "ServiceMonitor"))
	require.Empty(t, find(objs, "PrometheusRule"))
	require.Empty(t, find(objs, "NetworkPolicy"))
	require.Len(t, find(objs, "ServiceAccount"), 1)

	checkConfig(t, objs)
}

// TestChart_ciValues renders every values file `make helm-lint` uses and
// checks the config each one renders.
func TestChart_ciValues(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			checkConfig(t, mustRender(t, values(filepath.Base(f))...))
		})
	}
}

func TestChart_checksumRollsPods(t *testing.T) {
	t.Parallel()
	checksum := func(args ...string) string {
		d := theDeployment(t, mustRender(t, append([]string{"--set", "secrets.webhookToken=fixed"}, args...)...))
		sum := d.Spec.Template.Metadata.Annotations["checksum/config"]
		require.Regexp(t, `^[0-9a-f]{64}$`, sum)
		return sum
	}
	base := checksum()
	require.Equal(t, base, checksum(), "same values, same checksum")
	require.Equal(t, base, checksum("--set", "resources.limits.memory=512Mi"), "not a config change")
	require.NotEqual(t, base, checksum("--set", "config.route.group_by={alertname}"), "config change")
	require.NotEqual(t, base, checksum("--set", "runbooks.noop.name=noop"), "runbook change")
	require.NotEqual(t, base, checksum("--set", "storage.type=postgresql", "--set", "storage.postgresql.dsn=postgres://r@db/r"), "storage change")
}

func TestChart_sqliteReplicaGuard(t *testing.T) {
	t.Parallel()
	_, err := render(t, "--set", "replicaCount=2")
	require.Error(t, err)
	require.Contains(t, err.Error(), "replicaCount=2 needs storage.type=postgresql")

	objs := mustRender(t, values("postgres-values.yaml")...)
	d := theDeployment(t, objs)
	require.Equal(t, 3, d.Spec.Replicas)
	require.Equal(t, "RollingUpdate", d.Spec.Strategy.Type)
	require.Empty(t, find(objs, "PersistentVolumeClaim"))
	require.NotNil(t, theVolume(t, d, "data").EmptyDir)
	var pdb struct {
		Spec struct {
			MinAvailable int `yaml:"minAvailable"`
		} `yaml:"spec"`
	}
	only(t, objs, "PodDisruptionBudget").decode(t, &pdb)
	require.Equal(t, 1, pdb.Spec.MinAvailable)
}

func TestChart_postgres(t *testing.T) {
	t.Parallel()
	objs := mustRender(t, values("postgres-values.yaml")...)
	cfg := configMapData(t, objs, "-config")["config.yml"]
	require.Contains(t, cfg, "dsn: postgres://responder@postgres.db.svc:5432/responder?sslmode=require")
	require.NotContains(t, cfg, "ci-postgres-password")

	// The password reaches the driver as PGPASSWORD, from the Secret.
	c := theContainer(t, theDeployment(t, objs))
	require.Len(t, c.Env, 1)
	require.Equal(t, "PGPASSWORD", c.Env[0].Name)
	require.Equal(t, "responder-secrets", c.Env[0].ValueFrom.SecretKeyRef.Name)
	require.Equal(t, "postgres-password", c.Env[0].ValueFrom.SecretKeyRef.Key)

	for _, bad := range []struct{ name, dsn, want string }{
		{"password in the DSN", "postgres://responder:hunter2@db/responder", "must not contain the password"},
		{"no DSN", "", "needs storage.postgresql.dsn"},
		{"not a postgres URL", "mysql://db/responder", "must start with postgres://"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := render(t, "--set", "storage.type=postgresql", "--set", "storage.postgresql.dsn="+bad.dsn)
			require.Error(t, err)
			require.Contains(t, err.Error(), bad.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestChart_secretsMountedAsFiles(t *testing.T) {
	t.Parallel()
	//nolint:gosec // G101: names of Secret keys and files, not credentials.
	for _, tc := range []struct {
		name       string
		file       string
		secretName string
		items      map[string]string // key in the Secret -> file
	}{
		{
			name: "chart-made Secret", file: "postgres-values.yaml", secretName: "responder-secrets",
			items: map[string]string{
				"webhook-token": "webhook-token", "slack-bot-token": "slack-bot-token",
				"slack-signing-secret": "slack-signing-secret", "pagerduty-routing-key": "pagerduty-routing-key",
			},
		},
		{
			name: "existingSecret", file: "existing-secret-values.yaml", secretName: "responder-credentials",
			items: map[string]string{
				"am-webhook-token": "webhook-token", "slack-token": "slack-bot-token",
				"slack-signing": "slack-signing-secret", "pd-key": "pagerduty-routing-key",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := mustRender(t, values(tc.file)...)
			if tc.file == "existing-secret-values.yaml" {
				require.Empty(t, find(objs, "Secret"), "the chart does not make a Secret")
			}
			d := theDeployment(t, objs)
			v := theVolume(t, d, "secrets")
			require.NotNil(t, v.Secret)
			require.Equal(t, tc.secretName, v.Secret.SecretName)
			items := map[string]string{}
			for _, it := range v.Secret.Items {
				items[it.Key] = it.Path
			}
			require.Equal(t, tc.items, items)
			for _, m := range theContainer(t, d).VolumeMounts {
				if m.Name == "secrets" {
					require.Equal(t, "/etc/responder/secrets", m.MountPath)
					require.True(t, m.ReadOnly)
				}
			}
			cfg := configMapData(t, objs, "-config")["config.yml"]
			for _, want := range []string{
				"slack_bot_token_file: ../secrets/slack-bot-token",
				"slack_signing_secret_file: ../secrets/slack-signing-secret",
				"credentials_file: ../secrets/webhook-token",
				"routing_key_file: ../secrets/pagerduty-routing-key",
			} {
				require.Contains(t, cfg, want)
			}
			require.NotContains(t, cfg, "ci-", "no secret value in the ConfigMap")
			checkConfig(t, objs)
		})
	}
}

func TestChart_rbac(t *testing.T) {
	t.Parallel()
	// The verbs internal/remediation's executor and internal/context/kube use.
	deployments := []string{"apps/deployments:patch"}
	scale := []string{"apps/deployments:get", "apps/deployments:update"}
	ctxDeployments := []string{"apps/deployments:get", "apps/deployments:list", "apps/replicasets:list"}
	ctxLogs := []string{"/pods/log:get", "/pods:list", "apps/deployments:get", "apps/deployments:list"}
	sorted := func(parts ...[]string) []string {
		out := slices.Concat(parts...)
		sort.Strings(out)
		return slices.Compact(out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want map[string][]string // namespace -> grants
	}{
		{
			name: "runbook and listed actions, context, in allowed namespaces only",
			args: values("remediation-values.yaml"),
			want: map[string][]string{
				// rollout_restart only where the runbook restarts; scale
				// (listed) in every allowed namespace; context in shop.
				"shop":     sorted(deployments, scale, ctxDeployments, ctxLogs),
				"payments": sorted(scale),
			},
		},
		{
			name: "dry-run grants no write",
			args: append(values("remediation-values.yaml"), "--set", "config.remediation.dry_run=true"),
			want: map[string][]string{"shop": sorted(ctxDeployments, ctxLogs)},
		},
		{
			name: "remediation disabled grants no write",
			args: append(values("remediation-values.yaml"), "--set", "config.remediation.enabled=false", "--set", "rbac.context.podLogs=false"),
			want: map[string][]string{"shop": sorted(ctxDeployments)},
		},
		{
			name: "delete_pod",
			args: append(values("remediation-values.yaml"), "--set", "rbac.remediation.actions={delete_pod}", "--set", "rbac.context.deployments=false", "--set", "rbac.context.podLogs=false"),
			want: map[string][]string{
				"shop":     sorted(deployments, []string{"/pods:delete"}),
				"payments": {"/pods:delete"},
			},
		},
		{
			name: "templated runbook namespace: every allowed namespace",
			args: append(values("remediation-values.yaml"), "--set-literal", "runbooks.restart-checkout.steps[0].kubernetes.namespace={{ .Params.namespace }}", "--set", "rbac.remediation.actions=null", "--set", "rbac.context.deployments=false", "--set", "rbac.context.podLogs=false"),
			want: map[string][]string{"shop": deployments, "payments": deployments},
		},
		{
			name: "defaults: nothing",
			want: map[string][]string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := mustRender(t, tc.args...)
			got := map[string][]string{}
			for ns, rules := range rulesByNamespace(t, objs) {
				got[ns] = grants(rules)
			}
			require.Equal(t, tc.want, got)
			d := theDeployment(t, objs)
			require.Equal(t, len(tc.want) > 0, *d.Spec.Template.Spec.AutomountServiceAccountToken, "token only with permissions")
			require.Equal(t, "responder", d.Spec.Template.Spec.ServiceAccountName)
		})
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{
			name: "runbook namespace outside the allow-list",
			args: append(values("remediation-values.yaml"), "--set", "runbooks.restart-checkout.steps[0].kubernetes.namespace=kube-system"),
			want: `uses namespace "kube-system", which is not in config.remediation.allowed_namespaces`,
		},
		{
			name: "actions without an allow-list",
			args: append(values("remediation-values.yaml"), "--set", "config.remediation.allowed_namespaces=null", "--set", "runbooks=null"),
			want: "set config.remediation.allowed_namespaces",
		},
		{
			name: "context without namespaces",
			args: []string{"--set", "rbac.context.podLogs=true"},
			want: "set rbac.context.namespaces",
		},
		{
			name: "unknown action",
			args: append(values("remediation-values.yaml"), "--set", "runbooks.restart-checkout.steps[0].kubernetes.action=exec_pod"),
			want: `unknown Kubernetes action "exec_pod"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestChart_refusesUnstartableConfigs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"Slack without a token", []string{"--set", "config.receivers[0].name=console", "--set", "config.receivers[0].slack_configs[0].channel=#incidents"}, "slack_configs need the Slack bot token"},
		{"PagerDuty without a key", []string{"--set", "config.receivers[0].name=console", "--set", "config.receivers[0].pagerduty_configs[0].severity=critical"}, "has no routing key"},
		{"existingSecret without a webhook token", []string{"--set", "secrets.existingSecret=s", "--set", "secrets.existingSecretKeys.webhookToken="}, "the webhook needs authentication"},
		{"storage DSN in config", []string{"--set", "config.storage.dsn=sqlite://x.db"}, "config.storage.dsn is managed by the chart"},
		{"unknown storage type (schema)", []string{"--set", "storage.type=mysql"}, "/storage/type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestChart_optionalObjects(t *testing.T) {
	t.Parallel()
	objs := mustRender(t, values("sqlite-values.yaml")...)
	var sm struct {
		Spec struct {
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	only(t, objs, "ServiceMonitor").decode(t, &sm)
	require.Equal(t, "http", sm.Spec.Endpoints[0].Port)
	require.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)

	var np struct {
		Spec struct {
			PolicyTypes []string `yaml:"policyTypes"`
			Ingress     []struct {
				From []map[string]any `yaml:"from"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	only(t, objs, "NetworkPolicy").decode(t, &np)
	require.Equal(t, []string{"Ingress"}, np.Spec.PolicyTypes)
	require.Len(t, np.Spec.Ingress[0].From, 1)
}

// The alert rules: responder's own in docs/, the chart's copy (helm cannot
// read outside the chart), and the job selector the chart rewrites.
const (
	alertRulesDoc   = repoRoot + "/docs/responder-alerts.rules.yml"
	alertTestsDoc   = repoRoot + "/docs/responder-alerts.test.yml"
	alertRulesChart = chartDir + "/files/responder-alerts.rules.yml"
	upSelector      = `up{job="responder"}`
)

func TestChart_alertRulesCopy(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(alertRulesDoc)
	require.NoError(t, err)
	chart, err := os.ReadFile(alertRulesChart)
	require.NoError(t, err)
	require.Equal(t, string(doc), string(chart),
		"the chart's copy of the alert rules differs: cp docs/responder-alerts.rules.yml deploy/helm/responder/files/")
}

// promtool runs promtool and fails the test with its output unless it exits 0.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := testenv.Binary(t, PromtoolEnv, "promtool")
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput() //nolint:gosec // G204: the test's own promtool and files.
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestChart_prometheusRule(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(alertRulesDoc)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(doc), upSelector), "docs/responder-alerts.rules.yml: ResponderDown's selector, in its == 0 and absent() branches")

	for _, tc := range []struct {
		name string
		args []string
		// job is the job ResponderDown must watch; "" means the name of the
		// rendered Service, the job the Prometheus Operator gives the
		// targets of a ServiceMonitor without jobLabel.
		job    string
		labels map[string]string
	}{
		{
			name:   "the ServiceMonitor's job",
			args:   values("sqlite-values.yaml"),
			labels: map[string]string{"release": "kube-prometheus-stack"},
		},
		{
			name: "the ServiceMonitor's job, another release name",
			args: append(values("sqlite-values.yaml"), "--set", "fullnameOverride=shop-responder"),
		},
		{
			name: "prometheusRule.job",
			args: append(values("sqlite-values.yaml"), "--set", "prometheusRule.job=kubernetes-pods"),
			job:  "kubernetes-pods",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := mustRender(t, tc.args...)
			var sm struct {
				Spec struct {
					JobLabel string `yaml:"jobLabel"`
				} `yaml:"spec"`
			}
			only(t, objs, "ServiceMonitor").decode(t, &sm)
			require.Empty(t, sm.Spec.JobLabel, "the job is the Service's name")
			job := tc.job
			if job == "" {
				job = only(t, objs, "Service").Metadata.Name
			}

			o := only(t, objs, "PrometheusRule")
			require.Equal(t, "monitoring.coreos.com/v1", o.APIVersion)
			require.Equal(t, namespace, o.Metadata.Namespace)
			var pr struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Groups []any `yaml:"groups"`
				} `yaml:"spec"`
			}
			o.decode(t, &pr)
			for k, v := range tc.labels {
				require.Equal(t, v, pr.Metadata.Labels[k], "label %s", k)
			}
			require.Contains(t, pr.Metadata.Labels, "app.kubernetes.io/instance")

			// The rules of docs/, with ResponderDown on the job.
			var want struct {
				Groups []any `yaml:"groups"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(strings.ReplaceAll(string(doc), upSelector, `up{job="`+job+`"}`)), &want))
			require.Equal(t, want.Groups, pr.Spec.Groups)

			// As the Prometheus Operator hands them to Prometheus.
			rules, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
			require.NoError(t, err)
			dir := t.TempDir()
			file := filepath.Join(dir, "responder-alerts.rules.yml")
			require.NoError(t, os.WriteFile(file, rules, 0o600))
			promtool(t, "check", "rules", file)
			if job == "responder" {
				// The unit tests of docs/ scrape job="responder": run them
				// on the rendered rules.
				tests, err := os.ReadFile(alertTestsDoc)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "responder-alerts.test.yml"), tests, 0o600)) //nolint:gosec // G703: the test's own temp dir.
				promtool(t, "test", "rules", filepath.Join(dir, "responder-alerts.test.yml"))
			}
		})
	}

	t.Run("an unknown key is refused", func(t *testing.T) {
		t.Parallel()
		_, err := render(t, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.additionalLabels.release=kps")
		require.Error(t, err)
		require.Contains(t, err.Error(), "additionalLabels")
	})
}
