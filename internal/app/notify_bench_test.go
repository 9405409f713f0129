package app_test

// Notification benchmarks (issue 3, "Performance"): in-process responder,
// webhook requests posted straight to it (no Alertmanager), Slack behind a
// recording proxy that answers every call after a delay, PagerDuty fake.
// They run only with -bench; see docs/benchmarks.md.
//
//	go test -run='^$' -bench='Notify|Storm' -benchtime=1x ./internal/app/

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder/responder/internal/app"
	"github.com/responder/responder/internal/incident"
	"github.com/responder/responder/internal/routing/routingtest"
)

// slackAnswerDelay is how long the benchmarks' Slack takes to answer each
// call (issue 3: "fake Slack answering in ~50 ms").
const slackAnswerDelay = 50 * time.Millisecond

// BenchmarkNotifySteady measures the time from the webhook's 200 (the
// notification is committed) to the Slack parent post arriving at Slack, at
// a steady 1 new incident per second on each of 20 channels, below the
// storm threshold. Targets: p50 ≤ 100 ms, p99 ≤ 300 ms.
func BenchmarkNotifySteady(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for about 30s")
	}
	const (
		channels = 20
		seconds  = 25
	)
	var all []float64
	for range b.N {
		all = append(all, runNotifySteady(b, channels, seconds)...)
	}
	slices.Sort(all)
	p50, p99, maxMS := percentile(all, 0.50), percentile(all, 0.99), all[len(all)-1]
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(maxMS, "max-ms")
	b.ReportMetric(float64(len(all))/float64(b.N), "incidents/op")
	b.Logf("commit → slack parent post, %d incidents (%d channels × 1/s × %ds): p50 %.1f ms, p99 %.1f ms, max %.1f ms; targets p50 ≤ 100 ms (%s), p99 ≤ 300 ms (%s)",
		len(all), channels, seconds, p50, p99, maxMS, metStr(p50 <= 100), metStr(p99 <= 300))
}

