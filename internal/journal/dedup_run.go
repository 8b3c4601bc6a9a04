package journal

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"
)

// A dedup run holds the keys of entries [lo, hi) that left the in-memory
// table, sorted, in one file under DIR/dedup, mapped read-only so that its
// pages are the kernel's page cache (reclaimable) rather than Go heap:
//
//	header  "VGDDRUN1" | lo u64 | hi u64 | count u64 | filter blocks u64 |
//	        body CRC32C u32 | 16 zero bytes | header CRC32C u32   (64 bytes)
//	filter  blocks × 64 bytes: a blocked Bloom filter, one cache line a key
//	records count × (key 16 bytes | entry index u64), sorted by key
//
// Runs are derived from the ids file and rebuilt from it when missing or
// damaged.
const (
	dedupDir        = "dedup"
	runMagic        = "VGDDRUN1"
	runHeaderSize   = 64
	runRecordSize   = 24
	bloomBlockBytes = 64
	// 16 filter bits a key: with one bit set in each of a block's eight
	// words, about 0.1 % of absent keys pass the filter and cost a search.
	bloomBitsPerKey = 16
)

// Records and filter words are read in place through unsafe views of the
// mapping, so the file's little-endian layout must be the machine's.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

type dedupRun struct {
	name   string
	path   string
	lo, hi uint64
	f      *os.File
	data   []byte
	filter []uint64
	recs   []dedupSlot
}

func runName(lo, hi uint64) string { return fmt.Sprintf("%020d-%020d.run", lo, hi) }

