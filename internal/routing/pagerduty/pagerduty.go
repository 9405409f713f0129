// Package pagerduty pages PagerDuty through its Events API v2: a trigger
// event while an incident fires and a resolve event when it resolves, both
// with the dedup key Alertmanager's own integration would send, so that
// users can migrate from Alertmanager's pagerduty_configs without a
// duplicate page.
package pagerduty

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/PagerDuty/go-pagerduty"

	"github.com/responder/responder/internal/incident"
)

// The actions Notify takes.
const (
	ActionTrigger = "trigger"
	ActionResolve = "resolve"
)

// DefaultTimeout bounds one Notify call when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Client identifies responder as the event's sender in PagerDuty's UI.
const Client = "responder"

const (
	// maxSummaryRunes is the Events API's limit on payload.summary.
	maxSummaryRunes = 1024
	// maxEventSize is the Events API's limit on a request body (the
	// constant Alertmanager uses).
	maxEventSize = 512000
	// eventBudget is what a trigger event is shrunk to fit in: half the
	// limit, so that escaping, headers and our own estimate never matter.
	eventBudget = maxEventSize / 2
	// maxDetailAlerts caps the alert list in custom_details before the
	// size budget is even considered: PagerDuty's UI is no place to read
	// hundreds of alerts, the incident in responder is.
	maxDetailAlerts = 20
	// maxErrorBody is how much of an error response is read, and
	// maxErrorText how much of it is kept in an error.
	maxErrorBody = 64 << 10
	maxErrorText = 512
	// maxFieldRunes caps payload.source, component, group and class, as the
	// API caps the summary: they hold label values, of any length.
	maxFieldRunes = maxSummaryRunes
	// maxLinkBytes is the longest href kept in links: a cut URL is a broken
	// one, so a longer link is left out (it is still among the alerts in the
	// custom details, while they fit).
	maxLinkBytes = 8192
	// truncation ends a truncated summary.
	truncation = "…"
)

// sourceLabels are the labels tried, in order, for payload.source.
var sourceLabels = []string{"instance", "service", "job", "host", "pod", "container", "namespace", "cluster"}

// Options are the optional dependencies and knobs of a Notifier.
type Options struct {
	// HTTPClient sends the events; nil means a client with its own
	// transport. Its Timeout, if any, applies on top of Timeout.
	HTTPClient *http.Client
	// ExternalURL is responder's own URL, for links back to the incident.
	ExternalURL string
	// Logger receives debug and warning lines; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one Notify call; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Extra is what the caller adds to a trigger event beyond the incident.
type Extra struct {
	// SlackPermalink links the incident's Slack message, when there is one.
	SlackPermalink string
	// Summary replaces the generated summary (an alert storm, say); it is
	// truncated like the generated one.
	Summary string
	// Details are added to custom_details; on a name clash the notifier's
	// own keys win.
	Details map[string]any
	// Severity is the configured severity (critical, error, warning or
	// info, or an alias Severity knows); it overrides the one derived from
	// the alerts. An unknown value is ignored with a warning rather than
	// sent, because PagerDuty would reject the page.
	Severity string
}

// Notifier sends events to the PagerDuty Events API v2. It is safe for
// concurrent use.
type Notifier struct {
	client      *pagerduty.Client
	urlErr      error
	externalURL string
	logger      *slog.Logger
	timeout     time.Duration
}

// New returns a Notifier that posts to eventsURL, the base URL of the Events
// API (https://events.pagerduty.com, or the EU one); "/v2/enqueue" is
// appended. An invalid eventsURL makes every Notify fail without retry.
func New(eventsURL string, opts Options) *Notifier {
	n := &Notifier{
		externalURL: strings.TrimRight(opts.ExternalURL, "/"),
		logger:      opts.Logger,
		timeout:     opts.Timeout,
	}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	base := strings.TrimSuffix(strings.TrimRight(eventsURL, "/"), "/v2/enqueue")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL itself stays out of the error: it may carry credentials.
		n.urlErr = errors.New("invalid pagerduty events url")
	}
	var hc pagerduty.HTTPClient = opts.HTTPClient
	if opts.HTTPClient == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	n.client = pagerduty.NewClient("", pagerduty.WithV2EventsAPIEndpoint(base))
	n.client.HTTPClient = capturingClient{next: hc}
	return n
}

