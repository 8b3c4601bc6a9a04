package detect

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// DefaultRunEvents is how many events a Sorter holds in memory before it
// spills them, sorted, to a run file.
const DefaultRunEvents = 25000

// maxFanIn bounds the runs merged at once: more runs are first merged,
// record by record and without decoding, into longer ones, so the merge's
// buffers do not grow with the input.
const maxFanIn = 32

// Decoder turns a record's verbatim bytes back into its events
// (source.Decoder does).
type Decoder interface {
	Decode(raw []byte, origin event.Origin) ([]*event.Event, error)
}

// Sorter puts the events of unordered inputs (exports newest first,
// several files each covering the whole period) into event-time order in
// bounded memory: it holds up to RunEvents events, spills each full run
// sorted to a temporary file, and merges the runs, decoding the spilled
// records again. Inputs that fit in one run are never written out.
type Sorter struct {
	RunEvents int
	dir       string
	newDec    func() Decoder
	run       []*event.Event
	runs      []string
	last      *event.Event
	lastK     int
	ks        map[*event.Event]int
}

// NewSorter spills into dir ("" for the system's temporary directory);
// newDecoder makes a decoder for each run being merged.
func NewSorter(dir string, newDecoder func() Decoder) *Sorter {
	return &Sorter{RunEvents: DefaultRunEvents, dir: dir, newDec: newDecoder, ks: map[*event.Event]int{}}
}

// Add takes one event (the Sorter keeps it until it is spilled or
// replayed).
func (s *Sorter) Add(ev *event.Event) error {
	// Which of a record's events this is (a Workspace activity holds
	// several), to pick it again when the record is decoded again.
	k := 0
	if l := s.last; l != nil && l.Origin == ev.Origin && len(l.Raw) > 0 && len(ev.Raw) > 0 && &l.Raw[0] == &ev.Raw[0] {
		k = s.lastK + 1
	}
	s.last, s.lastK = ev, k
	if k > 0 {
		s.ks[ev] = k
	}
	s.run = append(s.run, ev)
	if len(s.run) >= max(s.RunEvents, 1) {
		return s.spill()
	}
	return nil
}

func (s *Sorter) sortRun() {
	slices.SortStableFunc(s.run, func(a, b *event.Event) int { return compareKey(keyOf(a), keyOf(b)) })
}

