package app

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestTruncateText(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"fits", "disk full", 20, "disk full"},
		{"ascii", "disk full", 4, "disk…"},
		{"never inside a rune", "h€llo", 2, "h…"},
		{"a rune that fits", "h€llo", 4, "h€…"},
		{"not UTF-8", "ok \xff\xfe", 20, "ok \uFFFD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, truncateText(tc.in, tc.n))
		})
	}
	// Every cut of a text of multi-byte runes is valid UTF-8 within n
	// bytes (plus the mark).
	s := strings.Repeat("日本\xffé", 10)
	for n := 0; n < len(s)+2; n++ {
		got := truncateText(s, n)
		require.True(t, utf8.ValidString(got), "n=%d: %q", n, got)
		require.LessOrEqual(t, len(strings.TrimSuffix(got, "…")), n, "n=%d", n)
	}
}
