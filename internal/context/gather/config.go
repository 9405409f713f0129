package gather

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"text/template/parse"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/responder/responder/internal/incident"
)

// Config is the `context` section: which sources are asked for incident
// context, and how long they may take.
type Config struct {
	// Budget bounds the whole gathering of one incident's context.
	Budget time.Duration `yaml:"budget"`
	// Timeout bounds each source; it must not exceed Budget.
	Timeout time.Duration `yaml:"timeout"`
	// ServiceLabels are the alert labels that name the affected service,
	// tried in order; the first one the incident's labels carry wins.
	ServiceLabels []string `yaml:"service_labels,omitempty"`
	// Kubernetes, when set, connects to a cluster: its Deployment rollouts
	// join the deployments, and logs.kubernetes can sample pod logs.
	Kubernetes *KubernetesConfig `yaml:"kubernetes,omitempty"`
	// Deployments looks up recorded deployments of the affected service.
	Deployments DeploymentsConfig `yaml:"deployments"`
	// PromQL takes snapshots of queries: the current value and a chart.
	PromQL PromQLConfig `yaml:"promql"`
	// Logs samples recent error logs.
	Logs LogsConfig `yaml:"logs"`
	// PagerDutyUpdate repeats the trigger of a PagerDuty alert that was
	// triggered before the context was gathered, to add the context to its
	// custom_details (same dedup_key: no second incident, one more entry in
	// the alert's log). Off by default: a trigger sent after the context is
	// gathered carries it anyway, and the page is never held back for it.
	PagerDutyUpdate bool `yaml:"pagerduty_update"`
}

// DeploymentsConfig configures the deployments source.
type DeploymentsConfig struct {
	// Lookback is how far back a deployment still counts as recent.
	Lookback time.Duration `yaml:"lookback"`
}

// KubernetesConfig is the cluster connection and how an incident's labels
// select its workloads.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service
	// account.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// NamespaceLabel is the alert label that names the namespace; Namespace
	// is used when the alert has no such label.
	NamespaceLabel string `yaml:"namespace_label"`
	Namespace      string `yaml:"namespace,omitempty"`
	// DeploymentLabel is the alert label that names the Deployment. Without
	// it, the Deployments whose ServiceSelector label equals the service
	// are used.
	DeploymentLabel string `yaml:"deployment_label"`
	ServiceSelector string `yaml:"service_selector"`
}

