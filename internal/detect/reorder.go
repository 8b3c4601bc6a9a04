package detect

import "container/heap"

// reorderBuf holds the events of the reordering window and gives them
// back smallest first (eventLess). Most streams are nearly in order, so
// events that come no earlier than the last one held wait in a FIFO (one
// comparison each); only the others go to a heap. Popping takes the
// smaller of the two fronts, so the order is the single heap's.
type reorderBuf struct {
	fifo []*Item
	head int
	odd  evHeap
}

func (b *reorderBuf) Len() int { return len(b.fifo) - b.head + b.odd.Len() }

func (b *reorderBuf) push(it *Item) {
	if n := len(b.fifo); n == b.head || !eventLess(it.Ev, b.fifo[n-1].Ev) {
		b.fifo = append(b.fifo, it)
		return
	}
	heap.Push(&b.odd, it)
}

// peek is the smallest event held; Len must be > 0.
func (b *reorderBuf) peek() *Item {
	if b.head == len(b.fifo) {
		return b.odd[0]
	}
	f := b.fifo[b.head]
	if b.odd.Len() > 0 && eventLess(b.odd[0].Ev, f.Ev) {
		return b.odd[0]
	}
	return f
}

// pop removes and returns the smallest event held; Len must be > 0.
func (b *reorderBuf) pop() *Item {
	if b.head < len(b.fifo) {
		f := b.fifo[b.head]
		if b.odd.Len() == 0 || !eventLess(b.odd[0].Ev, f.Ev) {
			b.fifo[b.head] = nil
			b.head++
			if b.head == len(b.fifo) {
				b.fifo, b.head = b.fifo[:0], 0
			} else if b.head > 1024 && b.head > len(b.fifo)/2 {
				n := copy(b.fifo, b.fifo[b.head:])
				clear(b.fifo[n:])
				b.fifo, b.head = b.fifo[:n], 0
			}
			return f
		}
	}
	return heap.Pop(&b.odd).(*Item)
}
