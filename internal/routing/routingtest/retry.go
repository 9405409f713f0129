// Package routingtest holds what notifier tests share: httptest fakes of the
// SaaS APIs that behave like the real ones (validation, error bodies,
// scriptable failures, rate limits) and the table of HTTP statuses to the
// retry flag every notifier must return.
package routingtest

import "net/http"

// RetryTests maps every HTTP status a notifier test should replay to whether
// the notifier must ask to be retried after receiving it. It follows the
// rule of STYLE.md §5: only 5xx and the codes listed explicitly (429, which
// both Slack and PagerDuty use for "slow down") are retried; everything
// else, including 408, is final. 1xx codes are left out: an httptest server
// cannot send one as the final response of a request.
//
// Use it as a table, and never write into it:
//
//	for status, want := range routingtest.RetryTests {
//		t.Run(http.StatusText(status), func(t *testing.T) { ... })
//	}
var RetryTests = map[int]bool{
	// 2xx: delivered.
	http.StatusOK:                   false,
	http.StatusCreated:              false,
	http.StatusAccepted:             false,
	http.StatusNonAuthoritativeInfo: false,
	http.StatusNoContent:            false,
	http.StatusResetContent:         false,
	http.StatusPartialContent:       false,
	http.StatusMultiStatus:          false,
	http.StatusAlreadyReported:      false,
	http.StatusIMUsed:               false,

	// 3xx: a misconfigured URL; sending again will not fix it.
	http.StatusMultipleChoices:   false,
	http.StatusMovedPermanently:  false,
	http.StatusFound:             false,
	http.StatusSeeOther:          false,
	http.StatusNotModified:       false,
	http.StatusUseProxy:          false,
	http.StatusTemporaryRedirect: false,
	http.StatusPermanentRedirect: false,

	// 4xx: the request is wrong (400 invalid event, 401/403 bad credentials,
	// 404 bad URL, 413 too large), except 429.
	http.StatusBadRequest:                   false,
	http.StatusUnauthorized:                 false,
	http.StatusPaymentRequired:              false,
	http.StatusForbidden:                    false,
	http.StatusNotFound:                     false,
	http.StatusMethodNotAllowed:             false,
	http.StatusNotAcceptable:                false,
	http.StatusProxyAuthRequired:            false,
	http.StatusRequestTimeout:               false,
	http.StatusConflict:                     false,
	http.StatusGone:                         false,
	http.StatusLengthRequired:               false,
	http.StatusPreconditionFailed:           false,
	http.StatusRequestEntityTooLarge:        false,
	http.StatusRequestURITooLong:            false,
	http.StatusUnsupportedMediaType:         false,
	http.StatusRequestedRangeNotSatisfiable: false,
	http.StatusExpectationFailed:            false,
	http.StatusTeapot:                       false,
	http.StatusMisdirectedRequest:           false,
	http.StatusUnprocessableEntity:          false,
	http.StatusLocked:                       false,
	http.StatusFailedDependency:             false,
	http.StatusTooEarly:                     false,
	http.StatusUpgradeRequired:              false,
	http.StatusPreconditionRequired:         false,
	http.StatusTooManyRequests:              true,
	http.StatusRequestHeaderFieldsTooLarge:  false,
	http.StatusUnavailableForLegalReasons:   false,

	// 5xx: the service is in trouble; try again later.
	http.StatusInternalServerError:           true,
	http.StatusNotImplemented:                true,
	http.StatusBadGateway:                    true,
	http.StatusServiceUnavailable:            true,
	http.StatusGatewayTimeout:                true,
	http.StatusHTTPVersionNotSupported:       true,
	http.StatusVariantAlsoNegotiates:         true,
	http.StatusInsufficientStorage:           true,
	http.StatusLoopDetected:                  true,
	http.StatusNotExtended:                   true,
	http.StatusNetworkAuthenticationRequired: true,
}
