package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/alertmanager/template"

	"github.com/responder/responder/internal/incident"
)

// acceptResponse is the body of a 200 from the webhook.
type acceptResponse struct {
	Status         string `json:"status"`
	NotificationID int64  `json:"notification_id"`
	Duplicate      bool   `json:"duplicate"`
}

// handleAlertmanager decodes, validates and commits one notification, and
// answers only after the commit. Status codes follow what Alertmanager does
// with them: it retries 5xx only, so 4xx is for input that can never succeed
// and 503 for "storage could not commit, send it again".
//
// Committing needs only the identity of a message (its group key,
// receiver, state hash and alert statuses), not its labels and
// annotations: the body is decoded for that only (decode), and the store
// decodes the whole of it when it applies it. A body with the very bytes of
// one committed shortly before (an Alertmanager retry; an HA peer's copy,
// when the peers share their external URL) is not decoded at all: its
// identity is remembered by the SHA-256 of the bytes. The same bytes decode
// and validate the same way, so nothing is accepted that would have been
// refused. It halves the CPU of such a request (docs/benchmarks.md).
func handleAlertmanager(logger *slog.Logger, sink Sink, opts Options, m *metrics) echo.HandlerFunc {
	seen, _ := lru.New[[sha256.Size]byte, knownPayload](seenPayloads) // fails only for a size below 1
	return func(c echo.Context) error {
		req := c.Request()
		received := opts.Now()
		if err := checkEncoding(req, ", as Alertmanager does"); err != nil {
			m.rejected.WithLabelValues("unsupported_encoding").Inc()
			return err
		}
		// The buffer goes back to the pool when the handler returns, unless
		// the store may still read it: an Accept that failed (timed out) may
		// yet commit. Nothing here keeps body after returning.
		buf, held := bodies.Get().(*bytes.Buffer), false
		defer func() {
			if !held {
				recycle(buf)
			}
		}()
		body, err := readBodyInto(buf, req, int64(opts.Config().MaxBodySize), "webhook.max_body_size")
		if err != nil {
			m.rejected.WithLabelValues(reason(err)).Inc()
			return err
		}
		digest := sha256.Sum256(body)
		var (
			msg     *incident.Message
			state   string
			partial = true
		)
		kp, known := seen.Get(digest)
		if known {
			msg, state = kp.message(), kp.stateHash
		} else {
			if msg, partial, err = decode(logger, body); err == nil {
				err = checkNUL(msg)
			}
			if err != nil {
				m.rejected.WithLabelValues(reason(err)).Inc()
				return err
			}
			state = msg.StateHash()
		}
		// The commit must not depend on the client staying connected, but it
		// is bounded so that a wedged disk turns into 503s, not hung requests.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), opts.AcceptTimeout)
		defer cancel()
		rec, err := sink.Accept(ctx, incident.Delivery{Message: msg, Raw: body, ReceivedAt: received, Digest: digest, StateHash: state, Partial: partial})
		if err != nil {
			held = true
			m.rejected.WithLabelValues("storage_unavailable").Inc()
			var ie *incident.Error
			if !errors.As(err, &ie) || ie.Kind != incident.Unavailable {
				ie = &incident.Error{Kind: incident.Unavailable, Msg: "storage cannot commit", Err: err}
				err = ie
			}
			// The log line names the driver's error; the answer, which
			// Alertmanager logs, keeps to the store's message, with the
			// metric's reason as its code.
			logger.Warn("notification not committed; answered 503 so that Alertmanager retries", "group_key", msg.GroupKey, "err", incident.Detail(err))
			return &incident.Error{Kind: incident.Unavailable, Code: "storage_unavailable", Msg: ie.Msg, Err: err}
		}
		if !known {
			// Only committed bytes are remembered.
			seen.Add(digest, rememberPayload(msg, state))
		}
		for _, a := range msg.Alerts {
			m.alerts.WithLabelValues(a.Status).Inc()
		}
		outcome := "new"
		if rec.Duplicate {
			outcome = "duplicate"
		} else if msg.TruncatedAlerts > 0 {
			// Alertmanager computed this notification's status from the
			// alerts it kept: a "resolved" may hide alerts still firing
			// (docs/configuration.md, "Alertmanager's max_alerts").
			m.truncated.Inc()
			logger.Warn("alertmanager left alerts out of this notification (max_alerts): its status counts only the alerts it kept; unset max_alerts in responder's webhook_configs",
				"group_key", msg.GroupKey, "truncated_alerts", msg.TruncatedAlerts, "alerts", len(msg.Alerts), "status", msg.Status, "notification_id", rec.NotificationID)
		}
		m.notifications.WithLabelValues(outcome).Inc()
		return c.JSON(http.StatusOK, acceptResponse{Status: "success", NotificationID: rec.NotificationID, Duplicate: rec.Duplicate})
	}
}

