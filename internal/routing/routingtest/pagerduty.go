package routingtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The limits of the PagerDuty Events API v2 that the fake enforces.
const (
	// PagerDutyMaxEventSize is the largest request body PagerDuty ingests
	// (Alertmanager's maxEventSize).
	PagerDutyMaxEventSize = 512000
	// PagerDutyMaxSummary is the longest payload.summary, in characters.
	PagerDutyMaxSummary = 1024
	// PagerDutyMaxDedupKey is the longest dedup_key, in characters.
	PagerDutyMaxDedupKey = 255
	// PagerDutyEnqueuePath is the path events are posted to, below the base
	// URL that go-pagerduty's WithV2EventsAPIEndpoint takes.
	PagerDutyEnqueuePath = "/v2/enqueue"
)

// The outcomes of an accepted event, as PagerDuty applies it to its alerts.
const (
	PagerDutyOpened       = "opened"       // a trigger that opened a new alert
	PagerDutyAppended     = "appended"     // a trigger appended to an open alert
	PagerDutyAcknowledged = "acknowledged" // an acknowledge of an open alert
	PagerDutyResolved     = "resolved"     // a resolve that closed an open alert
	PagerDutyDropped      = "dropped"      // a follow-up for no open alert, or from another routing key
)

// PagerDutyEvent is one event as sent to the Events API v2, with what the
// fake recorded about it.
type PagerDutyEvent struct {
	RoutingKey  string            `json:"routing_key"`
	EventAction string            `json:"event_action"`
	DedupKey    string            `json:"dedup_key,omitempty"`
	Payload     *PagerDutyPayload `json:"payload,omitempty"`
	Images      []PagerDutyImage  `json:"images,omitempty"`
	Links       []PagerDutyLink   `json:"links,omitempty"`
	Client      string            `json:"client,omitempty"`
	ClientURL   string            `json:"client_url,omitempty"`

	// Raw is the request body exactly as received.
	Raw []byte `json:"-"`
	// Header holds the request's headers.
	Header http.Header `json:"-"`
	// Outcome is one of PagerDutyOpened, PagerDutyAppended,
	// PagerDutyAcknowledged, PagerDutyResolved or PagerDutyDropped. When
	// the event carried no dedup_key, DedupKey is the one the fake made up.
	Outcome string `json:"-"`
}

// PagerDutyPayload is the payload of a trigger event.
type PagerDutyPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// PagerDutyLink is one entry of an event's links.
type PagerDutyLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// PagerDutyImage is one entry of an event's images.
type PagerDutyImage struct {
	Src  string `json:"src"`
	Href string `json:"href,omitempty"`
	Alt  string `json:"alt,omitempty"`
}

// PagerDutyAlert is an alert the fake holds open.
type PagerDutyAlert struct {
	RoutingKey string
	DedupKey   string
	// Trigger is the event that opened the alert, Latest the last trigger
	// appended to it (the same as Trigger until one is).
	Trigger PagerDutyEvent
	Latest  PagerDutyEvent
	// Triggers counts the trigger events of this alert, the first included.
	Triggers     int
	Acknowledged bool
}

// PagerDutyOption configures a FakePagerDuty.
type PagerDutyOption func(*FakePagerDuty)

// WithPagerDutyRoutingKeys makes the fake accept these routing keys besides
// any 32-character one (PagerDuty's integration keys are 32 characters).
func WithPagerDutyRoutingKeys(keys ...string) PagerDutyOption {
	return func(f *FakePagerDuty) {
		for _, k := range keys {
			f.keys[k] = true
		}
	}
}

// WithPagerDutyRateLimit makes the fake answer 429, without ingesting the
// event, once a routing key has had n events accepted within the rolling
// window per (PagerDuty's is about 120 a minute per integration key).
func WithPagerDutyRateLimit(n int, per time.Duration) PagerDutyOption {
	return func(f *FakePagerDuty) {
		f.rateLimit, f.ratePer = n, per
	}
}

// WithPagerDutyClock sets the clock of the rate limit.
func WithPagerDutyClock(now func() time.Time) PagerDutyOption {
	return func(f *FakePagerDuty) { f.now = now }
}

