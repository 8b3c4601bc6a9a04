package detect

import "container/heap"

// reorderBuf holds the events of the reordering window and gives them
// back smallest first (eventLess). Most streams are a few ordered streams
// interleaved (one per concurrent pusher or collector), so events wait in
// up to maxRuns FIFO runs, each in order: an event goes to the run whose
// last event is the latest not after it (a few comparisons), or starts a
// run; only when every run has moved past it does it go to a heap.
// Popping takes the smallest of the runs' fronts and the heap's top, so
// the order is the single heap's, at a fraction of its comparisons.
type reorderBuf struct {
	runs [maxRuns]fifo
	used int // runs[:used] may hold events
	odd  evHeap
	n    int
	// least caches min() between a peek and the pop that follows it;
	// valid says it is current.
	least int
	valid bool
}

// maxRuns bounds the runs scanned per push and pop: four pushers with
// their batches interleaved fit, and a scan of eight fronts still costs
// less than a heap's sift over thousands of events.
const maxRuns = 8

type fifo struct {
	items []*Item
	head  int
}

func (f *fifo) empty() bool    { return f.head == len(f.items) }
func (f *fifo) front() *Item   { return f.items[f.head] }
func (f *fifo) last() *Item    { return f.items[len(f.items)-1] }
func (f *fifo) add(it *Item)   { f.items = append(f.items, it) }
func (b *reorderBuf) Len() int { return b.n }

func (f *fifo) take() *Item {
	it := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	if f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	} else if f.head > 1024 && f.head > len(f.items)/2 {
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return it
}

func (b *reorderBuf) push(it *Item) {
	b.n++
	b.valid = false
	best, free := -1, -1
	for i := range b.used {
		r := &b.runs[i]
		if r.empty() {
			if free < 0 {
				free = i
			}
			continue
		}
		if eventLess(it.Ev, r.last().Ev) {
			continue
		}
		if best < 0 || eventLess(b.runs[best].last().Ev, r.last().Ev) {
			best = i
		}
	}
	switch {
	case best >= 0:
		b.runs[best].add(it)
	case free >= 0:
		b.runs[free].add(it)
	case b.used < maxRuns:
		b.runs[b.used].add(it)
		b.used++
	default:
		heap.Push(&b.odd, it)
	}
}

// min is the run holding the smallest front, or -1 for the heap's top;
// Len must be > 0.
func (b *reorderBuf) min() int {
	if b.valid {
		return b.least
	}
	best := -1
	var bestIt *Item
	if b.odd.Len() > 0 {
		bestIt = b.odd[0]
	}
	for i := range b.used {
		r := &b.runs[i]
		if r.empty() {
			continue
		}
		if f := r.front(); bestIt == nil || eventLess(f.Ev, bestIt.Ev) {
			best, bestIt = i, f
		}
	}
	b.least, b.valid = best, true
	return best
}

// peek is the smallest event held; Len must be > 0.
func (b *reorderBuf) peek() *Item {
	if i := b.min(); i >= 0 {
		return b.runs[i].front()
	}
	return b.odd[0]
}

// pop removes and returns the smallest event held; Len must be > 0.
func (b *reorderBuf) pop() *Item {
	b.n--
	i := b.min()
	b.valid = false
	if i < 0 {
		return heap.Pop(&b.odd).(*Item)
	}
	it := b.runs[i].take()
	for b.used > 0 && b.runs[b.used-1].empty() {
		b.used--
	}
	return it
}
