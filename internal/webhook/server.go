// Package webhook is responder's HTTP surface: the Alertmanager webhook
// receiver, the incidents API and the Prometheus-style operational endpoints,
// built on echo. The webhook handler only decodes, validates and commits;
// everything else happens later on the durable work queue.
package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder/responder/internal/incident"
)

// Sink durably commits a delivery; the webhook answers 200 only after it
// returns without error. Once Accept has returned without error, the
// webhook reuses the memory of d.Raw: a Sink that keeps the bytes copies
// them.
type Sink interface {
	Accept(ctx context.Context, d incident.Delivery) (incident.Receipt, error)
}

// Incidents reads incidents and jobs for the API.
type Incidents interface {
	ListIncidents(ctx context.Context, f incident.ListFilter) ([]incident.Incident, error)
	GetIncident(ctx context.Context, id int64) (*incident.Incident, error)
	ListJobs(ctx context.Context, f incident.JobFilter) ([]incident.Job, error)
	// Retry queues a parked job again, with its attempts reset.
	Retry(ctx context.Context, id int64) error
}

// Options are the server's optional collaborators.
type Options struct {
	// Config returns the current webhook section, secrets resolved. It is
	// called on every request so that a reload takes effect at once.
	Config func() Config
	// Incidents backs /api/v1/incidents and /api/v1/jobs.
	Incidents Incidents
	// Ready reports whether the service can accept work (storage open and
	// migrated, not shutting down).
	Ready func(ctx context.Context) error
	// Reload re-reads the configuration.
	Reload func(ctx context.Context) error
	// Metrics serves /metrics.
	Metrics http.Handler
	// Registerer receives the server's own metrics.
	Registerer prometheus.Registerer
	// Deployments backs POST /api/v1/deployments; nil answers it with 404.
	Deployments Deployments
	// Remediation backs the pause/resume endpoints and Slack approvals;
	// nil answers them with 404.
	Remediation Remediation
	// SlackSigningSecret returns the secret that verifies Slack's requests
	// to /slack/interactions; an empty one refuses them all.
	SlackSigningSecret func() incident.Secret
	// AcceptTimeout bounds how long a request waits for its commit.
	AcceptTimeout time.Duration
	// ReadTimeout bounds how long an incidents or jobs request waits for
	// storage (30 s when zero); past it the answer is 503
	// storage_unavailable, not a request that hangs with a wedged database.
	ReadTimeout time.Duration
	Now         func() time.Time
}

// NewServer builds the HTTP handler. All routes are in routes.go.
func NewServer(logger *slog.Logger, sink Sink, opts Options) http.Handler {
	if opts.Config == nil {
		opts.Config = func() Config { return Config{MaxBodySize: DefaultMaxBodySize} }
	}
	if opts.Ready == nil {
		opts.Ready = func(context.Context) error { return nil }
	}
	if opts.Reload == nil {
		opts.Reload = func(context.Context) error { return errors.New("reload is not supported") }
	}
	if opts.Metrics == nil {
		opts.Metrics = http.NotFoundHandler()
	}
	if opts.AcceptTimeout <= 0 {
		opts.AcceptTimeout = 10 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := newMetrics(opts.Registerer)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(logger)
	e.Use(middleware.Recover())
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogLatency: true, LogMethod: true, LogURIPath: true, LogRoutePath: true, LogRemoteIP: true,
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			m.observe(v.RoutePath, v.Status, v.Latency)
			level := slog.LevelDebug
			switch {
			case v.Status == statusClientClosed:
				// Nobody was left to answer: a client's own timeout, not
				// responder's problem (counted in the requests metric).
			case v.Status >= 500:
				level = slog.LevelWarn
			case v.Status >= 400:
				level = slog.LevelInfo
			}
			ctx := c.Request().Context()
			if logger.Enabled(ctx, level) {
				logger.LogAttrs(ctx, level, "http request", slog.String("method", v.Method), slog.String("path", v.URIPath),
					slog.Int("code", v.Status), slog.Duration("duration", v.Latency), slog.String("remote", v.RemoteIP))
			}
			return nil
		},
	}))
	// After routing (e.Use), before any route's own middleware: on every
	// route, and on the 404s and 405s too.
	e.Use(refuseCrossOrigin(m), requireLoopbackHost(opts.Config, m))
	addRoutes(e, logger, sink, opts, m)
	return e
}

// errorHandler writes every error as JSON with the status of its kind. It is
// the one place that maps errors to status codes, and the one place that
// logs unexpected (Internal) errors.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code, body := http.StatusInternalServerError, errorBody{Status: "error", Error: "internal error"}
		var he *echo.HTTPError
		var ie *incident.Error
		var se *statusError
		switch {
		case errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil:
			// The client went away (closed the connection, timed out):
			// nobody reads the answer, and nothing failed on our side.
			code, body.Error, body.Code = statusClientClosed, "client closed the request", "client_closed"
			logger.Debug("client closed the request before the answer", "path", c.Path())
		case errors.As(err, &se):
			code, body.Error, body.Code = se.status, se.msg, se.code
		case errors.As(err, &ie):
			code, body.Error, body.Code = statusOf(ie.Kind), ie.Msg, ie.Code
			if ie.Kind == incident.Internal {
				logger.Error("request failed", "path", c.Path(), "err", err)
				body.Error = "internal error"
			}
		case errors.As(err, &he):
			code = he.Code
			body.Error = http.StatusText(code)
			if msg, ok := he.Message.(string); ok {
				body.Error = msg
			}
			if errors.Is(err, echo.ErrNotFound) {
				body.Error = noRoute
			}
		default:
			logger.Error("request failed", "path", c.Path(), "err", err)
		}
		if body.Code == "" {
			body.Code = statusCode(code)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(code)
			return
		}
		_ = c.JSON(code, body)
	}
}

// statusCode is the code of an error that has none of its own: the status
// text in snake case ("not_found", "method_not_allowed"), so that every
// error carries one.
func statusCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "error"
	}
	return strings.ReplaceAll(strings.ToLower(strings.ReplaceAll(text, "-", " ")), " ", "_")
}

// statusClientClosed is the status recorded (in the requests metric) for a
// request whose client went away before the answer: 499, as nginx logs it.
const statusClientClosed = 499

// statusError is a refusal with a 4xx status that no incident.Kind maps
// to, such as 415 for a Content-Encoding the webhook does not decode.
type statusError struct {
	status int
	// code is the error body's code and the metric's reason.
	code string
	msg  string
}

func (e *statusError) Error() string { return e.msg }

type errorBody struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Code   string `json:"code,omitempty"`
}

func statusOf(k incident.Kind) int {
	switch k {
	case incident.Invalid:
		return http.StatusBadRequest
	case incident.NotFound:
		return http.StatusNotFound
	case incident.Conflict:
		return http.StatusConflict
	case incident.Unavailable:
		return http.StatusServiceUnavailable
	case incident.Unauthorized:
		return http.StatusUnauthorized
	case incident.TooLarge:
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}
