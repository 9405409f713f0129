package helm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// valuesFile writes text as a values file in a temp dir and returns it as a
// -f flag.
func valuesFile(t *testing.T, text string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(f, []byte(text), 0o600))
	return []string{"-f", f}
}

// TestChart_schemaRefusesUnknownKeys proves that a misspelt key in any of
// the chart's own sections fails `helm template` (and so `helm install`)
// with the section and the key, where before it was silently ignored. That
// values.yaml and every ci/ file still pass the schema is TestChart_defaults
// and TestChart_ciValues, which render them.
func TestChart_schemaRefusesUnknownKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values string
		at     string // the JSON pointer helm reports
		key    string
	}{
		{"replicas: 2", "", "replicas"},
		{"image: {tga: v1}", "/image", "tga"},
		{"log: {levl: debug}", "/log", "levl"},
		{"storage: {tpye: postgresql}", "/storage", "tpye"},
		{"storage: {sqlite: {Persistence: {enabled: false}}}", "/storage/sqlite", "Persistence"},
		{"storage: {sqlite: {persistence: {sise: 10Gi}}}", "/storage/sqlite/persistence", "sise"},
		{"storage: {postgresql: {dns: 'postgres://db/responder'}}", "/storage/postgresql", "dns"},
		{"secrets: {slackToken: xoxb-x}", "/secrets", "slackToken"},
		{"secrets: {existingSecretKeys: {webhook: token}}", "/secrets/existingSecretKeys", "webhook"},
		{"serviceAccount: {annotation: {a: b}}", "/serviceAccount", "annotation"},
		{"rbac: {craete: false}", "/rbac", "craete"},
		{"rbac: {remediation: {action: [scale]}}", "/rbac/remediation", "action"},
		{"rbac: {context: {podLog: true}}", "/rbac/context", "podLog"},
		{"service: {prot: 8080}", "/service", "prot"},
		{"podDisruptionBudget: {maxUnavailable: 1}", "/podDisruptionBudget", "maxUnavailable"},
		{"serviceMonitor: {intervall: 1m}", "/serviceMonitor", "intervall"},
		{"prometheusRule: {enabeld: true}", "/prometheusRule", "enabeld"},
		{"networkPolicy: {ingress: []}", "/networkPolicy", "ingress"},
		{"networkPolicy: {egress: {rule: []}}", "/networkPolicy/egress", "rule"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, valuesFile(t, tc.values)...)
			require.Error(t, err)
			require.Contains(t, err.Error(), "at '"+tc.at+"': additional properties '"+tc.key+"' not allowed")
		})
	}

	t.Run("free-form maps take any key", func(t *testing.T) {
		t.Parallel()
		objs := mustRender(t, valuesFile(t, `
podAnnotations: {example.com/team: sre}
podLabels: {team: sre}
podSecurityContext: {supplementalGroups: [1000]}
securityContext: {procMount: Default}
resources: {limits: {cpu: "1", ephemeral-storage: 1Gi}}
readinessProbe: {successThreshold: 1}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: []}}
extraEnv: [{name: TZ, value: UTC}]
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: role}}
service: {annotations: {example.com/scrape: "true"}}
storage: {sqlite: {persistence: {annotations: {example.com/backup: daily}}}}
serviceMonitor: {enabled: true, labels: {release: kps}}
prometheusRule: {enabled: true, labels: {release: kps}}
global: {imageRegistry: registry.example}
config: {storage: {retention: 90d}}
`)...)
		var d struct {
			Spec struct {
				Template struct {
					Metadata struct {
						Annotations map[string]string `yaml:"annotations"`
					} `yaml:"metadata"`
					Spec struct {
						NodeSelector map[string]string `yaml:"nodeSelector"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		only(t, objs, "Deployment").decode(t, &d)
		require.Equal(t, "sre", d.Spec.Template.Metadata.Annotations["example.com/team"])
		require.Equal(t, map[string]string{"kubernetes.io/os": "linux"}, d.Spec.Template.Spec.NodeSelector)
	})

	// Helm gives a subchart the parent's global: section (an empty one when
	// there is none) and the key of the parent's condition, responder.enabled
	// by convention: a closed top level must take both.
	t.Run("as a subchart", func(t *testing.T) {
		t.Parallel()
		parent := t.TempDir()
		require.NoError(t, os.CopyFS(filepath.Join(parent, "charts", "responder"), os.DirFS(chartDir)))
		require.NoError(t, os.WriteFile(filepath.Join(parent, "Chart.yaml"), []byte(`apiVersion: v2
name: platform
version: 0.1.0
dependencies:
  - name: responder
    version: "*"
    condition: responder.enabled
`), 0o600))
		for _, global := range []string{"", "global: {imageRegistry: registry.example}\n"} {
			objs, err := renderChart(t, parent, valuesFile(t, global+"responder: {enabled: true}")...)
			require.NoError(t, err, "values: %q", global)
			require.Len(t, find(objs, "Deployment"), 1)
		}
		_, err := renderChart(t, parent, valuesFile(t, "responder: {enabled: true, serviceMonitor: {intervall: 1m}}")...)
		require.Error(t, err)
		require.Contains(t, err.Error(), "at '/serviceMonitor': additional properties 'intervall' not allowed")
	})
}

// TestChart_schemaOpenObjects lists the objects of values.schema.json that
// take keys the schema does not name: free-form maps (labels, annotations,
// Kubernetes objects passed through) and responder's own config and runbooks,
// which responder checks strictly itself. Every other object must set
// additionalProperties: false, so that a section added later without it
// fails here.
func TestChart_schemaOpenObjects(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(raw, &schema))

	var open []string
	var walk func(path string, node map[string]any)
	walk = func(path string, node map[string]any) {
		typ := node["type"]
		isObject := typ == "object"
		if types, ok := typ.([]any); ok {
			isObject = slices.Contains(types, any("object"))
		}
		if isObject && node["additionalProperties"] != false {
			open = append(open, path)
		}
		props, _ := node["properties"].(map[string]any)
		for name, sub := range props {
			walk(path+"."+name, sub.(map[string]any))
		}
		if sub, ok := node["additionalProperties"].(map[string]any); ok {
			walk(path+".*", sub)
		}
		if sub, ok := node["items"].(map[string]any); ok {
			walk(path+"[]", sub)
		}
	}
	walk("", schema)
	slices.Sort(open)

	require.Equal(t, []string{
		".affinity",
		".config", // responder's config file: check-config and the pod refuse unknown keys
		".global", // Helm's, shared with a parent chart
		".livenessProbe",
		".nodeSelector",
		".podAnnotations",
		".podLabels",
		".podSecurityContext",
		".prometheusRule.labels",
		".readinessProbe",
		".resources",
		".runbooks",           // by runbook name
		".runbooks.*",         // a runbook: responder's strict runbook format
		".runbooks.*.steps[]", // its steps, likewise
		".securityContext",
		".service.annotations",
		".serviceAccount.annotations",
		".serviceMonitor.labels",
		".startupProbe",
		".storage.sqlite.persistence.annotations",
	}, open)
}
