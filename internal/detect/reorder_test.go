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
func sameKey(a, b *Item) bool { return compareKey(keyOf(a.Ev), keyOf(b.Ev)) == 0 }
