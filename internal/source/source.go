package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
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
}

// Stats counts what ReadPaths read.
type Stats struct {
	Files       int
	Bytes       int64            // input bytes (decompressed size is not counted)
	Records     int64            // framed records
	Events      int64            // events emitted (a Workspace activity may hold several)
	Quarantined int64            // records rejected
	Reasons     map[string]int64 // rejected records by reason category
	Sources     map[string]int64 // events by source
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

// logExts are the file name endings read when walking a directory; files
// named explicitly are always read.
var logExts = []string{".json", ".jsonl", ".ndjson", ".csv", ".log", ".json.gz", ".jsonl.gz", ".ndjson.gz", ".csv.gz", ".log.gz", ".gz"}

// Expand resolves paths (files, directories walked recursively, "-") into
// the list of inputs ReadPaths would read, in order.
func Expand(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", p, err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		ignores := map[string][]string{} // directory -> its .vigilignore patterns
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != p && strings.HasPrefix(name, ".") {
					return filepath.SkipDir
				}
				ignores[path] = readIgnore(filepath.Join(path, ignoreFile))
				return nil
			}
			if strings.HasPrefix(name, ".") || !d.Type().IsRegular() || ignored(ignores[filepath.Dir(path)], name) {
				return nil
			}
			lower := strings.ToLower(name)
			for _, ext := range logExts {
				if strings.HasSuffix(lower, ext) {
					found = append(found, path)
					break
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walking %s: %w", p, err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	if len(out) == 0 {
		return nil, ErrNoInput
	}
	return out, nil
}

// ignoreFile lists, one glob per line, files of its directory that are
// not logs (a simulator's ground truth, lookup tables); '#' starts a
// comment. Only directory walks honour it.
const ignoreFile = ".vigilignore"

func readIgnore(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, l)
		}
	}
	return pats
}

