package server

import (
	"sync"
	"sync/atomic"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
)

// Handoff passes the records push ingest has just decoded and appended to
// detection in the same process, so that detection neither reads them
// back from the journal nor decodes them again. It holds the most recent
// entries only: a slot per journal index modulo its size, bounded in
// bytes too. Detection takes an entry from here when it is still held and
// reads the journal otherwise (a restart, a backlog, records appended by
// collectors or the gateway), so what it sees never depends on the
// handoff, only how much it costs.
//
// An entry is offered only after the journal acknowledged it, with its
// events decoded as detection would decode the entry: the same decoder
// configuration, the entry's Received time as the observed time, and the
// journal origin (see Ingester.Handoff).
type Handoff struct {
	mu       sync.Mutex
	slots    []handoffSlot
	bytes    int64
	maxBytes int64

	// floor: detection has read every entry below it, so offers of
	// them (an ingester slower than detection) are not held.
	floor                         atomic.Uint64
	offered, taken, refused, late atomic.Uint64
}

type handoffSlot struct {
	index uint64
	used  bool
	en    journal.Entry
	evs   []*event.Event
	size  int64
}

// Handoff defaults: 65,536 entries and 128 MiB of record bytes cover
// about two seconds of push at the rates one machine holds, the delay
// ingest backpressure allows detection.
const (
	DefaultHandoffEntries = 1 << 16
	DefaultHandoffBytes   = 128 << 20
)

// NewHandoff holds up to entries entries and maxBytes bytes of them (zero:
// the defaults).
func NewHandoff(entries int, maxBytes int64) *Handoff {
	if entries <= 0 {
		entries = DefaultHandoffEntries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultHandoffBytes
	}
	return &Handoff{slots: make([]handoffSlot, entries), maxBytes: maxBytes}
}

// handoffCost is what an entry is charged: its record bytes twice (the
// bytes, and about as much again for the decoded events).
func handoffCost(en *journal.Entry) int64 {
	return 2*int64(len(en.Raw)) + int64(len(en.Source)+len(en.Origin)+len(en.RecordID))
}

// Offer holds the entry at index with its decoded events. It replaces
// whatever the slot held (an older entry detection did not take in time);
// an entry that would pass the byte bound is not held.
func (h *Handoff) Offer(index uint64, en journal.Entry, evs []*event.Event) {
	if index < h.floor.Load() {
		h.late.Add(1)
		return
	}
	size := handoffCost(&en)
	h.mu.Lock()
	s := &h.slots[index%uint64(len(h.slots))]
	if s.used {
		h.bytes -= s.size
		*s = handoffSlot{}
	}
	if h.bytes+size > h.maxBytes {
		h.mu.Unlock()
		h.refused.Add(1)
		return
	}
	*s = handoffSlot{index: index, used: true, en: en, evs: evs, size: size}
	h.bytes += size
	h.mu.Unlock()
	h.offered.Add(1)
}

// Passed tells the handoff that detection has read every entry below
// index.
func (h *Handoff) Passed(index uint64) {
	for {
		f := h.floor.Load()
		if index <= f || h.floor.CompareAndSwap(f, index) {
			return
		}
	}
}

// Has reports whether the entry at index is held.
func (h *Handoff) Has(index uint64) bool {
	h.mu.Lock()
	s := &h.slots[index%uint64(len(h.slots))]
	ok := s.used && s.index == index
	h.mu.Unlock()
	return ok
}

// Take removes and returns the entry at index and its events, if held.
func (h *Handoff) Take(index uint64) (journal.Entry, []*event.Event, bool) {
	h.mu.Lock()
	s := &h.slots[index%uint64(len(h.slots))]
	if !s.used || s.index != index {
		h.mu.Unlock()
		return journal.Entry{}, nil, false
	}
	en, evs := s.en, s.evs
	h.bytes -= s.size
	*s = handoffSlot{}
	h.mu.Unlock()
	h.taken.Add(1)
	return en, evs, true
}

// HandoffStats counts the entries offered to a Handoff.
type HandoffStats struct {
	Offered uint64 // held for detection
	Taken   uint64 // taken by detection
	Refused uint64 // not held: over the byte bound
	Late    uint64 // not held: detection had read them from the journal already
}

// Stats returns the handoff's counters.
func (h *Handoff) Stats() HandoffStats {
	return HandoffStats{Offered: h.offered.Load(), Taken: h.taken.Load(), Refused: h.refused.Load(), Late: h.late.Load()}
}
