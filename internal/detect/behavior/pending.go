package behavior

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pendingQueue holds the mail accesses waiting out the sign-in grace
// period, in (Due, Seq) order. A stream that keeps up holds an hour of
// accesses here, as many as the event rate makes: so only a bounded head
// and tail stay in memory, and what lies between is written in chunks to
// segment files and read back in order as it becomes due. Accesses a
// little out of order are sorted into the head or the tail; those far out
// of place (older than what went to disk, or a replayed history) wait in
// a heap of their own.
//
// A saved state names the segments (their path, the read position and the
// length written) instead of copying them, so saving costs the bounded
// in-memory part, not an hour of a busy tenant's reads. A segment the
// last saved state names is kept until a later save no longer does.
type pendingQueue struct {
	dir    string
	head   []pending // next to come due, in order
	tail   []pending // newest, in order, after every chunk on disk
	odd    []pending // accesses far out of place: a heap (oddHeap)
	segs   []*pendSeg
	rOff   int64   // read position in segs[0]
	last   pending // the newest in-order access on disk
	n      int     // accesses on disk, unread
	pinned map[string]bool
	err    error
}

// pendSeg is one segment file: chunks of accesses, each a length and the
// accesses (pendingcodec.go).
type pendSeg struct {
	path   string
	f      *os.File
	size   int64 // bytes written
	chunks []int // accesses per unread chunk, in order
}

// pendingMem is how many in-order accesses the head and the tail hold
// each before the rest goes to disk; pendingSegBytes is how large a
// segment file grows before the next is started.
const (
	pendingMem             = 8192
	pendingSegBytesDefault = 64 << 20
	pendingPattern         = "vigil-pending-*.seg"
)

// pendingSegBytes is a variable so that tests can rotate segments.
var pendingSegBytes int64 = pendingSegBytesDefault

func less(a, b *pending) bool {
	if !a.Due.Equal(b.Due) {
		return a.Due.Before(b.Due)
	}
	return a.Seq < b.Seq
}

// Len is how many accesses are held.
func (q *pendingQueue) Len() int { return len(q.head) + len(q.tail) + len(q.odd) + q.n }

func (q *pendingQueue) push(p pending) {
	// The newest access not in the tail bounds what the tail may take.
	var bound *pending
	switch {
	case q.n > 0:
		bound = &q.last
	case len(q.head) > 0:
		bound = &q.head[len(q.head)-1]
	}
	switch {
	case bound == nil || !less(&p, bound):
		if q.n == 0 && len(q.tail) == 0 && len(q.head) < pendingMem {
			if !insertNearEnd(&q.head, p) {
				heap.Push((*oddHeap)(&q.odd), p)
			}
			return
		}
		if !insertNearEnd(&q.tail, p) {
			heap.Push((*oddHeap)(&q.odd), p)
			return
		}
		if len(q.tail) >= pendingMem {
			q.writeTail()
		}
	case len(q.head) > 0 && len(q.head) < pendingMem && insertNearEnd(&q.head, p):
	default:
		// Any access may wait in the heap: what is due first is the least
		// of the head's first and the heap's.
		heap.Push((*oddHeap)(&q.odd), p)
	}
}

// nearEnd is how far from its end an access is sorted into the head or
// the tail; one that belongs further back goes to the heap instead of
// moving the accesses after it.
const nearEnd = 64

// insertNearEnd inserts p into *s, kept in order, if its place is among
// the last nearEnd (concurrent pushers make a stream slightly out of
// order); false otherwise.
func insertNearEnd(s *[]pending, p pending) bool {
	v := *s
	i := len(v)
	for i > 0 && less(&p, &v[i-1]) {
		if i--; len(v)-i > nearEnd {
			return false
		}
	}
	if len(v) == cap(v) {
		// The head is popped from its front, which append's growth does
		// not see: grown by append, a head an hour long was copied several
		// times over per access. Twice the length is copied once.
		w := make([]pending, len(v), 2*len(v)+16)
		copy(w, v)
		v = w
	}
	v = append(v, pending{})
	copy(v[i+1:], v[i:])
	v[i] = p
	*s = v
	return true
}

// oddHeap is the min-heap of the accesses that arrived after newer ones
// went to disk. A sorted list is a valid heap, so saved states of either
// shape restore.
type oddHeap []pending

func (h oddHeap) Len() int           { return len(h) }
func (h oddHeap) Less(i, j int) bool { return less(&h[i], &h[j]) }
func (h oddHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oddHeap) Push(x any)        { *h = append(*h, x.(pending)) }
func (h *oddHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = pending{}
	*h = old[:len(old)-1]
	return p
}

