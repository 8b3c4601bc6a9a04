package behavior

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"os"
	"sort"
)

// pendingQueue holds the mail accesses waiting out the sign-in grace
// period, in (Due, Seq) order. A stream that keeps up holds an hour of
// accesses here, as many as the event rate makes: so only a bounded head
// and tail stay in memory, and what lies between is written in chunks to
// an unlinked temporary file and read back in order as it becomes due.
// Accesses that arrive out of order (later than the reordering window)
// wait in a small sorted list of their own.
type pendingQueue struct {
	dir   string
	head  []pending // next to come due, in order
	tail  []pending // newest, in order, after every chunk on disk
	odd   []pending // arrivals earlier than the newest held, sorted
	disk  *os.File  // unlinked: nothing is left behind, even by a crash
	wOff  int64     // where the next chunk is written
	rOff  int64     // where the next chunk to read starts
	last  pending   // the newest in-order access held on disk
	spill []int     // lengths of the chunks on disk, oldest first
	n     int       // accesses on disk
	err   error
}

// pendingMem is how many in-order accesses the head and the tail hold
// each before the rest goes to disk.
const pendingMem = 8192

func less(a, b *pending) bool {
	if !a.Due.Equal(b.Due) {
		return a.Due.Before(b.Due)
	}
	return a.Seq < b.Seq
}

// Len is how many accesses are held.
func (q *pendingQueue) Len() int { return len(q.head) + len(q.tail) + len(q.odd) + q.n }

// newest is the latest in-order access held, if any.
func (q *pendingQueue) newest() (*pending, bool) {
	switch {
	case len(q.tail) > 0:
		return &q.tail[len(q.tail)-1], true
	case len(q.spill) > 0:
		return &q.last, true
	case len(q.head) > 0:
		return &q.head[len(q.head)-1], true
	}
	return nil, false
}

func (q *pendingQueue) push(p pending) {
	if last, ok := q.newest(); ok && less(&p, last) {
		i := sort.Search(len(q.odd), func(i int) bool { return less(&p, &q.odd[i]) })
		q.odd = append(q.odd, pending{})
		copy(q.odd[i+1:], q.odd[i:])
		q.odd[i] = p
		return
	}
	if len(q.spill) == 0 && len(q.tail) == 0 && len(q.head) < pendingMem {
		q.head = append(q.head, p)
		return
	}
	q.tail = append(q.tail, p)
	if len(q.tail) >= pendingMem {
		q.writeTail()
	}
}

// writeTail moves the tail to disk as one chunk. A disk error keeps the
// accesses in memory (and is reported by Err): none is lost.
func (q *pendingQueue) writeTail() {
	if q.err != nil {
		return
	}
	if q.disk == nil {
		f, err := os.CreateTemp(q.dir, "vigil-pending-*")
		if err != nil {
			q.err = fmt.Errorf("pending accesses: %w", err)
			return
		}
		os.Remove(f.Name())
		q.disk = f
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, 4))
	if err := gob.NewEncoder(&buf).Encode(q.tail); err != nil {
		q.err = fmt.Errorf("pending accesses: %w", err)
		return
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := q.disk.WriteAt(b, q.wOff); err != nil {
		q.err = fmt.Errorf("pending accesses: %w", err)
		return
	}
	q.wOff += int64(len(b))
	q.spill = append(q.spill, len(q.tail))
	q.n += len(q.tail)
	q.last = q.tail[len(q.tail)-1]
	q.tail = q.tail[:0]
}

// fill makes the head hold the next in-order accesses, if any are held.
func (q *pendingQueue) fill() {
	if len(q.head) > 0 {
		return
	}
	if len(q.spill) == 0 {
		q.head, q.tail = q.tail, q.head[:0]
		return
	}
	var hdr [4]byte
	if _, err := q.disk.ReadAt(hdr[:], q.rOff); err != nil {
		q.fail(err)
		return
	}
	b := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
	if _, err := q.disk.ReadAt(b, q.rOff+4); err != nil {
		q.fail(err)
		return
	}
	var chunk []pending
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&chunk); err != nil {
		q.fail(err)
		return
	}
	q.rOff += 4 + int64(len(b))
	q.n -= q.spill[0]
	q.spill = q.spill[1:]
	q.head = chunk
	if len(q.spill) == 0 {
		// Everything written was read: start the file again.
		q.disk.Truncate(0)
		q.wOff, q.rOff = 0, 0
	}
}

// fail records a read error. The chunks on disk cannot be read, so the
// accesses in them are lost to detection: counted and reported, never
// silently.
func (q *pendingQueue) fail(err error) {
	if q.err == nil {
		q.err = fmt.Errorf("pending accesses: %d lost reading them back: %w", q.n, err)
	}
	q.spill, q.n = nil, 0
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
		q.head = q.head[1:]
		if len(q.head) == 0 {
			q.head = nil // let the chunk's array go
		}
	} else {
		q.odd = q.odd[1:]
	}
	return *p
}

// each calls fn with every access held, in order, reading the disk
// chunks one at a time.
func (q *pendingQueue) each(fn func([]pending) error) error {
	var merged []pending
	merged = append(merged, q.head...)
	merged = append(merged, q.odd...)
	sort.SliceStable(merged, func(i, j int) bool { return less(&merged[i], &merged[j]) })
	if err := fn(merged); err != nil {
		return err
	}
	off := q.rOff
	for range q.spill {
		var hdr [4]byte
		if _, err := q.disk.ReadAt(hdr[:], off); err != nil {
			return fmt.Errorf("pending accesses: %w", err)
		}
		b := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
		if _, err := q.disk.ReadAt(b, off+4); err != nil {
			return fmt.Errorf("pending accesses: %w", err)
		}
		var chunk []pending
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&chunk); err != nil {
			return fmt.Errorf("pending accesses: %w", err)
		}
		if err := fn(chunk); err != nil {
			return err
		}
		off += 4 + int64(len(b))
	}
	return fn(q.tail)
}

// close frees the file.
func (q *pendingQueue) close() {
	if q.disk != nil {
		q.disk.Close()
		q.disk = nil
	}
}
