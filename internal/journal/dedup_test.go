package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dedupEntries returns n small entries whose record ids start with
// prefix; every seventh has no record id (never deduplicated).
func dedupEntries(prefix string, n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		id := fmt.Sprintf("%s-%d", prefix, i)
		es[i] = Entry{Source: "m365.ual", Origin: "t", Received: time.Unix(1700000000, int64(i)).UTC(),
			RecordID: id, Raw: []byte(`{"Id":"` + id + `"}`)}
		if i%7 == 6 {
			es[i].RecordID = ""
		}
	}
	return es
}

func appendAll(t testing.TB, j *Journal, es []Entry, batch int) []Ack {
	t.Helper()
	var acks []Ack
	for i := 0; i < len(es); i += batch {
		a, err := j.AppendBatch(t.Context(), es[i:min(i+batch, len(es))])
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		acks = append(acks, a...)
	}
	return acks
}

// waitDedupIdle waits until no freeze is pending and no merge is due.
func waitDedupIdle(t testing.TB, j *Journal) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		d := j.dedup
		d.mu.RLock()
		idle := d.frozen == nil && mergePair(d.runs) < 0
		d.mu.RUnlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("dedup freezes and merges did not settle in 60 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkDuplicates re-appends es in a shuffled order and requires every
// entry with a record id to be acknowledged as a duplicate of want.
func checkDuplicates(t *testing.T, j *Journal, es []Entry, want []Ack) {
	t.Helper()
	order := rand.New(rand.NewPCG(7, 7)).Perm(len(es))
	var again []Entry
	var wantIdx []uint64
	for _, i := range order {
		if es[i].RecordID != "" {
			again = append(again, es[i])
			wantIdx = append(wantIdx, want[i].Index)
		}
	}
	size := j.Size()
	acks := appendAll(t, j, again, 97)
	for i, a := range acks {
		if !a.Duplicate || a.Index != wantIdx[i] {
			t.Fatalf("record %q: ack %+v, want a duplicate of entry %d", again[i].RecordID, a, wantIdx[i])
		}
	}
	if j.Size() != size {
		t.Fatalf("re-appending stored records grew the journal from %d to %d", size, j.Size())
	}
}

func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, dedupDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// rewriteRun edits a run's records and fixes its checksums, as a
// consistent forgery (or a bug) would.
func rewriteRun(t *testing.T, path string, edit func(recs []dedupSlot)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	count, blocks := binary.LittleEndian.Uint64(b[24:]), binary.LittleEndian.Uint64(b[32:])
	recs := make([]dedupSlot, count)
	_, off := runOffsets(count)
	if blocks != filterBlocks(count) {
		t.Fatalf("%s: %d filter blocks for %d keys", path, blocks, count)
	}
	for i := range recs {
		p := b[off+uint64(i)*runRecordSize:]
		recs[i] = dedupSlot{getKey(p), binary.LittleEndian.Uint64(p[16:])}
	}
	edit(recs)
	for i, r := range recs {
		p := b[off+uint64(i)*runRecordSize:]
		putKey(p, r.key)
		binary.LittleEndian.PutUint64(p[16:], r.index)
	}
	binary.LittleEndian.PutUint32(b[44:], crc32.Checksum(b[off:], castagnoli))
	binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], castagnoli))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDedupRuns: duplicates are refused with the original's index whether
