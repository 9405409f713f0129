// Package config loads responder's YAML configuration file. It aggregates
// the components' own Config types, decodes strictly (an unknown key
// anywhere is an error), applies defaults, and cross-checks references
// between sections, such as the receivers and time intervals a route names.
package config

import (
	_ "embed" // The default configuration is embedded.
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/context/gather"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/reconcile"
	"github.com/responder/responder/internal/remediation"
	"github.com/responder/responder/internal/routing"
	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/webhook"
)

// defaultYAML is the configuration used without --config.file.
//
//go:embed default.yml
var defaultYAML string

// ConsoleReceiver is the receiver an absent route sends to. Like every
// receiver without *_configs it only writes the console log line.
const ConsoleReceiver = "console"

// Config is the whole configuration file.
type Config struct {
	Global        GlobalConfig           `yaml:"global,omitempty"`
	Storage       store.Config           `yaml:"storage,omitempty"`
	Webhook       webhook.Config         `yaml:"webhook,omitempty"`
	TimeIntervals []routing.TimeInterval `yaml:"time_intervals,omitempty"`
	Route         *routing.Route         `yaml:"route,omitempty"`
	Receivers     []routing.Receiver     `yaml:"receivers,omitempty"`
	Context       gather.Config          `yaml:"context,omitempty"`
	Remediation   remediation.Config     `yaml:"remediation,omitempty"`
	Storm         routing.StormConfig    `yaml:"storm,omitempty"`
	Reconcile     reconcile.Config       `yaml:"reconcile,omitempty"`

	// file is the path the config was loaded from, "" when it came from text.
	file string
	// original is the text it was loaded from.
	original string
}

// GlobalConfig is the `global` section: endpoints and credentials shared by
// the other sections.
type GlobalConfig struct {
	// ExternalURL is how people reach responder; used in links.
	ExternalURL string `yaml:"external_url,omitempty"`
	// SlackAPIURL is the Slack Web API base URL; it always ends in "/".
	SlackAPIURL string `yaml:"slack_api_url,omitempty"`
	// SlackBotToken is the bot token (xoxb-...); at most one of it and
	// SlackBotTokenFile may be set, and one is needed by slack_configs.
	SlackBotToken     incident.Secret `yaml:"slack_bot_token,omitempty"`
	SlackBotTokenFile string          `yaml:"slack_bot_token_file,omitempty"`
	// SlackSigningSecret verifies requests to /slack/interactions; at most
	// one of it and SlackSigningSecretFile may be set.
	SlackSigningSecret     incident.Secret `yaml:"slack_signing_secret,omitempty"`
	SlackSigningSecretFile string          `yaml:"slack_signing_secret_file,omitempty"`
	// PagerDutyEventsURL is the Events API base URL, without a trailing "/".
	PagerDutyEventsURL string `yaml:"pagerduty_events_url,omitempty"`
	// PrometheusURL is queried for context and remediation checks.
	PrometheusURL string `yaml:"prometheus_url,omitempty"`
	// AlertmanagerURL is where silence steps create silences.
	AlertmanagerURL string `yaml:"alertmanager_url,omitempty"`
}

// The defaults of GlobalConfig.
const (
	DefaultSlackAPIURL        = "https://slack.com/api/"
	DefaultPagerDutyEventsURL = "https://events.pagerduty.com"
)

// UnmarshalYAML implements yaml.Unmarshaler: defaults, decode, validate.
func (g *GlobalConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*g = GlobalConfig{}
	type plain GlobalConfig
	if err := unmarshal((*plain)(g)); err != nil {
		return err
	}
	g.SetDefaults()
	return g.Validate()
}

// SetDefaults fills the empty URLs that have defaults and normalises
// slack_api_url to end in "/" and pagerduty_events_url not to.
func (g *GlobalConfig) SetDefaults() {
	if g.SlackAPIURL == "" {
		g.SlackAPIURL = DefaultSlackAPIURL
	}
	if !strings.HasSuffix(g.SlackAPIURL, "/") {
		g.SlackAPIURL += "/"
	}
	if g.PagerDutyEventsURL == "" {
		g.PagerDutyEventsURL = DefaultPagerDutyEventsURL
	}
	g.PagerDutyEventsURL = strings.TrimRight(g.PagerDutyEventsURL, "/")
}

