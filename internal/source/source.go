package source

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/entra"
	"github.com/vigil-audit/vigil/internal/source/gws"
	"github.com/vigil-audit/vigil/internal/source/inboxrule"
	"github.com/vigil-audit/vigil/internal/source/jsonl"
	"github.com/vigil-audit/vigil/internal/source/m365"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Options tune ReadPaths.
type Options struct {
	// Mapping decodes records of no known vendor format (or all records,
	// with Force). Without it such records are decoded as source "json"
	// when a common time field is found, and quarantined otherwise.
	Mapping *jsonl.Mapping
	// Quarantine receives one JSON object per rejected record (Reject).
	// When nil, rejects are still counted in Stats.
	Quarantine io.Writer
	// Workers is the number of decoding goroutines (default GOMAXPROCS).
	Workers int
	// Progress, if set, is called from time to time with bytes read so far
	// and the total size of the inputs (0 when unknown, e.g. stdin).
	Progress func(done, total int64)
	// Stdin is read for the path "-" (default os.Stdin).
	Stdin io.Reader
	// Hot names fields worth reading while each record is parsed anyway,
	// typically every field the loaded rules look up
	// (sigma.Ruleset.FieldSyms): lookups of them then need no flattening.
	Hot []event.Sym
	// Limits bound what a record and an input may cost (zero fields:
	// defaults).
	Limits Limits
	// Format, when set, asserts every record's format (one of Formats):
	// records autodetection does not recognise as that format are
	// quarantined, never decoded as something else. It restricts, and never
	// changes, how a record is read, so the journal's replay of an accepted
	// record decodes it the same way.
	Format string
	// Observed, when set, is the time given to records that carry none of
	// their own (see Decoder.SetObserved), instead of their file's
	// modification time.
	Observed time.Time

	// Reverse makes ReadMerged read back to front each input that is a
	// regular, uncompressed file whose first record with a time is newer
	// than its last (an export newest first), so that it too is in
	// event-time order. Each record is still decoded once; the probe
	// decodes up to probeRecords more at each end of every input.
	Reverse bool

	noSkim bool // tests: never skim Folders lists (see m365.Skim)
}

// Stats counts what ReadPaths read. Records = Decoded + Quarantined: every
// record read is one or the other.
type Stats struct {
	Files       int
	Bytes       int64            // input bytes (decompressed size is not counted)
	Records     int64            // records read: an API page or array line counts each element
	Decoded     int64            // records decoded into events
	Events      int64            // events emitted (a Workspace activity may hold several)
	Quarantined int64            // records rejected
	Reasons     map[string]int64 // rejected records by reason category
	Sources     map[string]int64 // events by source
	Skipped     []Skipped        // directory and archive entries not read, with the reason
	Damaged     []Damage         // inputs not read to their end
	Reversed    []string         // inputs read back to front (Options.Reverse)
}

// Reject is one quarantined record, as written to Options.Quarantine.
type Reject struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Offset int64  `json:"offset"`
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Record string `json:"record"`
}

// rejectErr carries a reason category (for counting) and the detail.
type rejectErr struct {
	category string
	err      error
}

func (r *rejectErr) Error() string { return r.category + ": " + r.err.Error() }

func reject(category string, err error) error { return &rejectErr{category: category, err: err} }

// ErrNoInput is returned when the paths name no readable log file.
var ErrNoInput = errors.New("no input files")

// batch is a run of framed records decoded together.
type batch struct {
	seq      int
	recs     []rawRecord
	events   []*event.Event
	rejects  []Reject
	reasons  []string
	records  int64 // records read (page elements count one each)
	ndecoded int64
}

const batchRecords = 512

// ReadPaths decodes every record of every input and calls emit with each
// event, in input order, from the calling goroutine. emit may keep the
// event. Quarantined records are written to opts.Quarantine. An error from
// emit or a cancelled ctx stops the read; the Stats so far are returned
// with the error. An input that cannot be read to its end (unreadable,
// truncated, past a limit) does not stop the others: it is quarantined
// and listed in Stats.Damaged, and ReadPaths returns a *DamagedError once
// every input was read.
func ReadPaths(ctx context.Context, paths []string, opts Options, emit func(*event.Event) error) (Stats, error) {
	st, files, err := startRead(paths, &opts)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := startDecoding(ctx, files, opts, totalSize(files), nil)
	c := consumer{st: &st, cancel: cancel, emit: emit}
	if opts.Quarantine != nil {
		c.qenc = json.NewEncoder(opts.Quarantine)
	}
	for {
		b := d.nextBatch(ctx)
		if b == nil {
			break
		}
		c.records(b)
		for _, e := range b.events {
			c.event(e)
		}
	}
	return c.finish(ctx, d)
}

