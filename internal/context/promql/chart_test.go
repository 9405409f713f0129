package promql

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/go-analyze/charts/chartdraw"
	"github.com/stretchr/testify/require"

	"github.com/responder/responder/internal/incident"
)

var chartEnd = time.Date(2026, 12, 3, 19, 40, 0, 0, time.UTC)

// series returns n points a step apart, ending at chartEnd, with values f(i).
func series(labels string, n int, step time.Duration, f func(i int) float64) incident.Series {
	s := incident.Series{Labels: labels}
	for i := range n {
		t := chartEnd.Add(-time.Duration(n-1-i) * step)
		s.Points = append(s.Points, incident.Point{T: t.UnixMilli(), V: f(i)})
	}
	return s
}

// colourful counts the pixels that are neither grey nor white: the
// series' lines (axes, grid and text are grey or black).
func colourful(t *testing.T, b []byte) int {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, ChartWidth, ChartHeight), img.Bounds())
	n := 0
	for y := range ChartHeight {
		for x := range ChartWidth {
			r, g, bl, _ := img.At(x, y).RGBA()
			hi, lo := max(r, g, bl), min(r, g, bl)
			if hi-lo > 0x4000 {
				n++
			}
		}
	}
	return n
}

func TestChart(t *testing.T) {
	hour := incident.Snapshot{Name: "errors", Start: chartEnd.Add(-time.Hour), End: chartEnd}
	wave := func(i int) float64 { return 0.2 + 0.1*math.Sin(float64(i)/10) }
	for _, tc := range []struct {
		name   string
		series []incident.Series
		lines  bool // some pixels of a line's colour
	}{
		{"one series", []incident.Series{series(`{job="api"}`, 241, 15*time.Second, wave)}, true},
		{"flat series", []incident.Series{series(`{job="api"}`, 241, 15*time.Second, func(int) float64 { return 1 })}, true},
		{"flat at zero", []incident.Series{series(`{job="api"}`, 241, 15*time.Second, func(int) float64 { return 0 })}, true},
		{"one point", []incident.Series{series(`{job="api"}`, 1, 15*time.Second, wave)}, false},
		{"NaN and Inf among the points", []incident.Series{series(`{job="api"}`, 241, 15*time.Second, func(i int) float64 {
			switch i % 7 {
			case 0:
				return math.NaN()
			case 1:
				return math.Inf(1)
			case 2:
				return math.Inf(-1)
			}
			return wave(i)
		})}, true},
		{"negative and huge", []incident.Series{series(`{job="api"}`, 100, time.Minute, func(i int) float64 { return -1e12 * float64(i) })}, true},
		{"tiny range", []incident.Series{series(`{job="api"}`, 100, time.Minute, func(i int) float64 { return 1e-300 * float64(i%2) })}, true},
		{"series without points beside one with", []incident.Series{{Labels: `{job="a"}`}, series(`{job="b"}`, 10, time.Minute, wave)}, true},
		{"many series, no legend", func() []incident.Series {
			var out []incident.Series
			for k := range 20 {
				out = append(out, series(strings.Repeat("x", 300), 60, time.Minute, func(i int) float64 { return float64(k * i) }))
			}
			return out
		}(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sn := hour
			sn.Series = tc.series
			b, err := Chart(sn)
			require.NoError(t, err)
			n := colourful(t, b)
			if tc.lines {
				require.Greater(t, n, 300, "the lines must be drawn")
			}
		})
	}
}

// TestChart_LinesAreTheOnlyColour makes colourful's threshold meaningful:
// a chart whose only series is out of the drawn range has no line pixels.
func TestChart_LinesAreTheOnlyColour(t *testing.T) {
	sn := incident.Snapshot{
		Name: "errors", Start: chartEnd.Add(-time.Hour), End: chartEnd,
		Series: []incident.Series{series(`{job="api"}`, 2, time.Hour, func(int) float64 { return 1 })},
	}
	b, err := Chart(sn)
	require.NoError(t, err)
	withLine := colourful(t, b)

	sn.Series[0].Points = sn.Series[0].Points[:1] // one point: no segment to draw
	b, err = Chart(sn)
	require.NoError(t, err)
	require.Less(t, colourful(t, b), 100, "a lone point has no line; only the legend's sample is coloured")
	require.Greater(t, withLine, 300)
}

