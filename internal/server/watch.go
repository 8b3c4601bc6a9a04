package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/source"
)

// Watcher runs detection over the journal as it grows: every entry, in
// journal order, decoded and fed to one streaming pipeline; incident
// changes go to the outbox (one message per state change, with an id that
// a replay reproduces, so a restart sends nothing twice) and to the read
// models the API serves.
//
// On start the watcher replays the journal from its first entry: the
// journal is the truth and detection is derived from it, so the verdicts
// after a restart are those of an uninterrupted run.
type Watcher struct {
	j           journal.Log
	newPipeline func(detect.Sink) *detect.Pipeline
	newDecoder  func() *source.Decoder
	outbox      *sink.Outbox
	log         *slog.Logger
	refresh     time.Duration
	maxAlerts   int

	wake chan struct{}

	mu         sync.RWMutex
	offset     uint64 // journal entries processed
	caughtUp   bool
	incidents  map[string]*incident.Incident
	alerts     []alert.Alert // newest maxAlerts, oldest first
	sources    map[string]*sourceStat
	collectors []*collect.Collector
	metrics    *Metrics
	undecoded  int64
	lastErr    string
}

type sourceStat struct {
	Source     string    `json:"source"`
	Kind       string    `json:"kind"` // "journal": what detection has read of it
	Records    int64     `json:"records"`
	LastRecord time.Time `json:"last_record_time,omitzero"`
	LastSeen   time.Time `json:"last_received,omitzero"`
}

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// NewPipeline builds the pipeline (rules, behaviours, incidents) with
	// the watcher as its sink.
	NewPipeline func(detect.Sink) *detect.Pipeline
	NewDecoder  func() *source.Decoder
	Outbox      *sink.Outbox // nil: no sinks
	Logger      *slog.Logger
	// Refresh is the most often incidents are regrouped and their impact
	// measured while records stream in (default 2 s).
	Refresh time.Duration
	// MaxAlerts bounds the alerts kept for the API (default 10,000).
	MaxAlerts int
}

// NewWatcher returns a watcher over j.
func NewWatcher(j journal.Log, o WatcherOptions) *Watcher {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Refresh <= 0 {
		o.Refresh = 2 * time.Second
	}
	if o.MaxAlerts <= 0 {
		o.MaxAlerts = 10_000
	}
	if o.NewDecoder == nil {
		o.NewDecoder = func() *source.Decoder { return source.NewDecoder(nil, nil) }
	}
	return &Watcher{j: j, newPipeline: o.NewPipeline, newDecoder: o.NewDecoder, outbox: o.Outbox, log: o.Logger,
		refresh: o.Refresh, maxAlerts: o.MaxAlerts, wake: make(chan struct{}, 1),
		incidents: map[string]*incident.Incident{}, sources: map[string]*sourceStat{}}
}

// SetCollectors lets /api/v1/sources report the collectors' state.
func (w *Watcher) SetCollectors(cs []*collect.Collector) {
	w.mu.Lock()
	w.collectors = cs
	w.mu.Unlock()
}

// SetMetrics counts alerts, incident updates and detection progress in m.
func (w *Watcher) SetMetrics(m *Metrics) error {
	w.mu.Lock()
	w.metrics = m
	w.mu.Unlock()
	return m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_detection_entries_total", Help: "Journal entries detection has read (its offset in the journal).",
	}, func() float64 { return float64(w.Offset()) }))
}

// CollectorStatus snapshots the collectors' state (for the metrics).
func (w *Watcher) CollectorStatus() []collect.Status {
	w.mu.RLock()
	cs := w.collectors
	w.mu.RUnlock()
	out := make([]collect.Status, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Status())
	}
	return out
}

// Wake tells the watcher the journal grew (it also polls every second).
func (w *Watcher) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Lag is how many journal entries detection has not processed yet.
func (w *Watcher) Lag() uint64 {
	w.mu.RLock()
	off := w.offset
	w.mu.RUnlock()
	if size := w.j.Size(); size > off {
		return size - off
	}
	return 0
}

