// Package slack keeps one Slack message per incident: it posts the parent
// message, updates it in place (chat.update) as the incident changes and
// resolves, and posts context and progress into its thread. Every call
// returns whether it should be retried; it never retries by itself, so that
// the durable job queue owns every retry (and its timing, see
// RetryAfterError).
package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"
	goslack "github.com/slack-go/slack"

	"github.com/responder/responder/internal/incident"
)

// Defaults for Options.
const (
	// Slack allows about one message per second per channel; the margin
	// keeps network jitter from putting two calls into one second as Slack
	// counts it.
	DefaultPostInterval = 1005 * time.Millisecond
	defaultHTTPTimeout  = 30 * time.Second
)

// Options tunes a Notifier. Zero fields get defaults.
type Options struct {
	// HTTPClient sends the API requests; default one with a 30s timeout.
	HTTPClient *http.Client
	// ExternalURL is responder's own URL, for links to the incident.
	ExternalURL string
	Logger      *slog.Logger
	Now         func() time.Time
	// Templates override the message's title and text.
	Templates Templates
	// PostInterval is the least time between two calls to the same channel
	// (Slack allows about one message per second per channel); default 1s,
	// negative disables pacing.
	PostInterval time.Duration
}

// Templates are Alertmanager templates (its language and functions, with its
// default templates such as "slack.default.title" defined) executed against
// the incident as Alertmanager notification data (.Status, .Alerts,
// .CommonLabels, ...). An empty template, or one that fails or renders only
// whitespace, leaves the built-in rendering in place.
type Templates struct {
	// Title replaces the header (plain text, cut to 150 characters).
	Title string
	// Text replaces the summary and the list of alerts. Its output is Slack
	// mrkdwn and is not escaped: the template decides.
	Text string
}

// Extra carries what other steps add to the parent message.
type Extra struct {
	// Notes are short lines shown under the facts, e.g. the route decision
	// ("paged: severity=critical and within business-hours") or a storm
	// digest. They are escaped.
	Notes []string
	// Key identifies the post for FindPosted: it is sent as the message's
	// metadata. Use one key per message that must exist once, e.g. per
	// delivery.
	Key string
}

// Ref identifies a posted parent message.
type Ref struct {
	// Channel is the channel ID Slack answered with (chat.update needs the
	// ID, not a "#name").
	Channel   string
	TS        string
	Permalink string
}

// File is a file to share in a thread, e.g. a chart.
type File struct {
	Name    string
	Title   string
	AltText string
	Comment string
	Content []byte
}

// Notifier talks to Slack's Web API with a bot token. It is safe for
// concurrent use.
type Notifier struct {
	api         *goslack.Client
	token       string
	logger      *slog.Logger
	now         func() time.Time
	externalURL string
	tmpl        *template.Template
	templates   Templates
	pacer       *Pacer
	channels    *sync.Map // channel name → ID, learned from chat.postMessage
	warned      *sync.Map // template errors already logged
}

