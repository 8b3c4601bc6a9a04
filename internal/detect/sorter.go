package detect

import (
	"bufio"
	"bytes"
	"cmp"
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

// DefaultRunEvents is the most events a Sorter holds in memory before it
// spills them, sorted, to a run file.
const DefaultRunEvents = 1 << 20

// DefaultRunBytes is the most record bytes a Sorter holds in memory before
// it spills them. It holds each record as it will spill it (time, ids,
// origin and the verbatim bytes), not the decoded event, so a run costs
// about its records' size and a tenant's month spills into few runs.
const DefaultRunBytes = 96 << 20

// maxFanIn bounds the runs merged at once: more runs are first merged,
// record by record and without decoding, into longer ones, so the merge's
// buffers do not grow with the input. The first round merges only as many
// runs as it takes to leave maxFanIn.
const maxFanIn = 128

// Decoder turns a record's verbatim bytes back into its events
// (source.Decoder does).
type Decoder interface {
	Decode(raw []byte, origin event.Origin) ([]*event.Event, error)
}

// Sorter puts the events of unordered inputs (exports newest first,
// several files each covering the whole period) into event-time order in
// bounded memory: it keeps up to RunEvents records or RunBytes bytes of
// them, spills each full run sorted to a temporary file, and merges the
// runs, decoding the records again. The decoded events are not kept (they
// cost several times their record), so records are always decoded twice;
// inputs that fit in one run are never written out.
type Sorter struct {
	RunEvents int
	RunBytes  int
	dir       string
	newDec    func() Decoder
	arena     []byte     // the run's records, as appendRecord spills them
	run       []runEntry // where each is in arena
	runs      []string
	last      *event.Event
	lastK     int
}

// runEntry is one record held in a run: its event time for the sort (ties
// are broken on the rest of the key, parsed from the arena) and its place.
type runEntry struct {
	t      int64
	off, n int
}

// NewSorter spills into dir ("" for the system's temporary directory);
// newDecoder makes a decoder for each run being merged.
func NewSorter(dir string, newDecoder func() Decoder) *Sorter {
	return &Sorter{RunEvents: DefaultRunEvents, RunBytes: DefaultRunBytes, dir: dir, newDec: newDecoder}
}

// Add takes one event; the Sorter keeps a copy of its record, not the
// event.
func (s *Sorter) Add(ev *event.Event) error {
	// Which of a record's events this is (a Workspace activity holds
	// several), to pick it again when the record is decoded again.
	k := 0
	if l := s.last; l != nil && l.Origin == ev.Origin && len(l.Raw) > 0 && len(ev.Raw) > 0 && &l.Raw[0] == &ev.Raw[0] {
		k = s.lastK + 1
	}
	s.last, s.lastK = ev, k
	if s.arena == nil {
		s.arena = make([]byte, 0, max(s.RunBytes, 1))
	}
	need := recordSize(ev)
	if len(s.run) > 0 && (len(s.run) >= max(s.RunEvents, 1) || len(s.arena)+need > cap(s.arena)) {
		if err := s.spill(); err != nil {
			return err
		}
	}
	off := len(s.arena)
	// A record larger than the whole budget gets an arena of its own,
	// spilled alone (the next Add starts a fresh one).
	s.arena = appendRecord(s.arena, ev, k)
	s.run = append(s.run, runEntry{t: ev.Time.UnixNano(), off: off, n: len(s.arena) - off})
	return nil
}

// body is the spilled form of entry e, without its length prefix.
func (s *Sorter) body(e runEntry) []byte {
	b := s.arena[e.off : e.off+e.n]
	_, n := binary.Uvarint(b)
	return b[n:]
}

func (s *Sorter) sortRun() error {
	var bad error
	slices.SortStableFunc(s.run, func(a, b runEntry) int {
		if a.t != b.t {
			return cmp.Compare(a.t, b.t)
		}
		ra, err := parseRecord(s.body(a))
		if err != nil {
			bad = err
		}
		rb, err := parseRecord(s.body(b))
		if err != nil {
			bad = err
		}
		return compareKey(ra.key, rb.key)
	})
	return bad
}

func (s *Sorter) spill() error {
	if err := s.sortRun(); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, "vigil-sort-*.run")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	s.runs = append(s.runs, f.Name())
	w := bufio.NewWriterSize(f, 1<<20)
	for _, e := range s.run {
		if _, err := w.Write(s.arena[e.off : e.off+e.n]); err != nil {
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
	s.run = s.run[:0]
	if cap(s.arena) > max(s.RunBytes, 1) {
		s.arena = nil // grown for one huge record: back to the budget
	} else {
		s.arena = s.arena[:0]
	}
	s.last = nil
	return nil
}

// Replay calls fn with every event added, in event-time order, then
// removes the run files.
func (s *Sorter) Replay(ctx context.Context, fn func(*event.Event) error) error {
	defer s.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var h mergeHeap
	if len(s.runs) == 0 {
		// One run: decode it again from memory, ahead of fn on its
		// own goroutine.
		if err := s.sortRun(); err != nil {
			return err
		}
		run, arena := s.run, s.arena
		s.run, s.arena = nil, nil
		r := &runReader{ch: make(chan runItem, 64)}
		go r.decode(ctx, "memory", s.newDec(), func(yield func([]byte) bool) error {
			for _, e := range run {
				b := arena[e.off : e.off+e.n]
				_, n := binary.Uvarint(b)
				// A copy: the events keep their Raw, and must not
				// keep the whole arena alive.
				if !yield(bytes.Clone(b[n:])) {
					return nil
				}
			}
			return nil
		})
		if r.next() {
			h = append(h, r)
		} else if r.err != nil {
			return r.err
		}
	} else {
		if len(s.run) > 0 {
			if err := s.spill(); err != nil {
				return err
			}
		}
		s.arena = nil
		for len(s.runs) > maxFanIn {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.mergeRuns(min(maxFanIn, len(s.runs)-maxFanIn+1)); err != nil {
				return err
			}
		}
		for _, name := range s.runs {
			r := &runReader{ch: make(chan runItem, 16)}
			go r.read(ctx, name, s.newDec())
			if r.next() {
				h = append(h, r)
			} else if r.err != nil {
				return r.err
			}
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
func (s *Sorter) mergeRuns(n int) (err error) {
	in := s.runs[:n]
	f, err := os.CreateTemp(s.dir, "vigil-sort-*.run")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	name := f.Name()
	defer func() {
		if err != nil {
			os.Remove(name) // not yet among s.runs: Close would miss it
		}
	}()
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
// is, and the record's bytes, after the length of all that.
func appendRecord(b []byte, ev *event.Event, k int) []byte {
	b = binary.AppendUvarint(b, uint64(bodySize(ev, k)))
	b = binary.AppendVarint(b, ev.Time.UnixNano())
	b = appendString(b, ev.Source)
	b = appendString(b, ev.RecordID)
	b = appendString(b, ev.Operation)
	b = appendString(b, ev.Origin.File)
	b = binary.AppendVarint(b, int64(ev.Origin.Line))
	b = binary.AppendVarint(b, ev.Origin.Offset)
	b = binary.AppendVarint(b, int64(ev.Origin.Index))
	b = binary.AppendVarint(b, int64(k))
	return appendString(b, string(ev.Raw))
}

// bodySize is the length of appendRecord's record after its length.
func bodySize(ev *event.Event, k int) int {
	var tmp [binary.MaxVarintLen64]byte
	n := binary.PutVarint(tmp[:], ev.Time.UnixNano())
	for _, v := range [...]int64{int64(ev.Origin.Line), ev.Origin.Offset, int64(ev.Origin.Index), int64(k)} {
		n += binary.PutVarint(tmp[:], v)
	}
	for _, l := range [...]int{len(ev.Source), len(ev.RecordID), len(ev.Operation), len(ev.Origin.File), len(ev.Raw)} {
		n += binary.PutUvarint(tmp[:], uint64(l)) + l
	}
	return n
}

// recordSize is the length of appendRecord's record with its length
// (k at most a few bytes more).
func recordSize(ev *event.Event) int {
	n := bodySize(ev, 0) + 2
	return n + binary.MaxVarintLen64
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

// read decodes the records of run file name.
func (r *runReader) read(ctx context.Context, name string, dec Decoder) {
	f, err := os.Open(name)
	if err != nil {
		r.decode(ctx, name, dec, func(func([]byte) bool) error { return fmt.Errorf("sort: %w", err) })
		return
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	r.decode(ctx, name, dec, func(yield func([]byte) bool) error {
		for {
			l, err := binary.ReadUvarint(br)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("sort: %s: %w", name, err)
			}
			body := make([]byte, l)
			if _, err := io.ReadFull(br, body); err != nil {
				return fmt.Errorf("sort: %s: %w", name, err)
			}
			if !yield(body) {
				return nil
			}
		}
	})
}

// decode sends the event of each record body records yields (in their
// order), then closes the channel.
func (r *runReader) decode(ctx context.Context, name string, dec Decoder, records func(yield func([]byte) bool) error) {
	defer close(r.ch)
	send := func(it runItem) bool {
		select {
		case r.ch <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	err := records(func(body []byte) bool {
		rec, err := parseRecord(body)
		if err != nil {
			send(runItem{err: fmt.Errorf("%w: %s", err, name)})
			return false
		}
		evs, err := dec.Decode(rec.raw, rec.origin)
		if err == nil && (rec.k >= len(evs) || compareKey(keyOf(evs[rec.k]), rec.key) != 0) {
			err = errors.New("decodes differently when read again")
		}
		if err != nil {
			send(runItem{err: fmt.Errorf("sort: record %d of %s (line %d): %w", rec.origin.Index, rec.origin.File, rec.origin.Line, err)})
			return false
		}
		return send(runItem{ev: evs[rec.k]})
	})
	if err != nil {
		send(runItem{err: err})
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
