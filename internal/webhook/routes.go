package webhook

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // G108: registers /debug/pprof on http.DefaultServeMux, which is never served itself; addRoutes exposes it only behind the API's authentication.

	"github.com/labstack/echo/v4"
)

// addRoutes registers every route of the service.
func addRoutes(e *echo.Echo, logger *slog.Logger, sink Sink, opts Options, m *metrics) {
	auth := requireAuth(opts.Config, m)

	e.POST("/webhook/alertmanager", handleAlertmanager(logger, sink, opts, m), auth)

	api := e.Group("/api/v1", auth)
	api.GET("/incidents", handleListIncidents(logger, opts.Incidents))
	api.GET("/incidents/:id", handleGetIncident(logger, opts.Incidents))
	api.GET("/jobs", handleListJobs(logger, opts.Incidents))
	api.POST("/jobs/:id/retry", handleRetryJob(logger, opts.Incidents))
	api.POST("/deployments", handleRecordDeployment(opts.Deployments, opts))
	api.POST("/remediation/pause", handlePause(opts, true))
	api.POST("/remediation/resume", handlePause(opts, false))

	// Slack signs its requests: the signature is the authentication.
	e.POST("/slack/interactions", handleSlackInteractions(opts, m))

	// Profiling, as Prometheus and Alertmanager offer it, behind the API's
	// authentication.
	e.Any("/debug/pprof/*", echo.WrapHandler(http.DefaultServeMux), auth)

	e.GET("/metrics", echo.WrapHandler(opts.Metrics))
	e.GET("/-/healthy", handleHealthy())
	e.HEAD("/-/healthy", handleHealthy())
	e.GET("/-/ready", handleReady(opts.Ready))
	e.HEAD("/-/ready", handleReady(opts.Ready))
	e.POST("/-/reload", handleReload(logger, opts.Reload))
}