// Validate checks the section on its own. Its errors contain neither
// secrets nor URLs.
func (g *GlobalConfig) Validate() error {
	urls := []struct{ key, value string }{
		{"external_url", g.ExternalURL},
		{"slack_api_url", g.SlackAPIURL},
		{"pagerduty_events_url", g.PagerDutyEventsURL},
		{"prometheus_url", g.PrometheusURL},
		{"alertmanager_url", g.AlertmanagerURL},
	}
	for _, u := range urls {
		if u.value == "" {
			continue
		}
		if err := checkURL(u.value); err != nil {
			return fmt.Errorf("%s: %w", u.key, err)
		}
	}
	// Alertmanager's slack_api_url is an incoming webhook, whose path is
	// its secret; responder's is the Web API's base, to which it would
	// send chat.postMessage with the bot token.
	if u, _ := url.Parse(g.SlackAPIURL); u != nil && strings.EqualFold(u.Hostname(), "hooks.slack.com") {
		return errors.New("slack_api_url: an incoming webhook (hooks.slack.com) is Alertmanager's kind of Slack URL; responder posts with a bot token to the Web API: leave slack_api_url out (https://slack.com/api/) and set slack_bot_token_file")
	}
	// external_url is copied into every Slack message and PagerDuty event
	// as the base of links people open: credentials in it would be sent to
	// both, and to everyone who reads them.
	if g.ExternalURL != "" {
		if u, _ := url.Parse(g.ExternalURL); u.User != nil {
			return errors.New("external_url: must not contain credentials")
		}
	}
	if g.SlackBotToken != "" && g.SlackBotTokenFile != "" {
		return errors.New("at most one of slack_bot_token and slack_bot_token_file may be configured")
	}
	if g.SlackSigningSecret != "" && g.SlackSigningSecretFile != "" {
		return errors.New("at most one of slack_signing_secret and slack_signing_secret_file may be configured")
	}
	return nil
}

// checkURL requires an absolute http or https URL. Its errors never contain
// the URL, which may carry credentials.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New(withoutURLs(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("invalid URL: scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("invalid URL: host is required")
	}
	return nil
}

// section decodes one part of the file and keeps its error instead of
// aborting the whole decode, so that Load can name the section in the error
// and report every broken section at once.
type section[T any] struct {
	v   T
	set bool
	err error
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *section[T]) UnmarshalYAML(unmarshal func(any) error) error {
	s.set = true
	s.err = unmarshal(&s.v)
	// The decoder hands out its own error list, whose storage it reuses
	// for the next section's errors: keep a copy, or a later section's
	// errors would replace this one's.
	var te *yaml.TypeError
	if errors.As(s.err, &te) {
		s.err = &yaml.TypeError{Errors: slices.Clone(te.Errors)}
	}
	return nil
}

// file mirrors Config's keys; TestFile_keys keeps the two in step.
type file struct {
	Global        section[GlobalConfig]           `yaml:"global"`
	Storage       section[store.Config]           `yaml:"storage"`
	Webhook       section[webhook.Config]         `yaml:"webhook"`
	TimeIntervals section[[]routing.TimeInterval] `yaml:"time_intervals"`
	Route         section[*routing.Route]         `yaml:"route"`
	Receivers     section[[]routing.Receiver]     `yaml:"receivers"`
	Context       section[gather.Config]          `yaml:"context"`
	Remediation   section[remediation.Config]     `yaml:"remediation"`
	Storm         section[routing.StormConfig]    `yaml:"storm"`
	Reconcile     section[reconcile.Config]       `yaml:"reconcile"`
}

// Load parses a configuration from text. Relative paths stay relative and no
// secret file is read; LoadFile does both. The error has one line per
// problem (see errors.Join), and never contains a secret.
func Load(s string) (*Config, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("config is empty")
	}
	if err := oneDocument(s); err != nil {
		return nil, err
	}
	var f file
	var errs []error
	if err := yaml.UnmarshalStrict([]byte(s), &f); err != nil {
		// A syntax error leaves nothing to look at; after type errors at
		// the top level (an unknown section), the sections were decoded
		// and their problems are reported too.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, errors.Join(yamlErrors("", err, nil)...)
		}
		errs = yamlErrors("", err, nil)
	}
	// The hints for Alertmanager's keys depend on where in receivers and
	// route a key is, which the decoder's errors do not say.
	var at places
	if f.Receivers.err != nil || f.Route.err != nil {
		at = keyPlaces(s)
	}
	for _, s := range []struct {
		key string
		err error
	}{
		{"global", f.Global.err},
		{"storage", f.Storage.err},
		{"webhook", f.Webhook.err},
		{"time_intervals", f.TimeIntervals.err},
		{"route", f.Route.err},
		{"receivers", f.Receivers.err},
		{"context", f.Context.err},
		{"remediation", f.Remediation.err},
		{"storm", f.Storm.err},
		{"reconcile", f.Reconcile.err},
	} {
		if s.err != nil {
			errs = append(errs, yamlErrors(s.key, s.err, at)...)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !f.Global.set && !f.Storage.set && !f.Webhook.set && !f.TimeIntervals.set &&
		!f.Route.set && !f.Receivers.set && !f.Context.set && !f.Remediation.set && !f.Storm.set && !f.Reconcile.set {
		return nil, nothingSet(s)
	}
	c := &Config{
		Global:        f.Global.v,
		Storage:       f.Storage.v,
		Webhook:       f.Webhook.v,
		TimeIntervals: f.TimeIntervals.v,
		Route:         f.Route.v,
		Receivers:     f.Receivers.v,
		Context:       f.Context.v,
		Remediation:   f.Remediation.v,
		Storm:         f.Storm.v,
		Reconcile:     f.Reconcile.v,
		original:      s,
	}
	c.setDefaults()
	if errs := c.validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// oneDocument refuses a text of more than one YAML document: the decoder
// reads the first one only, so the settings after a `---` were silently
// left out (and never checked). An empty document after the first, such as
// what follows a final `---`, is allowed.
func oneDocument(s string) error {
	dec := yaml.NewDecoder(strings.NewReader(s))
	for i := 0; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case i == 0 && err != nil:
			return nil // a syntax error of the first document: the strict decode reports it
		case i > 0 && (err != nil || doc != nil):
			return errors.New("config holds more than one YAML document (separated by ---): responder reads one YAML document; merge them into one")
		}
	}
}

