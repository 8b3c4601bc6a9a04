package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fastjson"
)

// rawRecord is one framed record, not yet decoded.
type rawRecord struct {
	raw    []byte
	file   string
	line   int
	offset int64
	index  int
	csv    *csvHeader // non-nil for CSV rows
	row    []string
	// err is set when framing itself failed for this stretch of input; the
	// record is quarantined with this reason.
	err error
}

// frameFn receives framed records; returning an error stops the file.
type frameFn func(r rawRecord) error

var bom = []byte{0xEF, 0xBB, 0xBF}

// openInput wraps r with gzip when it starts with the gzip magic and skips
// a UTF-8 BOM; skipped is how many bytes that was, so offsets can still
// count from the start of the (decompressed) input.
func openInput(r io.Reader) (br *bufio.Reader, closer func() error, skipped int64, err error) {
	br = bufio.NewReaderSize(r, 1<<20)
	closer = func() error { return nil }
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, 0, err // already says "gzip: ..."
		}
		closer = zr.Close
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	if b, _ := br.Peek(3); bytes.Equal(b, bom) {
		_, _ = br.Discard(3)
		skipped = 3
	}
	return br, closer, skipped, nil
}

// frame splits one input into records and calls fn for each.
func frame(file string, br *bufio.Reader, fn frameFn) error {
	first, err := firstByte(br)
	if err == io.EOF {
		return nil // empty file: nothing to decode
	}
	if err != nil {
		return err
	}
	switch first {
	case '[', '{':
		// A first line that is a whole JSON value means JSON lines (a
		// one-line array or envelope is fine too: its elements are
		// expanded later); otherwise the value spans lines.
		line, whole := peekLine(br)
		if !whole {
			// The first line does not fit the buffer: read it whole to
			// decide, then frame it along with the rest.
			var head []byte
			for {
				l, err := br.ReadBytes('\n')
				head = append(head, l...)
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(l)) > 0 {
					break
				}
			}
			line = head
			br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), br), br.Size())
		}
		if validJSON(line) {
			return frameLines(file, br, fn)
		}
		return frameStructural(file, br, fn)
	default:
		return frameCSV(file, br, fn)
	}
}

func firstByte(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		c := b[n-1]
		if !isSpace(c) {
			return c, nil
		}
		if n >= br.Size() {
			return 0, errors.New("no content in the first megabyte")
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// peekLine returns the first non-blank line without consuming it; whole
// is false when the line is longer than br's buffer and b is only its
// start.
func peekLine(br *bufio.Reader) (b []byte, whole bool) {
	for n := 4096; ; n *= 2 {
		if n > br.Size() {
			n = br.Size()
		}
		b, err := br.Peek(n)
		b = bytes.TrimLeft(b, " \t\r\n")
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i], true
		}
		if err != nil {
			return b, true // the input's only line
		}
		if n == br.Size() {
			return b, false
		}
	}
}

// chunkSize is how much JSON-lines input one batch of records shares.
const chunkSize = 1 << 20

