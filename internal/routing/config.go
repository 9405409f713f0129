package routing

import (
	"errors"
	"fmt"
	"strings"
	"text/template/parse"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/common/model"

	"github.com/responder/responder/internal/incident"
)

// The types in this file appear inside YAML lists (receivers, slack_configs,
// routes, ...). Their UnmarshalYAML only sets defaults and decodes; checking
// is done by Validate, which the owner of the list calls with the element's
// index, so that an error names where it is: "receivers[1]: slack_configs[0]:
// channel is required" rather than just "channel is required".

// Route is a node of the route tree, with Alertmanager's semantics: an alert
// descends into the first child whose matchers all match (and into later
// children too while the matched child has continue set); a child without a
// receiver inherits its parent's.
type Route struct {
	// Receiver is the name of a receiver; required on the root route.
	Receiver string `yaml:"receiver,omitempty"`
	// GroupBy is accepted and checked for compatibility with
	// Alertmanager's route syntax, but has no effect: incidents follow the
	// groups Alertmanager formed (its groupKey), so group in Alertmanager.
	GroupBy []string `yaml:"group_by,omitempty"`
	// Matchers are Alertmanager matchers such as `severity="critical"`; all
	// must match. As in Alertmanager, one line may hold several, separated
	// by commas and optionally in braces: `{severity="critical", team="db"}`.
	// Validate parses them into ParsedMatchers.
	Matchers []string `yaml:"matchers,omitempty"`
	// Routes are the children, tried in order.
	Routes []*Route `yaml:"routes,omitempty"`
	// Continue makes matching go on to the next sibling after this route
	// matched.
	Continue bool `yaml:"continue,omitempty"`
	// ActiveTimeIntervals names the time intervals outside of which this
	// route is muted.
	ActiveTimeIntervals []string `yaml:"active_time_intervals,omitempty"`
	// MuteTimeIntervals names the time intervals during which this route is
	// muted.
	MuteTimeIntervals []string `yaml:"mute_time_intervals,omitempty"`

	// ParsedMatchers holds Matchers parsed by Validate, in the same order;
	// a line with several matchers gives several.
	ParsedMatchers labels.Matchers `yaml:"-"`
}

// UnmarshalYAML implements yaml.Unmarshaler. It decodes only; see Validate.
func (r *Route) UnmarshalYAML(unmarshal func(any) error) error {
	*r = Route{}
	type plain Route
	return unmarshal((*plain)(r))
}

// Validate checks the route and, recursively, its children, and fills
// ParsedMatchers. A child's error is prefixed with its index, e.g.
// "routes[2]: routes[0]: matchers[1]: bad matcher format: x".
func (r *Route) Validate() error {
	ms, err := incident.ParseMatcherLines("matchers", r.Matchers)
	if err != nil {
		return err
	}
	r.ParsedMatchers = ms
	if err := validateGroupBy(r.GroupBy); err != nil {
		return err
	}
	if err := validateNames("active_time_intervals", r.ActiveTimeIntervals); err != nil {
		return err
	}
	if err := validateNames("mute_time_intervals", r.MuteTimeIntervals); err != nil {
		return err
	}
	for i, child := range r.Routes {
		if child == nil {
			return fmt.Errorf("routes[%d]: empty route", i)
		}
		if err := child.Validate(); err != nil {
			return fmt.Errorf("routes[%d]: %w", i, err)
		}
	}
	return nil
}

// Walk calls fn for r and every route below it, depth first, with the route's
// path relative to r ("" for r itself, "routes[0].routes[1]" below it). It
// stops at and returns the first error fn returns.
func (r *Route) Walk(fn func(path string, r *Route) error) error {
	return r.walk("", fn)
}

func (r *Route) walk(path string, fn func(string, *Route) error) error {
	if err := fn(path, r); err != nil {
		return err
	}
	for i, child := range r.Routes {
		if child == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d]", i)
		if path != "" {
			p = path + "." + p
		}
		if err := child.walk(p, fn); err != nil {
			return err
		}
	}
	return nil
}

