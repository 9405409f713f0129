package promql

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/go-analyze/charts/chartdraw"

	"github.com/responder/responder/internal/incident"
)

// The chart's size in pixels.
const (
	ChartWidth  = 800
	ChartHeight = 400
)

// maxLegend caps a legend entry: series labels can be long.
const maxLegend = 70

// maxLegendSeries is the most series that get a legend; more would cover
// the lines.
const maxLegendSeries = 6

// Chart renders a snapshot's range query as a PNG line chart of
// ChartWidth × ChartHeight pixels, one line per series, times in UTC.
// Points that are NaN or infinite (PromQL returns them, e.g. for 0/0) are
// left out of their line.
//
// It uses chartdraw (github.com/go-analyze/charts), whose fonts are
// parsed when the first chart is drawn, not when the process starts:
// gonum/plot, used before, parsed twelve fonts at start-up in every
// process and linked PDF, SVG and LaTeX back-ends: the switch made the
// binary 6 MB smaller and the peak RSS of a saturated ingest 3 MB lower
// (docs/benchmarks.md).
func Chart(sn incident.Snapshot) (_ []byte, err error) {
	defer func() {
		// A chart is an extra: a drawing bug must cost the chart, not the
		// job that shares it.
		if r := recover(); r != nil {
			err = fmt.Errorf("chart %q: drawing failed: %v", sn.Name, r)
		}
	}()
	if len(sn.Series) == 0 {
		return nil, fmt.Errorf("chart %q: no series", sn.Name)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	var first, last time.Time // of the points drawn
	var series []chartdraw.Series
	for _, s := range sn.Series {
		ts := chartdraw.TimeSeries{
			Name:  truncate(s.Labels, maxLegend),
			Style: chartdraw.Style{StrokeWidth: 2},
			YAxis: chartdraw.YAxisSecondary, // the axis on the left
		}
		for _, pt := range s.Points {
			if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
				continue
			}
			t := time.UnixMilli(pt.T)
			ts.XValues = append(ts.XValues, t)
			ts.YValues = append(ts.YValues, pt.V)
			lo, hi = min(lo, pt.V), max(hi, pt.V)
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		if len(ts.XValues) > 0 {
			series = append(series, ts)
		}
	}
	if len(series) == 0 {
		return nil, fmt.Errorf("chart %q: no finite values", sn.Name)
	}
	start, end := sn.Start, sn.End
	if !start.Before(end) {
		// A snapshot without its range (older records): span the points.
		start, end = first, last
		if !start.Before(end) {
			start, end = start.Add(-time.Minute), end.Add(time.Minute)
		}
	}
	lo, hi = yRange(lo, hi)
	c := chartdraw.Chart{
		Title:  truncate(sn.Name, 80),
		Width:  ChartWidth,
		Height: ChartHeight,
		Background: chartdraw.Style{
			Padding: chartdraw.Box{Top: 40, Left: 20, Right: 20, Bottom: 20, IsSet: true},
		},
		XAxis: chartdraw.XAxis{
			Name:           "UTC",
			Ticks:          timeTicks(start, end),
			GridMajorStyle: gridStyle,
		},
		// chartdraw draws its primary Y axis on the right; the series use
		// the secondary one, on the left, where Prometheus and Grafana
		// put it.
		YAxis: chartdraw.YAxis{
			Style: chartdraw.Hidden(),
			Range: &chartdraw.ContinuousRange{Min: lo, Max: hi},
		},
		YAxisSecondary: chartdraw.YAxis{
			Range:          &chartdraw.ContinuousRange{Min: lo, Max: hi},
			GridMajorStyle: gridStyle,
		},
		Series: series,
	}
	if len(series) <= maxLegendSeries {
		c.Elements = []chartdraw.Renderable{chartdraw.Legend(&c)}
	}
	var b bytes.Buffer
	if err := c.Render(chartdraw.PNG, &b); err != nil {
		return nil, fmt.Errorf("chart %q: %w", sn.Name, err)
	}
	return b.Bytes(), nil
}

var gridStyle = chartdraw.Style{StrokeColor: chartdraw.ColorLightGray, StrokeWidth: 1}

// tickSteps are the spacings the time axis may use, smallest first.
var tickSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// maxTimeTicks is the most labelled ticks on the time axis.
const maxTimeTicks = 8

// timeTicks labels the time axis from start to end at round times in UTC
// ("15:04"; with the date when the range is longer than a day), whatever
// the host's time zone. The two ends are ticks without labels, so that the axis spans
// exactly the query's range.
func timeTicks(start, end time.Time) []chartdraw.Tick {
	start, end = start.UTC(), end.UTC()
	const day = 24 * time.Hour
	step := (end.Sub(start)/maxTimeTicks/day + 1) * day // whole days, for ranges beyond the list
	for _, s := range tickSteps {
		if end.Sub(start)/s <= maxTimeTicks {
			step = s
			break
		}
	}
	layout := "15:04"
	switch {
	case step >= day:
		layout = "Jan 2"
	case end.Sub(start) > day:
		layout = "Jan 2 15:04"
	}
	ticks := []chartdraw.Tick{{Value: chartdraw.TimeToFloat64(start)}}
	for t := start.Truncate(step); !t.After(end); t = t.Add(step) {
		if t.After(start) && t.Before(end) {
			ticks = append(ticks, chartdraw.Tick{Value: chartdraw.TimeToFloat64(t), Label: t.Format(layout)})
		}
	}
	return append(ticks, chartdraw.Tick{Value: chartdraw.TimeToFloat64(end)})
}

// yRange widens a flat or empty value range so that the line is drawn in
// the middle of the chart rather than on a zero-height axis.
func yRange(lo, hi float64) (float64, float64) {
	if hi > lo {
		return lo, hi
	}
	pad := math.Abs(lo) * 0.1
	if pad == 0 {
		pad = 1
	}
	return lo - pad, hi + pad
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
