package detect

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// reorderBuf gives back exactly what one heap would, in the same order,
// for streams from fully ordered to fully shuffled, with pops between
// pushes as the pipeline does.
func TestReorderBufIsAHeap(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, disorder := range []int{0, 1, 10, 50, 100} {
		r := rand.New(rand.NewPCG(uint64(disorder), 9))
		var b reorderBuf
		var h evHeap
		for i := range 20000 {
			d := time.Duration(i) * time.Second
			if r.IntN(100) < disorder {
				d -= time.Duration(r.IntN(900)) * time.Second
			}
			ev := &event.Event{Time: t0.Add(d), Source: "m365.ual", RecordID: fmt.Sprint(r.IntN(50))}
			b.push(&Item{Ev: ev})
			heap.Push(&h, &Item{Ev: ev})
			for r.IntN(3) == 0 && h.Len() > 0 {
				want := heap.Pop(&h).(*Item)
				if !sameKey(b.peek(), want) {
					t.Fatalf("disorder %d%%, step %d: peek differs from the heap's top", disorder, i)
				}
				if got := b.pop(); !sameKey(got, want) {
					t.Fatalf("disorder %d%%, step %d: pop differs from the heap's", disorder, i)
				}
			}
			if b.Len() != h.Len() {
				t.Fatalf("disorder %d%%: %d held, the heap %d", disorder, b.Len(), h.Len())
			}
		}
		for h.Len() > 0 {
			if got, want := b.pop(), heap.Pop(&h).(*Item); !sameKey(got, want) {
				t.Fatalf("disorder %d%%: draining differs", disorder)
			}
		}
		if disorder == 0 && b.odd.Len() != 0 {
			t.Errorf("an ordered stream used the heap")
		}
	}
}

// sameKey: events with equal keys may come out in either order (they are
// the same record).
// Concurrent pushers interleave ordered batches: up to maxRuns of them
// never touch the heap, more still give the heap's order.
func TestReorderBufInterleavedPushers(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, pushers := range []int{1, 4, 8, 12} {
		r := rand.New(rand.NewPCG(uint64(pushers), 3))
		var b reorderBuf
		var h evHeap
		next := make([]time.Duration, pushers) // each pusher's clock
		for step := range 400 {
			p := r.IntN(pushers)
			for range 50 { // one batch, in order
				next[p] += time.Duration(r.IntN(40)) * time.Millisecond
				ev := &event.Event{Time: t0.Add(next[p]), Source: "m365.ual", RecordID: fmt.Sprint(p, step)}
				b.push(&Item{Ev: ev})
				heap.Push(&h, &Item{Ev: ev})
			}
			for r.IntN(2) == 0 && h.Len() > 0 {
				want := heap.Pop(&h).(*Item)
				if got := b.pop(); !sameKey(got, want) {
					t.Fatalf("%d pushers, batch %d: pop differs from the heap's", pushers, step)
				}
			}
		}
		for h.Len() > 0 {
			if got, want := b.pop(), heap.Pop(&h).(*Item); !sameKey(got, want) {
				t.Fatalf("%d pushers: draining differs", pushers)
			}
		}
		if b.Len() != 0 {
			t.Fatalf("%d pushers: %d left", pushers, b.Len())
		}
		if pushers <= 8 && b.odd.Len()+cap(b.odd) != 0 {
			t.Errorf("%d pushers: the heap was used", pushers)
		}
	}
}

func sameKey(a, b *Item) bool { return compareKey(keyOf(a.Ev), keyOf(b.Ev)) == 0 }

// BenchmarkReorderBuf: four pushers' batches of 5000 interleaved, with a
// window of 20,000 events held, as vigil serve holds them under push.
func BenchmarkReorderBuf(b *testing.B) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 1))
	const pushers, batch = 4, 5000
	var evs []*Item
	next := make([]time.Duration, pushers)
	for step := range 40 {
		p := step % pushers
		for range batch {
			next[p] += time.Duration(r.IntN(400)) * time.Microsecond
			evs = append(evs, &Item{Ev: &event.Event{Time: t0.Add(next[p]), Source: "m365.ual", RecordID: fmt.Sprint(p, step)}})
		}
	}
	for b.Loop() {
		var buf reorderBuf
		for _, it := range evs {
			buf.push(it)
			if buf.Len() > 20000 {
				buf.pop()
			}
		}
		for buf.Len() > 0 {
			buf.pop()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}