// Offset is how many journal entries detection has processed.
func (w *Watcher) Offset() uint64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.offset
}

// Run detects until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	p := w.newPipeline(w)
	dec := w.newDecoder()
	var lastRefresh time.Time
	dirty := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		size := w.j.Size()
		w.mu.RLock()
		from := w.offset
		w.mu.RUnlock()
		if from < size {
			err := w.j.Read(ctx, from, func(index uint64, en *journal.Entry) error {
				if index >= size {
					return errStop
				}
				w.consume(p, dec, index, en)
				if index%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w.setErr(err)
				return fmt.Errorf("detection: reading the journal: %w", err)
			}
			dirty = true
		}
		if dirty && time.Since(lastRefresh) >= w.refresh {
			incs, err := p.Refresh(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w.setErr(err)
				w.log.Error("detection refresh failed", "err", err)
			} else {
				// The grouping as it stands: incidents merged into others since
				// the last refresh are gone.
				cur := make(map[string]*incident.Incident, len(incs))
				for _, inc := range incs {
					cur[inc.ID] = inc
				}
				w.mu.Lock()
				w.incidents = cur
				w.mu.Unlock()
			}
			lastRefresh, dirty = time.Now(), false
			w.mu.Lock()
			if !w.caughtUp && w.offset >= size {
				w.caughtUp = true
				w.log.Info("detection caught up with the journal", "entries", w.offset)
			}
			w.mu.Unlock()
		} else if !dirty {
			w.mu.Lock()
			if !w.caughtUp && w.offset >= size {
				w.caughtUp = true
			}
			w.mu.Unlock()
		}
		wait := time.Second
		if dirty {
			wait = max(w.refresh-time.Since(lastRefresh), 10*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.wake:
		case <-tick.C:
		case <-t.C:
		}
		t.Stop()
	}
}

var errStop = errors.New("stop")

func (w *Watcher) consume(p *detect.Pipeline, dec *source.Decoder, index uint64, en *journal.Entry) {
	dec.SetObserved(en.Received)
	evs, err := dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin, Index: int(index)})
	w.mu.Lock()
	w.offset = index + 1
	if w.caughtUp && w.metrics != nil {
		w.metrics.DetectionDelay.Observe(time.Since(en.Received).Seconds())
	}
	st := w.sources[en.Source]
	if st == nil {
		st = &sourceStat{Source: en.Source, Kind: "journal"}
		w.sources[en.Source] = st
	}
	st.Records++
	if en.Received.After(st.LastSeen) {
		st.LastSeen = en.Received
	}
	if err != nil {
		// Entries were decodable when they were appended; one that no longer
		// is (a decoder change) is counted, not hidden.
		w.undecoded++
		w.mu.Unlock()
		w.log.Warn("journal entry does not decode", "index", index, "err", err)
		return
	}
	for _, e := range evs {
		if e.Time.After(st.LastRecord) {
			st.LastRecord = e.Time
		}
	}
	w.mu.Unlock()
	for _, e := range evs {
		_ = p.Process(e)
	}
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err.Error()
	w.mu.Unlock()
}

// Alert implements detect.Sink.
func (w *Watcher) Alert(a *alert.Alert) {
	w.mu.Lock()
	w.alerts = append(w.alerts, *a)
	if over := len(w.alerts) - w.maxAlerts; over > w.maxAlerts/4 {
		w.alerts = slices.Delete(w.alerts, 0, over)
	}
	m := w.metrics
	w.mu.Unlock()
	if m != nil {
		m.Alerts.WithLabelValues(a.Level.String()).Inc()
	}
}