// maxQuotedEncoding bounds the Content-Encoding quoted in a 415.
const maxQuotedEncoding = 64

// checkEncoding refuses a body in any Content-Encoding but identity with
// 415; hint ends the message. Alertmanager never compresses its bodies, so
// a compressed one comes from a proxy or another sender configured to
// compress: a permanent misconfiguration, for which a 4xx (never retried)
// is right. Decoding it as it is would answer a misleading 400 about
// invalid UTF-8 or JSON.
func checkEncoding(req *http.Request, hint string) error {
	for _, v := range req.Header.Values(echo.HeaderContentEncoding) {
		for enc := range strings.SplitSeq(v, ",") {
			enc = strings.TrimSpace(enc)
			if enc != "" && !strings.EqualFold(enc, "identity") {
				return &statusError{
					status: http.StatusUnsupportedMediaType, code: "unsupported_encoding",
					msg: "Content-Encoding " + strconv.Quote(incident.Clip(enc, maxQuotedEncoding)) + " is not supported: send the body uncompressed" + hint,
				}
			}
		}
	}
	return nil
}

// decode decodes a body for committing: only what that needs
// (incident.DecodeIdentity; partial is then true), unless the identity
// decoder refuses it, when the whole decoder has the last word. The
// identity decoder accepts nothing the whole one refuses, and is not known
// to refuse anything it accepts (FuzzDecodeIdentity); if it ever does, the
// notification is still accepted, and the disagreement logged.
func decode(logger *slog.Logger, body []byte) (msg *incident.Message, partial bool, err error) {
	msg, ierr := incident.DecodeIdentity(body)
	if ierr == nil {
		return msg, true, nil
	}
	msg, err = incident.DecodeMessage(body)
	if err != nil {
		return nil, false, err
	}
	logger.Warn("the identity decoder refused a payload the whole decoder accepts; accepted (please report)", "group_key", msg.GroupKey, "err", ierr)
	return msg, false, nil
}

// checkNUL refuses a message with a NUL character in a field that storage
// keeps as text. PostgreSQL refuses NUL in text, so such a notification
// could never be committed (groupKey, receiver: a 503 that Alertmanager
// would retry for ever) or applied (the others: a job that fails on every
// attempt, after a 200). JSON allows it ("\u0000"), and it is valid UTF-8;
// Alertmanager itself never sends one. The statuses are already firing or
// resolved, and label sets are stored as JSON, which escapes it.
func checkNUL(m *incident.Message) error {
	bad := func(s string) bool { return strings.IndexByte(s, 0) >= 0 }
	field := ""
	switch {
	case bad(m.GroupKey):
		field = "groupKey"
	case bad(m.Receiver):
		field = "receiver"
	case bad(m.ExternalURL):
		field = "externalURL"
	}
	for i := 0; field == "" && i < len(m.Alerts); i++ {
		a := m.Alerts[i]
		switch {
		case bad(a.Fingerprint):
			field = "alerts[" + strconv.Itoa(i) + "].fingerprint"
		case bad(a.GeneratorURL):
			field = "alerts[" + strconv.Itoa(i) + "].generatorURL"
		}
	}
	if field == "" {
		return nil
	}
	return &incident.Error{Kind: incident.Invalid, Code: "nul_character", Msg: field + ": must not contain a NUL character"}
}

