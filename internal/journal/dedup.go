package journal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// dedupKey identifies a record by its source and the source's record id:
// the first 128 bits of SHA-256(source || 0x00 || record id), so
// collisions are out of reach and the index stays 16 bytes a record. The
// zero key means "no record id".
type dedupKey [2]uint64

func makeDedupKey(source, recordID string) dedupKey {
	var scratch [256]byte
	return dedupKeyOf(scratch[:0], source, recordID)
}

// dedupKeyOf computes the key using scratch for the hashed bytes, so it
// does not allocate for ids of ordinary length.
func dedupKeyOf[S string | []byte](scratch []byte, source, recordID S) dedupKey {
	if len(recordID) == 0 {
		return dedupKey{}
	}
	b := append(append(append(scratch[:0], source...), 0), recordID...)
	sum := sha256.Sum256(b)
	k := dedupKey{binary.LittleEndian.Uint64(sum[0:]), binary.LittleEndian.Uint64(sum[8:])}
	// Keep real keys distinct from the "none" key.
	k[0] |= 1
	return k
}

func (k dedupKey) isZero() bool { return k == dedupKey{} }

// dedupIndex maps keys to the index of the entry that first carried them:
// an open-addressing table with linear probing, 24 bytes a slot, grown at
// 3/4 load. It holds the recent keys only (see dedupSet). A key's home
// slot is the top bits of k[0], so the table is nearly in key order and
// is written out as a sorted run without sorting it whole.
type dedupIndex struct {
	slots []dedupSlot
	n     int
	shift uint // 64 - log2(len(slots))
}

func (d *dedupIndex) home(k dedupKey) uint64 { return k[0] >> d.shift }

type dedupSlot struct {
	key   dedupKey
	index uint64
}

func (d *dedupIndex) lookup(k dedupKey) (uint64, bool) {
	if len(d.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(d.slots) - 1)
	for i := d.home(k); ; i = (i + 1) & mask {
		s := &d.slots[i]
		if s.key == k {
			return s.index, true
		}
		if s.key.isZero() {
			return 0, false
		}
	}
}

// insert adds k unless present; it reports whether it was added.
func (d *dedupIndex) insert(k dedupKey, index uint64) bool {
	if (d.n+1)*4 > len(d.slots)*3 {
		d.grow()
	}
	mask := uint64(len(d.slots) - 1)
	for i := d.home(k); ; i = (i + 1) & mask {
		s := &d.slots[i]
		if s.key == k {
			return false
		}
		if s.key.isZero() {
			*s = dedupSlot{k, index}
			d.n++
			return true
		}
	}
}

// reset empties the table, keeping its slots.
func (d *dedupIndex) reset() {
	clear(d.slots)
	d.n = 0
}

func (d *dedupIndex) grow() {
	old := d.slots
	d.slots = make([]dedupSlot, max(1024, 2*len(old)))
	d.shift = uint(64 - bits.TrailingZeros(uint(len(d.slots))))
	d.n = 0
	for _, s := range old {
		if !s.key.isZero() {
			d.insert(s.key, s.index)
		}
	}
}

// idsFile stores one dedup key per entry (zero when the entry has no
// record id), 16 bytes each.
const idSize = 16

func putKey(b []byte, k dedupKey) {
	binary.LittleEndian.PutUint64(b, k[0])
	binary.LittleEndian.PutUint64(b[8:], k[1])
}