// parseRunName returns the range a run file's name claims.
func parseRunName(name string) (lo, hi uint64, ok bool) {
	base, found := strings.CutSuffix(name, ".run")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(base, "-")
	if !found || len(a) != 20 || len(b) != 20 {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	return lo, hi, err1 == nil && err2 == nil && lo < hi
}

func filterBlocks(count uint64) uint64 {
	return max(1, (count*bloomBitsPerKey+bloomBlockBytes*8-1)/(bloomBlockBytes*8))
}

func runFileSize(count uint64) uint64 {
	return runHeaderSize + filterBlocks(count)*bloomBlockBytes + count*runRecordSize
}

// The block comes from the high bits of k[1] (the in-memory table uses
// its low bits), the eight bit positions from k[0] above its forced bit.
func bloomAdd(f []uint64, k dedupKey) {
	hi, _ := bits.Mul64(k[1], uint64(len(f)/8))
	blk := f[hi*8 : hi*8+8 : hi*8+8]
	x := k[0] >> 1
	for w := range blk {
		blk[w] |= 1 << (x & 63)
		x >>= 6
	}
}

func bloomHas(f []uint64, k dedupKey) bool {
	hi, _ := bits.Mul64(k[1], uint64(len(f)/8))
	blk := f[hi*8 : hi*8+8 : hi*8+8]
	x := k[0] >> 1
	for w := range blk {
		if blk[w]&(1<<(x&63)) == 0 {
			return false
		}
		x >>= 6
	}
	return true
}

func cmpKey(a, b dedupKey) int {
	if c := cmp.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return cmp.Compare(a[1], b[1])
}

func cmpSlot(a, b dedupSlot) int { return cmpKey(a.key, b.key) }

// lookup returns the index of the entry that carried k, if the run holds
// it. Keys are uniform (SHA-256), so interpolation on k[0] finds a key in
// a few probes, usually within one or two pages.
func (r *dedupRun) lookup(k dedupKey) (uint64, bool) {
	if !bloomHas(r.filter, k) {
		return 0, false
	}
	recs := r.recs
	lo, hi := 0, len(recs) // search [lo, hi)
	klo, khi := uint64(0), uint64(1<<64-1)
	for probes := 0; hi-lo > 8; probes++ {
		var mid int
		if probes < 8 && khi > klo && k[0] >= klo && k[0] <= khi {
			ph, pl := bits.Mul64(k[0]-klo, uint64(hi-lo-1))
			q, _ := bits.Div64(ph, pl, khi-klo)
			mid = lo + int(q)
		} else {
			mid = lo + (hi-lo)/2 // not uniform after all: bisect
		}
		switch c := cmpKey(k, recs[mid].key); {
		case c == 0:
			return recs[mid].index, true
		case c < 0:
			hi, khi = mid, recs[mid].key[0]
		default:
			lo, klo = mid+1, recs[mid].key[0]
		}
	}
	for i := lo; i < hi; i++ {
		if recs[i].key == k {
			return recs[i].index, true
		}
	}
	return 0, false
}

func (r *dedupRun) close() {
	if r.data != nil {
		unmapFile(r.f, r.data, false)
		r.data, r.filter, r.recs = nil, nil, nil
	}
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// errRunDamaged marks a run file that does not add up; Open discards and
// rebuilds it.
var errRunDamaged = errors.New("damaged dedup run")

// openRun maps a run file and checks its header, size and, with
// checkBody, the CRC of everything after the header.
func openRun(path string, checkBody bool) (*dedupRun, error) {
	name := filepath.Base(path)
	lo, hi, ok := parseRunName(name)
	if !ok {
		return nil, fmt.Errorf("%w %s: not a run file name", errRunDamaged, name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open dedup run: %w", err)
	}
	r := &dedupRun{name: name, path: path, lo: lo, hi: hi, f: f}
	if err := r.load(checkBody); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *dedupRun) load(checkBody bool) error {
	if !nativeLittleEndian {
		return fmt.Errorf("dedup run %s: mapped runs need a little-endian machine", r.name)
	}
	st, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("stat dedup run: %w", err)
	}
	var h [runHeaderSize]byte
	if _, err := r.f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("%w %s: short header (%d bytes)", errRunDamaged, r.name, st.Size())
	}
	if string(h[:8]) != runMagic || binary.LittleEndian.Uint32(h[60:]) != crc32.Checksum(h[:60], castagnoli) {
		return fmt.Errorf("%w %s: bad header", errRunDamaged, r.name)
	}
	lo, hi := binary.LittleEndian.Uint64(h[8:]), binary.LittleEndian.Uint64(h[16:])
	count, blocks := binary.LittleEndian.Uint64(h[24:]), binary.LittleEndian.Uint64(h[32:])
	if lo != r.lo || hi != r.hi || count > hi-lo || blocks != filterBlocks(count) {
		return fmt.Errorf("%w %s: header says entries [%d, %d), %d keys, %d filter blocks", errRunDamaged, r.name, lo, hi, count, blocks)
	}
	if want := runFileSize(count); uint64(st.Size()) != want {
		return fmt.Errorf("%w %s: %d bytes, want %d", errRunDamaged, r.name, st.Size(), want)
	}
	if r.data, err = mapFile(r.f, int(st.Size()), false); err != nil {
		return err
	}
	if checkBody && crc32.Checksum(r.data[runHeaderSize:], castagnoli) != binary.LittleEndian.Uint32(h[40:]) {
		return fmt.Errorf("%w %s: body checksum mismatch", errRunDamaged, r.name)
	}
	r.setViews(blocks, count)
	return nil
}

func (r *dedupRun) setViews(blocks, count uint64) {
	r.filter = unsafe.Slice((*uint64)(unsafe.Pointer(&r.data[runHeaderSize])), blocks*bloomBlockBytes/8)
	r.recs = nil
	if count > 0 {
		r.recs = unsafe.Slice((*dedupSlot)(unsafe.Pointer(&r.data[runHeaderSize+blocks*bloomBlockBytes])), count)
	}
}

// runWriter builds a run in DIR/dedup/NAME.tmp through a shared writable
// mapping; finish makes it durable and renames it into place.
type runWriter struct {
	run   *dedupRun
	tmp   string
	count uint64
}

func createRun(dir string, lo, hi, count uint64) (*runWriter, error) {
	if !nativeLittleEndian {
		return nil, errors.New("journal: mapped dedup runs need a little-endian machine")
	}
	name := runName(lo, hi)
	path := filepath.Join(dir, dedupDir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create dedup run: %w", err)
	}
	r := &dedupRun{name: name, path: path, lo: lo, hi: hi, f: f}
	w := &runWriter{run: r, tmp: tmp, count: count}
	size := runFileSize(count)
	if err := f.Truncate(int64(size)); err != nil {
		w.abort()
		return nil, fmt.Errorf("size dedup run %s: %w", name, err)
	}
	if r.data, err = mapFile(f, int(size), true); err != nil {
		w.abort()
		return nil, err
	}
	r.setViews(filterBlocks(count), count)
	return w, nil
}

func (w *runWriter) abort() {
	if w.run.data != nil {
		unmapFile(w.run.f, w.run.data, false)
		w.run.data = nil
	}
	w.run.f.Close()
	os.Remove(w.tmp)
}

// finish fills the filter from the sorted records, writes the header,
// syncs, renames the file into place and maps it read-only.
func (w *runWriter) finish() (*dedupRun, error) {
	r := w.run
	for i := 1; i < len(r.recs); i++ {
		if cmpSlot(r.recs[i-1], r.recs[i]) >= 0 {
			w.abort()
			return nil, fmt.Errorf("journal: dedup run %s: key of entry %d repeats or is out of order", r.name, r.recs[i].index)
		}
	}
	for i := range r.recs {
		bloomAdd(r.filter, r.recs[i].key)
	}
	h := r.data[:runHeaderSize]
	copy(h, runMagic)
	binary.LittleEndian.PutUint64(h[8:], r.lo)
	binary.LittleEndian.PutUint64(h[16:], r.hi)
	binary.LittleEndian.PutUint64(h[24:], w.count)
	binary.LittleEndian.PutUint64(h[32:], filterBlocks(w.count))
	binary.LittleEndian.PutUint32(h[40:], crc32.Checksum(r.data[runHeaderSize:], castagnoli))
	binary.LittleEndian.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	err := unmapFile(r.f, r.data, true)
	r.data = nil
	if err == nil {
		err = r.f.Sync()
	}
	if err == nil {
		err = os.Rename(w.tmp, r.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(r.path))
	}
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("write dedup run %s: %w", r.name, err)
	}
	r.f.Close()
	r.f = nil
	return openRun(r.path, false)
}

