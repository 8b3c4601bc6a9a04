package detect

import (
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
)

// splitBatchLen is how many released events travel to the behaviours'
// goroutine at once, and splitInFlight how many batches may be there:
// enough that neither side waits for the other's every event, few
// enough that the events held stay a few thousand.
const (
	splitBatchLen = 256
	splitInFlight = 4
)

// split runs the behaviours on a goroutine of their own, beside the rest
// of the ordered stage (statistics, the access log, the Sigma rules'
// correlations, alerts and incidents), which stays on the goroutine that
// calls ProcessItem. Both see the released events in the same order. The
// alerts are not raised where they are found: each released event's
// Sigma alerts wait, in its entry, for the behaviours' alerts of the same
// event, and merge raises them in the sequential order (the event's
// Sigma alerts, then its behaviours' alerts, then the regrouping check
// with the event's release time). So the sink, Mute, the alerts and the
// incidents see exactly what a sequential run gives them, only up to
// splitBatchLen × splitInFlight events later.
//
// Nothing else may touch the engine while a split runs: Drain (and so
// everything that reads or saves state) waits for the batches in flight
// first.
type split struct {
	eng      *behavior.Engine
	jobs     chan *splitBatch // to the behaviours, in release order
	results  chan *splitBatch // back from them, in the same order
	inFlight int
	cur      *splitBatch // being filled
	free     []*splitBatch
	stopped  chan struct{}
}

// splitBatch is a run of released events and what was found in them.
type splitBatch struct {
	entries []splitEntry
}

// splitEntry is one released event (or a future-dated one, which only
// the Sigma rules see).
type splitEntry struct {
	it       *Item // nil: nothing for the behaviours
	sigma    []alert.Alert
	beh      []alert.Alert
	released time.Time
	check    bool // run the regrouping check after its alerts
}

func newSplit(eng *behavior.Engine) *split {
	s := &split{
		eng:     eng,
		jobs:    make(chan *splitBatch, splitInFlight),
		results: make(chan *splitBatch, splitInFlight),
		stopped: make(chan struct{}),
	}
	go s.loop()
	return s
}

// loop is the behaviours' goroutine.
func (s *split) loop() {
	defer close(s.stopped)
	for b := range s.jobs {
		for i := range b.entries {
			e := &b.entries[i]
			if e.it != nil {
				s.eng.ProcessAccess(e.it.Ev, e.it.acc)
				e.beh = s.eng.Alerts()
			}
		}
		s.results <- b
	}
	close(s.results)
}

// entry is a new entry at the end of the batch being filled; it stays
// valid until the batch is sent.
func (s *split) entry() *splitEntry {
	if s.cur == nil {
		if n := len(s.free); n > 0 {
			s.cur, s.free = s.free[n-1], s.free[:n-1]
		} else {
			s.cur = &splitBatch{entries: make([]splitEntry, 0, splitBatchLen)}
		}
	}
	s.cur.entries = append(s.cur.entries, splitEntry{})
	return &s.cur.entries[len(s.cur.entries)-1]
}

// full says whether the batch being filled should be sent.
func (s *split) full() bool { return s.cur != nil && len(s.cur.entries) == splitBatchLen }

// Split mode on the Pipeline's side.

// startSplit puts the behaviours on their own goroutine until stopSplit.
func (p *Pipeline) startSplit() {
	if p.split == nil && p.cfg.Behaviours != nil {
		p.split = newSplit(p.cfg.Behaviours)
	}
}

// stopSplit waits for the batches in flight, raises their alerts and ends
// the behaviours' goroutine: the pipeline is sequential again.
func (p *Pipeline) stopSplit() {
	s := p.split
	if s == nil {
		return
	}
	p.syncSplit()
	close(s.jobs)
	<-s.stopped
	p.split = nil
}

// sendSplit sends the batch being filled, first merging batches that came
// back (waiting for the oldest when splitInFlight are out).
func (p *Pipeline) sendSplit() {
	s := p.split
	if s.cur == nil || len(s.cur.entries) == 0 {
		return
	}
	for s.inFlight >= splitInFlight {
		p.mergeSplit(<-s.results)
	}
	s.jobs <- s.cur
	s.inFlight++
	p.splitBatches++
	s.cur = nil
	for s.inFlight > 0 {
		select {
		case b := <-s.results:
			p.mergeSplit(b)
		default:
			return
		}
	}
}

// syncSplit sends what is being filled and merges every batch in flight:
// afterwards the engine is idle and every alert raised.
func (p *Pipeline) syncSplit() {
	s := p.split
	if s == nil {
		return
	}
	p.sendSplit()
	for s.inFlight > 0 {
		p.mergeSplit(<-s.results)
	}
}

// mergeSplit raises a returned batch's alerts in the sequential order.
func (p *Pipeline) mergeSplit(b *splitBatch) {
	s := p.split
	s.inFlight--
	for i := range b.entries {
		e := &b.entries[i]
		for _, a := range e.sigma {
			p.raise(a)
		}
		for _, a := range e.beh {
			p.raise(a)
		}
		if e.check {
			p.maybeRegroup(e.released)
		}
		*e = splitEntry{}
	}
	b.entries = b.entries[:0]
	s.free = append(s.free, b)
}