func getKey(b []byte) dedupKey {
	return dedupKey{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

// dedupSet answers "which entry first carried this key" over the whole
// history with memory bounded by a count of keys, not by entries:
//
//   - recent: the keys of entries [recentLo, next), in a table of at most
//     bound keys, owned by the committer;
//   - frozen: the previous recent table while the freezer writes it out as
//     a run (read-only, at most one);
//   - runs: sorted, filtered, mapped files covering [0, frozenLo or
//     recentLo), contiguous and in order, merged by the compactor so that
//     there are about log2(entries/bound) of them.
//
// The Go heap holds the two tables and a few words per run, nothing per
// entry; the runs' filters and fences are mapped (page cache) and their
// records are read only for keys a filter passes.
type dedupSet struct {
	dir   string
	bound int
	log   *slog.Logger
	fail  func(error) // fails the journal: a freeze that cannot be written
	// confirm checks a key found in a run against the ids file, so a
	// damaged run cannot make a new record look like a duplicate.
	confirm func(k dedupKey, index uint64) error

	recent   *dedupIndex
	recentLo uint64

	// mu guards the fields below. The committer holds it for reading while
	// it deduplicates a batch, so a run is never unmapped under a lookup.
	mu         sync.RWMutex
	frozen     *dedupIndex
	frozenLo   uint64
	frozenHi   uint64
	frozenDone chan struct{} // closed when frozen is written (or failed)
	runs       []*dedupRun
	spare      *dedupIndex // a written frozen table, emptied, for the next rotation
	err        error       // set when a freeze failed

	freezeWake  chan struct{}
	compactWake chan struct{}
	stopping    atomic.Bool
	stop        chan struct{}
	wg          sync.WaitGroup

	// Counted for tests and benchmarks; stalled is how long the committer
	// waited for a freeze to finish, in nanoseconds.
	freezes, merges, stalled atomic.Uint64
	closeOnce                sync.Once
}

// DefaultDedupMemoryKeys bounds the recent dedup table: 2^21 keys fill a
// table of 2^22 24-byte slots (96 MiB) to half its slots, where a key not
// in it costs 2.5 probes on average (8.5 at the 3/4 load it grows at).
// Once the first fills, two such tables take turns: one takes new keys
// while the other is written out, then emptied for the next turn.
const DefaultDedupMemoryKeys = 1 << 21

func newDedupSet(dir string, bound int) *dedupSet {
	return &dedupSet{
		dir: dir, bound: bound, recent: &dedupIndex{},
		freezeWake: make(chan struct{}, 1), compactWake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
}

// begin and end bracket the committer's lookups and inserts of a batch.
func (d *dedupSet) begin() { d.mu.RLock() }
func (d *dedupSet) end()   { d.mu.RUnlock() }

// lookup finds k; the caller holds begin.
func (d *dedupSet) lookup(k dedupKey) (uint64, bool, error) {
	if idx, ok := d.recent.lookup(k); ok {
		return idx, true, nil
	}
	if d.frozen != nil {
		if idx, ok := d.frozen.lookup(k); ok {
			return idx, true, nil
		}
	}
	// Newest first: re-deliveries are mostly of recent records.
	for i := len(d.runs) - 1; i >= 0; i-- {
		idx, ok, err := d.runs[i].lookup(k)
		if err != nil {
			return 0, false, err
		}
		if ok {
			if d.confirm != nil {
				if err := d.confirm(k, idx); err != nil {
					return 0, false, fmt.Errorf("dedup run %s: %w", d.runs[i].name, err)
				}
			}
			return idx, true, nil
		}
	}
	return 0, false, nil
}

// insert adds k, carried by entry index, which is not in the set; the
// caller holds begin. When the recent table is full it is handed to the
// freezer first, waiting for the previous freeze to finish if need be.
func (d *dedupSet) insert(k dedupKey, index uint64) error {
	if d.recent.n >= d.bound {
		d.mu.RUnlock()
		err := d.rotate(index)
		d.mu.RLock()
		if err != nil {
			return err
		}
	}
	d.recent.insert(k, index)
	return nil
}

// rotate makes the recent table, which covers [recentLo, next), the
// frozen one and starts an empty recent table at next.
func (d *dedupSet) rotate(next uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for (d.frozen != nil || d.spare == nil && d.freezes.Load() > 0) && d.err == nil {
		ch := d.frozenDone
		d.mu.Unlock()
		start := time.Now()
		<-ch
		d.stalled.Add(uint64(time.Since(start)))
		d.mu.Lock()
	}
	if d.err != nil {
		return d.err
	}
	d.frozen, d.frozenLo, d.frozenHi = d.recent, d.recentLo, next
	d.frozenDone = make(chan struct{})
	d.recent, d.recentLo, d.spare = d.spare, next, nil
	if d.recent == nil {
		d.recent = &dedupIndex{}
	}
	select {
	case d.freezeWake <- struct{}{}:
	default:
	}
	return nil
}

// start runs the freezer and the compactor.
func (d *dedupSet) start() {
	d.wg.Add(2)
	go d.freezer()
	go d.compactor()
	d.wakeCompactor()
}

func (d *dedupSet) wakeCompactor() {
	select {
	case d.compactWake <- struct{}{}:
	default:
	}
}

func (d *dedupSet) freezer() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case <-d.freezeWake:
		}
		d.mu.RLock()
		t, lo, hi := d.frozen, d.frozenLo, d.frozenHi
		d.mu.RUnlock()
		if t == nil {
			continue
		}
		r, err := writeRunFromTable(d.dir, lo, hi, t)
		d.mu.Lock()
		if err != nil {
			d.err = fmt.Errorf("journal: freeze dedup keys of entries [%d, %d): %w", lo, hi, err)
			close(d.frozenDone)
		} else {
			d.runs = append(d.runs, r)
			d.frozen = nil
		}
		err = d.err
		d.mu.Unlock()
		if err == nil {
			// No lookup sees t any more: empty it (off the committer's
			// path) for the next rotation, so the heap holds two tables
			// and never allocates a third.
			t.reset()
			d.mu.Lock()
			d.spare = t
			d.freezes.Add(1)
			close(d.frozenDone)
			d.mu.Unlock()
		}
		if err != nil {
			if d.fail != nil {
				d.fail(err)
			}
			return
		}
		d.wakeCompactor()
	}
}

