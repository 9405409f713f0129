package store

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// Label sets written before mustJSON used goccy/go-json were encoded by
// encoding/json; both must write the same bytes, so that old and new rows
// read alike and an upsert rewrites a label set only when it changed.
func TestMustJSON_AsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, kv := range []map[string]string{
		{},
		{"alertname": "CheckoutLatencyHigh", "severity": "critical", "pod": "checkout-7d9f8b6c5-00000"},
		{"html": `<a href="x">&amp;</a>`, "quotes": `"\'\\/`},
		{"controls": "\x00\x01\x08\t\n\f\r\x1f\x7f", "separators": "\u2028\u2029"},
		{"unicode": "é€😀\ufffd", "": "empty key", "zz": ""},
		{"b": "2", "a": "1", "B": "3", "ä": "4", "a\x00": "5"},
	} {
		want, err := json.Marshal(kv)
		require.NoError(t, err)
		require.Equal(t, string(want), mustJSON(kv))
		var back map[string]string
		require.NoError(t, json.Unmarshal([]byte(mustJSON(kv)), &back))
		require.Equal(t, kv, back)
		require.Equal(t, kv, decodeKV(mustJSON(kv)))
	}
	require.Equal(t, "{}", mustJSON(nil))
}