// Incident implements detect.Sink: keep the snapshot, notify the sinks.
func (w *Watcher) Incident(u detect.Update) {
	inc := u.Incident
	w.mu.Lock()
	w.incidents[inc.ID] = inc
	m := w.metrics
	w.mu.Unlock()
	kind := map[detect.UpdateKind]string{detect.Opened: "opened", detect.Grew: "grew",
		detect.SeverityChanged: "severity_changed", detect.ImpactChanged: "impact_changed"}[u.Kind]
	if m != nil {
		m.IncidentUpdates.WithLabelValues(kind).Inc()
	}
	if w.outbox == nil {
		return
	}
	// The id names the state reached, so replaying the journal after a
	// restart reproduces it and the outbox does not send it again.
	var state string
	switch u.Kind {
	case detect.Opened:
		state = "opened"
	case detect.Grew:
		state = "alerts-" + strconv.Itoa(inc.AlertCount)
	case detect.SeverityChanged:
		state = "severity-" + inc.Severity.String()
	case detect.ImpactChanged:
		state = "impact-" + strconv.Itoa(inc.Impact.Accesses)
	}
	data, err := json.Marshal(inc)
	if err != nil {
		w.log.Error("incident does not encode", "id", inc.ID, "err", err)
		return
	}
	msg := sink.Message{ID: inc.ID + "/" + state, Type: "incident." + kind, Time: inc.LastSeen,
		Severity: inc.Severity.String(), Title: inc.Title, Data: data}
	if _, err := w.outbox.Enqueue(msg); err != nil {
		w.log.Error("alert not queued", "id", msg.ID, "err", err)
	}
}

// Incidents implements Views: newest first.
func (w *Watcher) Incidents(since time.Time, minSeverity string) ([]json.RawMessage, error) {
	w.mu.RLock()
	var incs []*incident.Incident
	for _, inc := range w.incidents {
		if !since.IsZero() && inc.LastSeen.Before(since) {
			continue
		}
		if minSeverity != "" {
			if min, err := alert.ParseLevel(minSeverity); err == nil && inc.Severity < min {
				continue
			}
		}
		incs = append(incs, inc)
	}
	w.mu.RUnlock()
	slices.SortFunc(incs, func(a, b *incident.Incident) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
	out := make([]json.RawMessage, 0, len(incs))
	for _, inc := range incs {
		b, err := json.Marshal(inc)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// IncidentByID implements Views.
func (w *Watcher) IncidentByID(id string) (json.RawMessage, bool, error) {
	w.mu.RLock()
	inc, ok := w.incidents[id]
	w.mu.RUnlock()
	if !ok {
		return nil, false, nil
	}
	b, err := json.Marshal(inc)
	return b, true, err
}

// Alerts implements Views: newest first.
func (w *Watcher) Alerts(since time.Time) ([]json.RawMessage, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := []json.RawMessage{}
	for i := len(w.alerts) - 1; i >= 0 && len(out) < w.maxAlerts; i-- {
		a := &w.alerts[i]
		if !since.IsZero() && a.Time.Before(since) {
			continue
		}
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Sources implements Views: what detection read per source, and each
// collector's state (watermark, lag, gaps, errors).
func (w *Watcher) Sources() ([]json.RawMessage, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var out []json.RawMessage
	for _, name := range slicesSortedKeys(w.sources) {
		b, _ := json.Marshal(w.sources[name])
		out = append(out, b)
	}
	for _, c := range w.collectors {
		st := c.Status()
		b, err := json.Marshal(struct {
			Kind string `json:"kind"`
			collect.Status
		}{"collector", st})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func slicesSortedKeys(m map[string]*sourceStat) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Ready implements Views: nil once detection has read the journal as it
// was at start.
func (w *Watcher) Ready() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.lastErr != "" {
		return errors.New("detection failed: " + w.lastErr)
	}
	if !w.caughtUp {
		return fmt.Errorf("detection is replaying the journal (%d entries read)", w.offset)
	}
	return nil
}

var (
	_ Views       = (*Watcher)(nil)
	_ detect.Sink = (*Watcher)(nil)
)