// FakePagerDuty is an httptest server that implements POST /v2/enqueue of
// the PagerDuty Events API v2 the way the real service does: it validates
// the event, answers 202 or 400 with PagerDuty's bodies, applies dedup-key
// semantics to the alerts it holds open, and can be scripted to fail, be
// slow or rate-limit. It is safe for concurrent use.
//
// Simplification: alerts are indexed by dedup key alone, as if all routing
// keys fed one service; a follow-up event whose routing key differs from
// the open alert's is dropped, as PagerDuty does.
type FakePagerDuty struct {
	srv  *httptest.Server
	done chan struct{}
	once sync.Once

	now       func() time.Time
	rateLimit int
	ratePer   time.Duration

	mu       sync.Mutex
	keys     map[string]bool
	failures []int
	delay    time.Duration
	requests int
	events   []PagerDutyEvent
	open     map[string]*PagerDutyAlert
	accepted map[string][]time.Time // routing key → times of accepted events, for the rate limit
}

// NewFakePagerDuty starts a fake that is closed when the test ends.
func NewFakePagerDuty(t testing.TB, opts ...PagerDutyOption) *FakePagerDuty {
	t.Helper()
	f := &FakePagerDuty{
		done:     make(chan struct{}),
		now:      time.Now,
		keys:     map[string]bool{},
		open:     map[string]*PagerDutyAlert{},
		accepted: map[string][]time.Time{},
	}
	for _, o := range opts {
		o(f)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// URL is the base URL to configure (pagerduty_events_url), without
// PagerDutyEnqueuePath.
func (f *FakePagerDuty) URL() string { return f.srv.URL }

// Close stops the server, releasing any response held by SetDelay.
func (f *FakePagerDuty) Close() {
	f.once.Do(func() {
		close(f.done)
		f.srv.Close()
	})
}

// FailNext makes the next n requests get status (429, 500, 503, or any
// other) with the body PagerDuty would send, without ingesting them.
func (f *FakePagerDuty) FailNext(n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failures = append(f.failures, status)
	}
}

// SetDelay holds every response for d before writing it, or until the
// client gives up; 0 turns it off.
func (f *FakePagerDuty) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Requests counts every request received, failed ones included.
func (f *FakePagerDuty) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Events returns the events accepted with 202, in order of arrival.
func (f *FakePagerDuty) Events() []PagerDutyEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// Open returns the alerts currently open, by dedup key.
func (f *FakePagerDuty) Open() map[string]PagerDutyAlert {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]PagerDutyAlert, len(f.open))
	for k, a := range f.open {
		out[k] = *a
	}
	return out
}

func (f *FakePagerDuty) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	delay := f.delay
	f.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-f.done:
			return
		}
	}
	if r.URL.Path != PagerDutyEnqueuePath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	if status, ok := f.nextFailure(); ok {
		writeFailure(w, status)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, PagerDutyMaxEventSize+1))
	if err != nil {
		return
	}
	if len(body) > PagerDutyMaxEventSize {
		// Unverified against the real service, which documents the limit
		// but not the answer; 413 is what a front end would send.
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
			"status": "invalid event", "message": "Event object is too large",
			"errors": []string{"Request body exceeds 512000 bytes"},
		})
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeInvalid(w, "Content-Type must be application/json")
		return
	}

	var ev PagerDutyEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"status": "invalid request", "message": "Invalid JSON",
			"errors": []string{"Could not parse JSON"},
		})
		return
	}
	ev.Raw, ev.Header = body, r.Header.Clone()

	f.mu.Lock()
	defer f.mu.Unlock()
	if errs := f.validate(&ev); len(errs) > 0 {
		writeInvalid(w, errs...)
		return
	}
	if !f.allow(ev.RoutingKey) {
		writeFailure(w, http.StatusTooManyRequests)
		return
	}
	if ev.DedupKey == "" {
		ev.DedupKey = newDedupKey()
	}
	ev.Outcome = f.apply(ev)
	f.events = append(f.events, ev)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey,
	})
}

func (f *FakePagerDuty) nextFailure() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) == 0 {
		return 0, false
	}
	status := f.failures[0]
	f.failures = f.failures[1:]
	return status, true
}