func validateGroupBy(groupBy []string) error {
	seen := make(map[string]bool, len(groupBy))
	for _, l := range groupBy {
		switch {
		case l == "...":
			if len(groupBy) > 1 {
				return errors.New("group_by: cannot have wildcard \"...\" and other labels at the same time")
			}
		case !model.LegacyValidation.IsValidLabelName(l):
			return fmt.Errorf("group_by: invalid label name %q", l)
		case seen[l]:
			return fmt.Errorf("group_by: duplicated label %q", l)
		}
		seen[l] = true
	}
	return nil
}

func validateNames(field string, names []string) error {
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("%s[%d]: empty time interval name", field, i)
		}
	}
	return nil
}

// Receiver is a named set of notification targets. A receiver without any
// *_configs only writes the console log line, as in Alertmanager it would
// send nowhere.
type Receiver struct {
	// Name is what routes refer to; required and unique.
	Name string `yaml:"name"`
	// SlackConfigs are the Slack channels to post to.
	SlackConfigs []SlackConfig `yaml:"slack_configs,omitempty"`
	// PagerDutyConfigs are the PagerDuty services to page.
	PagerDutyConfigs []PagerDutyConfig `yaml:"pagerduty_configs,omitempty"`
}

// UnmarshalYAML implements yaml.Unmarshaler. It decodes only; see Validate.
func (r *Receiver) UnmarshalYAML(unmarshal func(any) error) error {
	*r = Receiver{}
	type plain Receiver
	return unmarshal((*plain)(r))
}

// Validate checks the receiver and each of its configs.
func (r *Receiver) Validate() error {
	if r.Name == "" {
		return errors.New("name is required")
	}
	for i := range r.SlackConfigs {
		if err := r.SlackConfigs[i].Validate(); err != nil {
			return fmt.Errorf("slack_configs[%d]: %w", i, err)
		}
	}
	for i := range r.PagerDutyConfigs {
		if err := r.PagerDutyConfigs[i].Validate(); err != nil {
			return fmt.Errorf("pagerduty_configs[%d]: %w", i, err)
		}
	}
	return nil
}

// SlackConfig posts an incident's parent message to a channel and its
// context and progress into the message's thread.
type SlackConfig struct {
	// Channel is a channel name ("#incidents") or ID; required.
	Channel string `yaml:"channel"`
	// Title and Text are Go templates overriding the message's title and
	// body; empty means the built-in ones.
	Title string `yaml:"title,omitempty"`
	Text  string `yaml:"text,omitempty"`
	// SendResolved updates the message when the incident resolves; default
	// true.
	SendResolved bool `yaml:"send_resolved"`
}

// DefaultSlackConfig holds the defaults of a SlackConfig.
var DefaultSlackConfig = SlackConfig{SendResolved: true}

// UnmarshalYAML implements yaml.Unmarshaler. It sets defaults and decodes;
// see Validate.
func (c *SlackConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultSlackConfig
	type plain SlackConfig
	return unmarshal((*plain)(c))
}

// Validate checks the config.
func (c *SlackConfig) Validate() error {
	if strings.TrimSpace(c.Channel) == "" {
		return errors.New("channel is required")
	}
	if err := checkTemplate(c.Title); err != nil {
		return fmt.Errorf("title: %w", err)
	}
	if err := checkTemplate(c.Text); err != nil {
		return fmt.Errorf("text: %w", err)
	}
	return nil
}

// PagerDutyConfig pages a PagerDuty service through the Events API v2.
type PagerDutyConfig struct {
	// RoutingKey is the service's integration key; exactly one of
	// RoutingKey and RoutingKeyFile is required.
	RoutingKey     incident.Secret `yaml:"routing_key,omitempty"`
	RoutingKeyFile string          `yaml:"routing_key_file,omitempty"`
	// Severity is critical, error, warning or info, or a Go template that
	// renders to one of them; empty means derived from the alert.
	Severity string `yaml:"severity,omitempty"`
	// SendResolved resolves the PagerDuty incident when the alert group
	// resolves; default true.
	SendResolved bool `yaml:"send_resolved"`
}

// DefaultPagerDutyConfig holds the defaults of a PagerDutyConfig.
var DefaultPagerDutyConfig = PagerDutyConfig{SendResolved: true}