// mergePair returns the newest adjacent pair of runs to merge: the older
// one holds less than twice the newer one's keys. So run sizes grow
// geometrically, like a binary counter, and every key is rewritten about
// log2(entries/bound) times.
func mergePair(runs []*dedupRun) int {
	for i := len(runs) - 1; i > 0; i-- {
		if runs[i-1].count < 2*runs[i].count {
			return i - 1
		}
	}
	return -1
}

func (d *dedupSet) compactor() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		case <-d.compactWake:
		}
		for !d.stopping.Load() {
			d.mu.RLock()
			i := mergePair(d.runs)
			var a, b *dedupRun
			if i >= 0 {
				a, b = d.runs[i], d.runs[i+1]
			}
			d.mu.RUnlock()
			if a == nil {
				break
			}
			m, err := mergeRuns(d.dir, a, b, &d.stopping)
			if errors.Is(err, errStopped) {
				return
			}
			if err != nil {
				// The runs are still correct, only more numerous; the
				// next freeze tries again.
				d.log.Error("journal: merge dedup runs failed", "runs", a.name+" "+b.name, "error", err.Error())
				break
			}
			d.mu.Lock()
			// Only the compactor removes runs, so a and b are still at i.
			d.runs = slices.Replace(d.runs, i, i+2, m)
			d.merges.Add(1)
			d.mu.Unlock()
			// No lookup holds a or b now (the committer takes mu for reading).
			a.close()
			b.close()
			for _, r := range []*dedupRun{a, b} {
				if err := os.Remove(r.path); err != nil {
					d.log.Error("journal: remove merged dedup run", "run", r.name, "error", err.Error())
				}
			}
		}
	}
}

// close stops the background work and unmaps the runs. A freeze under
// way is finished; a merge is abandoned. Keys not yet in a run are in the
// ids file, which Open reads back.
func (d *dedupSet) close() {
	d.closeOnce.Do(func() {
		d.stopping.Store(true)
		close(d.stop)
		d.wg.Wait()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.runs {
			r.close()
		}
		d.runs = nil
	})
}

// runCount returns the number of runs and the keys they hold.
func (d *dedupSet) runCount() (runs int, keys uint64) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, r := range d.runs {
		keys += r.count
	}
	return len(d.runs), keys
}
