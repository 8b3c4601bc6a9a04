package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// DetectionIndex writes what detection raises into the investigation
// index: every alert (a row each, keyed by a stable id, so the replay of a
// restart adds none twice) and the latest state of every incident. It
// batches: the detection goroutine only appends to memory, and Run writes
// every second, so the engine's transactions do not slow detection down.
// The batch is bounded: past maxPendingAlerts the detection goroutine
// writes it itself.
type DetectionIndex struct {
	x   *index.Index
	log *slog.Logger

	// flushMu keeps batches in order: an incident's older state never
	// overwrites a newer one.
	flushMu sync.Mutex

	mu     sync.Mutex
	alerts []alert.Alert
	incs   []index.IncidentUpdate
	incAt  map[string]int // incident id → its place in incs
	// current is the latest grouping not written yet (nil: none): every
	// incident detection holds, with those updated since added.
	current []*incident.Incident
	curAt   map[string]int
	written uint64 // alerts written by this process
}

// maxPendingAlerts bounds the alerts waiting for a write.
const maxPendingAlerts = 5000

// NewDetectionIndex writes into x, opened for writing.
func NewDetectionIndex(x *index.Index, logger *slog.Logger) *DetectionIndex {
	if logger == nil {
		logger = slog.Default()
	}
	return &DetectionIndex{x: x, log: logger, incAt: map[string]int{}}
}

// Alert queues an alert (for WatcherOptions.OnAlert).
func (d *DetectionIndex) Alert(a *alert.Alert) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.alerts = append(d.alerts, *a)
	full := len(d.alerts) >= maxPendingAlerts
	d.mu.Unlock()
	if full {
		if err := d.Flush(context.Background()); err != nil {
			d.log.Error("alerts not written to the investigation index", "err", err)
		}
	}
}

// incidentStatus names an update as the incidents table does.
var incidentStatus = map[detect.UpdateKind]string{
	detect.Opened: index.StatusOpened, detect.Grew: index.StatusGrew,
	detect.SeverityChanged: index.StatusSeverityChanged, detect.ImpactChanged: index.StatusImpactChanged,
}

// Incident queues an incident's new state (for WatcherOptions.OnIncident);
// one per incident waits, the latest.
func (d *DetectionIndex) Incident(u detect.Update) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.putIncident(index.IncidentUpdate{Status: incidentStatus[u.Kind], Incident: u.Incident, AlertIDs: u.AlertIDs})
	// An update after the grouping waiting: the incident is in the
	// grouping it belongs to, whatever the one waiting says.
	if d.current != nil {
		d.addCurrent(u.Incident)
	}
	d.mu.Unlock()
}

// Grouping queues detection's grouping as it stands after a refresh
// (for WatcherOptions.OnGrouping): the incidents table marks those it
// no longer names as dissolved (or merged), and writes back those it
// names again.
func (d *DetectionIndex) Grouping(current []*incident.Incident) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.setGrouping(current)
	d.mu.Unlock()
}

// putIncident queues u, in place of the incident's state waiting. d.mu
// is held.
func (d *DetectionIndex) putIncident(u index.IncidentUpdate) {
	if i, ok := d.incAt[u.Incident.ID]; ok {
		d.incs[i] = u
		return
	}
	d.incAt[u.Incident.ID] = len(d.incs)
	d.incs = append(d.incs, u)
}

// setGrouping makes current the grouping waiting. d.mu is held.
func (d *DetectionIndex) setGrouping(current []*incident.Incident) {
	d.current, d.curAt = make([]*incident.Incident, 0, len(current)), make(map[string]int, len(current))
	for _, inc := range current {
		d.addCurrent(inc)
	}
}

// addCurrent puts inc in the grouping waiting. d.mu is held.
func (d *DetectionIndex) addCurrent(inc *incident.Incident) {
	if i, ok := d.curAt[inc.ID]; ok {
		d.current[i] = inc
		return
	}
	d.curAt[inc.ID] = len(d.current)
	d.current = append(d.current, inc)
}