// PromQLConfig configures the PromQL snapshots, run against
// global.prometheus_url.
type PromQLConfig struct {
	// Queries are run for every incident, in order.
	Queries []Query `yaml:"queries,omitempty"`
	// Range is how far back each chart reaches.
	Range time.Duration `yaml:"range"`
	// Step is the chart's resolution.
	Step time.Duration `yaml:"step"`
	// AlertExpression adds a snapshot of each alert's own expression, read
	// from its generatorURL (g0.expr), before the configured queries.
	// Default true.
	AlertExpression *bool `yaml:"alert_expression,omitempty"`
	// HTTPConfig authenticates to global.prometheus_url (Prometheus'
	// http_config: authorization, basic_auth, tls_config, ...).
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// AlertExpressionEnabled reports whether the alert's own expression is
// snapshotted.
func (c PromQLConfig) AlertExpressionEnabled() bool {
	return c.AlertExpression == nil || *c.AlertExpression
}

// Query is one PromQL snapshot.
type Query struct {
	// Name is a short title shown with the result; required and unique.
	Name string `yaml:"name"`
	// Query is a PromQL expression; it is a Go template executed with the
	// alert, so that it can select the alert's own labels.
	Query string `yaml:"query"`
}

// LogsConfig configures the log sources. Each is optional.
type LogsConfig struct {
	// Loki queries Grafana Loki.
	Loki *LokiConfig `yaml:"loki,omitempty"`
	// Elasticsearch queries an Elasticsearch index.
	Elasticsearch *ElasticsearchConfig `yaml:"elasticsearch,omitempty"`
	// Kubernetes samples the logs of the affected workload's pods; it needs
	// context.kubernetes.
	Kubernetes *PodLogsConfig `yaml:"kubernetes,omitempty"`
	// Redact are regular expressions whose matches are replaced in every
	// log line before it is stored or shown, besides the defaults (tokens,
	// passwords, emails) unless RedactDefaults is false.
	Redact         []string `yaml:"redact,omitempty"`
	RedactDefaults *bool    `yaml:"redact_defaults,omitempty"`
	// Lookback is how far back log lines are looked for.
	Lookback time.Duration `yaml:"lookback"`
	// MaxLines is how many lines (after folding near-duplicates) each log
	// source keeps, the newest.
	MaxLines int `yaml:"max_lines"`
}

// RedactDefaultsEnabled reports whether the default redaction patterns
// apply.
func (c LogsConfig) RedactDefaultsEnabled() bool {
	return c.RedactDefaults == nil || *c.RedactDefaults
}

// PodLogsConfig samples pod logs through the Kubernetes API.
type PodLogsConfig struct {
	// Filter is a regular expression; only matching lines are kept.
	Filter string `yaml:"filter"`
	// Container names the container to read; empty reads the pod's only
	// (or default) container.
	Container string `yaml:"container,omitempty"`
	// TailLines is how many lines are read from each pod before filtering.
	TailLines int64 `yaml:"tail_lines"`
	// MaxPods is how many pods are read.
	MaxPods int `yaml:"max_pods"`
}

// LokiConfig is a Loki log source.
type LokiConfig struct {
	// URL is Loki's base URL.
	URL string `yaml:"url"`
	// Query is a LogQL query; a Go template executed with the alert,
	// whose label values are escaped as string literals.
	Query string `yaml:"query"`
	// HTTPConfig authenticates to Loki.
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// ElasticsearchConfig is an Elasticsearch log source.
type ElasticsearchConfig struct {
	// URL is Elasticsearch's base URL.
	URL string `yaml:"url"`
	// Index is the index or index pattern searched.
	Index string `yaml:"index"`
	// Query is a query-string query; a Go template executed with the alert,
	// whose label values are escaped for the query-string syntax.
	Query string `yaml:"query"`
	// MessageField and TimestampField name the document fields holding the
	// line and its time.
	MessageField   string `yaml:"message_field"`
	TimestampField string `yaml:"timestamp_field"`
	// HTTPConfig authenticates to Elasticsearch or OpenSearch.
	HTTPConfig *commoncfg.HTTPClientConfig `yaml:"http_config,omitempty"`
}

// DefaultConfig returns the defaults, used for an absent section and for
// every zero duration of a present one.
func DefaultConfig() Config {
	return Config{
		Budget:        10 * time.Second,
		Timeout:       5 * time.Second,
		ServiceLabels: []string{"service", "app", "job"},
		Deployments:   DeploymentsConfig{Lookback: 6 * time.Hour},
		PromQL:        PromQLConfig{Range: time.Hour, Step: time.Minute},
		Logs:          LogsConfig{Lookback: 15 * time.Minute, MaxLines: 10},
	}
}

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig()
	type plain Config
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	c.SetDefaults()
	return c.Validate()
}

// SetDefaults fills every zero duration. It is needed besides the defaults
// set before decoding because a subsection written as `promql:` with no
// value decodes to its zero value.
func (c *Config) SetDefaults() {
	d := DefaultConfig()
	setDuration(&c.Budget, d.Budget)
	setDuration(&c.Timeout, d.Timeout)
	setDuration(&c.Deployments.Lookback, d.Deployments.Lookback)
	setDuration(&c.PromQL.Range, d.PromQL.Range)
	setDuration(&c.PromQL.Step, d.PromQL.Step)
	setDuration(&c.Logs.Lookback, d.Logs.Lookback)
	if c.Logs.MaxLines == 0 {
		c.Logs.MaxLines = d.Logs.MaxLines
	}
	if len(c.ServiceLabels) == 0 {
		c.ServiceLabels = d.ServiceLabels
	}
	if k := c.Kubernetes; k != nil {
		if k.NamespaceLabel == "" {
			k.NamespaceLabel = "namespace"
		}
		if k.DeploymentLabel == "" {
			k.DeploymentLabel = "deployment"
		}
		if k.ServiceSelector == "" {
			k.ServiceSelector = "app.kubernetes.io/name"
		}
	}
	if p := c.Logs.Kubernetes; p != nil {
		if p.Filter == "" {
			p.Filter = DefaultPodLogFilter
		}
		if p.TailLines == 0 {
			p.TailLines = 500
		}
		if p.MaxPods == 0 {
			p.MaxPods = 3
		}
	}
	if e := c.Logs.Elasticsearch; e != nil {
		if e.MessageField == "" {
			e.MessageField = "message"
		}
		if e.TimestampField == "" {
			e.TimestampField = "@timestamp"
		}
	}
}

// DefaultPodLogFilter keeps the lines that look like errors.
const DefaultPodLogFilter = `(?i)\b(error|err|exception|fatal|panic|fail(ed|ure)?)\b`

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate checks the section on its own.
func (c *Config) Validate() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"budget", c.Budget},
		{"timeout", c.Timeout},
		{"deployments: lookback", c.Deployments.Lookback},
		{"promql: range", c.PromQL.Range},
		{"promql: step", c.PromQL.Step},
		{"logs: lookback", c.Logs.Lookback},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.key)
		}
	}
	switch {
	case c.Logs.MaxLines < 0 || c.Logs.MaxLines > MaxLogLines:
		return fmt.Errorf("logs: max_lines must be between 1 and %d", MaxLogLines)
	case c.PromQL.Step > 0 && c.PromQL.Range/c.PromQL.Step > 11000:
		return errors.New("promql: range/step exceeds Prometheus' 11000 points per series")
	case c.Timeout > c.Budget:
		return fmt.Errorf("timeout (%s) must not exceed budget (%s)", c.Timeout, c.Budget)
	case c.PromQL.Step > c.PromQL.Range:
		return fmt.Errorf("promql: step (%s) must not exceed range (%s)", c.PromQL.Step, c.PromQL.Range)
	}
	names := make(map[string]bool, len(c.PromQL.Queries))
	for i, q := range c.PromQL.Queries {
		if err := q.Validate(); err != nil {
			return fmt.Errorf("promql: queries[%d]: %w", i, err)
		}
		if names[q.Name] {
			return fmt.Errorf("promql: queries[%d]: duplicate name %q", i, q.Name)
		}
		names[q.Name] = true
	}
	if l := c.Logs.Loki; l != nil {
		if err := checkURL(l.URL); err != nil {
			return fmt.Errorf("logs: loki: url: %w", err)
		}
		if err := checkQuery(l.Query, incident.LogQL); err != nil {
			return fmt.Errorf("logs: loki: %w", err)
		}
	}
	if e := c.Logs.Elasticsearch; e != nil {
		if err := checkURL(e.URL); err != nil {
			return fmt.Errorf("logs: elasticsearch: url: %w", err)
		}
		if e.Index == "" {
			return errors.New("logs: elasticsearch: index is required")
		}
		// Its values are escaped for query_string wherever they land.
		if err := checkQuery(e.Query, -1); err != nil {
			return fmt.Errorf("logs: elasticsearch: %w", err)
		}
	}
	if p := c.Logs.Kubernetes; p != nil {
		if c.Kubernetes == nil {
			return errors.New("logs: kubernetes: needs context.kubernetes (the cluster connection)")
		}
		if _, err := regexp.Compile(p.Filter); err != nil {
			return fmt.Errorf("logs: kubernetes: filter: %w", err)
		}
		if p.TailLines < 0 || p.MaxPods < 0 {
			return errors.New("logs: kubernetes: tail_lines and max_pods must not be negative")
		}
	}
	for i, l := range c.ServiceLabels {
		if l == "" {
			return fmt.Errorf("service_labels[%d]: must not be empty", i)
		}
	}
	for _, h := range []struct {
		name string
		cfg  *commoncfg.HTTPClientConfig
	}{{"promql", c.PromQL.HTTPConfig}, {"logs: loki", lokiHTTP(c.Logs.Loki)}, {"logs: elasticsearch", esHTTP(c.Logs.Elasticsearch)}} {
		if h.cfg == nil {
			continue
		}
		if err := h.cfg.Validate(); err != nil {
			return fmt.Errorf("%s: http_config: %w", h.name, err)
		}
	}
	for i, r := range c.Logs.Redact {
		if _, err := regexp.Compile(r); err != nil {
			return fmt.Errorf("logs: redact[%d]: %w", i, err)
		}
	}
	return nil
}

