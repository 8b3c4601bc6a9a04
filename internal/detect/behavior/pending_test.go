package behavior

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pendingStream is n accesses in time order, a few per cent of them late
// (their time up to two hours behind the newest), as the engine holds
// them: due a grace period after their time.
func pendingStream(n int, seed uint64) []pending {
	r := rand.New(rand.NewPCG(seed, 7))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	out := make([]pending, n)
	for i := range out {
		t := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		if r.IntN(40) == 0 {
			t = t.Add(-time.Duration(r.IntN(7200)) * time.Second)
		}
		out[i] = pending{Seq: uint64(i + 1), Time: t, Due: t.Add(time.Hour), User: fmt.Sprintf("user%d@contoso.example", r.IntN(500)),
			Mailbox: "m", Items: r.IntN(50), Sessions: []string{fmt.Sprint(r.IntN(1000))}}
	}
	return out
}

func sortedPending(in []pending) []pending {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b pending) int {
		if less(&a, &b) {
			return -1
		}
		if less(&b, &a) {
			return 1
		}
		return 0
	})
	return out
}

// TestPendingQueueOrderAndMemory: a long stream comes out in due order,
// with at most a bounded number held in memory whatever the length.
func TestPendingQueueOrderAndMemory(t *testing.T) {
	in := pendingStream(100_000, 1)
	want := sortedPending(in)
	q := pendingQueue{dir: t.TempDir()}
	defer q.close()
	late := 0
	var newest time.Time
	for i, p := range in {
		q.push(p)
		if p.Due.Before(newest) {
			late++
		} else {
			newest = p.Due
		}
		if mem := len(q.head) + len(q.tail); mem > 2*pendingMem {
			t.Fatalf("after %d pushes %d in-order accesses in memory, want at most %d", i+1, mem, 2*pendingMem)
		}
	}
	if q.n == 0 {
		t.Fatal("nothing was written to disk: the test does not exercise the spill")
	}
	if len(q.odd) > late {
		t.Fatalf("%d accesses held out of order, only %d arrived late", len(q.odd), late)
	}
	var got []pending
	for q.Len() > 0 {
		got = append(got, q.pop())
	}
	if q.err != nil {
		t.Fatal(q.err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d accesses came out, %d went in", len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i].Seq {
			t.Fatalf("access %d out is seq %d, want %d", i, got[i].Seq, want[i].Seq)
		}
	}
}

// Concurrent pushers give a stream that is in order only roughly: every
// access a few seconds late at most. The queue sorts those into its tail
// (the heap is for the few far out of place), and they come out in order.
func TestPendingQueueJitteredStream(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	in := make([]pending, 60_000)
	for i := range in {
		tm := t0.Add(time.Duration(i)*50*time.Millisecond - time.Duration(r.IntN(3000))*time.Millisecond)
		in[i] = pending{Seq: uint64(i + 1), Time: tm, Due: tm.Add(time.Hour)}
	}
	q := pendingQueue{dir: t.TempDir()}
	defer q.close()
	maxOdd := 0
	for i, p := range in {
		q.push(p)
		maxOdd = max(maxOdd, len(q.odd))
		if mem := len(q.head) + len(q.tail); mem > 2*pendingMem {
			t.Fatalf("after %d pushes %d accesses in memory at the ends", i+1, mem)
		}
	}
	if q.n == 0 {
		t.Fatal("nothing was written to disk: the test does not exercise the spill")
	}
	if maxOdd > len(in)/100 {
		t.Fatalf("%d accesses held in the heap for late ones out of %d that were at most 3 s late", maxOdd, len(in))
	}
	want := sortedPending(in)
	for i := range want {
		if got := q.pop(); got.Seq != want[i].Seq {
			t.Fatalf("access %d out is seq %d, want %d", i, got.Seq, want[i].Seq)
		}
	}
	if q.Len() != 0 || q.err != nil {
		t.Fatalf("%d left, err %v", q.Len(), q.err)
	}
}