// seenPayloads is how many committed bodies the webhook remembers by their
// SHA-256, at about 300 bytes each.
const seenPayloads = 1024

// knownPayload is what the webhook remembers of committed bytes: what
// committing them again needs, and the alert statuses its metrics count.
type knownPayload struct {
	version, groupKey, receiver, status, stateHash string
	truncated                                      uint64
	firing, resolved                               int
}

func rememberPayload(m *incident.Message, stateHash string) knownPayload {
	k := knownPayload{version: m.Version, groupKey: m.GroupKey, receiver: m.Receiver, status: m.Status, stateHash: stateHash, truncated: m.TruncatedAlerts}
	for _, a := range m.Alerts {
		if a.Status == incident.StatusFiring {
			k.firing++
		} else {
			k.resolved++
		}
	}
	return k
}

// message is the Partial message of the remembered bytes (see
// incident.Delivery.Partial).
func (k knownPayload) message() *incident.Message {
	alerts := make(template.Alerts, 0, k.firing+k.resolved)
	for range k.firing {
		alerts = append(alerts, template.Alert{Status: incident.StatusFiring})
	}
	for range k.resolved {
		alerts = append(alerts, template.Alert{Status: incident.StatusResolved})
	}
	return &incident.Message{
		Data:    &template.Data{Receiver: k.receiver, Status: k.status, Alerts: alerts},
		Version: k.version, GroupKey: k.groupKey, TruncatedAlerts: k.truncated,
	}
}

// readBody reads at most limit bytes of the request body into a buffer
// of its own (see readBodyInto).
func readBody(req *http.Request, limit int64, limitName string) ([]byte, error) {
	return readBodyInto(new(bytes.Buffer), req, limit, limitName)
}

// bodies recycles the buffers that webhook bodies are read into: at
// saturation they were a third of the bytes the server allocated
// (docs/benchmarks.md). See recycle.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer put back in bodies, so that one large
// body does not stay pinned in memory; Alertmanager's bodies are a few KiB
// per alert.
const maxPooledBody = 256 << 10

// recycle puts b back in bodies. Its caller must not use the bytes read
// into it afterwards, nor have handed them to anyone who may (a Sink keeps
// nothing of a delivery's Raw once it has answered without error; after an
// error it may still read them, and the handler does not recycle).
func recycle(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBody {
		b.Reset()
		bodies.Put(b)
	}
}

// readBodyInto reads at most limit bytes of the request body into b,
// which it empties first, and returns them (b's bytes). A larger body is
// refused with TooLarge, whose message names the limit by limitName: the
// setting that sets it, or what it is when it is fixed.
func readBodyInto(b *bytes.Buffer, req *http.Request, limit int64, limitName string) ([]byte, error) {
	if limit <= 0 {
		limit = int64(DefaultMaxBodySize)
	}
	tooLarge := func() error {
		return &incident.Error{Kind: incident.TooLarge, Code: "too_large", Msg: "request body exceeds " + limitName + " (" + strconv.FormatInt(limit, 10) + " bytes)"}
	}
	if req.ContentLength > limit {
		return nil, tooLarge()
	}
	size := req.ContentLength
	if size <= 0 {
		size = 16 << 10
	}
	b.Reset()
	b.Grow(int(size) + bytes.MinRead)
	if _, err := b.ReadFrom(io.LimitReader(req.Body, limit+1)); err != nil {
		// The server's read timeout cut a body that was still arriving:
		// nothing says it was malformed, and the sender (Alertmanager
		// retries only 5xx) is still waiting for the answer.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &incident.Error{Kind: incident.Unavailable, Code: "body_timeout", Msg: "request body not received in time; send it again", Err: err}
		}
		return nil, &incident.Error{Kind: incident.Invalid, Code: "malformed_json", Msg: "read request body", Err: err}
	}
	buf := b.Bytes()
	if int64(len(buf)) > limit {
		return nil, tooLarge()
	}
	return buf, nil
}