func ignored(pats []string, name string) bool {
	for _, p := range pats {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// batch is a run of framed records decoded together.
type batch struct {
	seq     int
	recs    []rawRecord
	events  []*event.Event
	rejects []Reject
	reasons []string
}

const batchRecords = 512

// ReadPaths decodes every record of every input and calls emit with each
// event, in input order, from the calling goroutine. emit may keep the
// event. Quarantined records are written to opts.Quarantine. An error from
// emit, a cancelled ctx or an unreadable input stops the read; the Stats
// so far are returned with the error.
func ReadPaths(ctx context.Context, paths []string, opts Options, emit func(*event.Event) error) (Stats, error) {
	st := Stats{Reasons: map[string]int64{}, Sources: map[string]int64{}}
	files, err := Expand(paths)
	if err != nil {
		return st, err
	}
	var total int64
	for _, f := range files {
		if f == "-" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	work := make(chan *batch, workers*2)
	done := make(chan *batch, workers*2)
	var prodErr error
	var pst Stats // the producer's counters, merged once it has finished
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		defer close(work)
		prodErr = produce(ctx, files, opts, work, &pst, total)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newDecoder(opts.Mapping, opts.Hot)
			for b := range work {
				d.decodeBatch(b)
				select {
				case done <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	var qenc *json.Encoder
	if opts.Quarantine != nil {
		qenc = json.NewEncoder(opts.Quarantine)
	}
	pending := map[int]*batch{}
	next := 0
	var emitErr error
	// Stop collecting on cancel too: a reader blocked in a read keeps
	// the workers and so done open.
collect:
	for {
		var b *batch
		select {
		case x, ok := <-done:
			if !ok {
				break collect
			}
			b = x
		case <-ctx.Done():
			break collect
		}
		pending[b.seq] = b
		for {
			nb, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if emitErr != nil {
				continue
			}
			st.Records += int64(len(nb.recs))
			for i, r := range nb.rejects {
				st.Quarantined++
				st.Reasons[nb.reasons[i]]++
				if qenc != nil {
					if err := qenc.Encode(r); err != nil {
						emitErr = fmt.Errorf("writing quarantine: %w", err)
						cancel()
						break
					}
				}
			}
			for _, e := range nb.events {
				if emitErr != nil {
					break
				}
				st.Events++
				st.Sources[e.Source]++
				if err := emit(e); err != nil {
					emitErr = err
					cancel()
				}
			}
		}
	}
	// The reader may be blocked in a read that never returns (stdin on an
	// open pipe); once cancelled, do not wait for it.
	select {
	case <-prodDone:
		st.Files, st.Bytes = pst.Files, pst.Bytes
		if emitErr != nil {
			return st, emitErr
		}
		if prodErr != nil {
			return st, prodErr
		}
	case <-ctx.Done():
		if emitErr != nil {
			return st, emitErr
		}
	}
	return st, ctx.Err()
}

// produce frames every file into batches.
func produce(ctx context.Context, files []string, opts Options, work chan<- *batch, st *Stats, total int64) error {
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
	// On a failure, what was framed before it is emitted still.
	fail := func(err error) error {
		if ferr := flush(); ferr != nil {
			return ferr
		}
		return err
	}
	for _, f := range files {
		var r io.Reader
		if f == "-" {
			r = opts.Stdin
			if r == nil {
				r = os.Stdin
			}
		} else {
			fh, err := os.Open(f)
			if err != nil {
				return fail(fmt.Errorf("input %s: %w", f, err))
			}
			r = fh
		}
		cr := &countingReader{r: r}
		br, closeZ, skipped, err := openInput(cr)
		if err != nil {
			if c, ok := r.(io.Closer); ok && f != "-" {
				_ = c.Close()
			}
			return fail(fmt.Errorf("input %s: %w", f, err))
		}
		st.Files++
		err = frame(f, br, func(rec rawRecord) error {
			rec.offset += skipped
			cur.recs = append(cur.recs, rec)
			size += len(rec.raw)
			bytesRead = st.Bytes + cr.n
			if len(cur.recs) >= batchRecords || size >= chunkSize {
				return flush()
			}
			return nil
		})
		st.Bytes += cr.n
		bytesRead = st.Bytes
		_ = closeZ()
		if c, ok := r.(io.Closer); ok && f != "-" {
			_ = c.Close()
		}
		if err != nil {
			return fail(fmt.Errorf("input %s: %w", f, err))
		}
	}
	return flush()
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
	arena   fastjson.Arena
	b       *event.Builder
	mapping *jsonl.Mapping
	cache   *record.Cache

	// Snapshot records (inbox rules) carry no time; they get the time
	// they were observed (observedAt).
	start            time.Time // when the decoder was made
	observed         time.Time // set by Decoder.SetObserved
	obsFile          string    // the file obsTime is the modification time of
	obsTime          time.Time
	obsStatAttempted bool
}

func newDecoder(m *jsonl.Mapping, hot []event.Sym) *decoder {
	d := &decoder{b: event.NewBuilder(), mapping: m, cache: record.NewCache(), start: time.Now().UTC()}
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

func (d *decoder) decodeBatch(b *batch) {
	for i := range b.recs {
		r := &b.recs[i]
		if err := d.decodeRecord(r, &b.events); err != nil {
			cat := "decode error"
			var re *rejectErr
			if errors.As(err, &re) {
				cat = re.category
			}
			b.rejects = append(b.rejects, Reject{File: r.file, Line: r.line, Offset: r.offset, Index: r.index,
				Reason: err.Error(), Record: string(r.raw)})
			b.reasons = append(b.reasons, cat)
			d.b.Reset()
		}
	}
	b.recs = b.recs[:len(b.recs):len(b.recs)]
}

func (d *decoder) origin(r *rawRecord) event.Origin {
	return event.Origin{File: r.file, Line: r.line, Offset: r.offset, Index: r.index}
}

func (d *decoder) decodeRecord(r *rawRecord, out *[]*event.Event) error {
	if r.err != nil {
		return reject("framing", r.err)
	}
	if r.csv != nil {
		return d.decodeCSV(r, out)
	}
	v, err := d.p.ParseBytes(r.raw)
	if err != nil {
		return reject("invalid JSON", err)
	}
	switch v.Type() {
	case fastjson.TypeObject:
	case fastjson.TypeArray:
		// A JSON-lines line holding an array of records.
		return d.decodeList(r, v.GetArray(), out)
	default:
		return reject("not an object", fmt.Errorf("record is a JSON %s", v.Type()))
	}
	if list, ok := envelope(v); ok {
		if len(list) == 0 {
			return nil // an empty page: nothing to decode, nothing wrong
		}
		return d.decodeList(r, list, out)
	}
	return d.decodeValue(r, v, r.raw, out)
}

// envelope returns the records of an API page ({"value":[...]}, Event Hub
// {"records":[...]}), and false when v is a record itself. The last page
// of a paged export may hold no records at all.
func envelope(v *fastjson.Value) ([]*fastjson.Value, bool) {
	o, _ := v.Object()
	if o.Len() > 4 {
		return nil, false
	}
	for _, k := range []string{"records", "value", "items"} {
		x := v.Get(k)
		if x == nil || x.Type() != fastjson.TypeArray {
			continue
		}
		list, _ := x.Array()
		if len(list) > 0 && list[0].Type() != fastjson.TypeObject {
			return nil, false
		}
		// Other keys must be paging metadata, not record fields.
		ok := true
		o.Visit(func(key []byte, _ *fastjson.Value) {
			ks := string(key)
			if ks != k && !strings.HasPrefix(ks, "@odata") && ks != "nextPageToken" && ks != "kind" && ks != "etag" {
				ok = false
			}
		})
		if ok {
			return list, true
		}
	}
	return nil, false
}

// decodeList decodes the elements of an envelope or array line. Each
// element's raw bytes are its compact JSON encoding, since the element is
// not separately addressable in the input.
func (d *decoder) decodeList(r *rawRecord, list []*fastjson.Value, out *[]*event.Event) error {
	if len(list) == 0 {
		return reject("empty envelope", errors.New("no records in the list"))
	}
	var errs []string
	for i, el := range list {
		if el.Type() != fastjson.TypeObject {
			errs = append(errs, fmt.Sprintf("element %d is a JSON %s", i, el.Type()))
			continue
		}
		raw := el.MarshalTo(nil)
		if err := d.decodeValue(r, el, raw, out); err != nil {
			d.b.Reset()
			errs = append(errs, fmt.Sprintf("element %d: %v", i, err))
		}
	}
	if len(errs) > 0 {
		return reject("bad element in list", errors.New(strings.Join(errs, "; ")))
	}
	return nil
}

// decodeValue detects the format of one record and decodes it; raw must
// be v's JSON. The event is flattened lazily, on its first lookup of a
// source field.
func (d *decoder) decodeValue(r *rawRecord, v *fastjson.Value, raw []byte, out *[]*event.Event) error {
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
		e.SetEager(d.cache.Eager(sh, v))
		return sh
	}
	if d.mapping != nil && d.mapping.Force {
		return d.generic(v, func(e *event.Event) { shape(e, nil); finish(e, jsonl.Flatten, 0) })
	}
	if gws.Detect(v) {
		if err := gws.Decode(v, func(e *event.Event, i int) { finish(e, gws.Flatten, i) }); err != nil {
			return reject("google workspace", err)
		}
		return nil
	}
	if kind := m365.Detect(v); kind != m365.None {
		e := &event.Event{}
		if err := m365.Decode(v, kind, e, d.cache); err != nil {
			return reject("m365 unified audit log", err)
		}
		sh := shape(e, m365.Hoisted(v))
		m365.Lazy(v, kind, sh, e, d.cache)
		finish(e, m365.Flatten, 0)
		return nil
	}
	if k := entra.Detect(v); k != entra.None {
		e := &event.Event{}
		if err := entra.Decode(v, k, e); err != nil {
			return reject("entra/azure", err)
		}
		shape(e, entra.Hoisted(v))
		finish(e, entra.Flatten, 0)
		return nil
	}
	if inboxrule.Detect(v) {
		e := &event.Event{}
		if err := inboxrule.Decode(v, d.observedAt(r.file), e); err != nil {
			return reject("inbox rule snapshot", err)
		}
		finish(e, inboxrule.Flatten, 0)
		return nil
	}
	return d.generic(v, func(e *event.Event) { shape(e, nil); finish(e, jsonl.Flatten, 0) })
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
		ad, err := d.p.Parse(cell)
		if err != nil {
			return reject("purview CSV", fmt.Errorf("AuditData is not JSON: %w", err))
		}
		if m365.Detect(ad) != m365.ManagementAPI {
			return reject("purview CSV", errors.New("AuditData is not a unified audit log record (no CreationTime/Operation/RecordType)"))
		}
		return d.decodeValue(r, ad, []byte(cell), out)
	}
	d.arena.Reset()
	v := csvObject(&d.arena, r.csv, r.row)
	return d.decodeValue(r, v, v.MarshalTo(nil), out)
}

// Decoder decodes single records held in memory, such as records replayed
// from the journal. It is not safe for concurrent use; use one per
// goroutine.
type Decoder struct{ d *decoder }

// NewDecoder returns a Decoder; m and hot may be nil (see Options).
func NewDecoder(m *jsonl.Mapping, hot []event.Sym) *Decoder { return &Decoder{d: newDecoder(m, hot)} }

// SetObserved sets the time given to records that carry none of their own
// (inventory snapshots such as inbox rules), e.g. when a journal entry was
// received; the zero time restores the default (the modification time of
// the record's file, else the time the Decoder was made).
func (x *Decoder) SetObserved(t time.Time) { x.d.observed = t }

// Decode decodes one JSON record (an object, an array of records or an
// envelope) into events. origin says where it came from. The events keep
// raw as their Raw bytes, so raw must not be modified afterwards.
func (x *Decoder) Decode(raw []byte, origin event.Origin) ([]*event.Event, error) {
	r := rawRecord{raw: raw, file: origin.File, line: origin.Line, offset: origin.Offset, index: origin.Index}
	var out []*event.Event
	if err := x.d.decodeRecord(&r, &out); err != nil {
		x.d.b.Reset()
		return nil, err
	}
	return out, nil
}
