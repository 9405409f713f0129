package webhook

import (
	"context"
	"log/slog"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // G108: registers /debug/pprof on http.DefaultServeMux, which is never served itself; addRoutes exposes it only behind the API's authentication.
	"time"

	"github.com/labstack/echo/v4"
)

// storageDeadline bounds a request's context by d: what the handler asks of
// storage past it fails with context.DeadlineExceeded, which the handlers
// answer 503 storage_unavailable (a client that went away is still told
// apart, by context.Canceled).
func storageDeadline(d time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			ctx, cancel := context.WithTimeout(req.Context(), d)
			defer cancel()
			c.SetRequest(req.WithContext(ctx))
			// The error handler runs after this returns: it must see the
			// client's own context, to tell a client that went away.
			defer c.SetRequest(req)
			return next(c)
		}
	}
}

// slackInteractionsPath is the route of Slack's interaction requests.
const slackInteractionsPath = "/slack/interactions"

// addRoutes registers every route of the service.
func addRoutes(e *echo.Echo, logger *slog.Logger, sink Sink, opts Options, m *metrics) {
	auth := requireAuth(opts.Config, m)

	e.POST(webhookPath, handleAlertmanager(logger, sink, opts, m), auth)

	api := e.Group("/api/v1", auth)
	bounded := storageDeadline(opts.ReadTimeout)
	api.GET("/incidents", handleListIncidents(logger, opts.Incidents), bounded)
	api.GET("/incidents/:id", handleGetIncident(logger, opts.Incidents), bounded)
	api.GET("/jobs", handleListJobs(logger, opts.Incidents), bounded)
	api.POST("/jobs/:id/retry", handleRetryJob(logger, opts.Incidents), bounded)
	api.POST("/deployments", handleRecordDeployment(logger, opts.Deployments, opts))
	api.POST("/remediation/pause", handlePause(logger, opts, true))
	api.POST("/remediation/resume", handlePause(logger, opts, false))

	// Slack signs its requests: the signature is the authentication.
	e.POST(slackInteractionsPath, handleSlackInteractions(opts, m))

	// Profiling, as Prometheus and Alertmanager offer it, behind the API's
	// authentication.
	e.Any("/debug/pprof/*", echo.WrapHandler(http.DefaultServeMux), auth)

	e.GET("/metrics", echo.WrapHandler(opts.Metrics))
	e.GET("/-/healthy", handleHealthy())
	e.HEAD("/-/healthy", handleHealthy())
	e.GET("/-/ready", handleReady(opts.Ready))
	e.HEAD("/-/ready", handleReady(opts.Ready))
	e.POST("/-/reload", handleReload(logger, opts.Reload))

	// Prometheus pointed at responder by mistake (alerting.alertmanagers)
	// posts its alerts here: say what goes where, rather than a bare 404.
	e.POST("/api/v1/alerts", refuseAlerts)
	e.POST("/api/v2/alerts", refuseAlerts)
}

// refuseAlerts answers a client that takes responder for an Alertmanager.
func refuseAlerts(echo.Context) error {
	return &statusError{
		status: http.StatusNotFound, code: "not_alertmanager",
		msg: "responder is not an Alertmanager: point Prometheus (alerting.alertmanagers) at Alertmanager, and Alertmanager at responder (a webhook_configs url ending in " + webhookPath + ")",
	}
}

// webhookPath is the route of Alertmanager's notifications.
const webhookPath = "/webhook/alertmanager"

// noRoute is the message of a 404 for a path no route has: a mistyped
// webhook url in Alertmanager's configuration gets one on every
// notification, and the message says where notifications go.
const noRoute = "no such endpoint: Alertmanager's notifications go to " + webhookPath + " (webhook_configs url)"
