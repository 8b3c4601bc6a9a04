package source

// Reading an input back to front. Exports of the unified audit log
// (Purview's CSV and JSON, the Graph API's pages) are newest first;
// detection wants oldest first. Such an input is read as an in-order run
// from its end, every record decoded once, instead of being sorted.
//
// The records must be exactly those the forward read frames (with the
// same file, line, offset and index, the same rejects), only in the
// opposite order. So nothing is framed backwards: one pass frames the
// input forwards without decoding it and notes, about every segmentBytes,
// a point where framing can start again with the same records to follow
// (framer.mark: a line start, a value's start, a CSV row's start). The
// input is then read segment by segment from the last, each segment
// framed forwards from its point by the same code as the forward read and
// its records handed on in reverse. Memory holds one segment's records
// and the points (24 bytes each, at most maxPoints).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// segmentBytes is the least input between two points framing starts again
// at, when an input is read back to front.
const segmentBytes = 1 << 20

// maxPoints bounds the points kept for an input read back to front: past
// it every other one is dropped, which doubles the segments' size.
const maxPoints = 1 << 16

// probeRecords is how many records from each end of an input its probe
// decodes, at most, to find one with a time.
const probeRecords = 4

// probeWindow is how much of an input's end its probe reads first; a
// last record longer than that is looked for in up to the maximum record
// size.
const probeWindow = 1 << 20

// ErrNotReversible says an input is newest first but cannot be read back
// to front: read the inputs sorted instead.
var ErrNotReversible = errors.New("newest first, and cannot be read back to front")

// point is where framing can start again: the offset and line of a
// record's start, and the index of that record.
type point struct {
	offset int64
	line   int
	index  int
}

// reversal is how one input is read back to front: what its forward
// framing found, and the points it is read from.
type reversal struct {
	file    string
	skipped int64 // bytes before the content (a UTF-8 BOM)
	size    int64 // content bytes framed
	mode    frameMode
	inArray bool
	header  *csvHeader
	points  []point
}

// reversible reports whether an input is read back to front: a regular,
// uncompressed file whose first record with a time is newer than its last
// one (probe). It then frames the input once, without decoding, for the
// points to read it from; an input that cannot be read so is an error
// wrapping ErrNotReversible. It returns nil for inputs read forwards.
func reversible(file string, opts Options) (*reversal, error) {
	desc, err := probe(file, opts)
	if err != nil || !desc {
		return nil, nil // read forwards: the read reports what is wrong
	}
	rv, err := index(file, opts.Limits, segmentBytes)
	if err != nil {
		return nil, fmt.Errorf("%s is %w: %w", file, ErrNotReversible, err)
	}
	return rv, nil
}

// errProbed stops a probe's framing.
var errProbed = errors.New("probed")

// probe says whether file's first record with a time is newer than its
// last one, decoding at most probeRecords records at each end. Compressed
// inputs and anything it cannot judge are not (read forwards).
func probe(file string, opts Options) (bool, error) {
	fh, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false, err
	}
	var magic [4]byte
	n, _ := io.ReadFull(fh, magic[:])
	if isZip(magic[:n]) || n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return false, nil // gzip and zip cannot be read backwards cheaply
	}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	br, _, _, err := openInput(fh, opts.Limits, nil)
	if err != nil {
		return false, err
	}
	dec := newDecoder(opts.Mapping, nil, opts.Limits)
	dec.format, dec.observed = opts.Format, opts.Observed
	var head time.Time
	tries := 0
	f := &framer{file: file, lim: opts.Limits.withDefaults()}
	f.fn = func(r rawRecord) error {
		head = timeOf(dec, &r)
		if tries++; !head.IsZero() || tries >= probeRecords {
			return errProbed
		}
		return nil
	}
	if err := f.frame(br); err != nil && !errors.Is(err, errProbed) {
		return false, nil
	}
	if head.IsZero() {
		return false, nil
	}
	tail, err := tailTime(fh, fi.Size(), f, dec)
	if err != nil || tail.IsZero() {
		return false, err
	}
	return head.After(tail), nil
}