// startRead checks opts' limits (filling in the defaults) and lists the
// input files, for ReadPaths and ReadMerged.
func startRead(paths []string, opts *Options) (Stats, []string, error) {
	st := Stats{Reasons: map[string]int64{}, Sources: map[string]int64{}}
	if err := opts.Limits.Validate(); err != nil {
		return st, nil, err
	}
	opts.Limits = opts.Limits.withDefaults()
	files, skipped, err := Walk(paths)
	st.Skipped = skipped
	return st, files, err
}

// MaxMerged is the most inputs ReadMerged reads at once: each has its
// own decoding goroutines and batches in flight.
const MaxMerged = 64

// Mergeable reports whether ReadMerged takes these input files: at most
// MaxMerged of them, and not stdin.
func Mergeable(files []string) bool {
	return len(files) <= MaxMerged && !slices.Contains(files, "-")
}

// ReadMerged is ReadPaths for inputs each in event-time order, or nearly
// (exports of one log, oldest first): it reads every input at once, each
// on goroutines of its own, and calls emit with the events of all of them
// merged by time: the input whose next event is earliest goes first (the
// first named on a tie). Records and events are counted, and rejects
// quarantined, in that merged order. With opts.Reverse, inputs newest
// first are read back to front (see reversible; the records and rejects
// are those of the forward read, in reverse); one that cannot be is an
// error wrapping ErrNotReversible, returned before any event is emitted.
// It does not check the order: an input that is not in order comes out
// merged as it is. Progress may be called from several goroutines. More
// than MaxMerged inputs, or stdin, are an error: read them with ReadPaths.
func ReadMerged(ctx context.Context, paths []string, opts Options, emit func(*event.Event) error) (Stats, error) {
	st, files, err := startRead(paths, &opts)
	if err != nil {
		return st, err
	}
	if slices.Contains(files, "-") {
		return st, errors.New("stdin cannot be merged with other inputs")
	}
	if len(files) > MaxMerged {
		return st, fmt.Errorf("%d inputs: at most %d are merged", len(files), MaxMerged)
	}
	revs := make([]*reversal, len(files))
	if opts.Reverse {
		for i, f := range files {
			if revs[i], err = reversible(f, opts); err != nil {
				return st, err
			}
			if revs[i] != nil {
				st.Reversed = append(st.Reversed, f)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := totalSize(files)
	var (
		mu   sync.Mutex
		sum  int64
		last = make([]int64, len(files))
	)
	heads := make([]mergeHead, len(files))
	ds := make([]*decoding, len(files))
	for i, f := range files {
		o := opts
		if p := opts.Progress; p != nil {
			o.Progress = func(done, _ int64) {
				mu.Lock()
				sum += done - last[i]
				last[i] = done
				p(sum, total)
				mu.Unlock()
			}
		}
		ds[i] = startDecoding(ctx, []string{f}, o, total, revs[i])
	}
	c := consumer{st: &st, cancel: cancel, emit: emit}
	if opts.Quarantine != nil {
		c.qenc = json.NewEncoder(opts.Quarantine)
	}
	// fill gives input i a batch with an event to come, counting the
	// batches it passes; false when the input has no more.
	fill := func(i int) bool {
		h := &heads[i]
		for h.b == nil || h.at == len(h.b.events) {
			h.b, h.at = ds[i].nextBatch(ctx), 0
			if h.b == nil {
				return false
			}
			c.records(h.b)
		}
		return true
	}
	live := make([]int, 0, len(files))
	for i := range files {
		if fill(i) {
			live = append(live, i)
		}
	}
	for len(live) > 0 && c.emitErr == nil {
		k := 0
		for j := 1; j < len(live); j++ {
			if heads[live[j]].next().Time.Before(heads[live[k]].next().Time) {
				k = j
			}
		}
		h := &heads[live[k]]
		c.event(h.next())
		h.at++
		if !fill(live[k]) {
			live = slices.Delete(live, k, k+1)
		}
	}
	return c.finish(ctx, ds...)
}

// mergeHead is where ReadMerged is in one input's batches.
type mergeHead struct {
	b  *batch
	at int
}

func (h *mergeHead) next() *event.Event { return h.b.events[h.at] }

// totalSize is the size of the named files (stdin and unreadable ones
// count nothing).
func totalSize(files []string) int64 {
	var total int64
	for _, f := range files {
		if f == "-" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// decoding is a set of inputs being framed and decoded on goroutines of
// its own; nextBatch hands the batches back in input order.
type decoding struct {
	done     chan *batch
	pending  map[int]*batch
	next     int
	prodDone chan struct{}
	prodErr  error
	pst      Stats // the producer's counters, read once prodDone is closed
}

// startDecoding reads files in order, or, with rv, its one input back to
// front.
func startDecoding(ctx context.Context, files []string, opts Options, total int64, rv *reversal) *decoding {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	d := &decoding{done: make(chan *batch, workers*2), pending: map[int]*batch{}, prodDone: make(chan struct{})}
	work := make(chan *batch, workers*2)
	go func() {
		defer close(d.prodDone)
		defer close(work)
		d.prodErr = produce(ctx, files, opts, work, &d.pst, total, rv)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dec := newDecoder(opts.Mapping, opts.Hot, opts.Limits)
			dec.noSkim = opts.noSkim
			dec.format = opts.Format
			dec.observed = opts.Observed
			for b := range work {
				dec.decodeBatch(b)
				select {
				case d.done <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(d.done) }()
	return d
}

// nextBatch returns the next batch in input order, nil once every batch
// was returned or ctx is cancelled. Stop collecting on cancel too: a
// reader blocked in a read keeps the workers and so done open.
func (d *decoding) nextBatch(ctx context.Context) *batch {
	for {
		if b, ok := d.pending[d.next]; ok {
			delete(d.pending, d.next)
			d.next++
			return b
		}
		select {
		case b, ok := <-d.done:
			if !ok {
				return nil
			}
			d.pending[b.seq] = b
		case <-ctx.Done():
			return nil
		}
	}
}

// consumer counts, quarantines and emits what decodings produced, from
// one goroutine.
type consumer struct {
	st      *Stats
	qenc    *json.Encoder
	cancel  func()
	emit    func(*event.Event) error
	emitErr error
}

// records counts a batch's records and quarantines its rejects.
func (c *consumer) records(b *batch) {
	if c.emitErr != nil {
		return
	}
	c.st.Records += b.records
	c.st.Decoded += b.ndecoded
	for i, r := range b.rejects {
		c.st.Quarantined++
		c.st.Reasons[b.reasons[i]]++
		if c.qenc != nil {
			if err := c.qenc.Encode(r); err != nil {
				c.emitErr = fmt.Errorf("writing quarantine: %w", err)
				c.cancel()
				return
			}
		}
	}
}

func (c *consumer) event(e *event.Event) {
	if c.emitErr != nil {
		return
	}
	c.st.Events++
	c.st.Sources[e.Source]++
	if err := c.emit(e); err != nil {
		c.emitErr = err
		c.cancel()
	}
}

// finish waits for the decodings' readers and returns the Stats and the
// error of the read.
func (c *consumer) finish(ctx context.Context, ds ...*decoding) (Stats, error) {
	st := c.st
	var prodErr error
	for _, d := range ds {
		// The reader may be blocked in a read that never returns (stdin on
		// an open pipe); once cancelled, do not wait for it.
		select {
		case <-d.prodDone:
		case <-ctx.Done():
			if c.emitErr != nil {
				return *st, c.emitErr
			}
			return *st, ctx.Err()
		}
		st.Files += d.pst.Files
		st.Bytes += d.pst.Bytes
		st.Damaged = append(st.Damaged, d.pst.Damaged...)
		st.Skipped = append(st.Skipped, d.pst.Skipped...)
		if prodErr == nil {
			prodErr = d.prodErr
		}
	}
	switch {
	case c.emitErr != nil:
		return *st, c.emitErr
	case prodErr != nil:
		return *st, prodErr
	case len(st.Damaged) > 0:
		return *st, &DamagedError{Inputs: st.Damaged}
	}
	return *st, ctx.Err()
}

// produce frames every file into batches. A damaged input is recorded in
// st.Damaged and quarantined (as the one piece not read), and the next
// input is read.
func produce(ctx context.Context, files []string, opts Options, work chan<- *batch, st *Stats, total int64, rv *reversal) error {
	var bytesRead int64
	seq := 0
	cur := &batch{}
	size := 0
	flush := func() error {
		if len(cur.recs) == 0 {
			return nil
		}
		cur.seq = seq
		seq++
		select {
		case work <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = &batch{}
		size = 0
		if opts.Progress != nil {
			opts.Progress(bytesRead, total)
		}
		return nil
	}
	add := func(rec rawRecord) error {
		cur.recs = append(cur.recs, rec)
		size += len(rec.raw)
		if len(cur.recs) >= batchRecords || size >= chunkSize {
			return flush()
		}
		return nil
	}
	// damaged quarantines the part of an input not read and lists it.
	damaged := func(file string, read int64, line int, err error) error {
		reason := err.Error()
		cat := "damaged input"
		if errors.Is(err, errLimit) {
			cat = "input limit"
			reason = strings.TrimPrefix(reason, errLimit.Error()+": ")
		}
		st.Damaged = append(st.Damaged, Damage{File: file, Read: read, Reason: reason})
		return add(rawRecord{file: file, line: line, offset: read,
			err: reject(cat, fmt.Errorf("input not read to its end: %s; records were framed from its first %d bytes, the rest is not read", reason, read))})
	}
	// one frames one input (a file, stdin, a zip member).
	one := func(name string, r io.Reader, compressed func() int64) error {
		st.Files++
		br, closeZ, skipped, err := openInput(r, opts.Limits, compressed)
		if err != nil {
			return damaged(name, 0, 0, err)
		}
		defer closeZ()
		err = frame(name, br, opts.Limits, func(rec rawRecord) error {
			rec.offset += skipped
			return add(rec)
		})
		var ce *cutError
		if errors.As(err, &ce) {
			return damaged(name, ce.offset+skipped, ce.line, ce.err)
		}
		return err
	}
	if rv != nil {
		err := rv.read(ctx, opts.Limits, st, add, func(n int64) { bytesRead += n })
		if ferr := flush(); ferr != nil {
			return ferr
		}
		return err
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if f == "-" {
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			cr := &countingReader{r: in}
			br := bufio.NewReaderSize(cr, 4096)
			if head, _ := br.Peek(4); isZip(head) {
				st.Files++
				err = damaged(f, 0, 0, errors.New("a zip archive cannot be read from stdin (name the file instead)"))
			} else {
				err = one(f, br, func() int64 { return cr.n })
			}
			st.Bytes += cr.n
		} else {
			err = readFile(f, opts, st, one, damaged)
		}
		bytesRead = st.Bytes
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
	}
	return flush()
}

// readFile frames one named file, or each member of a zip archive.
func readFile(f string, opts Options, st *Stats, one func(string, io.Reader, func() int64) error,
	damaged func(string, int64, int, error) error) error {
	fh, err := os.Open(f)
	if err != nil {
		st.Files++
		return damaged(f, 0, 0, err)
	}
	defer fh.Close()
	cr := &countingReader{r: fh}
	defer func() { st.Bytes += cr.n }()
	var head [4]byte
	n, _ := io.ReadFull(fh, head[:])
	cr.n += int64(n)
	if !isZip(head[:n]) {
		return one(f, io.MultiReader(bytes.NewReader(head[:n]), cr), func() int64 { return cr.n })
	}
	fi, err := fh.Stat()
	if err != nil {
		st.Files++
		return damaged(f, 0, 0, err)
	}
	zr, err := zip.NewReader(fh, fi.Size())
	if err != nil {
		st.Files++
		return damaged(f, 0, 0, fmt.Errorf("zip: %w", err))
	}
	cr.n = fi.Size()
	members, skipped := zipMembers(f, zr)
	st.Skipped = append(st.Skipped, skipped...)
	var total int64 // decompressed bytes of all members, bounded like one input's
	for _, m := range members {
		rc, err := m.f.Open()
		if err != nil {
			st.Files++
			if err := damaged(m.name, 0, 0, fmt.Errorf("zip: %w", err)); err != nil {
				return err
			}
			continue
		}
		// Each member's ratio is judged against its own compressed size.
		csize := func() int64 { return int64(m.f.CompressedSize64) }
		err = one(m.name, newGuard(newGuard(rc, opts.Limits, nil, csize), opts.Limits, &total, nil), csize)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decoder turns framed records into events; one per worker goroutine.
type decoder struct {
	p       fastjson.Parser
	skim    m365.Skim
	noSkim  bool   // tests: decode every record the ordinary way
	format  string // Options.Format
	skimmed int64  // records whose Folders list was skimmed
	arena   fastjson.Arena
	b       *event.Builder
	mapping *jsonl.Mapping
	cache   *record.Cache
	lim     Limits
	evs     []*event.Event // scratch: the events of one record

	// Snapshot records (inbox rules) carry no time; they get the time
	// they were observed (observedAt).
	start            time.Time // when the decoder was made
	observed         time.Time // set by Decoder.SetObserved
	obsFile          string    // the file obsTime is the modification time of
	obsTime          time.Time
	obsStatAttempted bool
}

func newDecoder(m *jsonl.Mapping, hot []event.Sym, lim Limits) *decoder {
	d := &decoder{b: event.NewBuilder(), mapping: m, cache: record.NewCache(), lim: lim.withDefaults(), start: time.Now().UTC()}
	d.cache.SetHot(hot)
	return d
}

// observedAt is when a snapshot record read from file was taken: the time
// Decoder.SetObserved gave, else the file's modification time (export
// tools write the file when they take the snapshot), else, for stdin or a
// file that cannot be stat'ed, the time the read began.
func (d *decoder) observedAt(file string) time.Time {
	if !d.observed.IsZero() {
		return d.observed
	}
	if file != d.obsFile || !d.obsStatAttempted {
		d.obsFile, d.obsStatAttempted, d.obsTime = file, true, time.Time{}
		if file != "-" {
			if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
				d.obsTime = fi.ModTime().UTC()
			}
		}
	}
	if d.obsTime.IsZero() {
		return d.start
	}
	return d.obsTime
}

// sink receives the outcome of each record read: its events (which it
// must copy: the slice is reused), or its rejection.
type sink interface {
	decoded(evs []*event.Event)
	rejected(r *rawRecord, raw []byte, err error)
}

func (b *batch) decoded(evs []*event.Event) {
	b.records++
	b.ndecoded++
	b.events = append(b.events, evs...)
}

func (b *batch) rejected(r *rawRecord, raw []byte, err error) {
	b.records++
	cat := "decode error"
	var re *rejectErr
	if errors.As(err, &re) {
		cat = re.category
	}
	b.rejects = append(b.rejects, Reject{File: r.file, Line: r.line, Offset: r.offset, Index: r.index,
		Reason: err.Error(), Record: string(raw)})
	b.reasons = append(b.reasons, cat)
}

func (d *decoder) decodeBatch(b *batch) {
	n := len(b.rejects)
	for i := range b.recs {
		d.decodeRecord(&b.recs[i], b)
	}
	for i := n; i < len(b.rejects); i++ {
		b.rejects[i].Reason = bound(b.rejects[i].Reason, d.lim.MaxReasonBytes)
	}
	b.recs = b.recs[:len(b.recs):len(b.recs)]
}

func (d *decoder) origin(r *rawRecord) event.Origin {
	return event.Origin{File: r.file, Line: r.line, Offset: r.offset, Index: r.index}
}

// limitErr checks the counts of a record (or page element) against the
// limits.
func (d *decoder) limitErr(sc *recordScan) error {
	switch {
	case sc.fields > d.lim.MaxFields:
		return reject("record limit", fmt.Errorf("%d fields exceed the limit of %d fields per record", sc.fields, d.lim.MaxFields))
	case sc.elements > d.lim.MaxElements:
		return reject("record limit", fmt.Errorf("%d array elements exceed the limit of %d array elements per record", sc.elements, d.lim.MaxElements))
	}
	return nil
}

// decodeHook, when set (by tests), sees every record decoded.
var decodeHook func(r *rawRecord)

// decodeRecord decodes one framed record: a record, or an API page (a
// top-level array, an envelope) whose elements are records each.
func (d *decoder) decodeRecord(r *rawRecord, out sink) {
	if decodeHook != nil {
		decodeHook(r)
	}
	evs := d.evs[:0]
	defer func() { d.evs = evs[:0] }()
	fail := func(err error) { d.b.Reset(); out.rejected(r, r.raw, err) }
	if r.err != nil {
		var re *rejectErr
		if errors.As(r.err, &re) {
			fail(r.err)
		} else {
			fail(reject("framing", r.err))
		}
		return
	}
	if r.csv != nil {
		if err := d.decodeCSV(r, &evs); err != nil {
			fail(err)
			return
		}
		out.decoded(evs)
		return
	}
	sc, err := scanRecord(r.raw, d.lim.MaxDepth)
	if err != nil {
		fail(reject("record limit", err))
		return
	}
	if start, end, n, ok := sc.page(r.raw); ok {
		if n > d.lim.MaxElements {
			fail(reject("record limit", fmt.Errorf("a list of %d records exceeds the limit of %d array elements per record", n, d.lim.MaxElements)))
			return
		}
		// The nesting is bounded, so validating does not recurse deeply.
		if err := fastjson.ValidateBytes(r.raw); err != nil {
			fail(reject("invalid JSON", err))
			return
		}
		d.decodeList(r, r.raw[start:end], start, out)
		return
	}
	if err := d.limitErr(&sc); err != nil {
		fail(err)
		return
	}
	if v, ok := d.parseSkimmed(r.raw); ok {
		if err := d.decodeValue(r, v, r.raw, true, &evs); err != nil {
			fail(err)
			return
		}
		out.decoded(evs)
		return
	}
	v, err := d.p.ParseBytes(r.raw)
	if err != nil {
		fail(reject("invalid JSON", err))
		return
	}
	if v.Type() != fastjson.TypeObject {
		fail(reject("not an object", fmt.Errorf("record is a JSON %s", v.Type())))
		return
	}
	if err := d.decodeValue(r, v, r.raw, false, &evs); err != nil {
		fail(err)
		return
	}
	out.decoded(evs)
}

// parseSkimmed parses raw with its Folders list read by d.skim, when raw
// is a Management Activity API record that m365.Skim reads exactly; ok is
// false otherwise, and raw is then decoded the ordinary way. Other
// formats never see the emptied list: their records are parsed again.
func (d *decoder) parseSkimmed(raw []byte) (*fastjson.Value, bool) {
	if d.noSkim || d.mapping != nil && d.mapping.Force {
		return nil, false
	}
	rest, ok := d.skim.Record(raw)
	if !ok {
		return nil, false
	}
	// Record checked the keys that make the record a Management Activity
	// API record and no other (m365.Detect, gws.Detect).
	v, err := d.p.ParseBytes(rest)
	if err != nil {
		return nil, false
	}
	d.skimmed++
	return v, true
}

// decodeList decodes the elements of an API page, list being the bytes
// of its array at offset at in r.raw. Each element is a record of its
// own, with its own line and offset; its raw bytes are its compact JSON
// encoding.
func (d *decoder) decodeList(r *rawRecord, list []byte, at int, out sink) {
	line, pos := r.line, 0
	_ = elementSpans(list, func(s, e int) error {
		el := *r
		el.raw = list[s:e]
		line += bytes.Count(r.raw[pos:at+s], []byte{'\n'})
		pos = at + s
		el.line, el.offset = line, r.offset+int64(at+s)
		fail := func(err error) { d.b.Reset(); out.rejected(&el, el.raw, err) }
		sc, err := scanRecord(el.raw, d.lim.MaxDepth)
		if err == nil {
			err = d.limitErr(&sc)
		}
		if err != nil {
			fail(reject("record limit", err))
			return nil
		}
		v, err := d.p.ParseBytes(el.raw)
		if err != nil {
			fail(reject("invalid JSON", err))
			return nil
		}
		if v.Type() != fastjson.TypeObject {
			fail(reject("not an object", fmt.Errorf("list element is a JSON %s", v.Type())))
			return nil
		}
		evs := d.evs[:0]
		err = d.decodeValue(&el, v, v.MarshalTo(nil), false, &evs)
		d.evs = evs[:0]
		if err != nil {
			fail(err)
			return nil
		}
		out.decoded(evs)
		return nil
	})
}

// decodeValue detects the format of one record and decodes it; raw must
// be v's JSON, or, when skimmed, the JSON v was parsed from before
// parseSkimmed emptied its Folders list. The event is flattened lazily, on
// its first lookup of a source field.
func (d *decoder) decodeValue(r *rawRecord, v *fastjson.Value, raw []byte, skimmed bool, out *[]*event.Event) error {
	finish := func(e *event.Event, fl event.Flattener, arg int) {
		e.Raw = raw
		e.Origin = d.origin(r)
		e.SetLazy(fl, arg)
		*out = append(*out, e)
	}
	// shape records what flattening v (plus the objects it hoists to the
	// top level) would name at the top level, and reads the hot fields.
	shape := func(e *event.Event, hoisted *fastjson.Value) *record.Shape {
		sh := d.cache.Shape(v, hoisted)
		e.SetTopKeys(sh.Top)
		// A skimmed parse lacks the list it skimmed: what it misses, Raw
		// may hold.
		eager, missing := d.cache.Eager(sh, v, hoisted, !skimmed)
		e.SetEager(eager)
		e.SetMissing(missing)
		return sh
	}
	if d.mapping != nil && d.mapping.Force {
		return d.generic(v, func(e *event.Event) { shape(e, nil); finish(e, jsonl.Flatten, 0) })
	}
	if gws.Detect(v) {
		if err := d.asserted(FormatGWS); err != nil {
			return err
		}
		if err := gws.Decode(v, func(e *event.Event, i int) { finish(e, gws.Flatten, i) }); err != nil {
			return reject("google workspace", err)
		}
		return nil
	}
	if skimmed {
		if err := d.asserted(FormatM365); err != nil {
			return err
		}
		e := &event.Event{}
		if err := m365.DecodeSkimmed(v, e, d.cache, &d.skim); err != nil {
			return reject("m365 unified audit log", err)
		}
		// The access detection and impact read (event.MailAccessOf) comes
		// from this parse and the skimmed list, not a second parse of Raw.
		if event.IsMailAccess(e) && len(raw) > 0 && raw[0] == '{' {
			if fs, ok := d.skim.Folders(); ok {
				event.SetMailAccess(e, v, fs)
			}
		}
		sh := shape(e, nil)
		m365.Lazy(v, m365.ManagementAPI, sh, e, d.cache)
		finish(e, m365.Flatten, 0)
		return nil
	}
	if kind := m365.Detect(v); kind != m365.None {
		if err := d.asserted(FormatM365); err != nil {
			return err
		}
		e := &event.Event{}
		if err := m365.Decode(v, kind, e, d.cache); err != nil {
			return reject("m365 unified audit log", err)
		}
		if event.IsMailAccess(e) {
			e.Raw = raw // as finish sets it; v is a parse of it
			event.SetMailAccessParsed(e, v)
		}
		sh := shape(e, m365.Hoisted(v))
		m365.Lazy(v, kind, sh, e, d.cache)
		finish(e, m365.Flatten, 0)
		return nil
	}
	if k := entra.Detect(v); k != entra.None {
		if err := d.asserted(FormatEntra); err != nil {
			return err
		}
		e := &event.Event{}
		if err := entra.Decode(v, k, e); err != nil {
			return reject("entra/azure", err)
		}
		shape(e, entra.Hoisted(v))
		finish(e, entra.Flatten, 0)
		return nil
	}
	if inboxrule.Detect(v) {
		if err := d.asserted(FormatInboxRule); err != nil {
			return err
		}
		e := &event.Event{}
		if err := inboxrule.Decode(v, d.observedAt(r.file), e); err != nil {
			return reject("inbox rule snapshot", err)
		}
		finish(e, inboxrule.Flatten, 0)
		return nil
	}
	if err := d.asserted(FormatJSON); err != nil {
		return err
	}
	return d.generic(v, func(e *event.Event) { shape(e, nil); finish(e, jsonl.Flatten, 0) })
}

// The formats Options.Format can assert.
const (
	FormatM365      = "m365"      // Microsoft 365 unified audit log (any of its exports)
	FormatEntra     = "entra"     // Entra ID sign-ins, directory audits, risk detections
	FormatGWS       = "gws"       // Google Workspace activities
	FormatInboxRule = "inboxrule" // Exchange mailbox-rule snapshots
	FormatJSON      = "json"      // generic JSON of no vendor format
)

// Formats lists the formats Options.Format accepts.
var Formats = []string{FormatM365, FormatEntra, FormatGWS, FormatInboxRule, FormatJSON}

// asserted refuses a record detected as format got when another format
// was asserted.
func (d *decoder) asserted(got string) error {
	if d.format == "" || d.format == got {
		return nil
	}
	return reject("format", fmt.Errorf("the record is %s, not the asserted format %s", got, d.format))
}

func (d *decoder) generic(v *fastjson.Value, finish func(*event.Event)) error {
	e := &event.Event{}
	if err := jsonl.Decode(v, d.mapping, e); err != nil {
		return reject("generic JSON", err)
	}
	finish(e)
	return nil
}

// decodeCSV decodes a CSV row. The event's Raw is then JSON, so the
// record can be decoded again without its file's header (from the
// journal): for a Purview export the AuditData cell, which is the audit
// record itself (the other columns are derived from it); for other CSV the
// row as a JSON object of its columns, in header order.
func (d *decoder) decodeCSV(r *rawRecord, out *[]*event.Event) error {
	if r.csv.kind == csvPurview {
		cell := r.row[r.csv.auditData]
		raw := []byte(cell)
		sc, err := scanRecord(raw, d.lim.MaxDepth)
		if err == nil {
			err = d.limitErr(&sc)
		}
		if err != nil {
			return reject("record limit", fmt.Errorf("AuditData: %w", err))
		}
		if v, ok := d.parseSkimmed(raw); ok {
			return d.decodeValue(r, v, raw, true, out)
		}
		ad, err := d.p.Parse(cell)
		if err != nil {
			return reject("purview CSV", fmt.Errorf("AuditData is not JSON: %w", err))
		}
		if m365.Detect(ad) != m365.ManagementAPI {
			return reject("purview CSV", errors.New("AuditData is not a unified audit log record (no CreationTime/Operation/RecordType)"))
		}
		return d.decodeValue(r, ad, raw, false, out)
	}
	fields := len(r.row)
	for _, c := range r.row {
		fields += nestedFields([]byte(c))
	}
	if fields > d.lim.MaxFields {
		return reject("record limit", fmt.Errorf("%d fields exceed the limit of %d fields per record", fields, d.lim.MaxFields))
	}
	d.arena.Reset()
	v := csvObject(&d.arena, r.csv, r.row)
	return d.decodeValue(r, v, v.MarshalTo(nil), false, out)
}

// Decoder decodes single records held in memory, such as records replayed
// from the journal. It is not safe for concurrent use; use one per
// goroutine.
type Decoder struct{ d *decoder }

// NewDecoder returns a Decoder with the default limits; m and hot may be
// nil (see Options).
func NewDecoder(m *jsonl.Mapping, hot []event.Sym) *Decoder {
	return &Decoder{d: newDecoder(m, hot, Limits{})}
}

// SetLimits replaces the decoder's limits (zero fields: defaults).
func (x *Decoder) SetLimits(l Limits) { x.d.lim = l.withDefaults() }

// collect is the sink of Decoder.Decode.
type collect struct {
	events  []*event.Event
	errs    []error
	records int
}

func (c *collect) decoded(evs []*event.Event) { c.records++; c.events = append(c.events, evs...) }
func (c *collect) rejected(_ *rawRecord, _ []byte, err error) {
	c.records++
	c.errs = append(c.errs, err)
}

// SetObserved sets the time given to records that carry none of their own
// (inventory snapshots such as inbox rules), e.g. when a journal entry was
// received; the zero time restores the default (the modification time of
// the record's file, else the time the Decoder was made).
func (x *Decoder) SetObserved(t time.Time) { x.d.observed = t }

// Decode decodes one JSON record (an object, an array of records or an
// envelope) into events. origin says where it came from. The events keep
// raw as their Raw bytes, so raw must not be modified afterwards. When
// any record of a list fails, Decode returns no events and the first
// error, with how many failed.
func (x *Decoder) Decode(raw []byte, origin event.Origin) ([]*event.Event, error) {
	r := rawRecord{raw: raw, file: origin.File, line: origin.Line, offset: origin.Offset, index: origin.Index}
	var c collect
	x.d.decodeRecord(&r, &c)
	switch {
	case len(c.errs) == 1 && c.records == 1:
		return nil, c.errs[0]
	case len(c.errs) > 0:
		return nil, fmt.Errorf("%d of %d records failed; the first: %s", len(c.errs), c.records,
			bound(c.errs[0].Error(), x.d.lim.MaxReasonBytes))
	}
	return c.events, nil
}