// nothingSet is the error for a file that sets no key: it has only
// comments, is a document like `{}`, or has only sections with no value
// (`storage:`), which it names, since such a file would run on defaults
// the operator did not choose (a template whose values came out empty).
func nothingSet(s string) error {
	var top yaml.MapSlice
	if err := yaml.Unmarshal([]byte(s), &top); err != nil || len(top) == 0 {
		return errors.New("config is empty")
	}
	keys := make([]string, 0, len(top))
	for _, item := range top {
		keys = append(keys, fmt.Sprint(item.Key))
	}
	verb := "has"
	if len(keys) > 1 {
		verb = "have"
	}
	return fmt.Errorf("config sets nothing: %s %s no keys (set at least one, or run without --config.file for the embedded default)",
		strings.Join(keys, ", "), verb)
}

// setDefaults fills the sections that were absent or written as `key:` with
// no value: YAML decodes those to their zero value without calling their
// UnmarshalYAML. A present section is never zero, since its UnmarshalYAML
// sets defaults, so an explicit `dry_run: false` survives.
func (c *Config) setDefaults() {
	if isZero(c.Global) {
		c.Global.SetDefaults()
	}
	if isZero(c.Storage) {
		c.Storage.SetDefaults()
	}
	if c.Webhook.MaxBodySize == 0 {
		c.Webhook.MaxBodySize = webhook.DefaultMaxBodySize
	}
	if isZero(c.Context) {
		c.Context = gather.DefaultConfig()
	}
	if isZero(c.Remediation) {
		c.Remediation = remediation.DefaultConfig()
	}
	if isZero(c.Storm) {
		c.Storm = routing.DefaultStormConfig
	}
	if isZero(c.Reconcile) {
		c.Reconcile = reconcile.DefaultConfig()
	}
	if c.Route == nil && len(c.Receivers) == 0 {
		c.Route = &routing.Route{Receiver: ConsoleReceiver}
		c.Receivers = []routing.Receiver{{Name: ConsoleReceiver}}
	}
}

func isZero(v any) bool { return reflect.ValueOf(v).IsZero() }

// validate runs the checks that span elements and sections, naming each
// element by its path.
func (c *Config) validate() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	intervals := map[string]bool{}
	for i := range c.TimeIntervals {
		ti := &c.TimeIntervals[i]
		if err := ti.Validate(); err != nil {
			fail("time_intervals[%d]: %w", i, err)
		} else if intervals[ti.Name] {
			fail("time_intervals[%d]: duplicate time interval name %q", i, ti.Name)
		}
		intervals[ti.Name] = true
	}

	receivers := map[string]bool{}
	hasSlack := false
	for i := range c.Receivers {
		r := &c.Receivers[i]
		// An invalid receiver's name still counts as defined, so that its
		// error is not followed by one for every route using it.
		if err := r.Validate(); err != nil {
			fail("receivers[%d]: %w", i, err)
		} else if receivers[r.Name] {
			fail("receivers[%d]: duplicate receiver name %q", i, r.Name)
		}
		receivers[r.Name] = true
		hasSlack = hasSlack || len(r.SlackConfigs) > 0
	}
	if hasSlack && c.Global.SlackBotToken == "" && c.Global.SlackBotTokenFile == "" {
		fail("global: slack_configs need slack_bot_token or slack_bot_token_file")
	}
	if len(c.Remediation.Approvers) > 0 && c.Global.SlackSigningSecret == "" && c.Global.SlackSigningSecretFile == "" {
		fail("remediation: approvers need global.slack_signing_secret or global.slack_signing_secret_file to verify approvals")
	}

	if c.Route == nil {
		fail("route: route is required when receivers are configured")
		return errs
	}
	root := c.Route
	switch {
	case root.Receiver == "":
		fail("route: root route must have a receiver")
	case len(root.Matchers) > 0:
		fail("route: root route must not have matchers")
	case root.Continue:
		fail("route: root route must not have continue")
	case len(root.ActiveTimeIntervals) > 0 || len(root.MuteTimeIntervals) > 0:
		fail("route: root route must not have active_time_intervals or mute_time_intervals")
	}
	if err := root.Validate(); err != nil {
		fail("route: %w", err)
		return errs
	}
	// Walk stops at the first error its func returns; collect them all.
	_ = root.Walk(func(path string, r *routing.Route) error {
		at := "route"
		if path != "" {
			at += "." + path
		}
		if r.Receiver != "" && !receivers[r.Receiver] {
			fail("%s: undefined receiver %q used in route", at, r.Receiver)
		}
		for _, names := range [][]string{r.ActiveTimeIntervals, r.MuteTimeIntervals} {
			for _, n := range names {
				if !intervals[n] {
					fail("%s: undefined time interval %q used in route", at, n)
				}
			}
		}
		return nil
	})
	return errs
}

