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
	"runtime"
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/parallel"
)

// DefaultRunEvents is the most events a Sorter holds in memory before it
// spills them, sorted, to a run file.
const DefaultRunEvents = 1 << 20

// DefaultRunBytes is the most record bytes a Sorter holds in memory before
// it spills them. It holds each record as it will spill it (time, ids,
// origin and the verbatim bytes), not the decoded event, so a run costs
// about its records' size and a tenant's month spills into few runs. A
// run is written out while the next fills, so two can be in memory.
const DefaultRunBytes = 48 << 20

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
	writing   *spillJob // the run being written while the next fills
	spare     []byte    // an arena a finished spill gave back
	spareRun  []runEntry
	mapped    [][]byte // arenas mapped outside the heap, unmapped by Close
}

// spillJob is a full run being sorted and written on its own goroutine.
type spillJob struct {
	done  chan error
	arena []byte
	run   []runEntry
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
		s.arena = s.newArena()
	}
	need := recordSize(ev)
	if len(s.run) > 0 && (len(s.run) >= max(s.RunEvents, 1) || len(s.arena)+need > cap(s.arena)) {
		if err := s.spillBehind(); err != nil {
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

// body is the spilled form of entry e of arena, without its length
// prefix.
func body(arena []byte, e runEntry) []byte {
	b := arena[e.off : e.off+e.n]
	_, n := binary.Uvarint(b)
	return b[n:]
}

func sortRun(run []runEntry, arena []byte) error {
	var bad error
	slices.SortStableFunc(run, func(a, b runEntry) int {
		if a.t != b.t {
			return cmp.Compare(a.t, b.t)
		}
		ra, err := parseRecord(body(arena, a))
		if err != nil {
			bad = err
		}
		rb, err := parseRecord(body(arena, b))
		if err != nil {
			bad = err
		}
		return compareKey(ra.key, rb.key)
	})
	return bad
}

// spillBehind starts writing the current run on its own goroutine and
// gives Add a fresh arena: decoding goes on while the run is sorted and
// written. At most one run is being written at a time.
func (s *Sorter) spillBehind() error {
	if err := s.waitSpill(); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, "vigil-sort-*.run")
	if err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	s.runs = append(s.runs, f.Name())
	job := &spillJob{done: make(chan error, 1), arena: s.arena, run: s.run}
	go func() { job.done <- writeRun(f, job.run, job.arena) }()
	s.writing = job
	s.arena, s.run = s.spare, s.spareRun[:0]
	s.spare, s.spareRun = nil, nil
	if s.arena == nil {
		s.arena = s.newArena()
	}
	s.last = nil
	return nil
}

// waitSpill waits for the run being written and keeps its arena for the
// next.
func (s *Sorter) waitSpill() error {
	job := s.writing
	if job == nil {
		return nil
	}
	s.writing = nil
	err := <-job.done
	if cap(job.arena) <= max(s.RunBytes, 1) { // not one grown for a huge record
		s.spare = job.arena[:0]
	}
	s.spareRun = job.run[:0]
	return err
}

// newArena is an empty arena of RunBytes, off the heap where it can be.
func (s *Sorter) newArena() []byte {
	size := max(s.RunBytes, 1)
	if b, err := mapArena(size); err == nil {
		s.mapped = append(s.mapped, b)
		return b[:0]
	}
	return make([]byte, 0, size)
}

// spill writes the current run and waits for it.
func (s *Sorter) spill() error {
	if err := s.spillBehind(); err != nil {
		return err
	}
	return s.waitSpill()
}

// writeRun sorts run and writes its records to f, then closes f.
func writeRun(f *os.File, run []runEntry, arena []byte) error {
	if err := sortRun(run, arena); err != nil {
		f.Close()
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, e := range run {
		if _, err := w.Write(arena[e.off : e.off+e.n]); err != nil {
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
	return nil
}

// Replay calls fn with every event added, in event-time order, then
// removes the run files.
func (s *Sorter) Replay(ctx context.Context, fn func(*event.Event) error) error {
	return s.replay(ctx, 0, func(ev *event.Event) *Item { return &Item{Ev: ev} }, func(it *Item) error { return fn(it.Ev) })
}

// replay merges the runs record by record without decoding them, and
// decodes and prepares the records on workers goroutines (GOMAXPROCS for
// 0), handing the items to fn in event-time order.
func (s *Sorter) replay(ctx context.Context, workers int, prepare func(*event.Event) *Item, fn func(*Item) error) error {
	defer s.Close()
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var produce func(emit func([]byte) error) error
	if len(s.runs) == 0 {
		// One run: straight from memory.
		if err := sortRun(s.run, s.arena); err != nil {
			return err
		}
		run, arena := s.run, s.arena
		s.run, s.arena = nil, nil
		produce = func(emit func([]byte) error) error {
			for _, e := range run {
				b := arena[e.off : e.off+e.n]
				_, n := binary.Uvarint(b)
				// A copy: the events keep their Raw, and must not
				// keep the whole arena alive.
				if err := emit(bytes.Clone(b[n:])); err != nil {
					return err
				}
			}
			return nil
		}
	} else {
		if len(s.run) > 0 {
			if err := s.spill(); err != nil {
				return err
			}
		} else if err := s.waitSpill(); err != nil {
			return err
		}
		s.arena, s.spare = nil, nil
		for len(s.runs) > maxFanIn {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.mergeRuns(min(maxFanIn, len(s.runs)-maxFanIn+1)); err != nil {
				return err
			}
		}
		produce = func(emit func([]byte) error) error {
			return s.merge(s.runs, emit)
		}
	}
	return parallel.InOrder(ctx, workers, produce, func() func([]byte) (*Item, error) {
		dec := s.newDec()
		return func(body []byte) (*Item, error) {
			ev, err := decodeSpilled(body, dec)
			if err != nil {
				return nil, err
			}
			return prepare(ev), nil
		}
	}, fn)
}

// decodeSpilled decodes a spilled record back into its event, checking
// that it is the event that was spilled.
func decodeSpilled(body []byte, dec Decoder) (*event.Event, error) {
	rec, err := parseRecord(body)
	if err != nil {
		return nil, err
	}
	evs, err := dec.Decode(rec.raw, rec.origin)
	if err == nil && (rec.k >= len(evs) || compareKey(keyOf(evs[rec.k]), rec.key) != 0) {
		err = errors.New("decodes differently when read again")
	}
	if err != nil {
		return nil, fmt.Errorf("sort: record %d of %s (line %d): %w", rec.origin.Index, rec.origin.File, rec.origin.Line, err)
	}
	return evs[rec.k], nil
}

// merge calls emit with the records of the run files names, in key
// order.
func (s *Sorter) merge(names []string, emit func([]byte) error) error {
	var h rawHeap
	for _, name := range names {
		g, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("sort: %w", err)
		}
		defer g.Close()
		rr := &rawRun{br: bufio.NewReaderSize(g, 64<<10), name: name}
		if ok, err := rr.next(); err != nil {
			return err
		} else if ok {
			h = append(h, rr)
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		rr := h[0]
		if err := emit(rr.body); err != nil {
			return err
		}
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
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
	var hdr []byte
	if err := s.merge(in, func(body []byte) error {
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(body)))
		_, werr := w.Write(hdr)
		if werr == nil {
			_, werr = w.Write(body)
		}
		if werr != nil {
			return fmt.Errorf("sort: %w", werr)
		}
		return nil
	}); err != nil {
		f.Close()
		return err
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

// Close removes the run files and frees the arenas (Replay does so
// itself).
func (s *Sorter) Close() {
	s.waitSpill()
	s.arena, s.spare, s.run, s.spareRun, s.last = nil, nil, nil, nil, nil
	for _, b := range s.mapped {
		unmapArena(b)
	}
	s.mapped = nil
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
