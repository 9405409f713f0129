package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
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