// writeTail moves the tail to disk as one chunk. A disk error keeps the
// accesses in memory (and is reported by Err): none is lost.
func (q *pendingQueue) writeTail() {
	if q.err != nil {
		return
	}
	if len(q.segs) == 0 || q.segs[len(q.segs)-1].size >= pendingSegBytes {
		f, err := os.CreateTemp(q.dir, pendingPattern)
		if err != nil {
			q.err = fmt.Errorf("pending accesses: %w", err)
			return
		}
		q.segs = append(q.segs, &pendSeg{path: f.Name(), f: f})
	}
	sg := q.segs[len(q.segs)-1]
	b := encodeChunk(make([]byte, 4), q.tail)
	if len(b)-4 > maxChunkBody {
		q.err = fmt.Errorf("pending accesses: a chunk of %d accesses takes %d bytes", len(q.tail), len(b)-4)
		return
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4)|chunkBinary)
	if _, err := sg.f.WriteAt(b, sg.size); err != nil {
		q.err = fmt.Errorf("pending accesses: %w", err)
		return
	}
	sg.size += int64(len(b))
	sg.chunks = append(sg.chunks, len(q.tail))
	q.n += len(q.tail)
	q.last = q.tail[len(q.tail)-1]
	q.tail = q.tail[:0]
}

// retire drops the first segment, read to its end: its file goes unless
// the last saved state names it.
func (q *pendingQueue) retire() {
	sg := q.segs[0]
	sg.f.Close()
	if !q.pinned[sg.path] {
		os.Remove(sg.path)
	}
	q.segs, q.rOff = q.segs[1:], 0
}

// fill makes the head hold the next in-order accesses, if any are held.
func (q *pendingQueue) fill() {
	if len(q.head) > 0 {
		return
	}
	for len(q.segs) > 1 && len(q.segs[0].chunks) == 0 {
		q.retire()
	}
	if q.n == 0 {
		q.head, q.tail = q.tail, q.head[:0]
		return
	}
	sg := q.segs[0]
	chunk, next, err := readChunk(sg.f, q.rOff)
	if err != nil {
		q.fail(err)
		return
	}
	if len(chunk) != sg.chunks[0] {
		q.fail(fmt.Errorf("a chunk of %s holds %d accesses, %d were written", sg.path, len(chunk), sg.chunks[0]))
		return
	}
	q.rOff = next
	q.n -= sg.chunks[0]
	sg.chunks = sg.chunks[1:]
	q.head = chunk
}

func readChunk(f *os.File, off int64) ([]pending, int64, error) {
	var hdr [4]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return nil, 0, err
	}
	word := binary.LittleEndian.Uint32(hdr[:])
	size := word &^ chunkBinary
	if size > maxChunkBody {
		return nil, 0, fmt.Errorf("%s: the chunk at offset %d claims %d bytes", f.Name(), off, size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, off+4); err != nil {
		return nil, 0, err
	}
	chunk, err := decodeChunkBody(word, b)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: the chunk at offset %d: %w", f.Name(), off, err)
	}
	return chunk, off + 4 + int64(len(b)), nil
}

// fail records a read error. The chunks on disk cannot be read, so the
// accesses in them are lost to detection: counted and reported, never
// silently.
func (q *pendingQueue) fail(err error) {
	if q.err == nil {
		q.err = fmt.Errorf("pending accesses: %d lost reading them back: %w", q.n, err)
	}
	for len(q.segs) > 0 {
		q.segs[0].chunks = nil
		q.retire()
	}
	q.n = 0
	q.head, q.tail = q.tail, q.head[:0]
}

// peek is the access that comes due first.
func (q *pendingQueue) peek() (*pending, bool) {
	q.fill()
	switch {
	case len(q.head) == 0 && len(q.odd) == 0:
		return nil, false
	case len(q.head) == 0:
		return &q.odd[0], true
	case len(q.odd) == 0 || less(&q.head[0], &q.odd[0]):
		return &q.head[0], true
	}
	return &q.odd[0], true
}

// pop removes what peek returned.
func (q *pendingQueue) pop() pending {
	p, _ := q.peek()
	if len(q.head) > 0 && p == &q.head[0] {
		v := *p
		q.head = q.head[1:]
		if len(q.head) == 0 {
			q.head = nil // let the chunk's array go
		}
		return v
	}
	return heap.Pop((*oddHeap)(&q.odd)).(pending)
}

// pendingState is a saved queue: the in-memory parts in full, and the
// segments either by name (a local snapshot) or, Inline, as the chunks
// that follow it in the saved stream, ended by an empty one.
type pendingState struct {
	Head, Tail, Odd []pending
	Last            pending
	N               int
	ROff            int64
	Segs            []segRef
	Inline          bool
}

type segRef struct {
	Path   string // base name, in the queue's directory
	Size   int64
	Chunks []int
}