// reason is an error's metric label.
func reason(err error) string {
	var ie *incident.Error
	if errors.As(err, &ie) && ie.Code != "" {
		return ie.Code
	}
	return "invalid"
}

// storageUnavailable classifies an error from Incidents for the API:
// storage that cannot be reached (stopped, restarting, unreachable, too
// slow, or closed at shutdown) is Unavailable, answered 503 like the
// webhook's own storage failures, with a fixed message that names neither
// the DSN nor the server. Any other error is returned as it is.
func storageUnavailable(logger *slog.Logger, c echo.Context, err error) error {
	if err == nil || incident.KindOf(err) != incident.Internal || !unreachable(err) {
		return err
	}
	logger.WarnContext(c.Request().Context(), "storage unavailable; answered 503", "path", c.Path(), "err", err)
	return &incident.Error{Kind: incident.Unavailable, Code: "storage_unavailable", Msg: "storage unavailable", Err: err}
}

// SQLite's primary result codes for a database that another connection
// holds locked past the busy timeout (another process on the file, say).
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// unreachable reports whether err says that storage could not be reached
// or did not answer in time, rather than that a query failed: network
// errors (connection refused or reset, timeouts, DNS), the driver's bad
// connection, a closed pool, a deadline, PostgreSQL's SQLSTATEs for lost
// connections, shutdowns and overload, and SQLite's busy and locked. pgx's
// errors carry their SQLSTATE through the SQLState method, and wrap the
// network error they came from; modernc.org/sqlite's carry their result
// code (extended codes keep the primary one in the low byte) through Code.
func unreachable(err error) bool {
	var (
		netErr  net.Error
		state   interface{ SQLState() string }
		sqlite3 interface{ Code() int }
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
		return true
	case errors.As(err, &state):
		switch code := state.SQLState(); {
		case strings.HasPrefix(code, "08"): // connection_exception
			return true
		case code == "53300", // too_many_connections
			code == "57014", // query_canceled: statement_timeout
			code == "57P01", // admin_shutdown
			code == "57P02", // crash_shutdown
			code == "57P03": // cannot_connect_now: starting up or in recovery
			return true
		}
	case errors.As(err, &sqlite3):
		switch sqlite3.Code() & 0xff {
		case sqliteBusy, sqliteLocked:
			return true
		}
	}
	return closedDB(err)
}

// dbClosedText is database/sql's message for a pool that was closed: the
// store is closing, as at shutdown. The error itself is not exported.
const dbClosedText = "sql: database is closed"

func closedDB(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == dbClosedText {
			return true
		}
	}
	return false
}

func handleListIncidents(logger *slog.Logger, inc Incidents) echo.HandlerFunc {
	return func(c echo.Context) error {
		status := c.QueryParam("status")
		if status != "" && status != incident.StatusFiring && status != incident.StatusResolved {
			return incident.Errorf(incident.Invalid, "status must be %q or %q", incident.StatusFiring, incident.StatusResolved)
		}
		limit, err := queryInt(c, "limit")
		if err != nil {
			return err
		}
		before, err := queryInt(c, "before")
		if err != nil {
			return err
		}
		list, err := inc.ListIncidents(c.Request().Context(), incident.ListFilter{Status: status, Limit: limit, Before: int64(before)})
		if err != nil {
			return storageUnavailable(logger, c, err)
		}
		return c.JSON(http.StatusOK, pageBody("incidents", list, limit, func(i incident.Incident) int64 { return i.ID }))
	}
}

