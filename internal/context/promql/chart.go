package promql

import (
	"bytes"
	"fmt"
	"image"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/responder/responder/internal/incident"
)

// The chart's size in pixels.
const (
	ChartWidth  = 800
	ChartHeight = 400
)

// maxLegend caps a legend entry: series labels can be long.
const maxLegend = 70

// Chart renders a snapshot's range query as a PNG line chart of
// ChartWidth × ChartHeight pixels, one line per series, times in UTC.
func Chart(sn incident.Snapshot) ([]byte, error) {
	if len(sn.Series) == 0 {
		return nil, fmt.Errorf("chart %q: no series", sn.Name)
	}
	p := plot.New()
	p.Title.Text = truncate(sn.Name, 80)
	p.X.Label.Text = "UTC"
	p.X.Tick.Marker = plot.TimeTicks{Format: "15:04"}
	p.X.Min, p.X.Max = float64(sn.Start.Unix()), float64(sn.End.Unix())
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	for i, s := range sn.Series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j] = plotter.XY{X: float64(time.UnixMilli(pt.T).Unix()), Y: pt.V}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", sn.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		if len(sn.Series) <= 6 {
			p.Legend.Add(truncate(s.Labels, maxLegend), l)
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, ChartWidth, ChartHeight))
	c := vgimg.NewWith(vgimg.UseImage(img))
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&b); err != nil {
		return nil, fmt.Errorf("chart %q: encode png: %w", sn.Name, err)
	}
	return b.Bytes(), nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
