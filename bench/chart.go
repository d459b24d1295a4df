package main

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"slices"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// barChart is a grouped bar chart: one group per category on the x axis, one bar per series
// in each group, the median as the bar and min–max as a whisker.
type barChart struct {
	Title  string
	YLabel string
	Groups []string
	Series []string
	Median [][]float64 // [series][group]; NaN: no bar
	Min    [][]float64 // optional, same shape
	Max    [][]float64
	Format func(float64) string
}

var palette = []color.RGBA{
	{0x4c, 0x72, 0xb0, 0xff}, // blue
	{0xdd, 0x84, 0x52, 0xff}, // orange
	{0x55, 0xa8, 0x68, 0xff}, // green
	{0xc4, 0x4e, 0x52, 0xff}, // red
	{0x81, 0x72, 0xb3, 0xff}, // purple
}

const (
	chartW, chartH = 960, 500
	marginL        = 80
	marginR        = 20
	marginT        = 60
	marginB        = 70
)

// bar sets the bar of series in group to s (its median with min and max) times k, adding the
// series or the group, in order of first use, when new.
func (c *barChart) bar(series, group string, s Stat, k float64) {
	si, gi := named(&c.Series, series), named(&c.Groups, group)
	c.grow()
	c.Median[si][gi], c.Min[si][gi], c.Max[si][gi] = s.Median*k, s.Min*k, s.Max*k
}

// named is the index of name in names, appended when new.
func named(names *[]string, name string) int {
	if i := slices.Index(*names, name); i >= 0 {
		return i
	}
	*names = append(*names, name)
	return len(*names) - 1
}

// grow gives every series a value (NaN: no bar) for every group.
func (c *barChart) grow() {
	for _, grid := range []*[][]float64{&c.Median, &c.Min, &c.Max} {
		for len(*grid) < len(c.Series) {
			*grid = append(*grid, nil)
		}
		for i := range *grid {
			for len((*grid)[i]) < len(c.Groups) {
				(*grid)[i] = append((*grid)[i], math.NaN())
			}
		}
	}
}

// write renders the chart as a PNG file.
func (c barChart) write(path string) error {
	c.grow()
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	black := color.RGBA{0x20, 0x20, 0x20, 0xff}
	grey := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}

	top := 0.0
	for s := range c.Median {
		for g := range c.Median[s] {
			v := c.Median[s][g]
			if c.Max != nil && !math.IsNaN(c.Max[s][g]) {
				v = math.Max(v, c.Max[s][g])
			}
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	step := niceStep(top / 5)
	top = math.Ceil(top/step) * step
	if top == 0 {
		top, step = 1, 0.2
	}
	plotH := float64(chartH - marginT - marginB)
	y := func(v float64) int { return chartH - marginB - int(v/top*plotH) }

	text(img, c.Title, marginL, 22, black)
	text(img, c.YLabel, 8, marginT-14, black)
	for v := 0.0; v <= top+step/2; v += step {
		hline(img, marginL, chartW-marginR, y(v), grey)
		label := c.Format(v)
		text(img, label, marginL-8-7*len(label), y(v)+4, black)
	}
	vline(img, marginL, marginT, chartH-marginB, black)
	hline(img, marginL, chartW-marginR, chartH-marginB, black)

	groupW := float64(chartW-marginL-marginR) / float64(len(c.Groups))
	barW := int(groupW * 0.8 / float64(len(c.Series)))
	for g, name := range c.Groups {
		x0 := marginL + int(float64(g)*groupW+groupW*0.1)
		for s := range c.Series {
			v := c.Median[s][g]
			if math.IsNaN(v) {
				continue
			}
			x := x0 + s*barW
			fill(img, image.Rect(x+1, y(v), x+barW-1, chartH-marginB), palette[s%len(palette)])
			if c.Min != nil && !math.IsNaN(c.Min[s][g]) {
				mid := x + barW/2
				vline(img, mid, y(c.Max[s][g]), y(c.Min[s][g]), black)
				hline(img, mid-3, mid+4, y(c.Max[s][g]), black)
				hline(img, mid-3, mid+4, y(c.Min[s][g]), black)
			}
			label := c.Format(v)
			lx := x + barW/2 - 7*len(label)/2
			ly := y(v) - 4
			if c.Max != nil && !math.IsNaN(c.Max[s][g]) {
				ly = min(ly, y(c.Max[s][g])-4)
			}
			text(img, label, lx, ly, black)
		}
		text(img, name, x0+int(groupW*0.8)/2-7*len(name)/2, chartH-marginB+18, black)
	}
	// Legend, top right.
	lx := chartW - marginR - 10
	for s := len(c.Series) - 1; s >= 0; s-- {
		lx -= 7*len(c.Series[s]) + 30
		fill(img, image.Rect(lx, 34, lx+14, 46), palette[s%len(palette)])
		text(img, c.Series[s], lx+18, 45, black)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// niceStep rounds a raw axis step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func text(img draw.Image, s string, x, y int, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func hline(img draw.Image, x0, x1, y int, c color.Color) { fill(img, image.Rect(x0, y, x1, y+1), c) }
func vline(img draw.Image, x, y0, y1 int, c color.Color) {
	if y0 > y1 {
		y0, y1 = y1, y0
	}
	fill(img, image.Rect(x, y0, x+1, y1+1), c)
}