// runNotifySteady runs one steady-load scenario and returns each incident's
// commit-to-post latency in milliseconds.
func runNotifySteady(b *testing.B, channels, seconds int) []float64 {
	b.Helper()
	ctx := b.Context()
	slackToken := "xoxb-" + rand.Text()
	proxy := newSlackProxy(b, routingtest.NewFakeSlack(b, slackToken), slackAnswerDelay)
	token := rand.Text()

	var routes, receivers strings.Builder
	for c := range channels {
		fmt.Fprintf(&routes, "    - matchers: ['channel=\"ch-%02d\"']\n      receiver: ch-%02d\n", c, c)
		fmt.Fprintf(&receivers, "  - name: ch-%02d\n    slack_configs: [{ channel: '#ch-%02d' }]\n", c, c)
	}
	// 1 new incident a second is 60 a minute per channel: the threshold is
	// raised above that so that this measures parent posts, not a storm.
	r := startNotifyResponder(b, fmt.Sprintf(`
global:
  external_url: http://responder.example:9096
  slack_api_url: %q
  slack_bot_token: %q
storage:
  dsn: sqlite://%s
webhook:
  authorization:
    credentials: %q
storm: {threshold: 100, window: 1m}
route:
  receiver: ch-00
  routes:
%sreceivers:
%s`, proxy.URL(), slackToken, filepath.Join(b.TempDir(), "responder.db"), token, routes.String(), receivers.String()), token)

	poster := newWebhookPoster(b, r)
	commits := newCommitLog()
	// Channel c sends at c/channels of each second, so that the 20 new
	// incidents of a second are spread over it as independent sources are.
	start := time.Now().Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for s := range seconds {
		for c := range channels {
			seq := s*channels + c
			at := start.Add(time.Duration(s)*time.Second + time.Duration(c)*time.Second/time.Duration(channels))
			time.Sleep(time.Until(at))
			ch := fmt.Sprintf("ch-%02d", c)
			wg.Go(func() { poster.post(ctx, commits, seq, map[string]string{"channel": ch}) })
		}
	}
	wg.Wait()
	poster.check(b)
	n := seconds * channels

	waitFor(b, time.Minute, "every parent posted", func() (bool, string) {
		got := len(proxy.okCalls(routingtest.SlackPostMessage, ""))
		return got >= n, fmt.Sprintf("%d of %d posted", got, n)
	})
	posted := map[string]time.Time{} // channel ID + "/" + ts → arrival at Slack
	for _, c := range proxy.okCalls(routingtest.SlackPostMessage, "") {
		posted[c.channel+"/"+c.ts] = c.at
	}
	// Diagnostics: how far apart the posts to one channel are, and how the
	// latency moves over the run.
	byChannel := map[string][]time.Time{}
	for _, c := range proxy.okCalls(routingtest.SlackPostMessage, "") {
		byChannel[c.channel] = append(byChannel[c.channel], c.at)
	}
	var gaps []float64
	for _, ts := range byChannel {
		for i := 1; i < len(ts); i++ {
			gaps = append(gaps, float64(ts[i].Sub(ts[i-1]))/float64(time.Millisecond))
		}
	}
	slices.Sort(gaps)
	b.Logf("gap between posts to one channel: min %.0f ms, p50 %.0f ms, max %.0f ms", percentile(gaps, 0), percentile(gaps, 0.5), percentile(gaps, 1))

	// The post reaches Slack a moment before its ts is stored.
	var incs []incident.Incident
	waitFor(b, 10*time.Second, "every parent's ts stored", func() (bool, string) {
		incs = fetchIncidents(b, r, n)
		stored := 0
		for _, inc := range incs {
			for _, d := range inc.Deliveries {
				if d.Integration == incident.IntegrationSlack && d.TS != "" {
					stored++
					break
				}
			}
		}
		return stored == n, fmt.Sprintf("%d of %d stored", stored, n)
	})
	lat := make([]float64, 0, n)
	bySecond := make([][]float64, seconds)
	for _, inc := range incs {
		committed, ok := commits.get(inc.GroupKey)
		if !ok {
			b.Fatalf("incident %d: group key %q was never posted", inc.ID, inc.GroupKey)
		}
		var at time.Time
		for _, d := range inc.Deliveries {
			if d.Integration == incident.IntegrationSlack && d.TS != "" {
				at = posted[d.ChannelID+"/"+d.TS]
			}
		}
		if at.IsZero() {
			b.Fatalf("incident %d has no slack parent: %+v", inc.ID, inc.Deliveries)
		}
		ms := float64(at.Sub(committed)) / float64(time.Millisecond)
		lat = append(lat, ms)
		if sec := int(committed.Sub(start) / time.Second); sec >= 0 && sec < seconds {
			bySecond[sec] = append(bySecond[sec], ms)
		}
	}
	var trend []string
	for sec := 0; sec < seconds; sec += 4 {
		slices.Sort(bySecond[sec])
		trend = append(trend, fmt.Sprintf("%ds: %.0f", sec, percentile(bySecond[sec], 0.5)))
	}
	b.Logf("p50 latency (ms) of the incidents committed in second …: %s", strings.Join(trend, ", "))
	return lat
}