// TestPendingQueueReleasesAsTimeMoves interleaves pushes and releases as
// the engine does (release what is due at each access's time) and
// requires the same order as releasing from a fully sorted list.
func TestPendingQueueReleasesAsTimeMoves(t *testing.T) {
	in := pendingStream(60_000, 2)
	q := pendingQueue{dir: t.TempDir()}
	defer q.close()
	var ref []pending // the simple sorted list the queue replaces
	var got, want []uint64
	var wm time.Time
	for _, p := range in {
		if p.Time.After(wm) {
			wm = p.Time
		}
		q.push(p)
		i, _ := slices.BinarySearchFunc(ref, p, func(a, b pending) int {
			if less(&a, &b) {
				return -1
			}
			return 1
		})
		ref = slices.Insert(ref, i, p)
		for {
			h, ok := q.peek()
			if !ok || h.Due.After(wm) {
				break
			}
			got = append(got, q.pop().Seq)
		}
		for len(ref) > 0 && !ref[0].Due.After(wm) {
			want = append(want, ref[0].Seq)
			ref = ref[1:]
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("released %d accesses, the sorted list %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if q.Len() != len(ref) {
		t.Fatalf("%d held, want %d", q.Len(), len(ref))
	}
}

func firstDiff(a, b []uint64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestEngineSaveLoadWithSpilledAccesses saves an engine whose pending
// accesses are mostly on disk and requires the loaded one to judge them
// exactly as the original.
func TestEngineSaveLoadWithSpilledAccesses(t *testing.T) {
	in := pendingStream(30_000, 3)
	a := New(nil, Options{TempDir: t.TempDir()})
	for _, p := range in {
		a.hold(p)
	}
	if a.queue("").n == 0 {
		t.Fatal("nothing was written to disk: the test does not exercise the spill")
	}
	var buf bytes.Buffer
	if err := a.Save(&buf); err != nil {
		t.Fatal(err)
	}
	b := New(nil, Options{TempDir: t.TempDir()})
	if err := b.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if a.queue("").Len() != b.queue("").Len() {
		t.Fatalf("loaded %d pending accesses, saved %d", b.queue("").Len(), a.queue("").Len())
	}
	for a.queue("").Len() > 0 {
		x, y := a.queue("").pop(), b.queue("").pop()
		if x.Seq != y.Seq || x.User != y.User || !x.Due.Equal(y.Due) || x.Items != y.Items || !slices.Equal(x.Sessions, y.Sessions) {
			t.Fatalf("after load: %+v, want %+v", y, x)
		}
	}
}

// A local save names the segments instead of copying them: it stays small
// however many accesses wait on disk. The saved segments survive what the
// live engine does after (reading them to their end, writing more), a
// restore from the save holds exactly what was held then, and the files
// of a crashed run that the save does not name are removed.
func TestEngineSaveLocalNamesSegments(t *testing.T) {
	defer func(n int64) { pendingSegBytes = n }(pendingSegBytes)
	pendingSegBytes = 1 << 20 // several segments
	dir := t.TempDir()
	in := pendingStream(80_000, 4)
	a := New(nil, Options{TempDir: dir})
	for _, p := range in[:60_000] {
		a.hold(p)
	}
	if len(a.queue("").segs) < 3 {
		t.Fatalf("%d segments: the test does not exercise rotation", len(a.queue("").segs))
	}
	want := sortedPending(in[:60_000])
	var saved bytes.Buffer
	if err := a.SaveLocal(&saved); err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	if err := a.Save(&full); err != nil {
		t.Fatal(err)
	}
	if saved.Len()*3 > full.Len() {
		t.Errorf("the local save is %d bytes, the full one %d: segments were copied", saved.Len(), full.Len())
	}
	// The live engine goes on: reads past the first segments, writes more.
	for range 30_000 {
		a.queue("").pop()
	}
	for _, p := range in[60_000:] {
		a.hold(p)
	}
	stale := filepath.Join(dir, "vigil-pending-crashed.seg")
	if err := os.WriteFile(stale, []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Crash: a new engine loads the save.
	b := New(nil, Options{TempDir: dir})
	if err := b.Load(&saved); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a segment the save does not name was left in place")
	}
	if b.queue("").Len() != len(want) {
		t.Fatalf("restored %d pending accesses, %d were held at the save", b.queue("").Len(), len(want))
	}
	for i := range want {
		got := b.queue("").pop()
		if got.Seq != want[i].Seq || got.User != want[i].User {
			t.Fatalf("restored access %d is seq %d, want %d", i, got.Seq, want[i].Seq)
		}
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	// A later save frees the segments the first one pinned and this one
	// does not name.
	var again bytes.Buffer
	if err := b.SaveLocal(&again); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, pendingPattern))
	if len(left) != len(b.queue("").segs) {
		t.Errorf("%d segment files on disk, the engine uses %d", len(left), len(b.queue("").segs))
	}
}

// Each tenant's accesses wait in a queue of their own, spilled to their
// own segments: a local save names them all, and a restore brings back
// every tenant's accesses (none of them taken for a crashed run's file).
func TestEngineSaveLocalManyTenants(t *testing.T) {
	dir := t.TempDir()
	a := New(nil, Options{TempDir: dir})
	want := map[string][]pending{}
	for i, ten := range []string{"tenant-a", "tenant-b"} {
		in := pendingStream(3*pendingMem, uint64(10+i))
		for j := range in {
			in[j].Tenant = ten
			a.hold(in[j])
		}
		if a.queue(ten).n == 0 {
			t.Fatalf("%s: nothing was written to disk: the test does not exercise the spill", ten)
		}
		want[ten] = sortedPending(in)
	}
	for _, local := range []bool{true, false} {
		var saved bytes.Buffer
		save := a.Save
		if local {
			save = a.SaveLocal
		}
		if err := save(&saved); err != nil {
			t.Fatal(err)
		}
		b := New(nil, Options{TempDir: dir})
		if err := b.Load(&saved); err != nil {
			t.Fatalf("local %v: %v", local, err)
		}
		if local {
			left, _ := filepath.Glob(filepath.Join(dir, pendingPattern))
			if n := len(a.queue("tenant-a").segs) + len(a.queue("tenant-b").segs); len(left) != n {
				t.Fatalf("%d segment files left after the restore, the saved state names %d", len(left), n)
			}
		}
		for ten, w := range want {
			q := b.queue(ten)
			if q.Len() != len(w) {
				t.Fatalf("local %v: %s: restored %d accesses, %d were held", local, ten, q.Len(), len(w))
			}
			for i := range w {
				if got := q.pop(); got.Seq != w[i].Seq || got.Tenant != ten {
					t.Fatalf("local %v: %s: access %d is %s seq %d, want seq %d", local, ten, i, got.Tenant, got.Seq, w[i].Seq)
				}
			}
		}
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// A state saved by an older build is refused with a reason, not misread.
func TestLoadRefusesOtherStateVersion(t *testing.T) {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if err := enc.Encode(stateHeader{Magic: stateMagic, Version: StateVersion - 1}); err != nil {
		t.Fatal(err)
	}
	err := New(nil, Options{}).Load(&buf)
	want := fmt.Sprintf("version %d, this build reads %d (replay the logs to rebuild it)", StateVersion-1, StateVersion)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("load of a version %d state: %v, want %q", StateVersion-1, err, want)
	}
}