// PagerDutySeverities are the severities the Events API v2 accepts.
var PagerDutySeverities = []string{"critical", "error", "warning", "info"}

// UnmarshalYAML implements yaml.Unmarshaler. It sets defaults and decodes;
// see Validate.
func (c *PagerDutyConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultPagerDutyConfig
	type plain PagerDutyConfig
	return unmarshal((*plain)(c))
}

// Validate checks the config. Its errors never contain the routing key.
func (c *PagerDutyConfig) Validate() error {
	if c.RoutingKey != "" && c.RoutingKeyFile != "" {
		return errors.New("at most one of routing_key and routing_key_file may be configured")
	}
	if c.RoutingKey == "" && c.RoutingKeyFile == "" {
		return errors.New("one of routing_key and routing_key_file is required")
	}
	switch {
	case c.Severity == "":
	case strings.Contains(c.Severity, "{{"):
		if err := checkTemplate(c.Severity); err != nil {
			return fmt.Errorf("severity: %w", err)
		}
	default:
		ok := false
		for _, s := range PagerDutySeverities {
			ok = ok || c.Severity == s
		}
		if !ok {
			return fmt.Errorf("severity: %q is not one of %s", c.Severity, strings.Join(PagerDutySeverities, ", "))
		}
	}
	return nil
}

// TimeInterval is a named list of Alertmanager time intervals, referred to
// by a route's active_time_intervals and mute_time_intervals.
type TimeInterval struct {
	// Name is what routes refer to; required and unique.
	Name string `yaml:"name"`
	// TimeIntervals are Alertmanager's own type, decoded by its own code
	// (times, weekdays, days_of_month, months, years, location).
	TimeIntervals []timeinterval.TimeInterval `yaml:"time_intervals"`
}

// UnmarshalYAML implements yaml.Unmarshaler. It decodes only; see Validate.
func (ti *TimeInterval) UnmarshalYAML(unmarshal func(any) error) error {
	*ti = TimeInterval{}
	type plain TimeInterval
	return unmarshal((*plain)(ti))
}

// Validate checks the time interval.
func (ti *TimeInterval) Validate() error {
	if ti.Name == "" {
		return errors.New("name is required")
	}
	return nil
}

// checkTemplate reports a syntax error in a Go template. Functions are not
// checked: the notifier that executes the template supplies its own.
func checkTemplate(text string) error {
	if text == "" {
		return nil
	}
	t := parse.New("template")
	t.Mode = parse.SkipFuncCheck
	if _, err := t.Parse(text, "", "", map[string]*parse.Tree{}); err != nil {
		return fmt.Errorf("parse template: %w", err)
	}
	return nil
}

// StormConfig is the `storm` section: when more than Threshold new
// incidents hit one Slack channel within Window, the channel is in a storm,
// and its new incidents go into one digest message (and one PagerDuty page)
// instead of a message (and a page) each. The storm ends once no new
// incident has hit the channel for Quiet.
type StormConfig struct {
	// Enabled turns storm mode on; default true.
	Enabled bool `yaml:"enabled"`
	// Threshold is how many new incidents a channel takes within Window
	// before the next one starts a storm; default 10.
	Threshold int `yaml:"threshold,omitempty"`
	// Window is the sliding window new incidents are counted in; default 1m.
	Window time.Duration `yaml:"window,omitempty"`
	// Quiet ends a storm when no new incident has hit its channel for this
	// long; default 5m.
	Quiet time.Duration `yaml:"quiet,omitempty"`
}

// DefaultStormConfig holds the defaults of a StormConfig.
var DefaultStormConfig = StormConfig{Enabled: true, Threshold: 10, Window: time.Minute, Quiet: 5 * time.Minute}

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
func (c *StormConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultStormConfig
	type plain StormConfig
	if err := unmarshal((*plain)(c)); err != nil {
		return err
	}
	return c.Validate()
}

// Validate checks the section.
func (c *StormConfig) Validate() error {
	switch {
	case c.Threshold < 1:
		return errors.New("threshold must be at least 1")
	case c.Window < time.Second:
		return errors.New("window must be at least 1s")
	case c.Quiet < time.Second:
		return errors.New("quiet must be at least 1s")
	}
	return nil
}