// BenchmarkNotifyStorm sends 1,000 new alert groups to one channel within a
// minute (evenly over 50s, 20/s), with the default storm settings and every
// alert critical, so paged too. It reports the most Slack writes
// (chat.postMessage and chat.update) to the channel in any 1 s window, the
// longest time from an incident's commit to a Slack message showing it (its
// own parent, or a digest counting it), and the PagerDuty events and
// refusals. Targets: ≤ 1 Slack call/s per channel, every incident shown
// within 10 s, PagerDuty under 120 events/min per key and the last one
// accepted.
func BenchmarkNotifyStorm(b *testing.B) {
	if testing.Short() {
		b.Skip("runs for about a minute")
	}
	var res stormResult
	for range b.N {
		res = runStorm(b, stormScenario{groups: 1000, over: 50 * time.Second, slackDelay: slackAnswerDelay, settle: 2 * time.Minute})
	}
	b.ReportMetric(float64(res.maxCallsPerSecond), "slack-calls/s-max")
	b.ReportMetric(float64(res.minGap)/float64(time.Millisecond), "slack-gap-min-ms")
	b.ReportMetric(float64(res.posts), "slack-posts")
	b.ReportMetric(float64(res.updates), "slack-updates")
	b.ReportMetric(float64(res.updateMinGap)/float64(time.Millisecond), "digest-update-gap-min-ms")
	b.ReportMetric(float64(res.tail)/float64(time.Millisecond), "last-shown-after-last-commit-ms")
	b.ReportMetric(float64(res.maxLag)/float64(time.Millisecond), "shown-lag-max-ms")
	b.ReportMetric(float64(res.pdEvents), "pd-events")
	b.ReportMetric(float64(res.pdRejected), "pd-rejected")
	b.Logf("storm of %d groups in %s: %d incidents, %d own parents, %d in the digest; slack writes to the channel: %d posts + %d updates, max %d in any 1s window (min gap %s, digest updates min gap %s); max commit → shown %s (own parents %s, digest %s), the last shown %s after the last commit; pagerduty: %d events accepted, %d refused, last accepted %v",
		1000, 50*time.Second, res.incidents, res.own, res.joined, res.posts, res.updates, res.maxCallsPerSecond,
		res.minGap.Round(time.Millisecond), res.updateMinGap.Round(time.Millisecond), res.maxLag.Round(time.Millisecond),
		res.maxOwnLag.Round(time.Millisecond), res.maxDigestLag.Round(time.Millisecond), res.tail.Round(time.Millisecond),
		res.pdEvents, res.pdRejected, res.pdLastAccepted)
	b.Logf("targets: slack ≤ 1 call/s per channel (%s), every incident shown within 10s (%s), pagerduty < 120 events/min per key with the last accepted (%s)",
		metStr(res.maxCallsPerSecond <= 1), metStr(res.maxLag <= 10*time.Second), metStr(res.pdEvents < 120 && res.pdLastAccepted))
	if res.lost > 0 {
		b.Errorf("%d incidents neither posted nor in the digest", res.lost)
	}
}

// stormScenario is one storm run: groups new alert groups to one channel,
// sent evenly over the given duration.
type stormScenario struct {
	groups     int
	over       time.Duration
	slackDelay time.Duration
	threshold  int    // 0: the default storm settings
	queue      string // storage.queue settings, YAML flow mapping; "" for the defaults
	// settle bounds the wait, after the last post, for every incident to
	// be shown.
	settle time.Duration
}

// stormResult is what a storm run measured.
type stormResult struct {
	incidents, own, joined, lost int
	digests, digestCount         int
	posts, updates               int
	maxCallsPerSecond            int
	minGap, updateMinGap         time.Duration
	updatesIn3s                  int
	maxLag                       time.Duration
	maxOwnLag, maxDigestLag      time.Duration
	tail                         time.Duration // last commit → last incident shown
	pdEvents, pdRejected         int
	pdTriggers                   int
	pdLastAccepted               bool
}

const stormChannel = "#storm"

