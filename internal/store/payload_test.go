package store

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPayload_RoundTrip(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../testdata/am_v4_firing_10.json")
	require.NoError(t, err)
	packed := packPayload(raw)
	require.True(t, bytes.HasPrefix(packed, payloadMarker))
	require.Less(t, len(packed), len(raw)/5, "JSON compresses several times")
	got, err := unpackPayload(packed)
	require.NoError(t, err)
	require.Equal(t, raw, got)

	// Rows stored before compression are read as they are.
	got, err = unpackPayload(raw)
	require.NoError(t, err)
	require.Equal(t, raw, got)

	// What does not get smaller is stored as it is.
	tiny := []byte(`{}`)
	require.Equal(t, tiny, packPayload(tiny))
	require.Empty(t, packPayload(nil))

	_, err = unpackPayload(append(bytes.Clone(payloadMarker), 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2))
	require.ErrorIs(t, err, errPayload, "a length above the bound is refused before allocating")
	_, err = unpackPayload(packed[:len(packed)-10])
	require.ErrorIs(t, err, errPayload)
}

// FuzzPayload: whatever is stored reads back the same, and no stored bytes
// make the reader panic.
func FuzzPayload(f *testing.F) {
	raw, err := os.ReadFile("../../testdata/am_v4_firing_10.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(packPayload(raw))
	f.Add([]byte(`{"version":"4"}`))
	f.Add(append(bytes.Clone(payloadMarker), 0x80))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := unpackPayload(packPayload(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("round trip of %d bytes: %v", len(b), err)
		}
		_, _ = unpackPayload(b)
	})
}
