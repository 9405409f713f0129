package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/responder/responder/internal/incident"
)

var errUnauthorized = &incident.Error{Kind: incident.Unauthorized, Code: "unauthorized", Msg: "missing or invalid credentials"}

// requireAuth checks the configured credentials in constant time. With no
// credentials configured every request passes (the app refuses to listen
// beyond loopback in that case).
func requireAuth(cfg func() Config, m *metrics) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			cur := cfg()
			if !authorized(cur, c.Request()) {
				m.rejected.WithLabelValues("unauthorized").Inc()
				scheme := "Basic"
				if cur.Authorization != nil {
					scheme = cur.Authorization.Type
				}
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, scheme+` realm="responder"`)
				return errUnauthorized
			}
			return next(c)
		}
	}
}

func authorized(cfg Config, r *http.Request) bool {
	switch {
	case cfg.Authorization != nil:
		typ, cred, ok := strings.Cut(r.Header.Get(echo.HeaderAuthorization), " ")
		// Evaluate both comparisons so the timing does not tell which failed.
		typeOK := strings.EqualFold(typ, cfg.Authorization.Type)
		credOK := equal(strings.TrimSpace(cred), cfg.Authorization.Credentials.Value())
		return ok && typeOK && credOK
	case cfg.BasicAuth != nil:
		user, pass, ok := r.BasicAuth()
		userOK := equal(user, cfg.BasicAuth.Username)
		passOK := equal(pass, cfg.BasicAuth.Password.Value())
		return ok && userOK && passOK
	default:
		return true
	}
}

// equal compares in constant time, independent of the lengths too: both
// sides are hashed first.
func equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1 && want != ""
}

var (
	errCrossOrigin = &statusError{
		status: http.StatusForbidden, code: "cross_origin",
		msg: "cross-origin request refused: responder takes no POST from a web page of another site",
	}
	errForbiddenHost = &statusError{
		status: http.StatusForbidden, code: "forbidden_host",
		msg: "without webhook authentication, responder answers only requests addressed to localhost or a loopback address: configure webhook.authorization or webhook.basic_auth",
	}
)

// refuseCrossOrigin refuses the requests that change something (POST and
// the like) when a browser sends them for a page of another origin, as
// net/http's CrossOriginProtection tells them (Sec-Fetch-Site, else Origin
// against Host). No endpoint is meant for a browser's POST, and such a page
// could otherwise post alerts, pause or resume remediation, retry jobs or
// reload through the browser of someone on the host (loopback, without
// authentication), or of someone whose browser remembers the basic_auth
// credentials: a form or a no-cors fetch is a simple request, which no CORS
// preflight stops, and the webhook does not look at Content-Type.
// Alertmanager, CI jobs, curl and Slack send neither header, and pass.
func refuseCrossOrigin(m *metrics) echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cop.Check(c.Request()) != nil {
				m.rejected.WithLabelValues("cross_origin").Inc()
				return errCrossOrigin
			}
			return next(c)
		}
	}
}

// requireLoopbackHost refuses, while no authentication is configured, a
// request whose Host is not localhost or a loopback address. Without
// authentication the app listens on loopback only, so that no one else can
// reach it; a web page that rebinds its own name to 127.0.0.1 (DNS
// rebinding) still reaches it through a browser on the host, as its own
// origin, and could read the incidents and post alerts. Its requests name
// it in Host. Slack interactions are left to their signature (a tunnel to
// a loopback listener names itself).
func requireLoopbackHost(cfg func() Config, m *metrics) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cfg().Enabled() || c.Path() == slackInteractionsPath || loopbackHost(c.Request().Host) {
				return next(c)
			}
			m.rejected.WithLabelValues("forbidden_host").Inc()
			return errForbiddenHost
		}
	}
}

// loopbackHost reports whether a Host header names loopback: localhost or
// a loopback address, with or without a port. An empty Host (HTTP/1.0)
// passes: no browser sends one.
func loopbackHost(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
