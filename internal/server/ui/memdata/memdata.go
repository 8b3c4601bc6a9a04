package memdata

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// Options are the parts of a run the pages show.
type Options struct {
	Incidents []*incident.Incident
	Alerts    []alert.Alert
	Events    []*event.Event
	Rules     []ui.Rule
	Sinks     []ui.Sink
	// Collectors, Integrity and TestSink come from the server; nil
	// Integrity answers an unverified, empty checkpoint.
	Collectors []ui.Collector
	Integrity  func(ctx context.Context) (ui.Integrity, error)
	TestSink   func(ctx context.Context, name string) error
	// Learning is the behaviours' baseline period.
	Learning ui.Learning
	// Record journals a triage change before it is applied.
	Record func(ctx context.Context, c ui.Change) error
	// Now is the clock that says how far behind a source is (default: the
	// newest event's time, so a replayed tenant looks current).
	Now time.Time
}

// Store is the in-memory Data.
type Store struct {
	o      Options
	events []*event.Event // by time, for the overview
	ev     *Events

	mu    sync.RWMutex
	cases map[string]*ui.Case
	order []string
	rules []ui.Rule
}

var _ ui.Data = (*Store)(nil)

// New indexes the run.
func New(o Options) *Store {
	s := &Store{o: o, cases: map[string]*ui.Case{}, rules: slices.Clone(o.Rules)}
	s.events = slices.Clone(o.Events)
	slices.SortStableFunc(s.events, func(a, b *event.Event) int { return a.Time.Compare(b.Time) })
	s.ev = NewEvents(0)
	for _, e := range s.events {
		s.ev.Add(e)
	}
	if s.o.Now.IsZero() && len(s.events) > 0 {
		s.o.Now = s.events[len(s.events)-1].Time
	}
	incs := slices.Clone(o.Incidents)
	slices.SortStableFunc(incs, func(a, b *incident.Incident) int {
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	for _, inc := range incs {
		c := ui.NewCase(inc)
		s.cases[inc.ID] = &c
		s.order = append(s.order, inc.ID)
	}
	hits := map[string]int{}
	for _, a := range o.Alerts {
		hits[a.Signal]++
	}
	for i := range s.rules {
		s.rules[i].Hits = hits[s.rules[i].ID]
	}
	return s
}

func (s *Store) caseCopy(c *ui.Case) ui.Case {
	cp := *c
	cp.History = slices.Clone(c.History)
	return cp
}

// Cases returns the incidents, most severe and most recent first.
func (s *Store) Cases(context.Context) ([]ui.Case, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ui.Case, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.caseCopy(s.cases[id]))
	}
	return out, nil
}

// Case returns one incident.
func (s *Store) Case(_ context.Context, id string) (ui.Case, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cases[id]
	if !ok {
		return ui.Case{}, false, nil
	}
	return s.caseCopy(c), true, nil
}

// Triage journals the change through Record, then applies it.
func (s *Store) Triage(ctx context.Context, ch ui.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cases[ch.Incident]
	if !ok {
		return fmt.Errorf("incident %q: %w", ch.Incident, ui.ErrNotFound)
	}
	if s.o.Record != nil {
		if err := s.o.Record(ctx, ch); err != nil {
			return fmt.Errorf("journaling the change: %w", err)
		}
	}
	if ch.Status != "" {
		c.Status = ch.Status
		if c.Owner == "" && ch.Status == "acknowledged" {
			c.Owner = ch.Actor
		}
	}
	c.History = append(c.History, ch)
	return nil
}

// SetRule enables or disables a rule.
func (s *Store) SetRule(_ context.Context, c *ui.RuleChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.rules {
		if s.rules[i].ID == c.Rule && s.rules[i].Loaded {
			if s.rules[i].Enabled == c.Enabled {
				return fmt.Errorf("rule %q is already in that state: %w", c.Rule, ui.ErrConflict)
			}
			s.rules[i].Enabled, s.rules[i].Change = c.Enabled, *c
			return nil
		}
	}
	return fmt.Errorf("rule %q: %w", c.Rule, ui.ErrNotFound)
}

// Rules returns the rules with their hits.
func (s *Store) Rules(context.Context) ([]ui.Rule, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.rules), nil
}

// Sinks returns the configured sinks.
func (s *Store) Sinks(context.Context) ([]ui.Sink, error) { return slices.Clone(s.o.Sinks), nil }

// Collectors returns the configured collectors.
func (s *Store) Collectors(context.Context) ([]ui.Collector, error) {
	return slices.Clone(s.o.Collectors), nil
}