// typeInRE and valueRE strip Go type names and (possibly secret) values from
// YAML type errors: "line 3: cannot unmarshal !!str `xoxb-12...` into
// int" becomes "line 3: cannot unmarshal !!str into int".
var (
	typeInRE = regexp.MustCompile(` in type [\w.\[\]/*]+$`)
	valueRE  = regexp.MustCompile(" `[^`]*`")
)

// invalidPortRE matches net/url's error about a port, which quotes what
// follows the host's colon: in http://user:pa/ss@host, part of a password.
var invalidPortRE = regexp.MustCompile(`invalid port ".*" after host`)

// withoutURLs returns the text of err without the URL (which may carry
// credentials) that net/url's errors quote: a section's own decoders, such
// as the proxy_url of an http_config, return url.Parse's error as it is.
func withoutURLs(err error) string {
	msg := err.Error()
	var uerr *url.Error
	if errors.As(err, &uerr) {
		msg = strings.ReplaceAll(msg, uerr.Error(), "invalid URL: "+uerr.Err.Error())
	}
	return invalidPortRE.ReplaceAllString(msg, "invalid port after host")
}

// yamlErrors splits err into one error per problem, each prefixed with key
// (when not empty) and free of values. at says where the unknown keys of
// the section are, for their hints; nil means at the section's top.
func yamlErrors(key string, err error, at places) []error {
	prefix := ""
	if key != "" {
		prefix = key + ": "
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{errors.New(prefix + withoutURLs(err))}
	}
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		e = typeInRE.ReplaceAllString(e, "")
		e = valueRE.ReplaceAllString(e, "")
		if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
			p, ok := at[placeKey{key, e}]
			if !ok {
				p = place{section: key}
			}
			if hint := alertmanagerHint(p, m[1]); hint != "" {
				e += ": " + hint
			} else if hint := didYouMean(key, m[1]); hint != "" {
				e += ": " + hint
			}
		}
		errs = append(errs, fmt.Errorf("%s%s", prefix, e))
	}
	return errs
}

// unknownFieldRE matches the YAML decoder's error for an unknown key.
var unknownFieldRE = regexp.MustCompile(`field (\S+) not found$`)

