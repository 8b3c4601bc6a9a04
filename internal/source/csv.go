package source

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
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

// frameCSV reads a CSV export with a header row. Each row keeps its exact
// bytes as its raw record.
func frameCSV(file string, br *bufio.Reader, fn frameFn) error {
	data, err := io.ReadAll(br)
	if err != nil {
		return err
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return fn(rawRecord{raw: firstLine(data), file: file, line: 1, err: fmt.Errorf("not JSON, and not CSV with a header row: %w", err)})
	}
	for i := range header {
		header[i] = strings.TrimSpace(header[i])
	}
	if len(header) < 2 {
		return fn(rawRecord{raw: firstLine(data), file: file, line: 1,
			err: errors.New("not JSON, and not CSV with a header row (fewer than two columns)")})
	}
	h := newCSVHeader(header)
	index := 0
	for {
		start := r.InputOffset()
		line := 0
		row, err := r.Read()
		if err == io.EOF {
			return nil
		}
		end := r.InputOffset()
		raw := bytes.TrimRight(data[start:end], "\r\n")
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			if ferr := fn(rawRecord{raw: raw, file: file, line: line, offset: start, index: index, err: fmt.Errorf("malformed CSV row: %w", err)}); ferr != nil {
				return ferr
			}
			index++
			continue
		}
		line, _ = r.FieldPos(0)
		rec := rawRecord{raw: raw, file: file, line: line, offset: start, index: index, csv: h, row: row}
		if len(row) != len(header) {
			rec.err = fmt.Errorf("CSV row has %d columns, the header has %d", len(row), len(header))
		}
		if err := fn(rec); err != nil {
			return err
		}
		index++
	}
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