// inlineState describes the queue for a saved stream that carries the
// segments' chunks after it (eachChunk).
func (q *pendingQueue) inlineState() (pendingState, error) {
	if q.err != nil {
		return pendingState{}, q.err
	}
	return pendingState{Head: q.head, Tail: q.tail, Odd: q.odd, Inline: true}, nil
}

// eachChunk calls fn with every unread chunk on disk, in order.
func (q *pendingQueue) eachChunk(fn func([]pending) error) error {
	off := q.rOff
	for i, sg := range q.segs {
		if i > 0 {
			off = 0
		}
		for range sg.chunks {
			chunk, next, err := readChunk(sg.f, off)
			if err != nil {
				return fmt.Errorf("pending accesses: %w", err)
			}
			if err := fn(chunk); err != nil {
				return err
			}
			off = next
		}
	}
	return nil
}

// state makes the segments durable and describes the queue; the
// segments it names are kept until a later state no longer names them.
func (q *pendingQueue) state() (pendingState, error) {
	if q.err != nil {
		return pendingState{}, q.err
	}
	st := pendingState{Head: q.head, Tail: q.tail, Odd: q.odd, Last: q.last, N: q.n, ROff: q.rOff}
	pinned := map[string]bool{}
	for _, sg := range q.segs {
		if err := sg.f.Sync(); err != nil {
			return pendingState{}, fmt.Errorf("pending accesses: %w", err)
		}
		st.Segs = append(st.Segs, segRef{Path: filepath.Base(sg.path), Size: sg.size, Chunks: sg.chunks})
		pinned[sg.path] = true
	}
	// Segments the previous state named and this one does not (read to
	// their end since) are free now.
	for p := range q.pinned {
		if !pinned[p] {
			os.Remove(p)
		}
	}
	q.pinned = pinned
	return st, nil
}

// restoreQueue rebuilds a queue from st. Inline, next gives the chunks
// that followed it, written to fresh segments. Otherwise it opens the
// segments st names in dir (cut back to the length it names: a crash may
// have written more); the caller removes the segments no restored queue
// names (removeStaleSegments).
func restoreQueue(dir string, st pendingState, next func() ([]pending, error)) (pendingQueue, error) {
	if st.Inline {
		q := pendingQueue{dir: dir, head: st.Head, odd: st.Odd}
		for {
			c, err := next()
			if err != nil {
				q.close()
				return pendingQueue{}, err
			}
			if len(c) == 0 {
				break
			}
			q.tail = c
			q.writeTail()
			if q.err != nil {
				err := q.err
				q.close()
				return pendingQueue{}, err
			}
		}
		q.tail = st.Tail
		return q, nil
	}
	if dir == "" && len(st.Segs) > 0 {
		return pendingQueue{}, errors.New("pending accesses: a snapshot naming segment files needs the directory they are in")
	}
	q := pendingQueue{dir: dir, head: st.Head, tail: st.Tail, odd: st.Odd, last: st.Last, n: st.N, rOff: st.ROff, pinned: map[string]bool{}}
	for _, r := range st.Segs {
		if r.Path == "" || filepath.Base(r.Path) != r.Path || !strings.HasPrefix(r.Path, "vigil-pending-") {
			q.close()
			return pendingQueue{}, fmt.Errorf("pending accesses: bad segment name %q", r.Path)
		}
		path := filepath.Join(dir, r.Path)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			q.close()
			return pendingQueue{}, fmt.Errorf("pending accesses: %w", err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() < r.Size {
			err = fmt.Errorf("%s holds %d bytes, the saved state needs %d", path, fi.Size(), r.Size)
		}
		if err == nil && fi.Size() > r.Size {
			err = f.Truncate(r.Size)
		}
		if err != nil {
			f.Close()
			q.close()
			return pendingQueue{}, fmt.Errorf("pending accesses: %w", err)
		}
		q.segs = append(q.segs, &pendSeg{path: path, f: f, size: r.Size, chunks: r.Chunks})
		q.pinned[path] = true
	}
	n := 0
	for _, sg := range q.segs {
		for _, c := range sg.chunks {
			n += c
		}
	}
	if n != q.n {
		q.close()
		return pendingQueue{}, errors.New("pending accesses: the saved segments do not hold what the saved state counts")
	}
	return q, nil
}

// removeStaleSegments removes the segment files in dir that named (the
// paths the loaded queues use) does not hold.
func removeStaleSegments(dir string, named map[string]bool) {
	stale, err := filepath.Glob(filepath.Join(dir, pendingPattern))
	if err != nil {
		return
	}
	for _, p := range stale {
		if !named[p] {
			os.Remove(p)
		}
	}
}

// close frees the files; segments a saved state names stay on disk.
func (q *pendingQueue) close() {
	for _, sg := range q.segs {
		sg.f.Close()
		if !q.pinned[sg.path] {
			os.Remove(sg.path)
		}
	}
	q.segs = nil
}
