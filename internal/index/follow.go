package index

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
)

// Follower keeps an index up to date with a journal that its own process
// appends to (vigil serve, vigil collect): one goroutine, woken after
// appends (and polling every second), is the index's only writer. Queries
// may use Index() concurrently: the engine gives each a consistent
// snapshot.
type Follower struct {
	x       *Index
	dataDir string
	j       journal.Log
	log     *slog.Logger
	wake    chan struct{}
	shared  rowCache
	// pace, when set, is how far the reader that offers rows has read:
	// the follower stays behind it (for up to paceWait) so that it takes
	// their rows instead of decoding.
	pace     func() uint64
	paceWait time.Duration
	paceAt   uint64    // pace() at the last step
	paceMove time.Time // when pace() last moved
	// lastUpdate is when the last update began (Step's goroutine only).
	lastUpdate time.Time

	mu      sync.Mutex
	next    uint64
	used    uint64 // entries indexed from offered rows
	err     error
	changed chan struct{} // closed and replaced whenever next or err changes
}

// NewFollower follows j (the journal in dataDir) with x, opened for
// writing.
func NewFollower(x *Index, dataDir string, j journal.Log, logger *slog.Logger) (*Follower, error) {
	if x.readOnly {
		return nil, errors.New("index: a follower needs the index opened for writing")
	}
	if logger == nil {
		logger = slog.Default()
	}
	next, err := x.Next(context.Background())
	if err != nil {
		return nil, err
	}
	return &Follower{x: x, dataDir: dataDir, j: j, log: logger, wake: make(chan struct{}, 1),
		next: next, changed: make(chan struct{})}, nil
}

// Offer gives the follower entry idx's events as another reader of the
// journal decoded them (vigil serve's detection does, on its decoding
// goroutines; err when the entry did not decode), so that the index need
// not decode it again. It may be called from many goroutines, in any
// order; en and evs are not kept. Offers for entries the index holds
// already, or too far ahead of it, are ignored: the follower then decodes
// the entry itself, with the same result.
func (f *Follower) Offer(idx uint64, en *journal.Entry, evs []*event.Event, err error) {
	f.mu.Lock()
	next := f.next
	f.mu.Unlock()
	if idx < next {
		return
	}
	if !f.shared.room(idx, next) {
		return
	}
	f.shared.offer(idx, &Rows{rowsOf(idx, en, evs, err, f.x.enrich)})
}

// SetPace makes the follower index only what the reader that offers rows
// (vigil serve's detection, whose Offset is pace) has read, so that it
// takes their rows rather than decoding the entries itself. A reader that
// makes no progress for wait is not waited for: the follower then indexes
// what the journal holds. Call before Run.
func (f *Follower) SetPace(pace func() uint64, wait time.Duration) {
	f.pace, f.paceWait = pace, wait
}

// An update waits for gatherEntries entries, or until gatherWait after
// the last one: at 2,000 entries an update costs twice the CPU per event
// it costs at 10,000 (BenchmarkIncremental).
const (
	gatherEntries = 8192
	gatherWait    = time.Second
)

// Index is the followed index, for queries.
func (f *Follower) Index() *Index { return f.x }

// Wake says the journal grew.
func (f *Follower) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Position returns the journal entries the index holds ([0, next)), the
// entries the journal has acknowledged, and the last update's error.
func (f *Follower) Position() (next, journal uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next, f.j.Size(), f.err
}

// Behind is how many acknowledged journal entries the index does not hold
// yet.
func (f *Follower) Behind() uint64 {
	next, size, _ := f.Position()
	if size > next {
		return size - next
	}
	return 0
}

// WaitFor waits until the index holds the journal entries below target,
// ctx ends or an update fails.
func (f *Follower) WaitFor(ctx context.Context, target uint64) error {
	f.Wake()
	for {
		f.mu.Lock()
		next, err, ch := f.next, f.err, f.changed
		f.mu.Unlock()
		if next >= target {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (f *Follower) set(next uint64, err error) {
	f.mu.Lock()
	f.next, f.err = next, err
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Run updates the index until ctx ends. A failed update is logged, kept
// for Position and retried at the next wake-up: the journal still holds
// every entry, so nothing is lost while the index cannot follow.
func (f *Follower) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := f.step(ctx, true); err != nil && ctx.Err() == nil {
			f.log.Error("index update failed; queries leave out entries not indexed yet", "err", err)
		}
		// Behind (gathering entries, or paced by a reader that moves on
		// without waking us): look again soon.
		var soon <-chan time.Time
		if f.Behind() > 0 {
			soon = time.After(gatherWait / 4)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.wake:
		case <-tick.C:
		case <-soon:
		}
	}
}

// Step brings the index up to the journal's acknowledged entries once.
func (f *Follower) Step(ctx context.Context) error { return f.step(ctx, false) }

// step is Step; gather lets a few entries wait for more (Run's updates).
func (f *Follower) step(ctx context.Context, gather bool) error {
	f.mu.Lock()
	next := f.next
	f.mu.Unlock()
	if f.j.Size() <= next {
		// Nothing new; retention still runs on its schedule.
		_, err := f.x.expireDue(ctx)
		return err
	}
	limit := uint64(0)
	if f.pace != nil {
		now, p := time.Now(), f.pace()
		// The wait counts while the reader is behind the journal.
		if p != f.paceAt || f.paceMove.IsZero() || p >= f.j.Size() {
			f.paceAt, f.paceMove = p, now
		}
		if now.Sub(f.paceMove) < f.paceWait {
			if p <= next {
				return nil // the reader has not got further than the index
			}
			limit = p
		}
	}
	// An update has a fixed cost (tens of milliseconds of CPU under load):
	// a few entries wait for more, up to gatherWait.
	end := f.j.Size()
	if limit > 0 {
		end = limit
	}
	if gather && end-next < gatherEntries && time.Since(f.lastUpdate) < gatherWait {
		return nil
	}
	f.lastUpdate = time.Now()
	st, err := f.x.update(ctx, f.dataDir, f.j.Read, &f.shared, limit)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, nerr := f.x.Next(ctx)
		if nerr != nil {
			n = next
		}
		f.set(n, err)
		return err
	}
	if st.Expired > 0 {
		f.log.Warn("journal entries expired by retention before they were indexed", "entries", st.Expired, "below", st.From)
	}
	f.mu.Lock()
	f.used += st.Shared
	f.mu.Unlock()
	f.set(st.To, nil)
	return nil
}

// Shared says how many entries the follower indexed from offered rows
// (Offer) and how many offers it refused for want of room.
func (f *Follower) Shared() (used, dropped uint64) {
	f.mu.Lock()
	used = f.used
	f.mu.Unlock()
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	return used, f.shared.dropped
}