// New returns a Notifier for the Slack Web API at apiURL (default
// https://slack.com/api/; a missing trailing "/" is added).
func New(token, apiURL string, opts Options) *Notifier {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PostInterval == 0 {
		opts.PostInterval = DefaultPostInterval
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if apiURL == "" {
		apiURL = goslack.APIURL
	}
	if !strings.HasSuffix(apiURL, "/") {
		// slack-go appends the method name to the URL as it is.
		apiURL += "/"
	}
	tmpl, err := template.FromGlobs(nil)
	if err != nil {
		// Only the embedded default templates are parsed; this cannot fail
		// short of a broken Alertmanager release.
		opts.Logger.Error("load alertmanager templates failed, slack templates are ignored", "err", err)
	}
	return &Notifier{
		api:         goslack.New(token, goslack.OptionAPIURL(apiURL), goslack.OptionHTTPClient(opts.HTTPClient)),
		token:       token,
		logger:      opts.Logger,
		now:         opts.Now,
		externalURL: strings.TrimRight(opts.ExternalURL, "/"),
		tmpl:        tmpl,
		templates:   opts.Templates,
		pacer:       NewPacer(opts.PostInterval),
		channels:    &sync.Map{},
		warned:      &sync.Map{},
	}
}

// WithTemplates returns a Notifier that renders with t and shares everything
// else with n, notably the per-channel pacer: one Notifier per bot token, one
// WithTemplates per slack_configs entry.
func (n *Notifier) WithTemplates(t Templates) *Notifier {
	c := *n
	c.templates = t
	return &c
}

// PostParent posts the parent message of an incident to channel (a name or
// an ID) and returns where it went.
func (n *Notifier) PostParent(ctx context.Context, channel string, inc *incident.Incident, extra Extra) (Ref, bool, error) {
	op := "post slack message to " + channel
	if channel == "" || inc == nil {
		return Ref{}, false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	msg := n.render(inc, extra)
	msg.Key = extra.Key
	ref, retry, err := n.post(ctx, op, channel, msg)
	if err != nil {
		return Ref{}, retry, err
	}
	n.logger.DebugContext(ctx, "slack message posted", "incident_id", inc.ID, "channel", ref.Channel, "ts", ref.TS)
	return ref, false, nil
}

// Delay is how long a call to channel (a name or an ID) would wait for the
// channel's rate limit now. Callers with a queue of their own use it to
// come back later instead of holding a slot (and a worker) far ahead.
func (n *Notifier) Delay(channel string) time.Duration {
	return n.pacer.Delay(n.channelKey(channel))
}

// UpdateParent re-renders the parent message in place.
func (n *Notifier) UpdateParent(ctx context.Context, ref Ref, inc *incident.Incident, extra Extra) (bool, error) {
	op := fmt.Sprintf("update slack message %s in %s", ref.TS, ref.Channel)
	if ref.Channel == "" || ref.TS == "" || inc == nil {
		return false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	if retry, err := n.update(ctx, op, ref, n.render(inc, extra)); err != nil {
		return retry, err
	}
	n.logger.DebugContext(ctx, "slack message updated", "incident_id", inc.ID, "channel", ref.Channel, "ts", ref.TS)
	return false, nil
}

// Reply posts text (mrkdwn, not escaped: use Escape on user-provided parts)
// and optional blocks in the parent's thread, and returns the reply's ts.
func (n *Notifier) Reply(ctx context.Context, ref Ref, text string, blocks ...goslack.Block) (string, bool, error) {
	op := fmt.Sprintf("reply to slack message %s in %s", ref.TS, ref.Channel)
	if ref.Channel == "" || ref.TS == "" || (text == "" && len(blocks) == 0) {
		return "", false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	opts := []goslack.MsgOption{
		goslack.MsgOptionText(TruncateEscaped(text, maxMessageText), false),
		goslack.MsgOptionTS(ref.TS),
	}
	if len(blocks) > 0 {
		// MsgOptionBlocks with no blocks would send "blocks=[]".
		opts = append(opts, goslack.MsgOptionBlocks(blocks...))
	}
	if err := n.pacer.Wait(ctx, ref.Channel); err != nil {
		return "", true, fmt.Errorf("%s: wait for channel rate limit: %w", op, err)
	}
	_, ts, err := n.api.PostMessageContext(ctx, ref.Channel, opts...)
	if err != nil {
		retry, err := n.classify(ctx, ref.Channel, op, err)
		return "", retry, err
	}
	return ts, false, nil
}

// Upload shares a file in the parent's thread (files.getUploadURLExternal,
// the upload, files.completeUploadExternal) and returns its file ID. A retry
// starts over; a file uploaded but never shared is discarded by Slack.
func (n *Notifier) Upload(ctx context.Context, ref Ref, f File) (string, bool, error) {
	op := fmt.Sprintf("upload %q to slack message %s in %s", f.Name, ref.TS, ref.Channel)
	if ref.Channel == "" || ref.TS == "" || f.Name == "" || len(f.Content) == 0 {
		return "", false, fmt.Errorf("%s: %w", op, errMissingArgument)
	}
	if err := n.pacer.Wait(ctx, ref.Channel); err != nil {
		return "", true, fmt.Errorf("%s: wait for channel rate limit: %w", op, err)
	}
	sum, err := n.api.UploadFileContext(ctx, goslack.UploadFileParameters{
		Reader:          bytes.NewReader(f.Content),
		FileSize:        len(f.Content),
		Filename:        f.Name,
		Title:           f.Title,
		AltTxt:          f.AltText,
		InitialComment:  f.Comment,
		Channel:         ref.Channel,
		ThreadTimestamp: ref.TS,
	})
	if err != nil {
		retry, err := n.classify(ctx, ref.Channel, op, err)
		return "", retry, err
	}
	return sum.ID, false, nil
}

// Check verifies the token with auth.test, e.g. at startup.
func (n *Notifier) Check(ctx context.Context) (bool, error) {
	if _, err := n.api.AuthTestContext(ctx); err != nil {
		return n.classify(ctx, "", "check slack token", err)
	}
	return false, nil
}

var errMissingArgument = errors.New("missing channel, ts, incident or content")

// RetryAfterError is a rate-limited call: retry it, but not before
// RetryAfter has passed (Slack's Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

// Error implements error.
func (e *RetryAfterError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter is how long to wait before the retry.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.After }

// ErrorCode returns the Slack error string of an ok:false answer in err's
// chain (e.g. "channel_not_found"), or "".
func ErrorCode(err error) string {
	var se goslack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	return ""
}

// transientErrors are the ok:false answers that Slack's method references
// (chat.postMessage, chat.update, ...) document as temporary: a rate limit
// reported in the body (ratelimited, and chat.postMessage's rate_limited)
// and trouble on Slack's side. The same request may well succeed later, so
// they are retried like a 429 or a 5xx; dropping them would lose the post
// or leave a resolved incident's message showing FIRING. internal_error
// and fatal_error may have been carried out in part (Slack says so), like
// a 5xx: a post that got one has an unknown outcome.
var transientErrors = map[string]bool{
	"ratelimited":         true,
	"rate_limited":        true,
	"service_unavailable": true,
	"request_timeout":     true,
	"internal_error":      true,
	"fatal_error":         true,
}

// PartlyDone reports whether err is an ok:false answer that Slack
// documents as possibly following a request carried out in part
// (internal_error, fatal_error): a post that got one may be in the channel.
func PartlyDone(err error) bool {
	switch ErrorCode(err) {
	case "internal_error", "fatal_error":
		return true
	}
	return false
}

// classify decides whether a failed call is retried and returns its error,
// prefixed with op and free of the token and the API URL. Retried: 429 (as a
// RetryAfterError when Slack said when), 5xx, the transient ok:false answers
// (transientErrors), network errors and timeouts. Not retried: other HTTP
// statuses and the other ok:false answers (channel_not_found, invalid_auth,
// invalid_blocks, msg_too_long, ...), which the same request would get
// again.
func (n *Notifier) classify(ctx context.Context, key, op string, err error) (bool, error) {
	var (
		rl *goslack.RateLimitedError
		sc goslack.StatusCodeError
		se goslack.SlackErrorResponse
	)
	retry := true
	switch {
	case errors.As(err, &rl):
		if key != "" {
			n.pacer.Defer(key, rl.RetryAfter)
		}
		return true, &RetryAfterError{After: rl.RetryAfter, Err: fmt.Errorf("%s: %w", op, n.redact(err))}
	case errors.As(err, &sc):
		retry = sc.Code == http.StatusTooManyRequests || sc.Code >= 500
	case errors.As(err, &se):
		retry = transientErrors[se.Err]
	}
	err = n.redact(err)
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", err, cause)
		}
	}
	return retry, fmt.Errorf("%s: %w", op, err)
}

// redact takes the request URL (which may carry proxy credentials) and the
// token out of err's text. When it has to, it also cuts the chain below the
// redacted part, so that no unwrapped error can print them either.
func (n *Notifier) redact(err error) error {
	msg, inner, changed := err.Error(), err, false
	var ue *url.Error
	if errors.As(err, &ue) {
		msg = strings.ReplaceAll(msg, strconv.Quote(ue.URL), `"<redacted>"`)
		msg = strings.ReplaceAll(msg, ue.URL, "<redacted>")
		inner, changed = ue.Err, true
	}
	if n.token != "" && strings.Contains(msg, n.token) {
		msg = strings.ReplaceAll(msg, n.token, "<secret>")
		inner, changed = nil, true
	}
	if inner != nil && n.token != "" && strings.Contains(inner.Error(), n.token) {
		inner = nil
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: inner}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// channelKey is the pacer's key for a channel: its ID once known, so that
// "#incidents" and "C0INCIDENTS" share one pace.
func (n *Notifier) channelKey(channel string) string {
	if id, ok := n.channels.Load(channel); ok {
		return id.(string)
	}
	return channel
}

// execTemplate runs a title or text template; false means "use the
// built-in rendering".
func (n *Notifier) execTemplate(name, text string, data *template.Data) (string, bool) {
	if text == "" || n.tmpl == nil || data == nil {
		return "", false
	}
	s, err := n.tmpl.ExecuteTextString(text, data)
	if err != nil {
		// Log a broken template once, not on every message.
		if _, seen := n.warned.LoadOrStore(name+"\x00"+err.Error(), true); !seen {
			n.logger.Warn("slack template failed, using the built-in one", "template", name, "err", err)
		}
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		return "", false
	}
	return s, true
}