// DedupKey returns the dedup key of an Alertmanager group: the lowercase hex
// SHA-256 of its group key, exactly what Alertmanager's own PagerDuty
// integration sends (notify.Key.Hash).
func DedupKey(groupKey string) string {
	sum := sha256.Sum256([]byte(groupKey))
	return hex.EncodeToString(sum[:])
}

// Severity maps a severity label value, or a configured severity, to one of
// the Events API's, case-insensitively: critical and page are critical;
// error and high are error; warning, warn and medium are warning; info and
// low are info. ok is false for anything else.
func Severity(v string) (sev string, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "critical", "page":
		return "critical", true
	case "error", "high":
		return "error", true
	case "warning", "warn", "medium":
		return "warning", true
	case "info", "low":
		return "info", true
	}
	return "", false
}

// APIError is a non-2xx answer of the Events API.
type APIError struct {
	StatusCode int
	// Status, Message and Errors are the fields of PagerDuty's error body
	// ({"status":"invalid event","message":...,"errors":[...]}), when it
	// had one; otherwise Message holds the start of the body.
	Status  string
	Message string
	Errors  []string
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pagerduty events api: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	for _, s := range []string{e.Status, e.Message} {
		if s != "" {
			b.WriteString(": ")
			b.WriteString(s)
		}
	}
	if len(e.Errors) > 0 {
		fmt.Fprintf(&b, ": [%s]", strings.Join(e.Errors, "; "))
	}
	return b.String()
}

// Notify sends action ("trigger" or "resolve") for inc with the routing key
// key. retry says whether sending again later may succeed: true for 429,
// 5xx, network errors and timeouts, false for success and for every other
// status. Errors never contain the routing key or the events URL's
// credentials.
func (n *Notifier) Notify(ctx context.Context, key incident.Secret, action string, inc *incident.Incident, extra Extra) (retry bool, err error) {
	switch {
	case n.urlErr != nil:
		return false, fmt.Errorf("send pagerduty %s event: %w", action, n.urlErr)
	case key == "":
		return false, fmt.Errorf("send pagerduty %s event: empty routing key", action)
	case inc == nil:
		return false, fmt.Errorf("send pagerduty %s event: no incident", action)
	}
	logger := n.logger.With("incident_id", inc.ID, "dedup_key", DedupKey(inc.GroupKey), "action", action)

	var ev *pagerduty.V2Event
	switch action {
	case ActionTrigger:
		ev = n.render(ctx, key, inc, extra, logger)
	case ActionResolve:
		// Follow-up events need nothing else, and PagerDuty ignores the
		// rest.
		ev = &pagerduty.V2Event{RoutingKey: key.Value(), Action: ActionResolve, DedupKey: DedupKey(inc.GroupKey)}
	default:
		return false, fmt.Errorf("send pagerduty event: unknown action %q", action)
	}

	retry, err = n.send(ctx, ev, logger)
	if err != nil {
		return retry, scrub(fmt.Errorf("send pagerduty %s event: %w", action, err), key)
	}
	return false, nil
}

// send posts ev and classifies the outcome.
func (n *Notifier) send(ctx context.Context, ev *pagerduty.V2Event, logger *slog.Logger) (bool, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, n.timeout,
		fmt.Errorf("pagerduty timeout reached (%s): %w", n.timeout, context.DeadlineExceeded))
	defer cancel()

	// go-pagerduty v1.8.0 turns a non-2xx answer into an APIError that has
	// lost the Events API's error body (it expects the REST API's
	// envelope), and wraps transport errors with %v, dropping both the
	// chain and any chance to redact the URL. capturingClient keeps the
	// status, the body and the transport error for this one call.
	var c capture
	resp, err := n.client.ManageEventWithContext(context.WithValue(ctx, captureKey{}, &c), ev)
	switch {
	case c.err != nil:
		if ctx.Err() != nil {
			return true, context.Cause(ctx)
		}
		return true, redactURLError(c.err)
	case c.status == 0:
		// Nothing was sent: the event did not marshal or the request could
		// not be built. Neither gets better by trying again.
		if err == nil {
			err = errors.New("no response")
		}
		return false, fmt.Errorf("build request: %w", err)
	case c.status >= 200 && c.status < 300:
		// Accepted. A 2xx body that does not decode is no reason to page
		// twice.
		if resp != nil {
			logger.DebugContext(ctx, "pagerduty event sent", "status", resp.Status, "message", resp.Message)
		} else {
			logger.DebugContext(ctx, "pagerduty event sent", "http_status", c.status)
		}
		return false, nil
	}
	return c.status == http.StatusTooManyRequests || (c.status >= 500 && c.status < 600), c.apiError()
}

