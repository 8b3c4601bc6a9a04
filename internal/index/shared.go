package index

import (
	"sync"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// Rows are one journal entry's index rows, made by a reader that decoded
// the entry anyway (vigil serve's detection) and offered to the follower
// (Follower.Offer), which then does not decode the entry again.
type Rows struct{ d decoded }

// decodeEntry decodes one journal entry and turns it into rows. The
// decoder's observed time is the entry's receipt, as detection's is, so
// a snapshot record (an inbox rule export) gets the same time in both.
func decodeEntry(dec *source.Decoder, idx uint64, en *journal.Entry, enrich enricher) decoded {
	dec.SetObserved(en.Received)
	evs, err := dec.Decode(en.Raw, event.Origin{File: "journal", Index: int(idx)})
	return rowsOf(idx, en, evs, err, enrich)
}

// rowsOf turns the events of entry idx (or the error that kept it from
// decoding) into rows.
func rowsOf(idx uint64, en *journal.Entry, evs []*event.Event, err error, enrich enricher) decoded {
	d := decoded{source: en.Source}
	if err != nil {
		d.reason = err.Error()
		return d
	}
	if len(evs) == 0 {
		d.reason = "record holds no event"
		return d
	}
	d.events = make([]eventRow, 0, len(evs))
	for k, e := range evs {
		r := rowOf(idx, k, en.Received, e)
		enrichRow(&r, enrich)
		d.events = append(d.events, r)
		if r.kind == KindMail {
			d.mail = appendMailRows(d.mail, &r, e)
		}
	}
	return d
}

// sharedMax bounds the rows waiting for the follower (about 1.5 KB an
// entry of mail reads, some 100 MB): entries further ahead of what it has
// taken than this are decoded by the follower itself when it gets there.
const sharedMax = 65536

// rowCache holds offered rows by journal index until the follower takes
// them (in increasing index order).
type rowCache struct {
	mu      sync.Mutex
	m       map[uint64]*Rows
	floor   uint64 // rows below it will not be taken
	dropped uint64 // offers refused because the cache was full
}

// room reports whether rows for entry idx would be held, counting a
// refusal: idx must be less than sharedMax past next (the index's
// position) and past what the follower has taken of an update in
// progress, so the window moves on while a long update runs.
func (c *rowCache) room(idx, next uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := max(next, c.floor)
	if idx < base || idx-base < sharedMax {
		return true // below base: offer ignores it
	}
	c.dropped++
	return false
}

// has reports whether rows for entry idx are held.
func (c *rowCache) has(idx uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[idx]
	return ok
}

func (c *rowCache) offer(idx uint64, r *Rows) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idx < c.floor {
		return
	}
	if len(c.m) >= sharedMax {
		for k := range c.m {
			if k < c.floor {
				delete(c.m, k)
			}
		}
		if len(c.m) >= sharedMax {
			c.dropped++
			return
		}
	}
	if c.m == nil {
		c.m = map[uint64]*Rows{}
	}
	c.m[idx] = r
}

func (c *rowCache) take(idx uint64) (*Rows, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.floor = max(c.floor, idx+1)
	r, ok := c.m[idx]
	if ok {
		delete(c.m, idx)
	}
	return r, ok
}