// frameLines splits JSON lines. Lines are sliced from large chunks so a
// batch of records costs one allocation.
func frameLines(file string, br *bufio.Reader, fn frameFn) error {
	var (
		offset int64
		line   = 1
		index  int
		carry  []byte
	)
	for {
		chunk := make([]byte, len(carry), len(carry)+chunkSize)
		copy(chunk, carry)
		n, rerr := fill(br, chunk[len(carry):cap(chunk)])
		chunk = chunk[:len(carry)+n]
		eof := rerr == io.EOF
		end := len(chunk)
		if !eof {
			// On a read error the complete lines before it are framed
			// still, then the error is returned.
			end = bytes.LastIndexByte(chunk, '\n') + 1
			if end == 0 && rerr == nil {
				// A single line longer than the chunk: keep reading.
				carry = chunk
				continue
			}
		}
		body := chunk[:end]
		carry = append([]byte(nil), chunk[end:]...)
		for len(body) > 0 {
			i := bytes.IndexByte(body, '\n')
			var l []byte
			if i < 0 {
				l, body = body, nil
			} else {
				l, body = body[:i], body[i+1:]
			}
			start := offset
			offset += int64(len(l))
			if i >= 0 {
				offset++
			}
			t := bytes.TrimRight(l, "\r")
			if len(bytes.TrimSpace(t)) > 0 {
				if err := fn(rawRecord{raw: t, file: file, line: line, offset: start, index: index}); err != nil {
					return err
				}
				index++
			}
			line++
		}
		if eof {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// fill reads until p is full or the reader fails. Unlike io.ReadFull it
// returns the reader's own error: io.ErrUnexpectedEOF from a truncated
// gzip stream must not pass for a short last chunk.
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// frameStructural reads the whole input and splits it into JSON values:
// the elements of a top-level array, or each of a series of concatenated
// (possibly pretty-printed) values.
func frameStructural(file string, br *bufio.Reader, fn frameFn) error {
	data, err := io.ReadAll(br)
	if err != nil {
		return err
	}
	s := scanner{data: data, line: 1}
	s.skipSpace()
	inArray := false
	if s.pos < len(data) && data[s.pos] == '[' {
		inArray = true
		s.advance(1)
	}
	index := 0
	for {
		s.skipSpace()
		if inArray && s.pos < len(data) && data[s.pos] == ',' {
			s.advance(1)
			s.skipSpace()
		}
		if s.pos >= len(data) {
			if inArray {
				return fn(rawRecord{file: file, line: s.line, offset: int64(s.pos), index: index,
					err: errors.New("truncated JSON: the top-level array is not closed")})
			}
			return nil
		}
		if inArray && data[s.pos] == ']' {
			s.advance(1)
			s.skipSpace()
			if s.pos < len(data) {
				return fn(rawRecord{raw: data[s.pos:], file: file, line: s.line, offset: int64(s.pos), index: index,
					err: errors.New("trailing data after the top-level array")})
			}
			return nil
		}
		start, line := s.pos, s.line
		if err := s.value(); err != nil {
			// Framing lost: everything from here is quarantined as one piece.
			return fn(rawRecord{raw: data[start:], file: file, line: line, offset: int64(start), index: index, err: err})
		}
		if err := fn(rawRecord{raw: data[start:s.pos], file: file, line: line, offset: int64(start), index: index}); err != nil {
			return err
		}
		index++
	}
}

// scanner finds the end of JSON values without decoding them.
type scanner struct {
	data []byte
	pos  int
	line int
}

func (s *scanner) advance(n int) {
	for i := 0; i < n && s.pos < len(s.data); i++ {
		if s.data[s.pos] == '\n' {
			s.line++
		}
		s.pos++
	}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.advance(1)
	}
}

// value moves past one JSON value; it checks nesting and strings only,
// leaving full validation to the decoder.
func (s *scanner) value() error {
	if s.pos >= len(s.data) {
		return errors.New("truncated JSON")
	}
	switch c := s.data[s.pos]; c {
	case '{', '[':
		depth := 0
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case '"':
				if err := s.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.advance(1)
					return nil
				}
			case '\n':
				s.line++
			}
			s.pos++
		}
		return errors.New("truncated JSON: unbalanced braces")
	case '"':
		return s.str()
	case ',', ']', '}':
		return fmt.Errorf("invalid JSON: unexpected %q", c)
	default:
		for s.pos < len(s.data) && !isSpace(s.data[s.pos]) && s.data[s.pos] != ',' && s.data[s.pos] != ']' && s.data[s.pos] != '}' {
			s.pos++
		}
		return nil
	}
}

func (s *scanner) str() error {
	s.pos++ // opening quote
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\\':
			s.pos += 2
			continue
		case '"':
			s.pos++
			return nil
		case '\n':
			return errors.New("invalid JSON: newline inside a string")
		}
		s.pos++
	}
	return errors.New("truncated JSON: unterminated string")
}

// validJSON reports whether b holds one complete JSON value.
func validJSON(b []byte) bool {
	return fastjson.ValidateBytes(bytes.TrimSpace(b)) == nil
}
