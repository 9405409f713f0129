package gather_test

import (
	"errors"
	"fmt"
	"net/url"
)

func wrapURL() error {
	//nolint:gosec // G101: a made-up password, to prove it is dropped.
	return fmt.Errorf("query loki: %w", &url.Error{Op: "Get", URL: "http://u:hunter2@loki.internal:3100/loki/api/v1/query_range", Err: errors.New("connection refused")})
}