// runStorm runs a storm scenario and measures it; it fails tb only when it
// cannot measure.
func runStorm(tb testing.TB, sc stormScenario) stormResult {
	tb.Helper()
	ctx := tb.Context()
	slackToken := "xoxb-" + rand.Text()
	fake := routingtest.NewFakeSlack(tb, slackToken)
	channelID := fake.AddChannel(stormChannel)
	proxy := newSlackProxy(tb, fake, sc.slackDelay)
	// PagerDuty's Events API allows about 120 events a minute per
	// integration key; the fake refuses more with 429.
	pd := routingtest.NewFakePagerDuty(tb, routingtest.WithPagerDutyRateLimit(120, time.Minute))
	token := rand.Text()
	storm := ""
	if sc.threshold > 0 {
		storm = fmt.Sprintf("storm: {threshold: %d, window: 1m}", sc.threshold)
	}
	queue := "{}"
	if sc.queue != "" {
		queue = sc.queue
	}
	r := startNotifyResponder(tb, fmt.Sprintf(`
global:
  external_url: http://responder.example:9096
  slack_api_url: %q
  slack_bot_token: %q
  pagerduty_events_url: %q
storage:
  dsn: sqlite://%s
  queue: %s
webhook:
  authorization:
    credentials: %q
route:
  receiver: incidents
  routes:
    - matchers: ['severity="critical"']
      receiver: pagerduty
      continue: true
    - receiver: incidents
receivers:
  - name: incidents
    slack_configs: [{ channel: %q }]
  - name: pagerduty
    pagerduty_configs: [{ routing_key: %q }]
%s
`, proxy.URL(), slackToken, pd.URL(), filepath.Join(tb.TempDir(), "responder.db"), queue, token, stormChannel, notifyRoutingKey, storm), token)

	poster := newWebhookPoster(tb, r)
	commits := newCommitLog()
	start := time.Now().Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range sc.groups {
		time.Sleep(time.Until(start.Add(sc.over * time.Duration(i) / time.Duration(sc.groups))))
		wg.Go(func() { poster.post(ctx, commits, i, nil) })
	}
	wg.Wait()
	poster.check(tb)

	// Settled when the parents and the digest's count add up.
	shown := func() (parents, listed int) {
		for _, c := range proxy.okCalls("", channelID) {
			switch {
			case c.method != routingtest.SlackPostMessage && c.method != routingtest.SlackUpdate:
			case c.digest >= 0:
				listed = max(listed, c.digest)
			case c.method == routingtest.SlackPostMessage:
				parents++
			}
		}
		return parents, listed
	}
	waitFor(tb, sc.settle, "every incident posted or in the digest", func() (bool, string) {
		p, l := shown()
		return p+l >= sc.groups, fmt.Sprintf("parents=%d listed=%d of %d", p, l, sc.groups)
	})

	var res stormResult
	var writes, updates []time.Time
	posted := map[string]time.Time{}
	type digestCall struct {
		at    time.Time
		count int
	}
	var digestCalls []digestCall
	for _, c := range proxy.okCalls("", channelID) {
		switch c.method {
		case routingtest.SlackPostMessage:
			res.posts++
			posted[c.channel+"/"+c.ts] = c.at
		case routingtest.SlackUpdate:
			res.updates++
			updates = append(updates, c.at)
		default:
			continue
		}
		writes = append(writes, c.at)
		if c.digest >= 0 {
			digestCalls = append(digestCalls, digestCall{c.at, c.digest})
			res.digestCount = c.digest
			if c.method == routingtest.SlackPostMessage {
				res.digests++
			}
		}
	}
	res.maxCallsPerSecond, res.minGap = maxInWindow(writes, time.Second)
	_, res.updateMinGap = maxInWindow(updates, time.Second)
	res.updatesIn3s, _ = maxInWindow(updates, 3*time.Second)

	incs := fetchIncidents(tb, r, sc.groups)
	res.incidents = len(incs)
	// A storm member is shown once a digest counts it: the k-th to join
	// (by its storm decision) is in every digest counting k or more.
	type member struct {
		joined, committed time.Time
	}
	var members []member
	var lastCommit, lastShown time.Time
	for _, inc := range incs {
		committed, ok := commits.get(inc.GroupKey)
		if !ok {
			tb.Fatalf("incident %d: group key %q was never posted", inc.ID, inc.GroupKey)
		}
		if committed.After(lastCommit) {
			lastCommit = committed
		}
		var own time.Time
		for _, d := range inc.Deliveries {
			if d.Integration == incident.IntegrationSlack && d.TS != "" {
				own = posted[d.ChannelID+"/"+d.TS]
			}
		}
		var joined time.Time
		for _, d := range inc.Decisions {
			if d.Kind == incident.DecisionStorm {
				joined = d.At
			}
		}
		switch {
		case !own.IsZero():
			res.own++
			res.maxOwnLag = max(res.maxOwnLag, own.Sub(committed))
			if own.After(lastShown) {
				lastShown = own
			}
		case !joined.IsZero():
			res.joined++
			members = append(members, member{joined, committed})
		default:
			res.lost++
		}
	}
	slices.SortFunc(members, func(a, b member) int { return a.joined.Compare(b.joined) })
	for k, m := range members {
		i := slices.IndexFunc(digestCalls, func(d digestCall) bool { return d.count >= k+1 })
		if i < 0 {
			res.lost++
			continue
		}
		res.maxDigestLag = max(res.maxDigestLag, digestCalls[i].at.Sub(m.committed))
		if digestCalls[i].at.After(lastShown) {
			lastShown = digestCalls[i].at
		}
	}
	res.maxLag = max(res.maxOwnLag, res.maxDigestLag)
	res.tail = lastShown.Sub(lastCommit)
	res.lost += sc.groups - res.incidents

	events := pd.Events()
	res.pdEvents = len(events)
	res.pdRejected = pd.Requests() - len(events)
	for _, ev := range events {
		if ev.EventAction == "trigger" {
			res.pdTriggers++
		}
	}
	// Every request was accepted, the last one included.
	res.pdLastAccepted = len(events) > 0 && res.pdRejected == 0
	return res
}

