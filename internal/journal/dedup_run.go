package journal

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
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
// table, sorted, in one file under DIR/dedup. Its filter is mapped
// read-only, so its pages are the kernel's page cache (reclaimable) rather
// than Go heap; its records are read only when the filter passes a key:
//
//	header  "VGDDRUN1" | lo u64 | hi u64 | count u64 | filter blocks u64 |
//	        filter CRC32C u32 | records CRC32C u32 | fences CRC32C u32 |
//	        8 zero bytes | header CRC32C u32                      (64 bytes)
//	filter  blocks × 64 bytes: a blocked Bloom filter, one cache line a key
//	fences  k[0] u64 of every searchWindow-th record
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

// Filter words are read in place through an unsafe view of the mapping,
// so the file's little-endian layout must be the machine's.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

type dedupRun struct {
	name   string
	path   string
	lo, hi uint64
	count  uint64
	recOff int64 // where the records start
	f      *os.File
	data   []byte   // the header, filter and fences, mapped
	filter []uint64 // a view of data
	fences []uint64 // a view of data
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

func fenceCount(count uint64) uint64 { return (count + searchWindow - 1) / searchWindow }

// runOffsets returns where a run's fences and records start.
func runOffsets(count uint64) (fences, recs uint64) {
	fences = runHeaderSize + filterBlocks(count)*bloomBlockBytes
	return fences, fences + fenceCount(count)*8
}

func runFileSize(count uint64) uint64 {
	_, recs := runOffsets(count)
	return recs + count*runRecordSize
}

// The block comes from the high bits of k[0], the key's sort order, so a
// run's filter is written front to back as its sorted records are; the
// eight bit positions, one in each word of the block, come from k[1].
func bloomBlock(k dedupKey, blocks uint64) uint64 {
	hi, _ := bits.Mul64(k[0], blocks)
	return hi
}

func bloomSet(blk *[8]uint64, k dedupKey) {
	x := k[1]
	for w := range blk {
		blk[w] |= 1 << (x & 63)
		x >>= 6
	}
}

func bloomHas(f []uint64, k dedupKey) bool {
	b := bloomBlock(k, uint64(len(f)/8))
	blk := f[b*8 : b*8+8 : b*8+8]
	x := k[1]
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

func lessKey(a, b dedupKey) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// searchWindow is how many records a search reads (3 KiB); the fences
// name the first key of each window.
const searchWindow = 128

// lookup returns the index of the entry that carried k, if the run holds
// it. The records are not mapped but read (pread) only for the keys the
// filter passes, so they stay in the page cache and out of the process's
// resident memory; the mapped fences say which window to read, so a
// search is one read.
func (r *dedupRun) lookup(k dedupKey) (uint64, bool, error) {
	if !bloomHas(r.filter, k) {
		return 0, false, nil
	}
	return r.search(k)
}

// search finds k in the records.
func (r *dedupRun) search(k dedupKey) (uint64, bool, error) {
	f := r.fences
	// The last window starting below k[0]; keys sharing k[0] (never seen
	// with SHA-256, but possible) may continue into the windows after it.
	w, _ := slices.BinarySearch(f, k[0])
	w = max(w, 1) - 1
	var buf [searchWindow * runRecordSize]byte
	for ; w < len(f); w++ {
		lo := uint64(w) * searchWindow
		n := min(searchWindow, r.count-lo)
		if _, err := r.f.ReadAt(buf[:n*runRecordSize], r.recOff+int64(lo*runRecordSize)); err != nil {
			return 0, false, fmt.Errorf("read dedup run %s: %w", r.name, err)
		}
		i, j := uint64(0), n
		for i < j {
			m := (i + j) / 2
			if lessKey(getKey(buf[m*runRecordSize:]), k) {
				i = m + 1
			} else {
				j = m
			}
		}
		if i < n {
			p := buf[i*runRecordSize:]
			if getKey(p) == k {
				return binary.LittleEndian.Uint64(p[16:]), true, nil
			}
			return 0, false, nil
		}
		if w+1 < len(f) && f[w+1] > k[0] {
			return 0, false, nil
		}
	}
	return 0, false, nil
}

// runReader reads a run's records in order.
type runReader struct {
	br   *bufio.Reader
	left uint64
}

func (r *dedupRun) reader() *runReader {
	return &runReader{br: bufio.NewReaderSize(io.NewSectionReader(r.f, r.recOff, int64(r.count*runRecordSize)), 256<<10), left: r.count}
}

// next returns the next record; ok is false at the end.
func (rr *runReader) next() (s dedupSlot, ok bool, err error) {
	if rr.left == 0 {
		return s, false, nil
	}
	var b [runRecordSize]byte
	if _, err := io.ReadFull(rr.br, b[:]); err != nil {
		return s, false, fmt.Errorf("read dedup run: %w", err)
	}
	rr.left--
	return dedupSlot{getKey(b[:]), binary.LittleEndian.Uint64(b[16:])}, true, nil
}

func (r *dedupRun) close() {
	if r.data != nil {
		unmapFile(r.data)
		r.data, r.filter, r.fences = nil, nil, nil
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
	fenceOff, recOff := runOffsets(count)
	r.count, r.recOff = count, int64(recOff)
	if r.data, err = mapFile(r.f, int(r.recOff)); err != nil {
		return err
	}
	r.filter = unsafe.Slice((*uint64)(unsafe.Pointer(&r.data[runHeaderSize])), blocks*bloomBlockBytes/8)
	if nf := fenceCount(count); nf > 0 {
		r.fences = unsafe.Slice((*uint64)(unsafe.Pointer(&r.data[fenceOff])), nf)
	}
	if checkBody {
		if crc32.Checksum(r.data[runHeaderSize:fenceOff], castagnoli) != binary.LittleEndian.Uint32(h[40:]) ||
			crc32.Checksum(r.data[fenceOff:], castagnoli) != binary.LittleEndian.Uint32(h[48:]) {
			return fmt.Errorf("%w %s: filter or fences checksum mismatch", errRunDamaged, r.name)
		}
		c := crc32.New(castagnoli)
		if _, err := io.Copy(c, io.NewSectionReader(r.f, r.recOff, int64(count*runRecordSize))); err != nil {
			return fmt.Errorf("read dedup run %s: %w", r.name, err)
		}
		if c.Sum32() != binary.LittleEndian.Uint32(h[44:]) {
			return fmt.Errorf("%w %s: records checksum mismatch", errRunDamaged, r.name)
		}
	}
	return nil
}

// runWriter streams a run into DIR/dedup/NAME.tmp: keys arrive in order,
// records, fences and filter blocks are written front to back (the filter
// block of a key is the top of its k[0]), so nothing is held in memory but
// three write buffers; finish makes the file durable and renames it into
// place.
type runWriter struct {
	f                      *os.File
	name, path             string
	lo, hi                 uint64
	count, n               uint64
	blocks, cur            uint64
	blk                    [8]uint64
	last                   dedupKey
	recs, filt, fen        *bufio.Writer
	recCRC, filCRC, fenCRC hash.Hash32
	scratch                [bloomBlockBytes]byte
}

func createRun(dir string, lo, hi, count uint64) (*runWriter, error) {
	if !nativeLittleEndian {
		return nil, errors.New("journal: mapped dedup runs need a little-endian machine")
	}
	name := runName(lo, hi)
	path := filepath.Join(dir, dedupDir, name)
	f, err := os.OpenFile(path+".tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create dedup run: %w", err)
	}
	w := &runWriter{f: f, name: name, path: path, lo: lo, hi: hi, count: count, blocks: filterBlocks(count),
		recCRC: crc32.New(castagnoli), filCRC: crc32.New(castagnoli), fenCRC: crc32.New(castagnoli)}
	fenceOff, recOff := runOffsets(count)
	w.filt = bufio.NewWriterSize(io.MultiWriter(io.NewOffsetWriter(f, runHeaderSize), w.filCRC), 256<<10)
	w.fen = bufio.NewWriterSize(io.MultiWriter(io.NewOffsetWriter(f, int64(fenceOff)), w.fenCRC), 64<<10)
	w.recs = bufio.NewWriterSize(io.MultiWriter(io.NewOffsetWriter(f, int64(recOff)), w.recCRC), 256<<10)
	return w, nil
}

// add appends the next key in order.
func (w *runWriter) add(s dedupSlot) error {
	if w.n > 0 && !lessKey(w.last, s.key) || w.n >= w.count {
		return fmt.Errorf("journal: dedup run %s: key of entry %d repeats, is out of order or is one too many", w.name, s.index)
	}
	w.last = s.key
	var b [runRecordSize]byte
	if w.n%searchWindow == 0 {
		binary.LittleEndian.PutUint64(b[:], s.key[0])
		w.fen.Write(b[:8])
	}
	w.n++
	putKey(b[:], s.key)
	binary.LittleEndian.PutUint64(b[16:], s.index)
	w.recs.Write(b[:])
	for b := bloomBlock(s.key, w.blocks); w.cur < b; {
		w.flushBlock()
	}
	bloomSet(&w.blk, s.key)
	return nil
}

func (w *runWriter) flushBlock() {
	for i, v := range w.blk {
		binary.LittleEndian.PutUint64(w.scratch[i*8:], v)
	}
	w.filt.Write(w.scratch[:])
	w.blk = [8]uint64{}
	w.cur++
}

func (w *runWriter) abort() {
	w.f.Close()
	os.Remove(w.path + ".tmp")
}

// finish completes the file, syncs it, renames it into place and maps it.
func (w *runWriter) finish() (*dedupRun, error) {
	if w.n != w.count {
		w.abort()
		return nil, fmt.Errorf("journal: dedup run %s: %d keys written, %d announced", w.name, w.n, w.count)
	}
	for w.cur < w.blocks {
		w.flushBlock()
	}
	err := w.filt.Flush()
	if err == nil {
		err = w.fen.Flush()
	}
	if err == nil {
		err = w.recs.Flush()
	}
	var h [runHeaderSize]byte
	copy(h[:], runMagic)
	binary.LittleEndian.PutUint64(h[8:], w.lo)
	binary.LittleEndian.PutUint64(h[16:], w.hi)
	binary.LittleEndian.PutUint64(h[24:], w.count)
	binary.LittleEndian.PutUint64(h[32:], w.blocks)
	binary.LittleEndian.PutUint32(h[40:], w.filCRC.Sum32())
	binary.LittleEndian.PutUint32(h[44:], w.recCRC.Sum32())
	binary.LittleEndian.PutUint32(h[48:], w.fenCRC.Sum32())
	binary.LittleEndian.PutUint32(h[60:], crc32.Checksum(h[:60], castagnoli))
	if err == nil {
		_, err = w.f.WriteAt(h[:], 0)
	}
	if err == nil {
		err = w.f.Sync()
	}
	if err == nil {
		err = w.f.Close()
	}
	if err == nil {
		err = os.Rename(w.path+".tmp", w.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.path))
	}
	if err != nil {
		w.abort()
		return nil, fmt.Errorf("write dedup run %s: %w", w.name, err)
	}
	return openRun(w.path, false)
}

// writeRunFromTable writes the keys of t, which carried entries [lo, hi),
// as a run. t is only read, so the committer may keep using it meanwhile.
//
// A key's home slot in t is the top of its k[0] and linear probing moves
// it only within its cluster (a maximal stretch of full slots), so the
// clusters, taken in slot order and each sorted, give the keys in order.
// The one exception is the cluster that wraps around the end of the
// table: its keys at the start whose home is behind them came from the
// end and go last.
func writeRunFromTable(dir string, lo, hi uint64, t *dedupIndex) (*dedupRun, error) {
	w, err := createRun(dir, lo, hi, uint64(t.n))
	if err != nil {
		return nil, err
	}
	var cluster, wrapped []dedupSlot
	emit := func() error {
		if len(cluster) > 32 {
			slices.SortFunc(cluster, cmpSlot)
		} else {
			for i := 1; i < len(cluster); i++ {
				for k := i; k > 0 && lessKey(cluster[k].key, cluster[k-1].key); k-- {
					cluster[k], cluster[k-1] = cluster[k-1], cluster[k]
				}
			}
		}
		for _, s := range cluster {
			if err := w.add(s); err != nil {
				return err
			}
		}
		cluster = cluster[:0]
		return nil
	}
	p := 0
	for ; p < len(t.slots) && !t.slots[p].key.isZero(); p++ {
		if s := t.slots[p]; t.home(s.key) > uint64(p) {
			wrapped = append(wrapped, s)
		} else {
			cluster = append(cluster, s)
		}
	}
	for ; ; p++ {
		if p == len(t.slots) || t.slots[p].key.isZero() {
			if p == len(t.slots) {
				cluster = append(cluster, wrapped...)
			}
			if err := emit(); err != nil {
				w.abort()
				return nil, err
			}
			if p == len(t.slots) {
				break
			}
			continue
		}
		cluster = append(cluster, t.slots[p])
	}
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
	w, err := createRun(dir, a.lo, b.hi, a.count+b.count)
	if err != nil {
		return nil, err
	}
	ra, rb := a.reader(), b.reader()
	x, okx, errx := ra.next()
	y, oky, erry := rb.next()
	for o := 0; okx || oky; o++ {
		if errx != nil || erry != nil {
			w.abort()
			return nil, errors.Join(errx, erry)
		}
		if o&0xffff == 0 && stop.Load() {
			w.abort()
			return nil, errStopped
		}
		var s dedupSlot
		if !oky || okx && lessKey(x.key, y.key) {
			s = x
			x, okx, errx = ra.next()
		} else {
			s = y
			y, oky, erry = rb.next()
		}
		if err := w.add(s); err != nil {
			w.abort()
			return nil, err
		}
	}
	if errx != nil || erry != nil {
		w.abort()
		return nil, errors.Join(errx, erry)
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
