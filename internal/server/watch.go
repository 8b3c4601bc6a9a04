package server

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/parallel"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/source"
)

// Watcher runs detection over the journal as it grows: every entry, in
// journal order, decoded and fed to one streaming pipeline; incident
// changes go to the outbox (one message per state change, with an id that
// a replay reproduces, so a restart sends nothing twice) and to the read
// models the API serves.
//
// With a state directory the watcher snapshots the pipeline and its
// journal offset periodically (right after a refresh) and when it stops,
// and resumes from the snapshot on start: a graceful restart reads no
// entry twice; after a crash it replays the entries since the last
// snapshot, reproducing the same outbox message ids, so the outbox sends
// nothing twice and loses nothing. Without a snapshot (first start, or
// one it cannot use, logged) it replays the journal from its first entry:
// the journal is the truth and detection is derived from it.
type Watcher struct {
	j           journal.Log
	newPipeline func(detect.Sink) *detect.Pipeline
	newDecoder  func() *source.Decoder
	outbox      *sink.Outbox
	log         *slog.Logger
	refresh     time.Duration
	maxAlerts   int
	stateDir    string
	snapEvery   time.Duration
	workers     int

	wake chan struct{}

	mu       sync.RWMutex
	offset   uint64 // journal entries processed
	caughtUp bool
	// For Delay: when the last entry processed was received, and when
	// detection last found nothing left to read.
	lastRecv, idleAt time.Time
	incidents        map[string]*incident.Incident
	alerts           []alert.Alert // newest maxAlerts, oldest first
	sources          map[string]*SourceStat
	collectors       []*collect.Collector
	metrics          *Metrics
	undecoded        int64
	future           int64 // events dated after the clock (detect.DefaultMaxFuture)
	lastErr          string
	read             uint64 // entries read by this process (not restored)
	snapBytes        int64
	snapSecs         float64
	resumed          uint64 // the offset a snapshot restored
	snapshots        uint64

	onEntry    func(index uint64, en *journal.Entry, evs []*event.Event)
	onAlert    func(*alert.Alert)
	onIncident func(detect.Update)
	onGrouping func([]*incident.Incident)
	grouped    bool // onGrouping heard the grouping since the start
	onDecoded  func(index uint64, en *journal.Entry, evs []*event.Event, err error)
	rules      *RuleSwitches

	handoff *Handoff

	// With a feed, detection runs elsewhere (remote.go).
	feed   AlertFeed
	remote *remoteView
}