// Flush writes what waits. On failure the batch is kept for the next
// try, up to twice maxPendingAlerts alerts; past that the oldest are given up,
// with an error saying how many (vigil reindex writes them again).
func (d *DetectionIndex) Flush(ctx context.Context) error {
	if d == nil {
		return nil
	}
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	as, incs, cur := d.alerts, d.incs, d.current
	d.alerts, d.incs, d.incAt, d.current, d.curAt = nil, nil, map[string]int{}, nil, nil
	d.mu.Unlock()
	if len(as) == 0 && len(incs) == 0 && cur == nil {
		return nil
	}
	err := d.x.PutDetections(ctx, as, incs, cur)
	if err == nil {
		d.mu.Lock()
		d.written += uint64(len(as))
		d.mu.Unlock()
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Put the batch back before what came meanwhile; later incident
	// states win.
	as = append(as, d.alerts...)
	if over := len(as) - 2*maxPendingAlerts; over > 0 {
		d.log.Error("alerts given up by the investigation index after failed writes (vigil reindex writes them again)", "alerts", over)
		as = as[over:]
	}
	newer := d.incs
	d.alerts, d.incs, d.incAt = as, nil, map[string]int{}
	for _, u := range append(incs, newer...) {
		d.putIncident(u)
	}
	// A grouping that came meanwhile is newer than the one given back.
	if d.current == nil && cur != nil {
		d.setGrouping(cur)
	}
	return err
}

// Written is how many alerts this process wrote (a replayed alert that
// was already there counts, and adds no row).
func (d *DetectionIndex) Written() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written
}

// Run writes every second until ctx ends; the caller flushes once more
// after detection has stopped.
func (d *DetectionIndex) Run(ctx context.Context) {
	if d == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := d.Flush(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("detections not written to the investigation index; retried", "err", err)
		}
	}
}

// DetectStats says what DetectJournal read and raised.
type DetectStats struct {
	Entries, Undecoded, Events, Alerts uint64
}

// DetectJournal runs detection once over the journal in dataDir, from
// entry from to its end, as the watcher of vigil serve reads it (journal
// order, the same decoding and origins), then ends the input: the
// detectors' pending alerts are raised and the incidents grouped and
// measured a last time. Alerts and incident states go to d, which is
// flushed. The journal's rule switches are applied to rules where they
// stand, as the watcher applies them (the pipeline's Mute should be
// rules.Mute; nil: none). It reads without the journal's lock (vigil
// reindex).
func DetectJournal(ctx context.Context, dataDir string, from uint64, newPipeline func(detect.Sink) *detect.Pipeline,
	newDecoder func() *source.Decoder, rules *RuleSwitches, d *DetectionIndex) (DetectStats, error) {
	var st DetectStats
	counter := &countingSink{DetectionIndex: d, alerts: &st.Alerts}
	p := newPipeline(counter)
	dec := newDecoder()
	err := journal.Replay(ctx, dataDir, from, func(idx uint64, en *journal.Entry) error {
		st.Entries++
		if en.Source == RuleSource && rules != nil {
			if ch, err := parseRuleEntry(idx, en.Raw); err != nil {
				st.Undecoded++
			} else {
				p.Drain()
				rules.apply(ch)
			}
		}
		dec.SetObserved(en.Received)
		evs, err := dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin, Index: int(idx)})
		if err != nil {
			// Counted, as the watcher counts it; the index lists the entry
			// in unindexed with its reason.
			st.Undecoded++
			return nil
		}
		for _, e := range evs {
			st.Events++
			if err := p.Process(e); err != nil {
				return fmt.Errorf("detection: journal entry %d: %w", idx, err)
			}
		}
		if st.Entries%4096 == 0 {
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("detection: reading the journal: %w", err)
	}
	res, err := p.Close(ctx)
	if err != nil {
		return st, fmt.Errorf("detection: %w", err)
	}
	defer res.Close()
	d.Grouping(res.Incidents)
	return st, d.Flush(ctx)
}

// countingSink counts alerts on their way to the index.
type countingSink struct {
	*DetectionIndex
	alerts *uint64
}

func (c *countingSink) Alert(a *alert.Alert) {
	*c.alerts++
	c.DetectionIndex.Alert(a)
}

var _ detect.Sink = (*DetectionIndex)(nil)