// render builds a trigger event.
func (n *Notifier) render(ctx context.Context, key incident.Secret, inc *incident.Incident, extra Extra, logger *slog.Logger) *pagerduty.V2Event {
	firing, resolved := counts(inc)
	first := firstAlert(inc)

	summary := extra.Summary
	if strings.TrimSpace(summary) == "" {
		summary = Summary(inc)
	}
	summary, truncated := truncate(oneLine(summary), maxSummaryRunes)
	if truncated {
		logger.DebugContext(ctx, "pagerduty summary truncated", "max_runes", maxSummaryRunes)
	}

	sev := ""
	if extra.Severity != "" {
		s, ok := Severity(extra.Severity)
		if !ok {
			logger.WarnContext(ctx, "unknown configured pagerduty severity, deriving it from the alerts instead", "severity", extra.Severity)
		}
		sev = s
	}
	if sev == "" {
		sev = alertSeverity(inc, first)
	}

	incidentURL := ""
	if n.externalURL != "" && inc.ID != 0 {
		incidentURL = n.externalURL + "/api/v1/incidents/" + strconv.FormatInt(inc.ID, 10)
	}
	clientURL := incidentURL
	if clientURL == "" {
		clientURL = n.externalURL
	}

	ev := &pagerduty.V2Event{
		RoutingKey: key.Value(),
		Action:     ActionTrigger,
		DedupKey:   DedupKey(inc.GroupKey),
		Client:     Client,
		ClientURL:  clientURL,
		Links:      links(inc, first, extra.SlackPermalink, incidentURL),
		Payload: &pagerduty.V2Payload{
			Summary:   summary,
			Source:    field(source(inc, first)),
			Severity:  sev,
			Timestamp: timestamp(inc),
			Component: field(firstLabel(inc.CommonLabels, "service", "job")),
			Group:     field(firstLabel(inc.CommonLabels, "cluster", "namespace")),
			Class:     field(inc.CommonLabels["alertname"]),
		},
	}

	details := map[string]any{}
	maps.Copy(details, extra.Details)
	details["group_key"] = inc.GroupKey
	details["firing"] = firing
	details["resolved"] = resolved
	details["common_labels"] = nonNil(inc.CommonLabels)
	details["common_annotations"] = nonNil(inc.CommonAnnotations)
	if extra.SlackPermalink != "" {
		details["slack_permalink"] = extra.SlackPermalink
	}
	if incidentURL != "" {
		details["incident_url"] = incidentURL
	}
	fit(ctx, ev, details, alertDetails(inc), logger)
	return ev
}

// fit sets the custom details, with as many alerts as keep the event within
// eventBudget, and drops the details altogether (keeping the counts and the
// links back) when even none does.
func fit(ctx context.Context, ev *pagerduty.V2Event, details map[string]any, alerts []alertDetail, logger *slog.Logger) {
	total := len(alerts)
	alerts = alerts[:min(len(alerts), maxDetailAlerts)]
	for {
		details["alerts"] = alerts
		if omitted := total - len(alerts); omitted > 0 {
			details["alerts_omitted"] = omitted
		}
		ev.Payload.Details = details
		size := eventSize(ev)
		if size <= eventBudget {
			return
		}
		if len(alerts) == 0 {
			logger.WarnContext(ctx, "pagerduty custom details removed, the event is too large", "size_bytes", size, "budget_bytes", eventBudget)
			small := map[string]any{
				"error":    fmt.Sprintf("custom details removed: the event exceeded %d bytes", eventBudget),
				"firing":   details["firing"],
				"resolved": details["resolved"],
			}
			for _, k := range []string{"slack_permalink", "incident_url"} {
				if v, ok := details[k]; ok {
					small[k] = v
				}
			}
			ev.Payload.Details = small
			return
		}
		alerts = alerts[:len(alerts)/2]
	}
}