// SourceStat is what detection has read of one source.
type SourceStat struct {
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
	// StateDir holds the snapshot ("" for none: every start replays the
	// journal from its first entry). The pipeline's TempDir should be the
	// same directory, so its access log survives restarts.
	StateDir string
	// SnapshotEvery is the least wall time between periodic snapshots
	// (default 30 s).
	SnapshotEvery time.Duration
	// OnEntry hears every journal entry as detection reads it, with its
	// events (none when it does not decode); OnAlert hears every alert.
	// The web interface keeps its own views with them. Both run on the
	// detection goroutine and must not keep en or its bytes.
	OnEntry func(index uint64, en *journal.Entry, evs []*event.Event)
	OnAlert func(*alert.Alert)
	// Workers decode entries and match rules ahead of the ordered
	// detection stage (default GOMAXPROCS).
	Workers int
	// Rules receive the journal's rule switches (source vigil.rules) in
	// journal order, and are kept in the snapshot; the pipeline's Mute
	// should be theirs. nil: switches are not applied.
	Rules *RuleSwitches
	// OnIncident hears every incident update, on the detection goroutine
	// (the investigation index keeps its incidents table with it).
	OnIncident func(detect.Update)
	// OnGrouping hears every incident detection holds (sorted by id) after
	// a refresh that changed which incidents exist, and after the first
	// refresh of each start, on the detection goroutine; it must not
	// modify them. The investigation index marks with it the incidents
	// that dissolved.
	OnGrouping func([]*incident.Incident)
	// OnDecoded hears every journal entry detection decodes, with its
	// events (or the error that kept it from decoding), on the decoding
	// goroutines, in no particular order, before detection sees them; it
	// must not keep en or modify evs. The investigation index's follower
	// takes them, so that it does not decode the entry again.
	OnDecoded func(index uint64, en *journal.Entry, evs []*event.Event, err error)
	// Feed, when set, is detection that runs elsewhere (a cluster's detect
	// nodes): the watcher still reads the journal for the views and the
	// source statistics, but detects nothing itself; the feed's alerts and
	// incident updates go to the API, the outbox and OnAlert/OnIncident
	// as a local pipeline's would. NewPipeline is not used.
	Feed AlertFeed
	// Handoff, when set, holds entries push ingest decoded and appended in
	// this process; detection takes them from there instead of reading
	// and decoding them again.
	Handoff *Handoff
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
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 30 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return &Watcher{workers: o.Workers, j: j, newPipeline: o.NewPipeline, newDecoder: o.NewDecoder, outbox: o.Outbox, log: o.Logger,
		refresh: o.Refresh, maxAlerts: o.MaxAlerts, stateDir: o.StateDir, snapEvery: o.SnapshotEvery, wake: make(chan struct{}, 1),
		incidents: map[string]*incident.Incident{}, sources: map[string]*SourceStat{},
		onEntry: o.OnEntry, onAlert: o.OnAlert, onIncident: o.OnIncident, onGrouping: o.OnGrouping, onDecoded: o.OnDecoded, rules: o.Rules,
		feed: o.Feed, remote: newRemoteView(), handoff: o.Handoff}
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
	if w.feed != nil {
		if err := m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_detection_feed_position", Help: "Where this server stands in the alert feed of the detect nodes (the alert stream's sequence).",
		}, func() float64 { return float64(w.remoteSeq()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "vigil_detection_feed_errors_total", Help: "Alert feed messages that could not be read (logged; they stay in the stream).",
			}, func() float64 { w.mu.RLock(); defer w.mu.RUnlock(); return float64(w.remote.errors) })); err != nil {
			return err
		}
	}
	if h := w.handoff; h != nil {
		outcome := func(name string, f func(HandoffStats) uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "vigil_detection_handoff_entries_total",
				Help:        "Pushed entries offered to detection decoded, by outcome: taken (detection did not read the journal for them), refused (over the handoff's byte bound) or late (detection had read them from the journal already).",
				ConstLabels: prometheus.Labels{"outcome": name},
			}, func() float64 { return float64(f(h.Stats())) })
		}
		if err := m.Register(outcome("taken", func(s HandoffStats) uint64 { return s.Taken }),
			outcome("refused", func(s HandoffStats) uint64 { return s.Refused }),
			outcome("late", func(s HandoffStats) uint64 { return s.Late })); err != nil {
			return err
		}
	}
	return m.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_detection_entries_total", Help: "Journal entries detection has processed (its offset in the journal, restored snapshots included).",
	}, func() float64 { return float64(w.Offset()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_detection_entries_read_total", Help: "Journal entries detection read since this process started (a resumed start reads only what its snapshot lacks).",
		}, func() float64 { return float64(w.Read()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_detection_future_dated_total", Help: "Events dated more than an hour after the server's clock, read since start: only their single-event rules apply.",
		}, func() float64 { w.mu.RLock(); defer w.mu.RUnlock(); return float64(w.future) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "vigil_detection_snapshots_total", Help: "Detection snapshots written since start.",
		}, func() float64 { w.mu.RLock(); defer w.mu.RUnlock(); return float64(w.snapshots) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_detection_snapshot_bytes", Help: "Size of the last detection snapshot.",
		}, func() float64 { w.mu.RLock(); defer w.mu.RUnlock(); return float64(w.snapBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_detection_snapshot_duration_seconds", Help: "Time the last detection snapshot took (detection waits meanwhile).",
		}, func() float64 { w.mu.RLock(); defer w.mu.RUnlock(); return w.snapSecs }))
}

// Read is how many journal entries this process has read (entries a
// restored snapshot covered are not read again).
func (w *Watcher) Read() uint64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.read
}

// Resumed is the journal offset the start resumed from (0: a full replay).
func (w *Watcher) Resumed() uint64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.resumed
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

// Delay is about how long the oldest entry detection has not processed
// has waited: zero when detection is caught up, else the time since the
// last entry it processed was received, or since it last had nothing to
// read if that is later (a burst after a quiet spell). Ingest turns it
// into backpressure, which bounds how late an alert can be.
func (w *Watcher) Delay() time.Duration {
	if w.Lag() == 0 {
		return 0
	}
	w.mu.RLock()
	since := w.lastRecv
	if w.idleAt.After(since) {
		since = w.idleAt
	}
	w.mu.RUnlock()
	if since.IsZero() {
		return 0
	}
	return max(time.Since(since), 0)
}