// alertmanagerOnly explains, by section, keys of Alertmanager's
// configuration that responder does not take, for a user who copies a route
// tree, receivers or a whole alertmanager.yml over. A section is "" for the
// top level, "global", "route" for any route of the tree, "receivers" for
// an entry of receivers, and "receivers.slack_configs" and
// "receivers.pagerduty_configs" for an entry of a receiver's configs (see
// keyPlaces). A key responder takes never has a hint: TestAlertmanagerOnly
// checks that against the sections' types.
var alertmanagerOnly = map[string]map[string]string{
	"global": {
		"resolve_timeout":    "Alertmanager's; responder learns that alerts resolved from the notifications Alertmanager sends",
		"pagerduty_url":      "responder's is pagerduty_events_url (Events API v2, https://events.pagerduty.com)",
		"slack_api_url_file": "responder posts to Slack with a bot token, not an incoming webhook: set slack_bot_token_file",
		"http_config":        "responder has no global http_config; set proxy_url or credentials in the http_config of the context source that needs them",
	},
	"": {
		"mute_time_intervals": "it is Alertmanager's older name for time_intervals, which responder reads",
		"inhibit_rules":       "inhibition is Alertmanager's; keep it in alertmanager.yml (responder gets what Alertmanager did not inhibit)",
		"templates":           "responder's templates are inline, in slack_configs[].title and text",
	},
	"receivers": {
		"webhook_configs":    otherReceiver,
		"email_configs":      otherReceiver,
		"opsgenie_configs":   otherReceiver,
		"victorops_configs":  otherReceiver,
		"pushover_configs":   otherReceiver,
		"wechat_configs":     otherReceiver,
		"telegram_configs":   otherReceiver,
		"sns_configs":        otherReceiver,
		"webex_configs":      otherReceiver,
		"discord_configs":    otherReceiver,
		"msteams_configs":    otherReceiver,
		"msteamsv2_configs":  otherReceiver,
		"jira_configs":       otherReceiver,
		"rocketchat_configs": otherReceiver,
		"mattermost_configs": otherReceiver,
		"incidentio_configs": otherReceiver,
	},
	"receivers.slack_configs": { //nolint:gosec // G101: hints that name the token keys, no credentials.
		"api_url":                slackWebhook,
		"api_url_file":           slackWebhook,
		"app_token":              "responder's Slack token is global: set global.slack_bot_token_file (a bot token, xoxb-...)",
		"app_token_file":         "responder's Slack token is global: set global.slack_bot_token_file (a bot token, xoxb-...)",
		"app_url":                "responder's Slack Web API base is global: global.slack_api_url (https://slack.com/api/ by default)",
		"http_config":            "responder has no http_config for Slack: the bot token is global.slack_bot_token_file, and a proxy comes from the HTTPS_PROXY environment variable",
		"username":               slackIdentity,
		"icon_emoji":             slackIdentity,
		"icon_url":               slackIdentity,
		"color":                  "responder's message is made of blocks, which have no colour: its Status field shows FIRING or RESOLVED",
		"title_link":             slackLinks,
		"pretext":                slackBody,
		"message_text":           slackBody,
		"footer":                 "responder writes the footer itself: the links, the incident number and the time of the last update",
		"fallback":               "responder writes the notification text itself, from the title and the summary annotation",
		"fields":                 slackFields,
		"short_fields":           slackFields,
		"mrkdwn_in":              "text is always Slack mrkdwn, and title plain text",
		"link_names":             "responder does not link @names: mention with Slack's own syntax in text, such as <@U012AB3CD>",
		"callback_id":            slackButtons,
		"actions":                slackButtons,
		"image_url":              slackImages,
		"thumb_url":              slackImages,
		"update_message":         "responder always updates its message in place (chat.update) as the incident changes",
		"post_updates_to_thread": "responder always posts context and progress into its message's thread",
		"timeout":                "responder bounds each Slack call itself and retries a failed one from its work queue (storage.queue)",
	},
	"receivers.pagerduty_configs": {
		"service_key":      pagerDutyV1,
		"service_key_file": pagerDutyV1,
		"url":              "responder's Events API URL is global: set global.pagerduty_events_url (https://events.pagerduty.com by default)",
		"http_config":      "responder has no http_config for PagerDuty: the key is routing_key or routing_key_file, and a proxy comes from the HTTPS_PROXY environment variable",
		"client":           pagerDutyClient,
		"client_url":       pagerDutyClient,
		"description":      "responder writes the summary: the firing count, the alertname, the group's label values and the summary (or description) annotation",
		"details":          "responder fills custom_details: the common labels and annotations, the alerts, and links to the incident and its Slack thread",
		"images":           "responder sends no images to PagerDuty; its charts go into the Slack thread",
		"links":            "responder adds the links itself: the incident, its Slack thread, the runbook_url annotation, the alert's source and Alertmanager",
		"source":           "responder takes it from the first of the labels instance, service, job, host, pod, container, namespace, cluster",
		"component":        "responder takes it from the service label, or job",
		"group":            "responder takes it from the cluster label, or namespace",
		"class":            "responder takes it from the alertname label",
		"timeout":          "responder bounds each PagerDuty call itself and retries a failed one from its work queue (storage.queue)",
	},
	"route": {
		"group_wait":      groupTiming,
		"group_interval":  groupTiming,
		"repeat_interval": groupTiming,
		"match":           `it is Alertmanager's deprecated form of matchers; write matchers: ['name="value"']`,
		"match_re":        `it is Alertmanager's deprecated form of matchers; write matchers: ['name=~"regex"']`,
	},
}

// alertmanagerHint says what to do with a key of Alertmanager's at p, or
// "": the global settings of the receivers responder does not have (smtp_,
// opsgenie_, ...) go by their prefix, and a route's match and match_re
// name the labels they held.
func alertmanagerHint(p place, field string) string {
	if p.ambiguous {
		return ""
	}
	if p.section == "route" && (field == "match" || field == "match_re") && len(p.labels) > 0 {
		return matchersHint(field, p.labels)
	}
	if hint := alertmanagerOnly[p.section][field]; hint != "" {
		return hint
	}
	if p.section == "global" {
		for _, pre := range []string{"smtp_", "opsgenie_", "victorops_", "wechat_", "telegram_", "webex_", "jira_", "rocketchat_"} {
			if strings.HasPrefix(field, pre) {
				return "a setting of Alertmanager's " + strings.TrimSuffix(pre, "_") + " receivers; " + otherReceiver
			}
		}
	}
	return ""
}

// matchersHint is the hint for a route's match or match_re that held the
// labels names: the matchers line to write, with the values left out, as
// every value is left out of errors.
func matchersHint(field string, names []string) string {
	op := "="
	if field == "match_re" {
		op = "=~"
	}
	ms := make([]string, len(names))
	for i, n := range names {
		ms[i] = "'" + n + op + `"..."'`
	}
	return "it is Alertmanager's deprecated form of matchers; write matchers: [" + strings.Join(ms, ", ") + "], with the values of " + field
}

