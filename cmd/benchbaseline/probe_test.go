package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProbeFsync: the probe fsyncs at about its rate, reports ordered
// percentiles, and leaves nothing behind.
func TestProbeFsync(t *testing.T) {
	dir := t.TempDir()
	res, err := probeFsync(t.Context(), dir, 200, 300*time.Millisecond)
	require.NoError(t, err)
	require.Greater(t, res.Fsyncs, 10, "a tick every 5 ms for 300 ms")
	require.LessOrEqual(t, res.Fsyncs, 61)
	require.Greater(t, res.P50, 0.0)
	require.LessOrEqual(t, res.P50, res.P90)
	require.LessOrEqual(t, res.P90, res.P99)
	require.LessOrEqual(t, res.P99, res.Max)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "the probe's file is removed")

	_, err = probeFsync(t.Context(), dir, 0, time.Second)
	require.Error(t, err)
	_, err = probeFsync(t.Context(), dir+"/missing", 100, time.Second)
	require.Error(t, err)
}

// TestRun_Probe: --probe.fsync-dir prints the probe's JSON and exits 0.
func TestRun_Probe(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = w
	code := run([]string{"--probe.fsync-dir=" + t.TempDir(), "--probe.rate=100", "--probe.duration=100ms"})
	os.Stdout = stdout
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	var res probeResult
	require.NoError(t, json.NewDecoder(bytes.NewReader(out)).Decode(&res))
	require.Positive(t, res.Fsyncs)
}