func eventSize(ev *pagerduty.V2Event) int {
	b, err := json.Marshal(ev)
	if err != nil {
		// Details that do not marshal fail the send itself, with the
		// reason; size does not matter then.
		return 0
	}
	return len(b)
}

// Summary renders the default summary of a trigger event, before
// truncation: "[FIRING:3] CheckoutLatencyHigh checkout — Checkout p99
// latency above 500ms": the firing count, the alert name and the other
// group label values in label name order, and the common summary (or
// description) annotation.
func Summary(inc *incident.Incident) string {
	firing, _ := counts(inc)
	var b strings.Builder
	fmt.Fprintf(&b, "[FIRING:%d]", firing)
	var values []string
	if name := inc.CommonLabels["alertname"]; name != "" {
		values = append(values, name)
	} else if name := inc.GroupLabels["alertname"]; name != "" {
		values = append(values, name)
	}
	names := make([]string, 0, len(inc.GroupLabels))
	for k := range inc.GroupLabels {
		if k != "alertname" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		if v := inc.GroupLabels[k]; v != "" {
			values = append(values, v)
		}
	}
	if len(values) > 0 {
		b.WriteString(" ")
		b.WriteString(strings.Join(values, " "))
	}
	if s := firstLabel(inc.CommonAnnotations, "summary", "description"); s != "" {
		b.WriteString(" — ")
		b.WriteString(s)
	}
	return b.String()
}

// counts returns the firing and resolved alerts, from the alert list when
// the incident was read in full and from its counters otherwise.
func counts(inc *incident.Incident) (firing, resolved int) {
	if len(inc.Alerts) == 0 {
		return inc.FiringAlerts, inc.ResolvedAlerts
	}
	for _, a := range inc.Alerts {
		if a.Status == "firing" {
			firing++
		} else {
			resolved++
		}
	}
	return firing, resolved
}

// firstAlert returns the first firing alert, or the first alert, or nil.
func firstAlert(inc *incident.Incident) *incident.Alert {
	for i := range inc.Alerts {
		if inc.Alerts[i].Status == "firing" {
			return &inc.Alerts[i]
		}
	}
	if len(inc.Alerts) > 0 {
		return &inc.Alerts[0]
	}
	return nil
}

// alertSeverity is the event's severity from the alerts' severity label.
// Without one PagerDuty knows, it is "error", Alertmanager's default for
// pagerduty_configs: with severity-based urgency, "info" would make the
// page low urgency, one that wakes nobody.
func alertSeverity(inc *incident.Incident, first *incident.Alert) string {
	v := inc.CommonLabels["severity"]
	if v == "" && first != nil {
		v = first.Labels["severity"]
	}
	if s, ok := Severity(v); ok {
		return s
	}
	return "error"
}

func source(inc *incident.Incident, first *incident.Alert) string {
	if first != nil {
		if v := firstLabel(first.Labels, sourceLabels...); v != "" {
			return v
		}
	}
	if v := firstLabel(inc.CommonLabels, sourceLabels...); v != "" {
		return v
	}
	return Client
}

func timestamp(inc *incident.Incident) string {
	t := inc.UpdatedAt
	if t.IsZero() {
		t = inc.OpenedAt
	}
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func firstLabel(m map[string]string, names ...string) string {
	for _, k := range names {
		if v := strings.TrimSpace(m[k]); v != "" {
			return v
		}
	}
	return ""
}

// link is an entry of an event's links.
type link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// links returns the event's links. Every href comes from labels,
// annotations or configuration, so only absolute http(s) URLs are kept.
func links(inc *incident.Incident, first *incident.Alert, slackPermalink, incidentURL string) []any {
	var out []any
	add := func(href, text string) {
		u, err := url.Parse(href)
		if len(href) > maxLinkBytes {
			return
		}
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return
		}
		out = append(out, link{Href: href, Text: text})
	}
	if incidentURL != "" {
		add(incidentURL, "Responder incident")
	}
	if slackPermalink != "" {
		add(slackPermalink, "Slack thread")
	}
	runbook := inc.CommonAnnotations["runbook_url"]
	if runbook == "" && first != nil {
		runbook = first.Annotations["runbook_url"]
	}
	if runbook != "" {
		add(runbook, "Runbook")
	}
	if first != nil && first.GeneratorURL != "" {
		add(first.GeneratorURL, "Alert source")
	}
	if inc.ExternalURL != "" {
		add(inc.ExternalURL, "Alertmanager")
	}
	return out
}

