package source

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/valyala/fastjson"
)

// csvKind is what a CSV export holds, decided from its header.
type csvKind int

const (
	csvGeneric csvKind = iota // columns become fields; the row is detected like JSON
	csvPurview                // Purview / Search-UnifiedAuditLog export
)

type csvHeader struct {
	cols      []string
	kind      csvKind
	auditData int // column of AuditData in a Purview export
}

func newCSVHeader(cols []string) *csvHeader {
	h := &csvHeader{cols: cols}
	has := map[string]bool{}
	for i, c := range cols {
		has[c] = true
		if c == "AuditData" {
			h.auditData = i
		}
	}
	if has["AuditData"] && (has["CreationDate"] || has["Operations"] || has["Operation"]) {
		h.kind = csvPurview
	}
	return h
}

// errRowTooLarge stops the CSV reader inside a row past the maximum
// record size.
var errRowTooLarge = errors.New("row too large")

// rowTee passes input to the CSV reader and keeps what it passed since
// the start of the current row, so each row keeps its exact bytes. It
// fails a row that grows past limit bytes.
type rowTee struct {
	r     io.Reader
	buf   []byte // input from offset base on
	base  int64
	limit int
}

func (t *rowTee) Read(p []byte) (int, error) {
	if len(t.buf) > t.limit {
		return 0, errRowTooLarge
	}
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// span returns the input bytes [start, end).
func (t *rowTee) span(start, end int64) []byte { return t.buf[start-t.base : end-t.base] }

// drop forgets the input before offset at.
func (t *rowTee) drop(at int64) {
	k := int(at - t.base)
	n := copy(t.buf, t.buf[k:])
	t.buf = t.buf[:n]
	t.base = at
}

// csv reads a CSV export with a header row, streaming. Each row keeps its
// exact bytes as its raw record. A row past the maximum record size is
// quarantined with its start; framing resumes at the next line.
func (f *framer) csv(br *bufio.Reader) error {
	maxRec := f.lim.MaxRecordBytes
	tee := &rowTee{r: br, limit: maxRec + 64<<10}
	r := newCSVReader(tee)
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, errRowTooLarge) {
			err = fmt.Errorf("no header row within the maximum record size (%d bytes)", maxRec)
		} else if !errors.As(err, new(*csv.ParseError)) && err != io.EOF {
			return &cutError{line: 1, err: err}
		}
		return f.emit(rawRecord{raw: prefix(firstLine(tee.buf)), line: 1,
			err: fmt.Errorf("not JSON, and not CSV with a header row: %w; the rest of the input is not read", err)})
	}
	header = slices.Clone(header)
	for i := range header {
		header[i] = strings.TrimSpace(header[i])
	}
	if len(header) < 2 {
		return f.emit(rawRecord{raw: prefix(firstLine(tee.buf)), line: 1,
			err: errors.New("not JSON, and not CSV with a header row (fewer than two columns); the rest of the input is not read")})
	}
	f.header = newCSVHeader(header)
	next := 1 + bytes.Count(tee.span(0, r.InputOffset()), []byte{'\n'})
	tee.drop(r.InputOffset())
	return f.rows(br, tee, r, 0, 0, next)
}

// csvFrom frames the rows of a CSV input whose header f.header holds
// from br on, br starting at offset, on line line, where a row starts.
func (f *framer) csvFrom(br *bufio.Reader, offset int64, line int) error {
	tee := &rowTee{r: br, base: offset, limit: f.lim.MaxRecordBytes + 64<<10}
	return f.rows(br, tee, newCSVReader(tee), offset, line-1, line)
}

// rows frames CSV rows read by r from tee (which reads br), r's input
// starting at offset base, after lines lines; next is the line the next
// row starts on: one more than the newlines read so far (a too-large row
// cannot ask the reader).
func (f *framer) rows(br *bufio.Reader, tee *rowTee, r *csv.Reader, base int64, lines, next int) error {
	maxRec := f.lim.MaxRecordBytes
	h, header := f.header, f.header.cols
	var arena []byte // the rows of a batch share it
	for {
		start := base + r.InputOffset()
		if f.mark != nil {
			f.mark(start, next)
		}
		row, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errRowTooLarge) {
			line := next
			n, nl, serr := skipLine(br)
			size := int64(len(tee.buf)) - (start - tee.base) + n
			if ferr := f.emit(rawRecord{raw: prefix(tee.buf[start-tee.base:]), line: line, offset: start,
				err: reject("record too large", tooLarge(size, maxRec, serr == nil || serr == io.EOF))}); ferr != nil {
				return ferr
			}
			if serr == io.EOF || !nl {
				if serr == io.EOF {
					return nil
				}
				return &cutError{offset: start + size, err: serr}
			}
			// Resume at the next line with a fresh reader.
			base = start + size + 1
			next += bytes.Count(tee.buf[start-tee.base:], []byte{'\n'}) + 1
			lines = next - 1
			tee = &rowTee{r: br, base: base, limit: tee.limit}
			r = newCSVReader(tee)
			continue
		}
		if err != nil && !errors.As(err, new(*csv.ParseError)) {
			return &cutError{offset: start, err: err}
		}
		end := base + r.InputOffset()
		next += bytes.Count(tee.span(start, end), []byte{'\n'})
		raw := bytes.TrimRight(tee.span(start, end), "\r\n")
		if len(arena)+len(raw) > cap(arena) {
			arena = make([]byte, 0, max(f.chunkSize(), len(raw)))
		}
		arena = append(arena, raw...)
		raw = arena[len(arena)-len(raw) : len(arena) : len(arena)]
		tee.drop(end)
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				// The reader counts from where it started (the input, or
				// where framing resumed): say the input's lines.
				pe.StartLine += lines
				pe.Line += lines
				line = pe.StartLine
			}
			if ferr := f.emit(rawRecord{raw: raw, line: line, offset: start, err: fmt.Errorf("malformed CSV row: %w", err)}); ferr != nil {
				return ferr
			}
			continue
		}
		line, _ := r.FieldPos(0)
		rec := rawRecord{raw: raw, line: lines + line, offset: start, csv: h, row: row}
		switch {
		case len(row) != len(header):
			rec.err = fmt.Errorf("CSV row has %d columns, the header has %d", len(row), len(header))
		case len(raw) > maxRec:
			rec.raw, rec.err = prefix(raw), reject("record too large", tooLarge(int64(len(raw)), maxRec, true))
		}
		if err := f.emit(rec); err != nil {
			return err
		}
	}
}

func newCSVReader(r io.Reader) *csv.Reader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	return cr
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

// csvObject turns a row into a JSON object of strings, so generic and risk
// rows go through the same detection and decoders as JSON records.
func csvObject(a *fastjson.Arena, h *csvHeader, row []string) *fastjson.Value {
	o := a.NewObject()
	for i, c := range h.cols {
		if i < len(row) {
			o.Set(c, a.NewString(row[i]))
		}
	}
	return o
}
