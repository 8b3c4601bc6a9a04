package incident

import (
	"maps"
	"slices"
	"time"
)

// maxHistogramBuckets bounds a Histogram: past it the buckets widen.
const maxHistogramBuckets = 8192

// Histogram counts events over time in memory bounded by the time span,
// not the number of events: buckets start a minute wide and widen (an
// hour, a day, a week) when there would be more than maxHistogramBuckets.
type Histogram struct {
	Step   time.Duration
	Counts map[int64]int // bucket number (Unix time / Step) → count
	Total  int
}

var histogramSteps = []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// Add counts one event at t; zero times are ignored.
func (h *Histogram) Add(t time.Time) {
	if t.IsZero() {
		return
	}
	if h.Counts == nil {
		h.Step, h.Counts = histogramSteps[0], map[int64]int{}
	}
	h.Counts[t.UnixNano()/int64(h.Step)]++
	h.Total++
	for len(h.Counts) > maxHistogramBuckets && h.Step < histogramSteps[len(histogramSteps)-1] {
		h.widen()
	}
}

func (h *Histogram) widen() {
	next := h.Step
	for _, s := range histogramSteps {
		if s > h.Step {
			next = s
			break
		}
	}
	wide := make(map[int64]int, len(h.Counts)/8+1)
	for k, n := range h.Counts {
		wide[k*int64(h.Step)/int64(next)] += n
	}
	h.Step, h.Counts = next, wide
}

// Buckets returns each bucket's start time and count, in time order.
func (h *Histogram) Buckets() ([]time.Time, []int) {
	keys := slices.Sorted(maps.Keys(h.Counts))
	ts := make([]time.Time, len(keys))
	ns := make([]int, len(keys))
	for i, k := range keys {
		ts[i] = time.Unix(0, k*int64(h.Step)).UTC()
		ns[i] = h.Counts[k]
	}
	return ts, ns
}