const (
	otherReceiver = "responder sends to Slack and PagerDuty; keep this receiver in alertmanager.yml"
	groupTiming   = "Alertmanager's grouping timing; responder takes each group as Alertmanager sends it, so set it in alertmanager.yml"

	slackWebhook    = "responder posts to Slack with a bot token, not an incoming webhook: set global.slack_bot_token_file (and global.slack_api_url for a proxy)"
	slackIdentity   = "responder posts as its Slack app's bot user, with the app's name and icon: change them in the Slack app"
	slackLinks      = "the title is plain text; responder adds the links under the message itself (source, runbook_url, silence, incident)"
	slackBody       = "responder's message has a title (its header) and a text (its body): put this in text"
	slackFields     = "responder shows its own fields (Status, Severity, Started, Group); put more in text"
	slackButtons    = "responder posts no buttons of yours; its only ones are remediation approvals (remediation.approvers)"
	slackImages     = "responder posts its own charts, of context.promql.queries, into the message's thread"
	pagerDutyV1     = "it is PagerDuty's Events API v1 key; responder sends Events API v2: set routing_key or routing_key_file"
	pagerDutyClient = "responder sets them: client is responder, client_url its incident's page (under global.external_url)"
)

// place is where in a section an unknown key is: the section of
// alertmanagerOnly whose hints apply to it, and for a route's match or
// match_re the label names it held (all valid label names, or none).
// ambiguous marks a key whose error text is that of keys in two places
// (two mappings on one line): it gets no hint rather than a wrong one.
type place struct {
	section   string
	labels    []string
	ambiguous bool
}

// placeKey is a key's top-level section and the decoder's error for it
// ("line 4: field username not found"), which names its line and itself.
type placeKey struct{ section, err string }

// places says where the keys of receivers and route are.
type places map[placeKey]place

func (ps places) add(k placeKey, p place) {
	if old, ok := ps[k]; ok && (old.section != p.section || !slices.Equal(old.labels, p.labels)) {
		p = place{ambiguous: true}
	}
	ps[k] = p
}

// keyPlaces decodes s again, into shapes that keep, for every mapping of
// receivers and route where Alertmanager has keys responder lacks, the
// decoder's errors for its keys: an unknown key's error in the real decode
// is the same text, so it tells which mapping the key is in. The decoder's
// errors themselves only name the top-level section and the line.
func keyPlaces(s string) places {
	var sh struct {
		Route     *routeShape     `yaml:"route"`
		Receivers []receiverShape `yaml:"receivers"`
	}
	// Strict, so that keysOf sees every key; the errors are the shapes'
	// own (they lack most keys) and say nothing.
	_ = yaml.UnmarshalStrict([]byte(s), &sh)
	ps := places{}
	for _, r := range sh.Receivers {
		for _, e := range r.keys {
			ps.add(placeKey{"receivers", e}, place{section: "receivers"})
		}
		for sec, entries := range map[string][]entryShape{
			"receivers.slack_configs":     r.SlackConfigs,
			"receivers.pagerduty_configs": r.PagerDutyConfigs,
		} {
			for _, c := range entries {
				for _, e := range c.keys {
					ps.add(placeKey{"receivers", e}, place{section: sec})
				}
			}
		}
	}
	var walk func(r *routeShape)
	walk = func(r *routeShape) {
		if r == nil {
			return
		}
		for _, e := range r.keys {
			p := place{section: "route"}
			switch m := unknownFieldRE.FindStringSubmatch(e); {
			case m == nil:
			case m[1] == "match":
				p.labels = r.Match
			case m[1] == "match_re":
				p.labels = r.MatchRE
			}
			ps.add(placeKey{"route", e}, p)
		}
		for _, c := range r.Routes {
			walk(c)
		}
	}
	walk(sh.Route)
	return ps
}

// noKeys has no keys: decoding a mapping into it strictly gives an error
// for each of the mapping's keys.
type noKeys struct{}

// keysOf returns the decoder's error for each key of the mapping unmarshal
// decodes, as yamlErrors has it ("line 4: field username not found").
func keysOf(unmarshal func(any) error) []string {
	var te *yaml.TypeError
	if !errors.As(unmarshal(&noKeys{}), &te) {
		return nil
	}
	// Copied out now: the decoder reuses the list's storage.
	keys := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		keys = append(keys, typeInRE.ReplaceAllString(e, ""))
	}
	return keys
}

// shapeKeys decodes a shape's mapping into v, the shape without its
// UnmarshalYAML, and returns keysOf the mapping.
func shapeKeys(unmarshal func(any) error, v any) []string {
	keys := keysOf(unmarshal)
	_ = unmarshal(v) // an error for each key the shape lacks (name, receiver, ...)
	return keys
}

// entryShape is an entry of slack_configs or pagerduty_configs.
type entryShape struct{ keys []string }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *entryShape) UnmarshalYAML(unmarshal func(any) error) error {
	s.keys = keysOf(unmarshal)
	return nil
}