func (s *Sorter) spill() error {
	s.sortRun()
	f, err := os.CreateTemp(s.dir, "vigil-sort-*.run")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	s.runs = append(s.runs, f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	for _, ev := range s.run {
		buf = appendRecord(buf[:0], ev, s.ks[ev])
		if _, err := w.Write(buf); err != nil {
			f.Close()
			return fmt.Errorf("sort: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("sort: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	clear(s.run)
	s.run = s.run[:0]
	clear(s.ks)
	s.last = nil
	return nil
}

// Replay calls fn with every event added, in event-time order, then
// removes the run files.
func (s *Sorter) Replay(ctx context.Context, fn func(*event.Event) error) error {
	defer s.Close()
	if len(s.runs) == 0 {
		s.sortRun()
		for i, ev := range s.run {
			if i%8192 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			s.run[i] = nil
			if err := fn(ev); err != nil {
				return err
			}
		}
		s.run = nil
		return nil
	}
	if len(s.run) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	for len(s.runs) > maxFanIn {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.mergeRuns(maxFanIn); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var h mergeHeap
	for _, name := range s.runs {
		r := &runReader{ch: make(chan runItem, 16)}
		go r.read(ctx, name, s.newDec())
		if r.next() {
			h = append(h, r)
		} else if r.err != nil {
			return r.err
		}
	}
	heap.Init(&h)
	n := 0
	for h.Len() > 0 {
		if n++; n%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := h[0]
		if err := fn(r.cur); err != nil {
			return err
		}
		if r.next() {
			heap.Fix(&h, 0)
		} else {
			if r.err != nil {
				return r.err
			}
			heap.Pop(&h)
		}
	}
	return nil
}

// mergeRuns merges the first n runs into one, record by record.
func (s *Sorter) mergeRuns(n int) error {
	in := s.runs[:n]
	f, err := os.CreateTemp(s.dir, "vigil-sort-*.run")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	name := f.Name()
	w := bufio.NewWriterSize(f, 1<<20)
	var h rawHeap
	var files []*os.File
	defer func() {
		for _, g := range files {
			g.Close()
		}
	}()
	for _, r := range in {
		g, err := os.Open(r)
		if err != nil {
			f.Close()
			return fmt.Errorf("sort: %w", err)
		}
		files = append(files, g)
		rr := &rawRun{br: bufio.NewReaderSize(g, 64<<10), name: r}
		if ok, err := rr.next(); err != nil {
			f.Close()
			return err
		} else if ok {
			h = append(h, rr)
		}
	}
	heap.Init(&h)
	var hdr []byte
	for h.Len() > 0 {
		rr := h[0]
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(rr.body)))
		_, werr := w.Write(hdr)
		if werr == nil {
			_, werr = w.Write(rr.body)
		}
		if werr != nil {
			f.Close()
			return fmt.Errorf("sort: %w", werr)
		}
		ok, err := rr.next()
		if err != nil {
			f.Close()
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("sort: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	for _, r := range in {
		os.Remove(r)
	}
	s.runs = append(s.runs[n:], name)
	return nil
}

// rawRun reads a run's records without decoding them.
type rawRun struct {
	br   *bufio.Reader
	name string
	body []byte
	key  sortKey
}

func (r *rawRun) next() (bool, error) {
	l, err := binary.ReadUvarint(r.br)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sort: %s: %w", r.name, err)
	}
	r.body = make([]byte, l)
	if _, err := io.ReadFull(r.br, r.body); err != nil {
		return false, fmt.Errorf("sort: %s: %w", r.name, err)
	}
	rec, err := parseRecord(r.body)
	if err != nil {
		return false, fmt.Errorf("%w: %s", err, r.name)
	}
	r.key = rec.key
	return true, nil
}

type rawHeap []*rawRun

func (h rawHeap) Len() int           { return len(h) }
func (h rawHeap) Less(i, j int) bool { return compareKey(h[i].key, h[j].key) < 0 }
func (h rawHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rawHeap) Push(x any)        { *h = append(*h, x.(*rawRun)) }
func (h *rawHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Close removes the run files (Replay does so itself).
func (s *Sorter) Close() {
	for _, name := range s.runs {
		os.Remove(name)
	}
	s.runs = nil
}

// A spilled record: the event's time, source and record id (checked when
// decoded again), where it came from, which of its record's events it
// is, and the record's bytes.
func appendRecord(b []byte, ev *event.Event, k int) []byte {
	body := binary.AppendVarint(nil, ev.Time.UnixNano())
	body = appendString(body, ev.Source)
	body = appendString(body, ev.RecordID)
	body = appendString(body, ev.Operation)
	body = appendString(body, ev.Origin.File)
	body = binary.AppendVarint(body, int64(ev.Origin.Line))
	body = binary.AppendVarint(body, ev.Origin.Offset)
	body = binary.AppendVarint(body, int64(ev.Origin.Index))
	body = binary.AppendVarint(body, int64(k))
	body = appendString(body, string(ev.Raw))
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type spilled struct {
	key    sortKey
	origin event.Origin
	k      int
	raw    []byte
}

var errCorrupt = errors.New("sort: run file damaged")

func parseRecord(body []byte) (spilled, error) {
	var r spilled
	off := 0
	varint := func() int64 {
		v, n := binary.Varint(body[off:])
		if n <= 0 {
			off = -1
			return 0
		}
		off += n
		return v
	}
	str := func() []byte {
		if off < 0 {
			return nil
		}
		l, n := binary.Uvarint(body[off:])
		if n <= 0 || uint64(len(body)-off-n) < l {
			off = -1
			return nil
		}
		s := body[off+n : off+n+int(l)]
		off += n + int(l)
		return s
	}
	r.key.Time = time.Unix(0, varint()).UTC()
	r.key.Source = string(str())
	r.key.RecordID = string(str())
	r.key.Op = string(str())
	if off < 0 {
		return r, errCorrupt
	}
	r.origin.File = string(str())
	if off < 0 {
		return r, errCorrupt
	}
	r.origin.Line = int(varint())
	r.origin.Offset = varint()
	r.origin.Index = int(varint())
	r.k = int(varint())
	if off < 0 {
		return r, errCorrupt
	}
	r.raw = str()
	if off < 0 {
		return r, errCorrupt
	}
	r.key.Raw = r.raw
	return r, nil
}

type runItem struct {
	ev  *event.Event
	err error
}

// runReader decodes one run file ahead of the merge, on its own
// goroutine: the merge itself stays in order, decoding runs in parallel.
type runReader struct {
	ch  chan runItem
	cur *event.Event
	err error
}

func (r *runReader) next() bool {
	it, ok := <-r.ch
	if !ok {
		return false
	}
	if it.err != nil {
		r.err = it.err
		return false
	}
	r.cur = it.ev
	return true
}

func (r *runReader) read(ctx context.Context, name string, dec Decoder) {
	defer close(r.ch)
	send := func(it runItem) bool {
		select {
		case r.ch <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	f, err := os.Open(name)
	if err != nil {
		send(runItem{err: fmt.Errorf("sort: %w", err)})
		return
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		l, err := binary.ReadUvarint(br)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			send(runItem{err: fmt.Errorf("sort: %s: %w", name, err)})
			return
		}
		body := make([]byte, l)
		if _, err := io.ReadFull(br, body); err != nil {
			send(runItem{err: fmt.Errorf("sort: %s: %w", name, err)})
			return
		}
		rec, err := parseRecord(body)
		if err != nil {
			send(runItem{err: fmt.Errorf("%w: %s", err, name)})
			return
		}
		evs, err := dec.Decode(rec.raw, rec.origin)
		if err == nil && (rec.k >= len(evs) || compareKey(keyOf(evs[rec.k]), rec.key) != 0) {
			err = errors.New("decodes differently when read again")
		}
		if err != nil {
			send(runItem{err: fmt.Errorf("sort: record %d of %s (line %d): %w", rec.origin.Index, rec.origin.File, rec.origin.Line, err)})
			return
		}
		if !send(runItem{ev: evs[rec.k]}) {
			return
		}
	}
}

type mergeHeap []*runReader

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return eventLess(h[i].cur, h[j].cur) }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
