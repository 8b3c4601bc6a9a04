package ui

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// Chart geometry in viewBox units; the SVG is drawn at the content width,
// so at 800 px the 15-unit labels stay about 10 px high.
const (
	cw     = 1000
	cLeft  = 56
	cRight = 12
	cPlot  = cw - cLeft - cRight
	cFont  = 15
)

type panel struct {
	label  string
	counts []int
	class  string
}

// chart draws bar panels sharing a time axis. Only numbers and escaped
// labels go into the markup; an empty panel says "none".
func chart(ps []panel, from time.Time, step time.Duration) template.HTML {
	n := 0
	for _, p := range ps {
		n = max(n, len(p.counts))
	}
	if n == 0 || step <= 0 {
		return template.HTML(`<p class="muted">No data in this period.</p>`)
	}
	const ph, gap, top = 70, 34, 4
	H := top + len(ps)*(ph+gap) + 20
	bw := float64(cPlot) / float64(n)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %d %d" role="img" xmlns="http://www.w3.org/2000/svg">`, cw, H)
	for pi, p := range ps {
		y0 := top + pi*(ph+gap) + 20
		hi := 0
		for _, c := range p.counts {
			hi = max(hi, c)
		}
		if hi == 0 {
			fmt.Fprintf(&sb, `<text x="%d" y="%d" class="pl">%s: none</text>`, cLeft, y0-6, template.HTMLEscapeString(p.label))
			continue
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="pl">%s (max %d per %s)</text>`, cLeft, y0-6, template.HTMLEscapeString(p.label), hi, humanDur(step))
		fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="ax"/>`, cLeft, y0+ph, cw-cRight, y0+ph)
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="tk" text-anchor="end">%d</text><text x="%d" y="%d" class="tk" text-anchor="end">0</text>`,
			cLeft-6, y0+12, hi, cLeft-6, y0+ph)
		for i, c := range p.counts {
			if c == 0 {
				continue
			}
			h := math.Max(1.5, float64(ph)*float64(c)/float64(hi))
			x := float64(cLeft) + float64(i)*bw
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="%s"><title>%s: %d</title></rect>`,
				x, float64(y0+ph)-h, math.Max(0.8, bw-0.6), h, p.class, from.Add(time.Duration(i)*step).UTC().Format("2006-01-02 15:04Z"), c)
		}
	}
	layout := "2006-01-02"
	if step < 24*time.Hour {
		layout = "01-02 15:04"
	}
	slot := float64(len(layout))*cFont*0.62 + 14
	every := max(1, int(math.Ceil(float64(n)*slot/cPlot)))
	for i := 0; i < n; i += every {
		x := float64(cLeft) + float64(i)*bw
		if x+slot-14 > cw {
			break
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" class="tk">%s</text>`, x, H-4, from.Add(time.Duration(i)*step).UTC().Format(layout))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

func humanDur(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " d"
	case d >= time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h"
	default:
		return strconv.Itoa(max(1, int(d/time.Minute))) + " min"
	}
}

// stepFor picks a bucket size giving at most n buckets over span.
func stepFor(span time.Duration, n int) time.Duration {
	for _, s := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if span/s < time.Duration(n) {
			return s
		}
	}
	return 30 * 24 * time.Hour
}

// timesChart buckets times into one panel.
func timesChart(label string, ts []time.Time) template.HTML {
	if len(ts) == 0 {
		return chart(nil, time.Time{}, 0)
	}
	lo, hi := ts[0], ts[0]
	for _, t := range ts {
		if t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	step := stepFor(hi.Sub(lo)+time.Second, 120)
	lo = lo.Truncate(step)
	counts := make([]int, int(hi.Sub(lo)/step)+1)
	for _, t := range ts {
		counts[int(t.Sub(lo)/step)]++
	}
	return chart([]panel{{label + " per " + humanDur(step), counts, "b-alert"}}, lo, step)
}

func rowTimes(rs []Row) []time.Time {
	out := make([]time.Time, len(rs))
	for i, r := range rs {
		out[i] = r.Time
	}
	return out
}

// overviewCharts draws ingest per source and alerts and incidents.
func ingestChart(o Overview) template.HTML {
	ps := make([]panel, 0, len(o.Ingest))
	for _, s := range o.Ingest {
		ps = append(ps, panel{"Records from " + s.Name, s.Counts, "b-ingest"})
	}
	return chart(ps, o.SeriesFrom, o.Step)
}

func detectChart(o Overview) template.HTML {
	return chart([]panel{{"Alerts", o.Alerts, "b-alert"}, {"Incidents opened", o.Incidents, "b-incident"}}, o.SeriesFrom, o.Step)
}

// searchChart draws every match over time when the data counted them,
// else the matches shown.
func searchChart(r SearchResult) template.HTML {
	if r.Counts != nil {
		return chart([]panel{{"Matches", r.Counts, "b-alert"}}, r.From, r.Step)
	}
	label := "Matches"
	if len(r.Rows) < r.Total {
		label = "Matches shown"
	}
	return timesChart(label, rowTimes(r.Rows))
}
