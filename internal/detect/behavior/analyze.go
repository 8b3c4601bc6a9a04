package behavior

import (
	"context"
	"sort"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
)

// Analysis is the outcome of running the behaviours over a set of events
// and grouping every alert into incidents.
type Analysis struct {
	Alerts    []incident.Alert     // behaviour alerts and the extra ones, sorted
	Incidents []*incident.Incident // with impact assessed
	Accesses  []incident.Access    // every mail read, in time order
	Events    int
	Sources   map[string]int
	From, To  time.Time
}

// Analyze runs the engine over events (any order: they are sorted by
// time, stably), adds the extra alerts (Sigma detections), groups all of
// them into incidents and assesses each incident's impact. beforeFlush,
// if set, runs after the last event and before the engine is flushed: the
// moment to save state that a later run continues from.
func Analyze(ctx context.Context, eng *Engine, events []*event.Event, extra []incident.Alert, beforeFlush func() error) (*Analysis, error) {
	sorted := append([]*event.Event(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.RecordID < b.RecordID
	})
	r := &Analysis{Events: len(sorted), Sources: map[string]int{}}
	for i, e := range sorted {
		if i%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		r.Sources[e.Source]++
		if a, ok := incident.AccessFromEvent(e); ok {
			r.Accesses = append(r.Accesses, a)
			eng.process(e, &r.Accesses[len(r.Accesses)-1])
		} else {
			eng.process(e, nil)
		}
		if !e.Time.IsZero() {
			if r.From.IsZero() || e.Time.Before(r.From) {
				r.From = e.Time
			}
			if e.Time.After(r.To) {
				r.To = e.Time
			}
		}
	}
	if beforeFlush != nil {
		if err := beforeFlush(); err != nil {
			return nil, err
		}
	}
	eng.Flush()
	alerts := append(eng.Alerts(), extra...)
	incident.SortAlerts(alerts)
	incs := incident.Group(eng.cfg.IncidentConfig(), alerts)
	incident.Assess(incs, r.Accesses)
	r.Alerts, r.Incidents = alerts, incs
	return r, nil
}
