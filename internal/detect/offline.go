package detect

import (
	"context"

	"github.com/vigil-audit/vigil/internal/event"
)

// RunOffline runs p over the events read calls emit with (files, a
// journal), then closes it. With a Sorter the events are first put in
// event-time order, which the behaviours need over unordered exports;
// without one they go straight in, within the reordering window.
// beforeClose, if set, runs after the last event is processed and before
// the detectors are flushed: the moment to SaveState for a later run.
func RunOffline(ctx context.Context, p *Pipeline, sorter *Sorter, read func(emit func(*event.Event) error) error, beforeClose func() error) (*Result, error) {
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
	p.Drain()
	if beforeClose != nil {
		if err := beforeClose(); err != nil {
			return nil, err
		}
	}
	return p.Close(ctx)
}
