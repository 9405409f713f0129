package store_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/responder/responder/internal/store"
)

// A DSN may hold a password, in a URL or in a libpq key/value string: no
// error quotes the DSN or any part of it but a plain scheme.
func TestParseDSN_ErrorsKeepTheDSNOut(t *testing.T) {
	t.Parallel()
	const secret = "S3cret"
	tests := []struct {
		name    string
		dsn     string
		wantErr string
	}{
		{name: "key/value", dsn: "host=db.example user=resp password=S3cret dbname=responder", wantErr: "dsn: no URL scheme"},
		{name: "key/value with a URL in a value", dsn: "host=db.example password=S3cret://x", wantErr: "dsn: no URL scheme"},
		{name: "password before ://", dsn: "resp:S3cret@db.example://x", wantErr: "dsn: no URL scheme"},
		{name: "long scheme", dsn: strings.Repeat("S3cret", 4) + "://db", wantErr: "dsn: no URL scheme"},
		{name: "bare word", dsn: "S3cret", wantErr: "dsn: no URL scheme"},
		{name: "other scheme", dsn: "mysql://resp:S3cret@db.example/responder", wantErr: `dsn: unsupported scheme "mysql"`}, //nolint:gosec // G101: a made-up password whose absence from errors the test checks.
		{name: "postgres URL that does not parse", dsn: "postgres://resp:S3cret@db.example:port/responder", wantErr: "dsn: postgres URL does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := store.ParseDSN(tt.dsn)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), secret)

			// The same through the config section, as check-config and
			// POST /-/reload report it.
			var c store.Config
			err = yaml.UnmarshalStrict([]byte("dsn: '"+tt.dsn+"'\n"), &c)
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), secret)
		})
	}
}

func TestParseDSN(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string][2]string{
		"sqlite://data/r.db":                     {"sqlite", "data/r.db"},
		"postgres://resp@db.example/responder":   {"postgres", "postgres://resp@db.example/responder"},
		"postgresql://resp@db.example/responder": {"postgres", "postgresql://resp@db.example/responder"},
	} {
		driver, rest, err := store.ParseDSN(dsn)
		require.NoError(t, err, dsn)
		require.Equal(t, want, [2]string{driver, rest}, dsn)
	}
}