func handleGetIncident(logger *slog.Logger, inc Incidents) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id <= 0 {
			return incident.Errorf(incident.Invalid, "incident id must be a positive integer")
		}
		got, err := inc.GetIncident(c.Request().Context(), id)
		if err != nil {
			return storageUnavailable(logger, c, err)
		}
		return c.JSON(http.StatusOK, got)
	}
}

func handleListJobs(logger *slog.Logger, inc Incidents) echo.HandlerFunc {
	return func(c echo.Context) error {
		state := c.QueryParam("state")
		switch state {
		case "", incident.JobQueued, incident.JobRunning, incident.JobDone, incident.JobParked:
		default:
			return incident.Errorf(incident.Invalid, "state must be one of queued, running, done, parked")
		}
		limit, err := queryInt(c, "limit")
		if err != nil {
			return err
		}
		before, err := queryInt(c, "before")
		if err != nil {
			return err
		}
		jobs, err := inc.ListJobs(c.Request().Context(), incident.JobFilter{State: state, Limit: limit, Before: int64(before)})
		if err != nil {
			return storageUnavailable(logger, c, err)
		}
		return c.JSON(http.StatusOK, pageBody("jobs", jobs, limit, func(j incident.Job) int64 { return j.ID }))
	}
}

// handleRetryJob queues a parked job again, e.g. once the poison input or
// the failing dependency that parked it is fixed: 200 with the job id, 404
// when no parked job has that id.
func handleRetryJob(logger *slog.Logger, inc Incidents) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := strconv.ParseInt(c.Param("id"), 10, 64)
		if err != nil || id <= 0 {
			return incident.Errorf(incident.Invalid, "job id must be a positive integer")
		}
		if err := inc.Retry(c.Request().Context(), id); err != nil {
			return storageUnavailable(logger, c, err)
		}
		return c.JSON(http.StatusOK, map[string]any{"status": "queued", "id": id})
	}
}

// pageBody is the answer of a list endpoint: the page under key, and, when
// the page is full, next_before, the id of its last (oldest) entry, from
// which ?before= reads the next page.
func pageBody[T any](key string, list []T, limit int, id func(T) int64) map[string]any {
	out := map[string]any{key: list}
	if len(list) > 0 && len(list) == incident.PageLimit(limit) {
		out["next_before"] = id(list[len(list)-1])
	}
	return out
}

func queryInt(c echo.Context, name string) (int, error) {
	s := c.QueryParam(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, incident.Errorf(incident.Invalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

func handleHealthy() echo.HandlerFunc {
	return func(c echo.Context) error { return c.String(http.StatusOK, "Healthy.\n") }
}

func handleReady(ready func(context.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := ready(c.Request().Context()); err != nil {
			return c.String(http.StatusServiceUnavailable, "Not ready: "+err.Error()+"\n")
		}
		return c.String(http.StatusOK, "Ready.\n")
	}
}

func handleReload(logger *slog.Logger, reload func(context.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := reload(c.Request().Context()); err != nil {
			// Alertmanager and Prometheus answer a failed reload with 500.
			logger.Error("reload failed; the previous configuration stays in force", "err", err)
			return c.JSON(http.StatusInternalServerError, errorBody{Status: "error", Error: "reload failed: " + err.Error(), Code: "reload_failed"})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "success"})
	}
}

// notCommitted answers a write that storage did not commit: 503 with the
// code storage_unavailable, as the webhook's, and a warning that names the
// driver's error, which the answer leaves out (the error handler logs only
// unexpected errors).
func notCommitted(logger *slog.Logger, c echo.Context, err error) error {
	logger.WarnContext(c.Request().Context(), "not committed; answered 503", "path", c.Path(), "err", incident.Detail(err))
	return &incident.Error{Kind: incident.Unavailable, Code: "storage_unavailable", Msg: "storage cannot commit", Err: err}
}
