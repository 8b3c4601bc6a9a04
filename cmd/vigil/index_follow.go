package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"time"

	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
)

// liveIndex keeps the investigation index following a journal this
// process appends to (serve, collect). It holds the index open for
// writing, so other processes cannot open it meanwhile: queries go
// through the API of vigil serve (docs/search.md).
type liveIndex struct {
	x    *index.Index
	f    *index.Follower
	done chan struct{}
}

// openLiveIndex opens the index of the journal in data for following; skip
// (--no-index) gives a nil liveIndex, whose methods do nothing.
func openLiveIndex(ctx context.Context, data string, j journal.Log, skip bool, retention time.Duration, memory int64, logger *slog.Logger) (*liveIndex, error) {
	if skip {
		return nil, nil
	}
	x, err := index.Open(ctx, index.Path(data), index.Options{Retention: retention, MemoryLimit: memory})
	if err != nil {
		return nil, fmt.Errorf("%w (pass --no-index to run without the investigation index; vigil reindex --data %s rebuilds it)", err, data)
	}
	f, err := index.NewFollower(x, data, j, logger)
	if err != nil {
		x.Close()
		return nil, err
	}
	return &liveIndex{x: x, f: f}, nil
}

// follower is nil without an index.
func (l *liveIndex) follower() *index.Follower {
	if l == nil {
		return nil
	}
	return l.f
}

// offer is what detection gives the follower of the entries it decoded
// (index.Follower.Offer); nil without an index.
func (l *liveIndex) offer() func(uint64, *journal.Entry, []*event.Event, error) {
	if l == nil {
		return nil
	}
	return l.f.Offer
}

func (l *liveIndex) wake() {
	if l != nil {
		l.f.Wake()
	}
}

// run follows the journal until ctx ends.
func (l *liveIndex) run(ctx context.Context) {
	if l == nil {
		return
	}
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		_ = l.f.Run(ctx)
	}()
}

// catchUp waits for run to end, then indexes what the journal holds now,
// once. After an interrupt (ctx done) it still gets a short while: the
// entries are few, and whatever is left is indexed by the next run.
func (l *liveIndex) catchUp(ctx context.Context, logger *slog.Logger) error {
	if l == nil {
		return nil
	}
	if l.done != nil {
		<-l.done
		l.done = nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), catchUpTime)
	defer cancel()
	err := l.f.Step(cctx)
	if errors.Is(err, context.DeadlineExceeded) {
		next, size, _ := l.f.Position()
		logger.Warn("the index is behind the journal at exit; the next run catches up", "behind", size-next)
		return nil
	}
	return err
}

// indexRetention is the index's horizon: server.retention_days, as the
// journal of vigil serve keeps raw records, or the journal's default.
func indexRetention(scfg *setup.Server) time.Duration {
	if scfg != nil && scfg.RetentionDays > 0 {
		return time.Duration(scfg.RetentionDays) * 24 * time.Hour
	}
	return journal.DefaultRetention
}

// catchUpTime bounds the final catch-up after an interrupt.
const catchUpTime = 30 * time.Second

// close waits for run to end and closes the index.
func (l *liveIndex) close() error {
	if l == nil {
		return nil
	}
	if l.done != nil {
		<-l.done
		l.done = nil
	}
	if l.x == nil {
		return nil
	}
	err := l.x.Close()
	l.x = nil
	return err
}

// indexMetrics are the follower's gauges in /metrics.
func indexMetrics(f *index.Follower) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_index_behind_entries",
			Help: "Acknowledged journal entries the investigation index does not hold yet."},
			func() float64 { return float64(f.Behind()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_index_shared_entries_total",
			Help: "Journal entries the index took from detection's decoding instead of decoding them again."},
			func() float64 { used, _ := f.Shared(); return float64(used) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_index_shared_refused_total",
			Help: "Entries detection offered too far ahead of the index, or with no room left (the index decodes them itself)."},
			func() float64 { _, dropped := f.Shared(); return float64(dropped) }),
	}
}

// useIndexNetworks makes x fill the ASN and country of records that carry
// neither from the network tables at paths, or, with recorded, from those
// it was made with (writers without a configuration: vigil ingest, vigil
// search --wait). A change of tables is said, never silent.
func useIndexNetworks(ctx context.Context, x *index.Index, paths []string, recorded bool, warn func(string)) error {
	if recorded {
		var err error
		if paths, err = x.RecordedNetworks(ctx); err != nil {
			return err
		}
	}
	note, err := x.UseNetworks(ctx, paths)
	if err != nil {
		return err
	}
	if note != "" {
		warn(note)
	}
	return nil
}

// useNetworks is useIndexNetworks for the followed index (nil: none).
func (l *liveIndex) useNetworks(ctx context.Context, paths []string, logger *slog.Logger) error {
	if l == nil {
		return nil
	}
	return useIndexNetworks(ctx, l.x, paths, false, func(s string) { logger.Warn("index: " + s) })
}