// validate returns PagerDuty's error messages for an invalid event.
func (f *FakePagerDuty) validate(ev *PagerDutyEvent) []string {
	var errs []string
	switch {
	case ev.RoutingKey == "":
		errs = append(errs, "'routing_key' is missing or blank")
	case !f.keys[ev.RoutingKey] && utf8.RuneCountInString(ev.RoutingKey) != 32:
		errs = append(errs, "Length of 'routing_key' is incorrect (should be 32 characters)")
	}
	if utf8.RuneCountInString(ev.DedupKey) > PagerDutyMaxDedupKey {
		errs = append(errs, "'dedup_key' is too long (must be at most 255 characters)")
	}
	switch ev.EventAction {
	case "trigger":
		errs = append(errs, validatePayload(ev.Payload)...)
		for i, l := range ev.Links {
			if l.Href == "" {
				errs = append(errs, "'links["+strconv.Itoa(i)+"].href' is missing or blank")
			}
		}
		for i, im := range ev.Images {
			if !strings.HasPrefix(im.Src, "https://") {
				errs = append(errs, "'images["+strconv.Itoa(i)+"].src' must be an https URL")
			}
		}
	case "acknowledge", "resolve":
		if ev.DedupKey == "" {
			errs = append(errs, "'dedup_key' is missing or blank")
		}
	case "":
		errs = append(errs, "'event_action' is missing or blank")
	default:
		errs = append(errs, "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
	}
	return errs
}

func validatePayload(p *PagerDutyPayload) []string {
	if p == nil {
		return []string{"'payload' is missing or blank"}
	}
	var errs []string
	switch n := utf8.RuneCountInString(p.Summary); {
	case strings.TrimSpace(p.Summary) == "":
		errs = append(errs, "'payload.summary' is missing or blank")
	case n > PagerDutyMaxSummary:
		errs = append(errs, "'payload.summary' is too long (must be at most 1024 characters)")
	}
	if strings.TrimSpace(p.Source) == "" {
		errs = append(errs, "'payload.source' is missing or blank")
	}
	switch p.Severity {
	case "critical", "error", "warning", "info":
	case "":
		errs = append(errs, "'payload.severity' is missing or blank")
	default:
		errs = append(errs, "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')")
	}
	if p.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339Nano, p.Timestamp); err != nil {
			errs = append(errs, "'payload.timestamp' is invalid (must be ISO 8601)")
		}
	}
	return errs
}

// allow applies the rate limit; it counts only ingested events.
func (f *FakePagerDuty) allow(key string) bool {
	if f.rateLimit <= 0 {
		return true
	}
	now := f.now()
	kept := slices.DeleteFunc(f.accepted[key], func(t time.Time) bool { return !t.After(now.Add(-f.ratePer)) })
	if len(kept) >= f.rateLimit {
		f.accepted[key] = kept
		return false
	}
	f.accepted[key] = append(kept, now)
	return true
}

// apply updates the open alerts as PagerDuty does and returns the outcome.
func (f *FakePagerDuty) apply(ev PagerDutyEvent) string {
	a, open := f.open[ev.DedupKey]
	if open && a.RoutingKey != ev.RoutingKey {
		return PagerDutyDropped
	}
	switch ev.EventAction {
	case "trigger":
		if open {
			a.Latest = ev
			a.Triggers++
			return PagerDutyAppended
		}
		f.open[ev.DedupKey] = &PagerDutyAlert{
			RoutingKey: ev.RoutingKey, DedupKey: ev.DedupKey,
			Trigger: ev, Latest: ev, Triggers: 1,
		}
		return PagerDutyOpened
	case "acknowledge":
		if !open {
			return PagerDutyDropped
		}
		a.Acknowledged = true
		return PagerDutyAcknowledged
	default: // resolve
		if !open {
			return PagerDutyDropped
		}
		delete(f.open, ev.DedupKey)
		return PagerDutyResolved
	}
}

// OpenKeys returns the dedup keys of the open alerts, sorted.
func (f *FakePagerDuty) OpenKeys() []string {
	return slices.Sorted(maps.Keys(f.Open()))
}

func writeInvalid(w http.ResponseWriter, errs ...string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"status": "invalid event", "message": "Event object is invalid", "errors": errs,
	})
}

// writeFailure writes status with the body PagerDuty (or the load balancer
// in front of it) sends with it.
func writeFailure(w http.ResponseWriter, status int) {
	switch {
	case status == http.StatusTooManyRequests:
		writeJSON(w, status, map[string]any{
			"status":  "throttle event",
			"message": "Requests for this service are arriving too quickly.  Please retry later.",
			"errors":  []string{"Enhance Your Calm."},
		})
	case status == http.StatusBadRequest:
		writeInvalid(w, "Scripted failure")
	case status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
		w.WriteHeader(status)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status)+"\n")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newDedupKey makes up the key PagerDuty returns for a trigger without one.
func newDedupKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