// TestSink sends a test delivery.
func (s *Store) TestSink(ctx context.Context, name, _ string) error {
	if !slices.ContainsFunc(s.o.Sinks, func(k ui.Sink) bool { return k.Name == name }) {
		return fmt.Errorf("sink %q: %w", name, ui.ErrNotFound)
	}
	if s.o.TestSink == nil {
		return fmt.Errorf("sink %q: no delivery configured", name)
	}
	return s.o.TestSink(ctx, name)
}

// Integrity returns the latest checkpoint.
func (s *Store) Integrity(ctx context.Context) (ui.Integrity, error) {
	if s.o.Integrity == nil {
		return ui.Integrity{VerifyDetail: "this server has no journal (a replayed demo)"}, nil
	}
	return s.o.Integrity(ctx)
}

// Overview counts records per source and alerts and incidents over time.
func (s *Store) Overview(context.Context) (ui.Overview, error) {
	o := ui.Overview{Learning: s.o.Learning, Events: int64(len(s.events))}
	if len(s.events) == 0 {
		return o, nil
	}
	from, to := s.events[0].Time, s.events[len(s.events)-1].Time
	o.Step = StepFor(to.Sub(from)+time.Second, 96)
	o.SeriesFrom = from.Truncate(o.Step)
	n := int(to.Sub(o.SeriesFrom)/o.Step) + 1
	bucket := func(t time.Time) int { return int(t.Sub(o.SeriesFrom) / o.Step) }
	per := map[string]*ui.SourceHealth{}
	series := map[string][]int{}
	for _, e := range s.events {
		h := per[e.Source]
		if h == nil {
			h = &ui.SourceHealth{Source: e.Source}
			per[e.Source] = h
			series[e.Source] = make([]int, n)
		}
		h.Records++
		h.LastRecord = e.Time
		series[e.Source][bucket(e.Time)]++
	}
	names := make([]string, 0, len(per))
	for k := range per {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		h := per[name]
		h.Watermark = h.LastRecord
		h.Lag = s.o.Now.Sub(h.LastRecord)
		h.Gaps = Gaps(series[name], o.SeriesFrom, o.Step)
		switch {
		case h.Lag > 24*time.Hour:
			h.Status = "silent"
		case h.Lag > 2*time.Hour:
			h.Status = "lagging"
		default:
			h.Status = "ok"
		}
		o.Sources = append(o.Sources, *h)
		o.Ingest = append(o.Ingest, ui.Series{Name: name, Counts: series[name]})
	}
	o.Alerts, o.Incidents = make([]int, n), make([]int, n)
	for _, a := range s.o.Alerts {
		if i := bucket(a.Time); i >= 0 && i < n {
			o.Alerts[i]++
		}
	}
	for _, inc := range s.o.Incidents {
		if i := bucket(inc.Raised); i >= 0 && i < n {
			o.Incidents[i]++
		}
	}
	return o, nil
}

// Gaps are runs of empty buckets spanning at least a day between a
// source's first and last record: shorter pauses are nights and weekends
// of a small tenant.
func Gaps(counts []int, from time.Time, step time.Duration) []ui.Gap {
	first, last := -1, -1
	for i, c := range counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	var out []ui.Gap
	for i := first + 1; i < last; {
		if counts[i] != 0 {
			i++
			continue
		}
		j := i
		for j < last && counts[j] == 0 {
			j++
		}
		if time.Duration(j-i)*step >= 24*time.Hour {
			out = append(out, ui.Gap{From: from.Add(time.Duration(i) * step), To: from.Add(time.Duration(j) * step)})
		}
		i = j
	}
	return out
}

// StepFor is the bucket width that splits span into fewer than n.
func StepFor(span time.Duration, n int) time.Duration {
	for _, s := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if span/s < time.Duration(n) {
			return s
		}
	}
	return 7 * 24 * time.Hour
}

// signal maps record ids to the first alert on them.
func (s *Store) signal() func(string) string {
	m := map[string]string{}
	for _, a := range s.o.Alerts {
		for _, id := range a.RecordIDs {
			if _, ok := m[id]; !ok {
				m[id] = a.Signal
			}
		}
	}
	return func(id string) string { return m[id] }
}

// Timeline scans the events for the entity and links the incidents that
// name it.
func (s *Store) Timeline(ctx context.Context, q ui.TimelineQuery) (ui.Timeline, error) {
	tl, err := s.ev.Timeline(ctx, q, s.signal())
	if err != nil {
		return tl, err
	}
	s.mu.RLock()
	for _, id := range s.order {
		if ui.Names(s.cases[id].Incident, q.Entity) {
			tl.Cases = append(tl.Cases, id)
		}
	}
	s.mu.RUnlock()
	return tl, nil
}