// startNotifyResponder is startE2EResponder for benchmarks too.
func startNotifyResponder(tb testing.TB, configYAML, token string) *e2eResponder {
	tb.Helper()
	cfgFile := filepath.Join(tb.TempDir(), "responder.yml")
	if err := os.WriteFile(cfgFile, []byte(configYAML), 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{ConfigFile: cfgFile, ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	runApp(tb, ctx, cancel, a)
	r := &e2eResponder{addr: a.Addr(), token: token, client: &http.Client{Timeout: 10 * time.Second}}
	waitFor(tb, 30*time.Second, "responder ready", func() (bool, string) {
		code, body, err := r.do(tb.Context(), "/-/ready")
		return err == nil && code == http.StatusOK, fmt.Sprint(code, string(body), err)
	})
	return r
}

// waitFor polls cond every 100ms until it holds, failing tb after timeout
// with what cond last saw.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting %s for %s: last seen %s", timeout, what, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fetchIncidents reads the n incidents in full, a few at a time.
func fetchIncidents(tb testing.TB, r *e2eResponder, n int) []incident.Incident {
	tb.Helper()
	var list struct {
		Incidents []incident.Incident `json:"incidents"`
	}
	if err := r.get(tb.Context(), "/api/v1/incidents?limit="+strconv.Itoa(max(n+1, 1000)), &list); err != nil {
		tb.Fatal(err)
	}
	if len(list.Incidents) != n {
		tb.Fatalf("%d incidents, want %d", len(list.Incidents), n)
	}
	out := make([]incident.Incident, len(list.Incidents))
	errs := make(chan error, len(out))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, inc := range list.Incidents {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := r.incident(tb.Context(), inc.ID)
			if err != nil {
				errs <- err
				return
			}
			out[i] = got
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	return out
}

// webhookPoster posts Alertmanager v4 notifications, built from
// testdata/am_v4_firing.json, straight to responder's webhook.
type webhookPoster struct {
	url, token string
	client     *http.Client
	tmpl       map[string]any

	mu   sync.Mutex
	errs []error
}

func newWebhookPoster(tb testing.TB, r *e2eResponder) *webhookPoster {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "am_v4_firing.json"))
	if err != nil {
		tb.Fatal(err)
	}
	p := &webhookPoster{
		url: "http://" + r.addr + "/webhook/alertmanager", token: r.token,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	if err := json.Unmarshal(raw, &p.tmpl); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.client.CloseIdleConnections)
	return p
}

// body is the template as the seq-th group: its own group key, instance
// label and fingerprints, plus extra labels on the group and every alert.
func (p *webhookPoster) body(seq int, extra map[string]string) ([]byte, string) {
	labels := map[string]string{"instance": fmt.Sprintf("host-%05d:9100", seq)}
	maps.Copy(labels, extra)
	var msg map[string]any
	raw, _ := json.Marshal(p.tmpl) // a deep copy of a map decoded from JSON
	_ = json.Unmarshal(raw, &msg)
	startsAt := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	for i, a := range msg["alerts"].([]any) {
		alert := a.(map[string]any)
		for k, v := range labels {
			alert["labels"].(map[string]any)[k] = v
		}
		alert["fingerprint"] = fmt.Sprintf("%012x%04x", seq, i)
		alert["startsAt"] = startsAt
	}
	group := msg["groupLabels"].(map[string]any)
	common := msg["commonLabels"].(map[string]any)
	keys := make([]string, 0, len(labels))
	for k, v := range labels {
		group[k], common[k] = v, v
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := []string{fmt.Sprintf("alertname=%q", group["alertname"])}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	groupKey := "{}/{severity=\"critical\"}:{" + strings.Join(parts, ", ") + "}"
	msg["groupKey"] = groupKey
	b, _ := json.Marshal(msg)
	return b, groupKey
}

// post sends the seq-th group and records when its 200 came back.
func (p *webhookPoster) post(ctx context.Context, commits *commitLog, seq int, extra map[string]string) {
	body, groupKey := p.body(seq, extra)
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("webhook %d: %s", resp.StatusCode, b)
		}
		commits.add(groupKey, time.Now())
		return nil
	}()
	if err != nil {
		p.mu.Lock()
		p.errs = append(p.errs, err)
		p.mu.Unlock()
	}
}