func TestChart_Refuses(t *testing.T) {
	_, err := Chart(incident.Snapshot{Name: "empty"})
	require.ErrorContains(t, err, "no series")

	nan := incident.Snapshot{
		Name: "nan", Start: chartEnd.Add(-time.Hour), End: chartEnd,
		Series: []incident.Series{series(`{job="api"}`, 10, time.Minute, func(int) float64 { return math.NaN() })},
	}
	_, err = Chart(nan)
	require.ErrorContains(t, err, "no finite values")
}

// TestChart_NoRange draws a snapshot stored without its range over the
// span of its points.
func TestChart_NoRange(t *testing.T) {
	sn := incident.Snapshot{Name: "old", Series: []incident.Series{series(`{job="api"}`, 60, time.Minute, func(i int) float64 { return float64(i) })}}
	b, err := Chart(sn)
	require.NoError(t, err)
	require.Greater(t, colourful(t, b), 300)
}

func TestTimeTicks(t *testing.T) {
	labels := func(ticks []chartdraw.Tick) []string {
		var out []string
		for _, tk := range ticks {
			out = append(out, tk.Label)
		}
		return out
	}
	// Labels are UTC whatever the zone of the times given.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	ticks := timeTicks(chartEnd.Add(-time.Hour).In(zone), chartEnd.In(zone))
	require.Equal(t, []string{"", "18:50", "19:00", "19:10", "19:20", "19:30", ""}, labels(ticks))
	require.InDelta(t, float64(chartEnd.Add(-time.Hour).UnixNano()), ticks[0].Value, 0, "the axis starts at the range's start")
	require.InDelta(t, float64(chartEnd.UnixNano()), ticks[len(ticks)-1].Value, 0, "and ends at its end")

	require.Equal(t, []string{"", "19:36", "19:37", "19:38", "19:39", ""}, labels(timeTicks(chartEnd.Add(-5*time.Minute), chartEnd)))
	require.Equal(t, []string{"", "Nov 27", "Nov 28", "Nov 29", "Nov 30", "Dec 1", "Dec 2", "Dec 3", ""}, labels(timeTicks(chartEnd.Add(-7*24*time.Hour), chartEnd)))
	require.Equal(t, []string{"", "Dec 2 12:00", "Dec 2 18:00", "Dec 3 00:00", "Dec 3 06:00", "Dec 3 12:00", "Dec 3 18:00", ""},
		labels(timeTicks(chartEnd.Add(-36*time.Hour), chartEnd)))
	for _, d := range []time.Duration{time.Second, time.Minute, 90 * time.Minute, 7 * time.Hour, 30 * 24 * time.Hour, 400 * 24 * time.Hour} {
		n := 0
		for _, tk := range timeTicks(chartEnd.Add(-d), chartEnd) {
			if tk.Label != "" {
				n++
			}
		}
		require.LessOrEqual(t, n, maxTimeTicks, d)
	}
}

// BenchmarkChart draws the default snapshot: one hour at a 15 s step, three
// series.
func BenchmarkChart(b *testing.B) {
	sn := incident.Snapshot{Name: "errors", Start: chartEnd.Add(-time.Hour), End: chartEnd}
	for k := range 3 {
		sn.Series = append(sn.Series, series(`{job="api", instance="`+strings.Repeat("x", k+1)+`"}`, 241, 15*time.Second,
			func(i int) float64 { return float64(k) + math.Sin(float64(i)/10) }))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Chart(sn); err != nil {
			b.Fatal(err)
		}
	}
}