// timeOf decodes r and returns the time of its first event with one.
func timeOf(dec *decoder, r *rawRecord) time.Time {
	var c collect
	dec.decodeRecord(r, &c)
	for _, e := range c.events {
		if !e.Time.IsZero() {
			return e.Time
		}
	}
	return time.Time{}
}

// tailTime is the time of the last of (at most probeRecords of) the last
// records of an input framed like f's, found in its last bytes: lines for
// JSON lines and CSV, the last objects for structural JSON.
func tailTime(fh *os.File, size int64, f *framer, dec *decoder) (time.Time, error) {
	for window := int64(probeWindow); ; window = int64(f.lim.MaxRecordBytes) + probeWindow {
		start := max(size-window, 0)
		b := make([]byte, size-start)
		if _, err := fh.ReadAt(b, start); err != nil && err != io.EOF {
			return time.Time{}, err
		}
		var recs [][]byte
		if f.mode == modeStructural {
			recs = lastValues(b, probeRecords)
		} else {
			recs = lastLines(b, start == 0, probeRecords)
		}
		for _, raw := range recs {
			r := rawRecord{raw: raw, file: f.file, offset: start + int64(cap(b)-cap(raw))}
			if f.mode == modeCSV {
				row, err := csv.NewReader(bytes.NewReader(raw)).Read()
				if err != nil || len(row) != len(f.header.cols) {
					continue
				}
				r.csv, r.row = f.header, row
			}
			if t := timeOf(dec, &r); !t.IsZero() {
				return t, nil
			}
		}
		if len(recs) > 0 || start == 0 || window > int64(f.lim.MaxRecordBytes) {
			return time.Time{}, nil
		}
	}
}

// lastLines returns up to n of the last non-blank lines of b, last first;
// b's first line is left out unless whole says b starts the input.
func lastLines(b []byte, whole bool, n int) [][]byte {
	var out [][]byte
	for len(out) < n {
		i := bytes.LastIndexByte(b, '\n')
		if i < 0 && !whole {
			break
		}
		l := bytes.TrimRight(b[i+1:], "\r")
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
		if i < 0 {
			break
		}
		b = b[:i]
	}
	return out
}

// lastValues returns up to n of the last objects of b, last first: the
// elements at the end of a top-level array, or the last of concatenated
// objects. It matches braces backwards, skipping strings; what it finds
// is only a guess the decoder judges.
func lastValues(b []byte, n int) [][]byte {
	var out [][]byte
	i := len(b) - 1
	skip := func() {
		for i >= 0 && (isSpace(b[i]) || b[i] == ',') {
			i--
		}
	}
	skip()
	if i >= 0 && b[i] == ']' {
		i--
	}
	for len(out) < n {
		skip()
		if i < 0 || b[i] != '}' {
			break
		}
		end, depth := i+1, 0
	scan:
		for ; i >= 0; i-- {
			switch b[i] {
			case '"':
				if i = openingQuote(b, i); i < 0 {
					break scan
				}
			case '}', ']':
				depth++
			case '{', '[':
				if depth--; depth == 0 {
					break scan
				}
			}
		}
		if i < 0 {
			break
		}
		out = append(out, b[i:end])
		i--
	}
	return out
}

// openingQuote returns where the string that ends with the quote at b[i]
// starts, -1 if not in b.
func openingQuote(b []byte, i int) int {
	for i--; i >= 0; i-- {
		if b[i] == '"' && !escaped(b, i) {
			return i
		}
	}
	return -1
}