// receiverShape is an entry of receivers.
type receiverShape struct {
	keys             []string
	SlackConfigs     []entryShape `yaml:"slack_configs"`
	PagerDutyConfigs []entryShape `yaml:"pagerduty_configs"`
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *receiverShape) UnmarshalYAML(unmarshal func(any) error) error {
	type plain receiverShape
	s.keys = shapeKeys(unmarshal, (*plain)(s))
	return nil
}

// routeShape is a route of the tree.
type routeShape struct {
	keys    []string
	Match   labelNames    `yaml:"match"`
	MatchRE labelNames    `yaml:"match_re"`
	Routes  []*routeShape `yaml:"routes"`
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *routeShape) UnmarshalYAML(unmarshal func(any) error) error {
	type plain routeShape
	s.keys = shapeKeys(unmarshal, (*plain)(s))
	return nil
}

// labelNames are the keys of a match or match_re mapping, in order, when
// every one is a valid label name; otherwise none.
type labelNames []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *labelNames) UnmarshalYAML(unmarshal func(any) error) error {
	var m yaml.MapSlice
	if unmarshal(&m) != nil {
		return nil
	}
	names := make(labelNames, 0, len(m))
	for _, item := range m {
		n, ok := item.Key.(string)
		if !ok || !model.LegacyValidation.IsValidLabelName(n) {
			return nil
		}
		names = append(names, n)
	}
	*l = names
	return nil
}

// LoadFile reads and parses the configuration file at path, resolves its
// relative paths (the SQLite database, every *_file secret, runbooks_dir,
// kill_switch_file, both kubeconfigs, the files of context's http_configs)
// against the file's directory, and
// reads every *_file secret into its inline field. Every line of the error
// names the file.
func LoadFile(path string) (*Config, error) {
	content, err := os.ReadFile(path) //nolint:gosec // G304: path is the operator's own --config.file.
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	c, err := Load(string(content))
	if err != nil {
		return nil, prefixErrors(path, err)
	}
	c.file = path
	c.resolvePaths(filepath.Dir(path))
	if err := c.readSecrets(); err != nil {
		return nil, prefixErrors(path, err)
	}
	return c, nil
}

// prefixErrors prefixes every error joined in err.
func prefixErrors(prefix string, err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	var errs []error
	for _, e := range j.Unwrap() {
		errs = append(errs, fmt.Errorf("%s: %w", prefix, e))
	}
	return errors.Join(errs...)
}

// resolvePaths makes every relative path in c relative to dir instead.
func (c *Config) resolvePaths(dir string) {
	join := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if driver, path, err := store.ParseDSN(c.Storage.DSN); err == nil && driver == "sqlite" && store.SQLiteFileName(path) {
		join(&path)
		c.Storage.DSN = "sqlite://" + path
	}
	join(&c.Global.SlackBotTokenFile)
	join(&c.Global.SlackSigningSecretFile)
	if a := c.Webhook.Authorization; a != nil {
		join(&a.CredentialsFile)
	}
	if b := c.Webhook.BasicAuth; b != nil {
		join(&b.PasswordFile)
	}
	for i := range c.Receivers {
		for j := range c.Receivers[i].PagerDutyConfigs {
			join(&c.Receivers[i].PagerDutyConfigs[j].RoutingKeyFile)
		}
	}
	join(&c.Remediation.RunbooksDir)
	join(&c.Remediation.KillSwitchFile)
	join(&c.Remediation.KubeconfigFile)
	if k := c.Context.Kubernetes; k != nil {
		join(&k.Kubeconfig)
	}
	// The files an http_config names (credentials_file, tls_config's
	// ca_file, ...), as Prometheus resolves them.
	hcs := []*commoncfg.HTTPClientConfig{c.Context.PromQL.HTTPConfig}
	if l := c.Context.Logs.Loki; l != nil {
		hcs = append(hcs, l.HTTPConfig)
	}
	if e := c.Context.Logs.Elasticsearch; e != nil {
		hcs = append(hcs, e.HTTPConfig)
	}
	for _, hc := range hcs {
		if hc != nil {
			hc.SetDirectory(dir)
		}
	}
}

// maxSecretFile is the largest *_file secret read: tokens and keys are
// far smaller, and a path to the wrong file (a log, /dev/zero) must fail
// the load rather than fill the memory or never end.
const maxSecretFile = 64 << 10

// readSecretFile reads a *_file secret of at most maxSecretFile bytes.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: a *_file path from the operator's own config.
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d KiB, too large for a secret", path, maxSecretFile>>10)
	}
	return b, nil
}