// writeRunFromTable writes the keys of t, which carried entries [lo, hi),
// as a run. t is only read, so the committer may keep using it meanwhile.
func writeRunFromTable(dir string, lo, hi uint64, t *dedupIndex) (*dedupRun, error) {
	w, err := createRun(dir, lo, hi, uint64(t.n))
	if err != nil {
		return nil, err
	}
	i := 0
	for _, s := range t.slots {
		if !s.key.isZero() {
			w.run.recs[i] = s
			i++
		}
	}
	slices.SortFunc(w.run.recs, cmpSlot)
	return w.finish()
}

// errStopped reports a merge abandoned because the journal is closing.
var errStopped = errors.New("journal: closing")

// mergeRuns writes one run covering a and b (adjacent, a first). It
// checks stop now and then so Close need not wait for a long merge.
func mergeRuns(dir string, a, b *dedupRun, stop *atomic.Bool) (*dedupRun, error) {
	if a.hi != b.lo {
		return nil, fmt.Errorf("journal: dedup runs %s and %s are not adjacent", a.name, b.name)
	}
	w, err := createRun(dir, a.lo, b.hi, uint64(len(a.recs)+len(b.recs)))
	if err != nil {
		return nil, err
	}
	out, x, y := w.run.recs, a.recs, b.recs
	for o := range out {
		if o&0xffff == 0 && stop.Load() {
			w.abort()
			return nil, errStopped
		}
		if len(y) == 0 || (len(x) > 0 && cmpSlot(x[0], y[0]) < 0) {
			out[o], x = x[0], x[1:]
		} else {
			out[o], y = y[0], y[1:]
		}
	}
	return w.finish()
}

// loadRuns opens the runs under DIR/dedup that chain from entry 0, each
// starting where the one before ends and none beyond entry n (the entries
// the ids file holds), and returns them with the entry where they end.
// Everything else is derived debris and is removed: unfinished runs
// (*.tmp), runs a merge replaced, runs past n (their entries were lost in
// a crash), damaged runs and runs after a gap; their keys are in the ids
// file and go back into runs from there.
func loadRuns(dir string, n uint64, log *slog.Logger) ([]*dedupRun, uint64, error) {
	ddir := filepath.Join(dir, dedupDir)
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("create dedup dir: %w", err)
	}
	ents, err := os.ReadDir(ddir)
	if err != nil {
		return nil, 0, fmt.Errorf("list dedup runs: %w", err)
	}
	remove := func(path, why string) error {
		log.Warn("journal: removing dedup run; its keys are rebuilt from the ids file", "run", filepath.Base(path), "reason", why)
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove dedup run: %w", err)
		}
		return nil
	}
	var cands []*dedupRun
	closeAll := func() {
		for _, r := range cands {
			r.close()
		}
	}
	for _, e := range ents {
		name, path := e.Name(), filepath.Join(ddir, e.Name())
		if strings.HasSuffix(name, ".run.tmp") {
			if err := remove(path, "unfinished"); err != nil {
				closeAll()
				return nil, 0, err
			}
			continue
		}
		_, hi, ok := parseRunName(name)
		if !ok {
			continue
		}
		if hi > n {
			if err := remove(path, fmt.Sprintf("covers entries up to %d, the journal holds %d", hi, n)); err != nil {
				closeAll()
				return nil, 0, err
			}
			continue
		}
		r, err := openRun(path, true)
		if errors.Is(err, errRunDamaged) {
			if err := remove(path, err.Error()); err != nil {
				closeAll()
				return nil, 0, err
			}
			continue
		}
		if err != nil {
			closeAll()
			return nil, 0, err
		}
		cands = append(cands, r)
	}
	chain, rest, cur := chainRuns(cands)
	for i, r := range rest {
		r.close()
		if err := remove(r.path, "not in the chain of runs from entry 0 (a merge replaced it, or it follows a gap)"); err != nil {
			for _, c := range append(chain, rest[i+1:]...) {
				c.close()
			}
			return nil, 0, err
		}
	}
	return chain, cur, nil
}

// chainRuns picks from runs the chain that starts at entry 0, each run
// starting where the one before ends, preferring the widest run at each
// start (a merge's output over its inputs); it returns the chain, the
// runs left out and the entry where the chain ends.
func chainRuns(runs []*dedupRun) (chain, rest []*dedupRun, end uint64) {
	slices.SortFunc(runs, func(a, b *dedupRun) int {
		if c := cmp.Compare(a.lo, b.lo); c != 0 {
			return c
		}
		return cmp.Compare(b.hi, a.hi)
	})
	for _, r := range runs {
		if r.lo == end {
			chain = append(chain, r)
			end = r.hi
		} else {
			rest = append(rest, r)
		}
	}
	return chain, rest, end
}