// alertDetail is one alert in custom_details.
type alertDetail struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       *time.Time        `json:"ends_at,omitempty"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	Fingerprint  string            `json:"fingerprint,omitempty"`
}

// alertDetails lists the alerts, firing ones first, each group by start.
func alertDetails(inc *incident.Incident) []alertDetail {
	out := make([]alertDetail, 0, len(inc.Alerts))
	for _, a := range inc.Alerts {
		out = append(out, alertDetail{
			Status: a.Status, Labels: nonNil(a.Labels), Annotations: a.Annotations,
			StartsAt: a.StartsAt.UTC(), EndsAt: utcPtr(a.EndsAt),
			GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint,
		})
	}
	slices.SortStableFunc(out, func(a, b alertDetail) int {
		if (a.Status == "firing") != (b.Status == "firing") {
			if a.Status == "firing" {
				return -1
			}
			return 1
		}
		return a.StartsAt.Compare(b.StartsAt)
	})
	return out
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// oneLine collapses runs of whitespace, newlines included: PagerDuty shows
// the summary as a one-line title.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// field cuts a label value shown in one of the payload's fields to
// maxFieldRunes: one value can exceed the Events API's size limit alone,
// which fit cannot help, since it only trims the custom details.
func field(s string) string {
	s, _ = truncate(s, maxFieldRunes)
	return s
}

// truncate cuts s to at most n runes, the last of them "…" when it cut.
func truncate(s string, n int) (string, bool) {
	if utf8.RuneCountInString(s) <= n {
		return s, false
	}
	runes := []rune(s)
	return string(runes[:n-1]) + truncation, true
}

// captureKey is the context key of a *capture.
type captureKey struct{}

// capture is what capturingClient saw of one request.
type capture struct {
	status int
	body   []byte
	err    error
}

// capturingClient records, into the capture in the request's context, the
// status and (for errors) the body of the response, or the transport error,
// that go-pagerduty would otherwise reduce to text.
type capturingClient struct {
	next pagerduty.HTTPClient
}

// Do implements pagerduty.HTTPClient.
func (c capturingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	cp, _ := req.Context().Value(captureKey{}).(*capture)
	if cp == nil {
		return resp, err
	}
	if err != nil {
		cp.err = err
		return resp, err
	}
	cp.status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_ = resp.Body.Close()
		cp.body = body
		// go-pagerduty reads (and closes) the body again.
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp, nil
}

// apiError turns a captured non-2xx answer into an *APIError.
func (c *capture) apiError() *APIError {
	e := &APIError{StatusCode: c.status}
	var body struct {
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	if err := json.Unmarshal(c.body, &body); err == nil && (body.Status != "" || body.Message != "" || len(body.Errors) > 0) {
		e.Status, _ = truncate(body.Status, maxErrorText)
		e.Message, _ = truncate(body.Message, maxErrorText)
		for _, s := range body.Errors[:min(len(body.Errors), 10)] {
			s, _ = truncate(s, maxErrorText)
			e.Errors = append(e.Errors, s)
		}
		return e
	}
	if text := oneLine(strings.ToValidUTF8(string(c.body), "")); text != "" {
		e.Message, _ = truncate(text, maxErrorText)
	}
	return e
}

// redactURLError strips credentials, query and fragment from the URL that
// net/http puts in its errors.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	redacted := "<redacted>"
	if u, perr := url.Parse(ue.URL); perr == nil {
		u.User, u.RawQuery, u.Fragment = nil, "", ""
		redacted = u.String()
	}
	return &url.Error{Op: ue.Op, URL: redacted, Err: ue.Err}
}

// scrub is the last line of defence for the routing key: should any text
// that reached err (a response body, say) contain it, the key is replaced
// and the chain given up.
func scrub(err error, key incident.Secret) error {
	if key == "" || !strings.Contains(err.Error(), key.Value()) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), key.Value(), key.String()))
}