// check fails tb if any post failed.
func (p *webhookPoster) check(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		tb.Fatalf("%d webhook posts failed, first: %v", len(p.errs), p.errs[0])
	}
}

// commitLog holds when each group key's notification was committed (its
// 200 received).
type commitLog struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newCommitLog() *commitLog { return &commitLog{at: map[string]time.Time{}} }

func (c *commitLog) add(groupKey string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at[groupKey] = t
}

func (c *commitLog) get(groupKey string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[groupKey]
	return t, ok
}

// slackProxy stands in front of a FakeSlack: it records when each call
// arrives, holds it for delay, then forwards it and records the answer.
type slackProxy struct {
	srv      *httptest.Server
	upstream string
	delay    time.Duration
	client   *http.Client

	mu    sync.Mutex
	calls []proxiedCall
}

// proxiedCall is one Slack call as the proxy saw it.
type proxiedCall struct {
	method string
	// channel is the channel ID Slack answered with, or the channel argument.
	channel string
	ts      string
	at      time.Time // arrival, before the delay
	ok      bool      // HTTP 200 and ok:true
	// digest is the incident count of a storm digest ("[STORM] N ..."),
	// -1 for any other message.
	digest int
}

func newSlackProxy(tb testing.TB, fake *routingtest.FakeSlack, delay time.Duration) *slackProxy {
	tb.Helper()
	p := &slackProxy{
		upstream: strings.TrimSuffix(fake.URL(), "/"), delay: delay,
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	p.srv = httptest.NewServer(p)
	tb.Cleanup(p.srv.Close)
	tb.Cleanup(p.client.CloseIdleConnections)
	return p
}

// URL is the Slack API URL to configure, with its trailing "/".
func (p *slackProxy) URL() string { return p.srv.URL + "/" }

func (p *slackProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	// The upstream is the fake's loopback URL; only the path comes from the
	// request.
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body)) //nolint:gosec // test proxy to a local fake
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req) //nolint:gosec // see above
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	answer, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}

	call := proxiedCall{method: strings.TrimPrefix(r.URL.Path, "/"), at: at, digest: -1}
	form, _ := url.ParseQuery(string(body))
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	call.channel = form.Get("channel")
	var ans struct {
		OK      bool   `json:"ok"`
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	if json.Unmarshal(answer, &ans) == nil {
		call.ok = resp.StatusCode == http.StatusOK && ans.OK
		if ans.Channel != "" {
			call.channel = ans.Channel
		}
		call.ts = ans.TS
	}
	if text := form.Get("text"); strings.HasPrefix(text, "[STORM") {
		var n int
		if _, err := fmt.Sscanf(text[strings.Index(text, "]")+1:], " %d", &n); err == nil {
			call.digest = n
		}
	}
	p.mu.Lock()
	p.calls = append(p.calls, call)
	p.mu.Unlock()

	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// okCalls returns the successful calls of method ("" for all) to channel
// (an ID; "" for all), in order of arrival.
func (p *slackProxy) okCalls(method, channel string) []proxiedCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxiedCall
	for _, c := range p.calls {
		if c.ok && (method == "" || c.method == method) && (channel == "" || c.channel == channel) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b proxiedCall) int { return a.at.Compare(b.at) })
	return out
}

// maxInWindow returns the most times (sorted) that fall within any window
// [t, t+w), and the smallest gap between two consecutive times.
func maxInWindow(times []time.Time, w time.Duration) (int, time.Duration) {
	most, gap, j := 0, time.Duration(0), 0
	for i := range times {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
		if i > 0 && (i == 1 || times[i].Sub(times[i-1]) < gap) {
			gap = times[i].Sub(times[i-1])
		}
	}
	return most, gap
}

// percentile returns the p-quantile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