// escaped reports whether the quote at b[i] is escaped: preceded by an
// odd number of backslashes.
func escaped(b []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// index frames file forwards, decoding nothing, and returns the points,
// at least seg bytes apart, to read it back to front from.
func index(file string, lim Limits, seg int64) (*reversal, error) {
	lim = lim.withDefaults()
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	cr := &countingReader{r: fh}
	br, _, skipped, err := openInput(cr, lim, nil)
	if err != nil {
		return nil, err
	}
	rv := &reversal{file: file, skipped: skipped}
	f := &framer{file: file, lim: lim, discard: true}
	last := int64(0)
	f.mark = func(off int64, line int) {
		if len(rv.points) > 0 && off-last < seg {
			return
		}
		rv.points = append(rv.points, point{offset: off, line: line, index: f.index})
		last = off
		if len(rv.points) > maxPoints {
			// Every other one: the segments double.
			k := 0
			for i := 0; i < len(rv.points); i += 2 {
				rv.points[k] = rv.points[i]
				k++
			}
			rv.points = rv.points[:k]
			seg *= 2
		}
	}
	f.fn = func(r rawRecord) error {
		if len(rv.points) == 0 {
			return fmt.Errorf("record %d (line %d) is framed before any record starts: %v", r.index, r.line, r.err)
		}
		var re *rejectErr
		if f.mode != modeStructural && errors.As(r.err, &re) && re.category == "record too large" {
			// Past its limit a CSV row is skipped to the end of the line
			// the reader stopped in, and a JSON line is judged as it is
			// when its end is in the chunk read or not: both depend on how
			// far the read had got, so framing from another point could
			// frame otherwise.
			return fmt.Errorf("line %d: a record larger than the maximum record size", r.line)
		}
		return nil
	}
	if err := f.frame(br); err != nil {
		return nil, err
	}
	// Framing stops at the end of the input only.
	rv.mode, rv.inArray, rv.header = f.mode, f.inArray, f.header
	rv.size = cr.n - skipped
	return rv, nil
}

// read frames the input from its last segment to its first, handing
// each segment's records to add in reverse, and says how many bytes it
// framed. A read error quarantines the part not read, as the forward read
// does: the segments after it were read, the rest is not.
func (rv *reversal) read(ctx context.Context, lim Limits, st *Stats, add func(rawRecord) error, read func(int64)) error {
	lim = lim.withDefaults()
	st.Files++
	fh, err := os.Open(rv.file)
	if err != nil {
		return rv.damaged(st, add, rv.size, err)
	}
	defer fh.Close()
	st.Bytes += rv.skipped
	br := bufio.NewReaderSize(nil, 64<<10)
	var recs []rawRecord
	for i := len(rv.points) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := rv.points[i]
		end := rv.size
		if i+1 < len(rv.points) {
			end = rv.points[i+1].offset
		}
		br.Reset(io.NewSectionReader(fh, rv.skipped+p.offset, end-p.offset))
		recs = recs[:0]
		// One buffer holds the segment's records, and one more byte, so the
		// read sees the segment's end without asking for another.
		f := &framer{file: rv.file, lim: lim, index: p.index, segment: i+1 < len(rv.points), header: rv.header,
			chunk: int(end-p.offset) + 1,
			fn: func(r rawRecord) error {
				r.offset += rv.skipped
				recs = append(recs, r)
				return nil
			}}
		var err error
		switch rv.mode {
		case modeLines:
			err = f.lines(br, p.offset, p.line)
		case modeStructural:
			err = f.values(&stream{br: br, off: p.offset, line: p.line, arena: make([]byte, 0, 64<<10)}, rv.inArray)
		case modeCSV:
			err = f.csvFrom(br, p.offset, p.line)
		}
		if err != nil {
			return rv.damaged(st, add, end, err)
		}
		for j := len(recs) - 1; j >= 0; j-- {
			if err := add(recs[j]); err != nil {
				return err
			}
		}
		st.Bytes += end - p.offset
		read(end - p.offset)
	}
	return nil
}

// damaged quarantines the part of the input before offset end, not read,
// and lists it.
func (rv *reversal) damaged(st *Stats, add func(rawRecord) error, end int64, err error) error {
	reason := err.Error()
	st.Damaged = append(st.Damaged, Damage{File: rv.file, Read: rv.size - end, Reason: reason, Backwards: true})
	return add(rawRecord{file: rv.file, offset: rv.skipped + end,
		err: reject("damaged input", fmt.Errorf("input not read to its end: %s; read back to front, records were framed from its last %d bytes, the first %d bytes are not read", reason, rv.size-end, rv.skipped+end))})
}
