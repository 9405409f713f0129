package gather

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"text/template/parse"
	"time"
)

// Config is the `context` section: which sources are asked for incident
// context, and how long they may take.
type Config struct {
	// Budget bounds the whole gathering of one incident's context.
	Budget time.Duration `yaml:"budget"`
	// Timeout bounds each source; it must not exceed Budget.
	Timeout time.Duration `yaml:"timeout"`
	// Deployments looks up recorded deployments of the affected service.
	Deployments DeploymentsConfig `yaml:"deployments"`
	// PromQL takes snapshots of queries: the current value and a chart.
	PromQL PromQLConfig `yaml:"promql"`
	// Logs samples recent error logs.
	Logs LogsConfig `yaml:"logs"`
}

// DeploymentsConfig configures the deployments source.
type DeploymentsConfig struct {
	// Lookback is how far back a deployment still counts as recent.
	Lookback time.Duration `yaml:"lookback"`
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
	// Redact are regular expressions whose matches are replaced in every
	// log line before it is stored or shown.
	Redact []string `yaml:"redact,omitempty"`
}

// LokiConfig is a Loki log source.
type LokiConfig struct {
	// URL is Loki's base URL.
	URL string `yaml:"url"`
	// Query is a LogQL query; a Go template executed with the alert.
	Query string `yaml:"query"`
}

// ElasticsearchConfig is an Elasticsearch log source.
type ElasticsearchConfig struct {
	// URL is Elasticsearch's base URL.
	URL string `yaml:"url"`
	// Index is the index or index pattern searched.
	Index string `yaml:"index"`
	// Query is a query-string query; a Go template executed with the alert.
	Query string `yaml:"query"`
}

// DefaultConfig returns the defaults, used for an absent section and for
// every zero duration of a present one.
func DefaultConfig() Config {
	return Config{
		Budget:      10 * time.Second,
		Timeout:     5 * time.Second,
		Deployments: DeploymentsConfig{Lookback: 6 * time.Hour},
		PromQL:      PromQLConfig{Range: time.Hour, Step: time.Minute},
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
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate checks the section on its own.
func (c *Config) Validate() error {
	switch {
	case c.Budget < 0 || c.Timeout < 0 || c.Deployments.Lookback < 0 || c.PromQL.Range < 0 || c.PromQL.Step < 0:
		return errors.New("durations must not be negative")
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
		if err := checkQuery(l.Query); err != nil {
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
		if err := checkQuery(e.Query); err != nil {
			return fmt.Errorf("logs: elasticsearch: %w", err)
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
	return checkQuery(q.Query)
}

func checkQuery(q string) error {
	if q == "" {
		return errors.New("query is required")
	}
	t := parse.New("query")
	// The gatherer supplies the template functions; only syntax is checked.
	t.Mode = parse.SkipFuncCheck
	if _, err := t.Parse(q, "", "", map[string]*parse.Tree{}); err != nil {
		return fmt.Errorf("query: parse template: %w", err)
	}
	return nil
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