// the original's key is in the recent table or in a run, live and after
// reopening with the derived run files deleted, torn or left half-done by
// a crash; Verify passes afterwards and the debris is gone.
func TestDedupRuns(t *testing.T) {
	const bound = 200
	// phantom is appended only after reopening; a crash left a run that
	// claims it (for an entry that never became durable).
	phantom := Entry{Source: "m365.ual", Origin: "t", RecordID: "phantom", Raw: []byte(`{"Id":"phantom"}`)}
	cases := []struct {
		name   string
		reopen bool
		damage func(t *testing.T, dir string, n uint64)
	}{
		{name: "live"},
		{name: "reopen", reopen: true},
		{name: "runs deleted", reopen: true, damage: func(t *testing.T, dir string, _ uint64) {
			if err := os.RemoveAll(filepath.Join(dir, dedupDir)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "run truncated", reopen: true, damage: func(t *testing.T, dir string, _ uint64) {
			p := runFiles(t, dir)[0]
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "run bytes flipped", reopen: true, damage: func(t *testing.T, dir string, _ uint64) {
			p := runFiles(t, dir)[0]
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}},
		{name: "crash mid-freeze", reopen: true, damage: func(t *testing.T, dir string, _ uint64) {
			p := filepath.Join(dir, dedupDir, runName(1, 9)+".tmp")
			if err := os.WriteFile(p, []byte("VGDDRUN1 half written"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "crash after a merge, before its inputs were removed", reopen: true, damage: func(t *testing.T, dir string, n uint64) {
			runs, _, err := loadRuns(dir, n, quietOptions().Logger)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, r := range runs {
					r.close()
				}
			}()
			if len(runs) < 2 {
				t.Fatalf("want at least two runs, have %d", len(runs))
			}
			m, err := mergeRuns(dir, runs[0], runs[1], new(atomic.Bool))
			if err != nil {
				t.Fatal(err)
			}
			m.close()
		}},
		{name: "crash after a freeze of entries that were never durable", reopen: true, damage: func(t *testing.T, dir string, n uint64) {
			_, end, err := loadRuns(dir, n, quietOptions().Logger)
			if err != nil {
				t.Fatal(err)
			}
			var tab dedupIndex
			tab.insert(makeDedupKey(phantom.Source, phantom.RecordID), n+3)
			r, err := writeRunFromTable(dir, end, n+5, &tab)
			if err != nil {
				t.Fatal(err)
			}
			r.close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := quietOptions()
			opts.DedupMemoryKeys = bound
			j := mustOpen(t, dir, opts)
			// 2500 keys settle into runs (each at least twice the next
			// newer one) and recent ones; then 300 more at a time until
			// at least two runs hold them. How many freezes there were,
			// and so the runs' sizes, depends on timing: 300 more after
			// one run of 2200 leave two.
			es := dedupEntries("r", 4000)
			acks := appendAll(t, j, es[:2500], 61)
			waitDedupIdle(t, j)
			for n := 2500; ; n += 300 {
				acks = append(acks, appendAll(t, j, es[n:n+300], 61)...)
				waitDedupIdle(t, j)
				if runs, keys := j.dedup.runCount(); runs >= 2 && keys >= 1600 {
					es = es[:n+300]
					break
				}
				if n+600 > len(es) {
					runs, keys := j.dedup.runCount()
					t.Fatalf("%d runs holding %d keys after %d entries; the test needs keys in several runs", runs, keys, n+300)
				}
			}
			if tc.reopen {
				n := j.Size()
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
				if tc.damage != nil {
					tc.damage(t, dir, n)
				}
				j = mustOpen(t, dir, opts)
			}
			checkDuplicates(t, j, es, acks)
			a, err := j.Append(t.Context(), phantom)
			if err != nil || a.Duplicate {
				t.Fatalf("new record: %+v %v, want stored", a, err)
			}
			more := appendAll(t, j, dedupEntries("s", 900), 50)
			waitDedupIdle(t, j)
			checkDuplicates(t, j, es, acks)
			checkDuplicates(t, j, dedupEntries("s", 900), more)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			res := mustVerify(t, dir)
			if len(res.Notes) != 0 || res.DedupRuns == 0 {
				t.Fatalf("verify: notes %q, %d dedup runs checked", res.Notes, res.DedupRuns)
			}
			for _, p := range runFiles(t, dir) {
				if !strings.HasSuffix(p, ".run") {
					t.Errorf("left behind: %s", p)
				}
			}
		})
	}
}

// TestDedupRunForged: a run rewritten with consistent checksums but a
// wrong entry index is damage to Verify, and an append that would trust
// it fails instead of acknowledging the wrong entry.
func TestDedupRunForged(t *testing.T) {
	dir := t.TempDir()
	opts := quietOptions()
	opts.DedupMemoryKeys = 100
	j := mustOpen(t, dir, opts)
	es := dedupEntries("r", 400)
	appendAll(t, j, es, 50)
	waitDedupIdle(t, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := runFiles(t, dir)[0]
	var forged dedupSlot
	rewriteRun(t, path, func(recs []dedupSlot) {
		recs[0].index, recs[1].index = recs[1].index, recs[0].index
		forged = recs[0]
	})
	_, err := Verify(t.Context(), dir, VerifyOptions{})
	d, ok := err.(*Damage)
	if !ok || d.Kind != "dedup run mismatch" || !strings.Contains(d.Detail, filepath.Base(path)) {
		t.Fatalf("verify: %v, want dedup run mismatch naming %s", err, filepath.Base(path))
	}
	j = mustOpen(t, dir, opts)
	defer j.Close()
	var dup Entry
	for _, e := range es {
		if makeDedupKey(e.Source, e.RecordID) == forged.key {
			dup = e
		}
	}
	_, err = j.Append(t.Context(), dup)
	if err == nil || !strings.Contains(err.Error(), filepath.Base(path)) || !strings.Contains(err.Error(), "ids file") {
		t.Fatalf("append of a record the forged run names: %v, want an error naming the run", err)
	}
}

// TestDedupRunLookup: every key of a run is found with its index, keys
// not in it are not, neither by the filter (which lets few through) nor
// by the search behind it, also when keys share k[0] and interpolation
// cannot help.
func TestDedupRunLookup(t *testing.T) {
	cases := []struct {
		name   string
		n      int
		sameK0 bool
	}{
		{"one key", 1, false},
		{"seven keys", 7, false},
		{"thousand keys", 1000, false},
		{"100k keys", 100_000, false},
		{"shared k[0]", 5000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, dedupDir), 0o700)
			rng := rand.New(rand.NewPCG(uint64(tc.n), 3))
			key := func() dedupKey {
				k := dedupKey{rng.Uint64() | 1, rng.Uint64()}
				if tc.sameK0 {
					k[0] = 0x5555
				}
				return k
			}
			var tab dedupIndex
			want := map[dedupKey]uint64{}
			for i := range tc.n {
				k := key()
				tab.insert(k, uint64(i))
				want[k] = uint64(i)
			}
			r, err := writeRunFromTable(dir, 0, uint64(tc.n), &tab)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			for k, idx := range want {
				if got, ok, err := r.lookup(k); !ok || got != idx || err != nil {
					t.Fatalf("key %x: %d %v %v, want %d", k, got, ok, err, idx)
				}
			}
			const absent = 200_000
			passed := 0
			for i := range absent {
				k := key()
				if _, ok := want[k]; ok {
					continue
				}
				if bloomHas(r.filter, k) {
					passed++
				}
				// The search itself, past the filter, must not find it.
				if i%8 != 0 {
					continue
				}
				if idx, ok, err := r.search(k); ok || err != nil {
					t.Fatalf("absent key %x found at %d (%v)", k, idx, err)
				}
			}
			// (Keys sharing k[0] share their filter bits; real keys are uniform.)
			if rate := float64(passed) / absent; !tc.sameK0 && rate > 0.005 {
				t.Errorf("the filter passed %.3f%% of absent keys, want under 0.5%%", 100*rate)
			}
		})
	}
}

// TestDedupMemoryBounded appends 400,000 keys with a bound of 4,096 and
// requires the Go heap not to grow with them (the unbounded table grew by
// about 18 MiB over the same keys).
func TestDedupMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 400,000 entries")
	}
	opts := quietOptions()
	opts.noSync = true
	opts.DedupMemoryKeys = 4096
	j := mustOpen(t, t.TempDir(), opts)
	defer j.Close()
	heap := func() uint64 {
		waitDedupIdle(t, j)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	var at100k uint64
	for i := range 40 {
		es := dedupEntries(fmt.Sprintf("b%d", i), 11_667) // 10,000 keys each
		appendAll(t, j, es, 2000)
		if i == 9 {
			at100k = heap()
		}
	}
	at400k := heap()
	runs, keys := j.dedup.runCount()
	for _, r := range j.dedup.runs {
		t.Logf("run %s: %d keys", r.name, r.count)
	}
	t.Logf("heap in use %.1f MiB at 100k keys, %.1f MiB at 400k; %d runs hold %d keys, %d in memory",
		float64(at100k)/(1<<20), float64(at400k)/(1<<20), runs, keys, j.dedup.recent.n)
	if keys < 390_000 || runs > 10 {
		t.Errorf("%d runs hold %d keys: want almost all keys in about log2(400000/4096) runs", runs, keys)
	}
	if at400k > at100k+4<<20 {
		t.Errorf("heap grew by %.1f MiB over 300,000 more keys", float64(at400k-at100k)/(1<<20))
	}
}
