package detect

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/parallel"
)

// RunOffline runs p over the events read calls emit with (files, a
// journal), then closes it. With a Sorter the events are first put in
// event-time order, which the behaviours need over unordered exports;
// without one they go straight in, within the reordering window.
// beforeClose, if set, runs after the last event is processed and before
// the detectors are flushed: the moment to SaveState for a later run.
func RunOffline(ctx context.Context, p *Pipeline, sorter *Sorter, read func(emit func(*event.Event) error) error, beforeClose func() error) (*Result, error) {
	defer p.goSplit()()
	if sorter == nil {
		if err := read(p.Process); err != nil {
			return nil, err
		}
	} else {
		defer sorter.Close()
		if err := read(sorter.Add); err != nil {
			return nil, err
		}
		if err := sorter.replay(ctx, 0, p.Prepare, p.ProcessItem); err != nil {
			return nil, err
		}
	}
	return closeOffline(ctx, p, beforeClose)
}

// goSplit gives the behaviours a goroutine of their own for an offline
// run, unless the configuration or a single CPU says not to; the function
// it returns ends that.
func (p *Pipeline) goSplit() func() {
	if p.cfg.Sequential || runtime.GOMAXPROCS(0) < 2 {
		return func() {}
	}
	p.startSplit()
	return p.stopSplit
}

func closeOffline(ctx context.Context, p *Pipeline, beforeClose func() error) (*Result, error) {
	p.Drain()
	if beforeClose != nil {
		if err := beforeClose(); err != nil {
			return nil, err
		}
	}
	return p.Close(ctx)
}

// ErrNotOrdered says that RunOrdered's input was not in event-time order,
// within the reordering window.
var ErrNotOrdered = errors.New("input not in event-time order")

// RunOrdered is RunOffline for inputs already in event-time order within
// the reordering window (source.ReadMerged over exports each oldest
// first): each record is decoded once, with nothing sorted or spilled,
// and the result is exactly the Sorter's. read's events are prepared on
// every core and processed in the order read emits them. As soon as one
// would be processed in another order than the Sorter's (it arrives no
// later than an event already processed, or carries no time, or a future
// one), RunOrdered stops with an error wrapping ErrNotOrdered: p has then
// seen part of the input and is spent; run again with a fresh pipeline
// and a Sorter.
func RunOrdered(ctx context.Context, p *Pipeline, read func(emit func(*event.Event) error) error, beforeClose func() error) (*Result, error) {
	defer p.goSplit()()
	err := parallel.InOrder(ctx, runtime.GOMAXPROCS(0), read, func() func(*event.Event) (*Item, error) {
		return func(ev *event.Event) (*Item, error) { return p.Prepare(ev), nil }
	}, func(it *Item) error {
		if err := p.inOrder(it.Ev); err != nil {
			return err
		}
		return p.ProcessItem(it)
	})
	if err != nil {
		return nil, err
	}
	return closeOffline(ctx, p, beforeClose)
}

// inOrder says whether ev, coming next, is processed where the Sorter
// would put it. The Sorter feeds events in key order; the reordering
// window then processes them in that order. Fed in another order, the
// window still processes them in key order as long as each comes after
// the newest one processed so far. Events without a time (processed at
// once, first in key order) and future-dated ones (processed at once,
// last) have a place only in the Sorter's order.
func (p *Pipeline) inOrder(ev *event.Event) error {
	switch {
	case ev.Time.IsZero():
		return fmt.Errorf("%w: an event without a time (%s)", ErrNotOrdered, originOf(ev))
	case p.cfg.MaxFuture > 0 && ev.Time.After(p.cfg.Now().Add(p.cfg.MaxFuture)):
		return fmt.Errorf("%w: a future-dated event (%s)", ErrNotOrdered, originOf(ev))
	case !p.released.IsZero() && !ev.Time.After(p.released):
		return fmt.Errorf("%w: an event of %s after one of %s was processed (%s)", ErrNotOrdered,
			ev.Time.Format("2006-01-02T15:04:05Z07:00"), p.released.Format("2006-01-02T15:04:05Z07:00"), originOf(ev))
	}
	return nil
}

func originOf(ev *event.Event) string {
	if ev.Origin.Line > 0 {
		return fmt.Sprintf("%s line %d", ev.Origin.File, ev.Origin.Line)
	}
	return fmt.Sprintf("%s record %d", ev.Origin.File, ev.Origin.Index)
}