// readSecrets reads every *_file secret into its inline field.
func (c *Config) readSecrets() error {
	var errs []error
	read := func(at, path string, into *incident.Secret) {
		if path == "" {
			return
		}
		b, err := readSecretFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: read secret: %w", at, err))
			return
		}
		// As Prometheus and Alertmanager read their *_file secrets, so
		// that the files they use work here too: "key\n\n" was read as a
		// PagerDuty key ending in a newline, which PagerDuty refuses.
		s := strings.TrimSpace(string(b))
		switch {
		case s == "":
			errs = append(errs, fmt.Errorf("%s: secret file %s is empty", at, path))
			return
		case strings.ContainsAny(s, "\r\n"):
			// No token, key or password here can hold a line break: in
			// a header it fails every request, or matches none.
			errs = append(errs, fmt.Errorf("%s: secret file %s holds more than one line", at, path))
			return
		}
		*into = incident.Secret(s)
	}
	read("global: slack_bot_token_file", c.Global.SlackBotTokenFile, &c.Global.SlackBotToken)
	read("global: slack_signing_secret_file", c.Global.SlackSigningSecretFile, &c.Global.SlackSigningSecret)
	if a := c.Webhook.Authorization; a != nil {
		read("webhook: authorization: credentials_file", a.CredentialsFile, &a.Credentials)
	}
	if b := c.Webhook.BasicAuth; b != nil {
		read("webhook: basic_auth: password_file", b.PasswordFile, &b.Password)
	}
	for i := range c.Receivers {
		for j := range c.Receivers[i].PagerDutyConfigs {
			pd := &c.Receivers[i].PagerDutyConfigs[j]
			read(fmt.Sprintf("receivers[%d]: pagerduty_configs[%d]: routing_key_file", i, j), pd.RoutingKeyFile, &pd.RoutingKey)
		}
	}
	return errors.Join(errs...)
}

// Default returns the embedded default configuration: SQLite under ./data,
// the console receiver only, remediation enabled in dry-run.
func Default() *Config {
	c, err := Load(defaultYAML)
	if err != nil {
		// The embedded text is tested; this is a build that cannot work.
		panic(fmt.Sprintf("invalid embedded default config: %v", err))
	}
	return c
}

// DefaultText returns the text of the embedded default configuration.
func DefaultText() string { return defaultYAML }

// File returns the path the config was loaded from, "" for one loaded from
// text (including Default).
func (c *Config) File() string { return c.file }

// Original returns the text the config was loaded from.
func (c *Config) Original() string { return c.original }

// String returns the config as YAML, with every secret printed as <secret>
// and the passwords in URLs and DSNs replaced. A secret read from a *_file is
// left out, so the text loads again as it is.
func (c *Config) String() string {
	b, err := yaml.Marshal(c.redacted())
	if err != nil {
		return fmt.Sprintf("<error creating config string: %s>", err)
	}
	return string(b)
}

// redacted returns a copy of c fit for printing. It copies everything it
// changes, so c is left alone.
func (c *Config) redacted() *Config {
	r := *c
	r.Storage.DSN = redactURL(r.Storage.DSN)
	g := &r.Global
	for _, u := range []*string{&g.ExternalURL, &g.SlackAPIURL, &g.PagerDutyEventsURL, &g.PrometheusURL, &g.AlertmanagerURL} {
		*u = redactURL(*u)
	}
	if g.SlackBotTokenFile != "" {
		g.SlackBotToken = ""
	}
	if g.SlackSigningSecretFile != "" {
		g.SlackSigningSecret = ""
	}
	if a := r.Webhook.Authorization; a != nil {
		ac := *a
		if ac.CredentialsFile != "" {
			ac.Credentials = ""
		}
		r.Webhook.Authorization = &ac
	}
	if b := r.Webhook.BasicAuth; b != nil {
		bc := *b
		if bc.PasswordFile != "" {
			bc.Password = ""
		}
		r.Webhook.BasicAuth = &bc
	}
	r.Receivers = make([]routing.Receiver, len(c.Receivers))
	for i, rc := range c.Receivers {
		pds := make([]routing.PagerDutyConfig, len(rc.PagerDutyConfigs))
		for j, pd := range rc.PagerDutyConfigs {
			if pd.RoutingKeyFile != "" {
				pd.RoutingKey = ""
			}
			pds[j] = pd
		}
		if rc.PagerDutyConfigs == nil {
			pds = nil
		}
		rc.PagerDutyConfigs = pds
		r.Receivers[i] = rc
	}
	if c.Receivers == nil {
		r.Receivers = nil
	}
	if l := r.Context.Logs.Loki; l != nil {
		lc := *l
		lc.URL = redactURL(lc.URL)
		r.Context.Logs.Loki = &lc
	}
	if e := r.Context.Logs.Elasticsearch; e != nil {
		ec := *e
		ec.URL = redactURL(ec.URL)
		r.Context.Logs.Elasticsearch = &ec
	}
	return &r
}

// redactURL replaces the password of a URL, if it has one, and the value
// of every query parameter whose name says it holds a secret (pgx and
// libpq read a DSN's password from ?password= as well).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.ContainsAny(s, "@?") {
			return "<unparsable URL>"
		}
		return s
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			changed = true
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretParam(k) {
				q[k] = []string{"xxxxx"}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return s
	}
	return u.String()
}

// secretParam reports whether a URL query parameter's name says it holds a
// secret: password and sslpassword (libpq), tokens, keys and secrets.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"password", "passwd", "secret", "token", "apikey", "api_key", "access_key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