// Validate checks the query.
func (q *Query) Validate() error {
	if q.Name == "" {
		return errors.New("name is required")
	}
	return checkQuery(q.Query, incident.PromQL)
}

// checkQuery parses a query template; for PromQL and LogQL, it also checks
// that what it prints lands inside string literals (a dialect below 0:
// none, for Elasticsearch).
func checkQuery(q string, d incident.QueryDialect) error {
	if q == "" {
		return errors.New("query is required")
	}
	t := parse.New("query")
	// The gatherer supplies the template functions; only syntax is checked.
	t.Mode = parse.SkipFuncCheck
	trees := map[string]*parse.Tree{}
	if _, err := t.Parse(q, "", "", trees); err != nil {
		return fmt.Errorf("query: parse template: %w", err)
	}
	if d < 0 {
		return nil
	}
	if len(trees) > 1 {
		return errors.New("query: {{ define }} is not allowed in a query")
	}
	// Its errors start with "query:line:column".
	return incident.CheckQueryTemplate(trees["query"], d)
}

// checkURL requires an absolute http or https URL. Its errors never contain
// the URL, which may carry credentials.
func checkURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("host is required")
	}
	return nil
}

func lokiHTTP(l *LokiConfig) *commoncfg.HTTPClientConfig {
	if l == nil {
		return nil
	}
	return l.HTTPConfig
}

func esHTTP(e *ElasticsearchConfig) *commoncfg.HTTPClientConfig {
	if e == nil {
		return nil
	}
	return e.HTTPConfig
}