// Offset is how many journal entries detection has processed.
func (w *Watcher) Offset() uint64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.offset
}

// Run detects until ctx ends, then snapshots (with a state directory).
func (w *Watcher) Run(ctx context.Context) error {
	p, err := w.start()
	if err != nil {
		return err
	}
	dec := w.newDecoder()
	if err := w.replayViews(ctx, dec); err != nil {
		return err
	}
	var lastRefresh, lastSnap time.Time
	var snapTook time.Duration
	snapOffset, snapSeq := w.Offset(), w.remoteSeq()
	// A restored pipeline's incidents are shown after its first refresh.
	dirty := snapOffset > 0 && p != nil
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Detection elsewhere: its alerts and updates arrive here.
	var feed <-chan RemoteDetection
	var feedErr <-chan error
	if w.feed != nil {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		feed, feedErr = w.follow(fctx, snapSeq)
	}
	defer func() {
		if w.stateDir == "" || (w.Offset() == snapOffset && w.remoteSeq() == snapSeq) {
			return
		}
		// Stopping: what was read is kept, so the next start reads on.
		if err := w.snapshot(p); err != nil {
			w.log.Error("detection snapshot at shutdown failed; the next start replays from the last one", "err", err)
		}
	}()
	// refresh regroups and measures the incidents, then snapshots when due.
	refresh := func() error {
		var incs []*incident.Incident
		var err error
		if p != nil {
			incs, err = p.Refresh(ctx)
		}
		if p == nil {
			// The feed's updates keep the incidents.
		} else if err != nil {
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
			changed := !sameIDs(w.incidents, cur)
			w.incidents = cur
			w.mu.Unlock()
			if changed || !w.grouped {
				w.tellGrouping()
			}
		}
		lastRefresh, dirty = time.Now(), false
		// A snapshot stops detection while it is written: at most a
		// twentieth of the time goes to them, however large the state.
		if off, seq := w.Offset(), w.remoteSeq(); w.stateDir != "" && (off > snapOffset || seq > snapSeq) && time.Since(lastSnap) >= max(w.snapEvery, 20*snapTook) {
			// Right after a refresh: the sink has been told of everything
			// up to off, so a replay from here repeats nothing it lacks.
			t0 := time.Now()
			if err := w.snapshot(p); err != nil {
				w.log.Error("detection snapshot failed", "err", err)
			} else {
				snapOffset, snapSeq, lastSnap, snapTook = off, seq, time.Now(), time.Since(t0)
			}
		}
		return nil
	}
	for {
		size := w.j.Size()
		w.mu.RLock()
		from := w.offset
		w.mu.RUnlock()
		from = w.skipExpired(from)
		if from < size {
			// Entries are decoded and prepared for detection on every core
			// (the journal hands them out in order), then processed in
			// order here.
			err := parallel.InOrder(ctx, w.workers, func(emit func(*decoded) error) error {
				return w.readEntries(ctx, from, size, emit)
			}, func() func(*decoded) (*decoded, error) {
				dec := w.newDecoder()
				return func(d *decoded) (*decoded, error) {
					w.decode(p, dec, d)
					return d, nil
				}
			}, func(d *decoded) error {
				w.consume(p, d)
				dirty = true
				if d.index%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
					// A long read (a replay, a backlog) refreshes on the way:
					// the reordering buffer holds a refresh period of events,
					// not the backlog, and snapshots keep up.
					if time.Since(lastRefresh) >= w.refresh {
						return refresh()
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
		}
		if dirty && time.Since(lastRefresh) >= w.refresh {
			if err := refresh(); err != nil {
				return err
			}
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
		// Idle only if nothing came meanwhile: size is what this round
		// set out to read.
		if off := w.Offset(); off >= w.j.Size() {
			w.mu.Lock()
			w.idleAt = time.Now()
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
		case d := <-feed:
			w.applyRemote(d)
			for more := true; more; {
				select {
				case d := <-feed:
					w.applyRemote(d)
				default:
					more = false
				}
			}
			dirty = true
		case err := <-feedErr:
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("stopped")
			}
			w.setErr(err)
			return fmt.Errorf("detection: following the alerts of the detect nodes: %w", err)
		}
		t.Stop()
	}
}

var errStop = errors.New("stop")

// readEntries gives emit the entries from index from up to size, in order: from
// the handoff those push ingest left there, from the journal the others.
func (w *Watcher) readEntries(ctx context.Context, from, size uint64, emit func(*decoded) error) error {
	h := w.handoff
	for i := from; i < size; {
		if h != nil {
			if en, evs, ok := h.Take(i); ok {
				if err := emit(&decoded{index: i, en: &en, evs: evs, handed: true}); err != nil {
					return err
				}
				i++
				continue
			}
		}
		start := i
		err := w.j.Read(ctx, i, func(index uint64, en *journal.Entry) error {
			if index >= size || (h != nil && index > start && h.Has(index)) {
				return errStop
			}
			if h != nil {
				h.Passed(index + 1)
			}
			// en is the journal's only during this call.
			c := *en
			c.Raw = bytes.Clone(en.Raw)
			i = index + 1
			return emit(&decoded{index: index, en: &c})
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if i == start {
			return fmt.Errorf("journal entry %d: not readable though the journal holds %d", start, size)
		}
	}
	// nil, not errStop: an error stops InOrder before it has consumed
	// what is in flight.
	return nil
}

// replayViews gives OnEntry and OnAlert what a restored snapshot covers,
// without detection: the web interface's views (triage changes, records
// for search, counts) are not in the snapshot.
func (w *Watcher) replayViews(ctx context.Context, dec *source.Decoder) error {
	w.mu.RLock()
	upTo := w.offset
	alerts := slices.Clone(w.alerts)
	w.mu.RUnlock()
	if upTo == 0 {
		return nil
	}
	if w.onAlert != nil {
		for i := range alerts {
			w.onAlert(&alerts[i])
		}
	}
	if w.onEntry == nil {
		return nil
	}
	// From the first entry retention kept.
	from := uint64(0)
	if ex, ok := w.j.(interface{ Expired() uint64 }); ok {
		from = min(ex.Expired(), upTo)
	}
	err := w.j.Read(ctx, from, func(index uint64, en *journal.Entry) error {
		if index >= upTo {
			return errStop
		}
		dec.SetObserved(en.Received)
		evs, err := dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin, Index: int(index)})
		if err != nil {
			evs = nil
		}
		w.onEntry(index, en, evs)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("detection: reading the journal for the views: %w", err)
	}
	return nil
}

const snapshotFile = "snapshot"

// watcherState is the snapshot file: the pipeline's state and what the
// watcher keeps for the API, at a journal offset.
type watcherState struct {
	Version   int
	Offset    uint64
	Leaf      journal.Hash // the leaf hash of entry Offset-1: the journal it was taken of
	Pipeline  []byte
	Sources   map[string]*SourceStat
	Alerts    []alert.Alert
	Undecoded int64
	Rules     *ruleSwitchState // nil in snapshots taken before rule switches
	// Remote is what the feed delivered when detection runs elsewhere
	// (Pipeline is then empty); nil when this watcher detects.
	Remote *remoteState
}

// start builds the pipeline, restored from the snapshot when there is a
// usable one, and removes access logs no snapshot names (a crashed run's).
func (w *Watcher) start() (*detect.Pipeline, error) {
	if w.feed != nil {
		return nil, w.startRemote()
	}
	p := w.newPipeline(w)
	if w.stateDir == "" {
		return p, nil
	}
	if err := os.MkdirAll(w.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("detection state: %w", err)
	}
	st, err := w.loadState()
	restored := false
	switch {
	case err == nil && st != nil && st.Remote != nil:
		// Taken while detection ran elsewhere: its offset says what the
		// views have read, not what was detected here.
		err = errors.New("taken while detection ran on the cluster's detect nodes")
	case err == nil && st != nil:
		if rerr := p.Restore(bytes.NewReader(st.Pipeline)); rerr != nil {
			err = rerr
			p = w.newPipeline(w)
			break
		}
		restored = true
		w.mu.Lock()
		w.offset, w.resumed, w.undecoded = st.Offset, st.Offset, st.Undecoded
		if st.Sources != nil {
			w.sources = st.Sources
		}
		w.alerts = st.Alerts
		w.mu.Unlock()
		if w.rules != nil {
			w.rules.restore(st.Rules) // before detection resumes
		}
		w.log.Info("detection resumes from its snapshot", "offset", st.Offset, "journal_entries", w.j.Size())
	case err == nil:
		w.log.Info("no detection snapshot: replaying the journal from its first entry")
	}
	if err != nil {
		w.log.Warn("detection snapshot not usable: replaying the journal from its first entry", "err", err)
	}
	keep := map[string]bool{}
	for _, f := range p.AccessLogFiles() {
		keep[f] = true
	}
	stale, _ := filepath.Glob(filepath.Join(w.stateDir, "vigil-accesses-*"))
	if !restored {
		// A fresh pipeline has written nothing yet: accesses a crashed run
		// left waiting on disk are stale too (a restored one removed those
		// its snapshot does not name).
		pend, _ := filepath.Glob(filepath.Join(w.stateDir, "vigil-pending-*.seg"))
		stale = append(stale, pend...)
	}
	for _, f := range stale {
		if !keep[f] {
			if err := os.Remove(f); err != nil {
				w.log.Warn("stale access log not removed", "file", f, "err", err)
			}
		}
	}
	return p, nil
}

// loadState reads the snapshot; nil, nil when there is none.
func (w *Watcher) loadState() (*watcherState, error) {
	b, err := os.ReadFile(filepath.Join(w.stateDir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("detection snapshot: %w", err)
	}
	var st watcherState
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
		return nil, fmt.Errorf("detection snapshot: %w", err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("detection snapshot: version %d", st.Version)
	}
	if size := w.j.Size(); st.Offset > size {
		return nil, fmt.Errorf("detection snapshot at entry %d, the journal has %d (restored from an older backup?)", st.Offset, size)
	}
	if lh, ok := w.j.(interface {
		LeafHash(uint64) (journal.Hash, error)
	}); ok && st.Offset > 0 {
		h, err := lh.LeafHash(st.Offset - 1)
		if err != nil {
			return nil, fmt.Errorf("detection snapshot: %w", err)
		}
		if h != st.Leaf {
			return nil, fmt.Errorf("detection snapshot taken of another journal (entry %d differs)", st.Offset-1)
		}
	}
	return &st, nil
}

// snapshot writes the state atomically: a temporary file, fsynced,
// renamed over the old one, the directory fsynced.
func (w *Watcher) snapshot(p *detect.Pipeline) error {
	start := time.Now()
	var pb bytes.Buffer
	if p != nil {
		if err := p.Snapshot(&pb); err != nil {
			return err
		}
	}
	// Only Run's goroutine moves the offset: read it once, outside the lock.
	st := watcherState{Version: 1, Offset: w.Offset(), Pipeline: pb.Bytes()}
	if w.feed != nil {
		st.Remote = w.saveRemote()
	}
	if w.rules != nil {
		st.Rules = w.rules.save()
	}
	if lh, ok := w.j.(interface {
		LeafHash(uint64) (journal.Hash, error)
	}); ok && st.Offset > 0 {
		h, err := lh.LeafHash(st.Offset - 1)
		if err != nil {
			return fmt.Errorf("detection snapshot: %w", err)
		}
		st.Leaf = h
	}
	var buf bytes.Buffer
	w.mu.RLock()
	st.Sources, st.Alerts, st.Undecoded = w.sources, w.alerts, w.undecoded
	err := gob.NewEncoder(&buf).Encode(&st)
	w.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(w.stateDir, snapshotFile), buf.Bytes()); err != nil {
		return fmt.Errorf("detection snapshot: %w", err)
	}
	w.mu.Lock()
	w.snapshots++
	w.snapBytes = int64(buf.Len())
	w.snapSecs = time.Since(start).Seconds()
	w.mu.Unlock()
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// journalOrigin is the file name of the events of a journal entry whose
// origin is origin.
func journalOrigin(origin string) string { return "journal:" + origin }

// decoded is one journal entry on its way through detection: decoded
// and prepared on a worker, then consumed in journal order.
type decoded struct {
	index uint64
	en    *journal.Entry
	evs   []*event.Event
	items []*detect.Item
	err   error
	// handed: evs came decoded from push ingest (Handoff).
	handed bool
}

// decode decodes d's entry and does the stateless part of detection for
// its events; it runs on many goroutines at once.
func (w *Watcher) decode(p *detect.Pipeline, dec *source.Decoder, d *decoded) {
	dec.SetObserved(d.en.Received)
	if !d.handed {
		d.evs, d.err = dec.Decode(d.en.Raw, event.Origin{File: journalOrigin(d.en.Origin), Index: int(d.index)})
	}
	if w.onDecoded != nil {
		w.onDecoded(d.index, d.en, d.evs, d.err)
	}
	if d.err != nil {
		return
	}
	if p == nil {
		return // detection runs elsewhere
	}
	d.items = make([]*detect.Item, len(d.evs))
	for i, e := range d.evs {
		d.items[i] = p.Prepare(e)
	}
}

// consume takes a decoded entry into the views and the pipeline, in
// journal order.
func (w *Watcher) consume(p *detect.Pipeline, d *decoded) {
	index, en, evs, err := d.index, d.en, d.evs, d.err
	if en.Source == RuleSource && w.rules != nil {
		w.switchRule(p, index, en.Raw) // p nil: detection runs elsewhere, the switch is shown
	}
	w.mu.Lock()
	w.offset = index + 1
	w.read++
	if w.caughtUp && w.metrics != nil {
		w.metrics.DetectionDelay.Observe(time.Since(en.Received).Seconds())
	}
	st := w.sources[en.Source]
	if st == nil {
		st = &SourceStat{Source: en.Source, Kind: "journal"}
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
		if w.onEntry != nil {
			w.onEntry(index, en, nil)
		}
		return
	}
	future := time.Now().Add(detect.DefaultMaxFuture)
	for _, e := range evs {
		if e.Time.After(future) {
			// Detection applies its single-event rules only; kept out of the
			// source's last record time too.
			w.future++
			w.log.Warn("journal entry dated in the future: only its single-event rules apply", "index", index, "source", en.Source, "time", e.Time)
			continue
		}
		if e.Time.After(st.LastRecord) {
			st.LastRecord = e.Time
		}
	}
	w.mu.Unlock()
	if w.onEntry != nil {
		w.onEntry(index, en, evs)
	}
	for _, it := range d.items {
		_ = p.ProcessItem(it)
	}
}

// skipExpired moves a read position below the journal's retention bound
// (entries whose raw bytes were expired before detection read them: a
// first start over an old journal, or a snapshot older than retention) to
// the bound, saying how many entries detection never saw.
func (w *Watcher) skipExpired(from uint64) uint64 {
	ex, ok := w.j.(interface{ Expired() uint64 })
	if !ok {
		return from
	}
	bound := ex.Expired()
	if from >= bound {
		return from
	}
	w.log.Warn("detection starts after entries the journal expired by retention before detection read them",
		"first_readable", bound, "skipped", bound-from)
	w.mu.Lock()
	w.offset = bound
	w.mu.Unlock()
	return bound
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err.Error()
	w.mu.Unlock()
}

// sameIDs reports whether a and b hold the same incident ids.
func sameIDs(a, b map[string]*incident.Incident) bool {
	if len(a) != len(b) {
		return false
	}
	for id := range a {
		if _, ok := b[id]; !ok {
			return false
		}
	}
	return true
}

// tellGrouping gives OnGrouping the incidents as they stand.
func (w *Watcher) tellGrouping() {
	w.grouped = true
	if w.onGrouping == nil {
		return
	}
	w.mu.RLock()
	incs := make([]*incident.Incident, 0, len(w.incidents))
	for _, inc := range w.incidents {
		incs = append(incs, inc)
	}
	w.mu.RUnlock()
	slices.SortFunc(incs, func(a, b *incident.Incident) int { return strings.Compare(a.ID, b.ID) })
	w.onGrouping(incs)
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
	if w.onAlert != nil {
		w.onAlert(a)
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
	if w.onIncident != nil {
		w.onIncident(u)
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
		return strings.Compare(a.ID, b.ID)
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

func slicesSortedKeys(m map[string]*SourceStat) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// IncidentList returns the incidents as the grouping stands, in no order;
// they are snapshots the watcher no longer changes.
func (w *Watcher) IncidentList() []*incident.Incident {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]*incident.Incident, 0, len(w.incidents))
	for _, inc := range w.incidents {
		out = append(out, inc)
	}
	return out
}

// IncidentOf returns one incident as the grouping stands.
func (w *Watcher) IncidentOf(id string) (*incident.Incident, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	inc, ok := w.incidents[id]
	return inc, ok
}

// AlertList returns the alerts kept, oldest first.
func (w *Watcher) AlertList() []alert.Alert {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Clone(w.alerts)
}

// SourceStats returns what detection read per source, by name.
func (w *Watcher) SourceStats() []SourceStat {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]SourceStat, 0, len(w.sources))
	for _, name := range slicesSortedKeys(w.sources) {
		out = append(out, *w.sources[name])
	}
	return out
}

// Collectors returns the collectors set with SetCollectors.
func (w *Watcher) Collectors() []*collect.Collector {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Clone(w.collectors)
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
