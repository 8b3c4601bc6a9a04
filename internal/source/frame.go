package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// cutError is a read error inside an input: what was framed before it
// stands, the rest of the input is not read. offset and line say where
// the part not framed starts.
type cutError struct {
	offset int64
	line   int
	err    error
}

func (e *cutError) Error() string { return e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

var bom = []byte{0xEF, 0xBB, 0xBF}

// framer splits one (decompressed) input into records.
type framer struct {
	file  string
	lim   Limits
	fn    frameFn
	index int
	mode  frameMode // how frame split the input
	// mark, when set, is called where framing could start again with
	// the same records to follow: offset and line of a record's start
	// (before any blank lines or separators the record's framing skips),
	// with the framer's index then (see reverse.go).
	mark func(offset int64, line int)
	// segment says the input ends where a segment of a longer one does,
	// between two records: the end of a top-level array is not judged.
	segment bool
	header  *csvHeader // the CSV header, once read
	inArray bool       // structural: the values are a top-level array's
	// discard says fn keeps no record's bytes (it only counts them), so
	// buffers can be used again.
	discard bool
	// chunk, when set, replaces chunkSize for the buffers records are
	// sliced from: a segment read back to front fits one exactly.
	chunk int
}

// chunkSize is how much input the records of one buffer share.
func (f *framer) chunkSize() int {
	if f.chunk > 0 {
		return f.chunk
	}
	return chunkSize
}

// frameMode is how an input is split into records.
type frameMode int

const (
	modeNone       frameMode = iota // nothing to frame (empty input)
	modeLines                       // JSON lines
	modeStructural                  // a JSON array or concatenated (pretty-printed) values
	modeCSV                         // CSV with a header row
)

func (f *framer) emit(r rawRecord) error {
	r.file, r.index = f.file, f.index
	f.index++
	return f.fn(r)
}

// prefix returns the start of an over-long record for the quarantine.
func prefix(b []byte) []byte {
	if len(b) > recordPrefix {
		b = b[:recordPrefix]
	}
	return append([]byte(nil), b...)
}

// frame splits one input into records and calls fn for each.
func frame(file string, br *bufio.Reader, lim Limits, fn frameFn) error {
	f := &framer{file: file, lim: lim, fn: fn}
	return f.frame(br)
}

func (f *framer) frame(br *bufio.Reader) error {
	mode, br, err := chooseMode(br, f.lim)
	f.mode = mode
	switch {
	case err != nil:
		return err
	case mode == modeLines:
		return f.lines(br, 0, 1)
	case mode == modeStructural:
		return f.structural(br)
	case mode == modeCSV:
		return f.csv(br)
	}
	return nil // empty file: nothing to decode
}

// chooseMode says how the input br starts is split, and returns the
// reader to frame it from.
func chooseMode(br *bufio.Reader, lim Limits) (frameMode, *bufio.Reader, error) {
	first, err := firstByte(br)
	if err == io.EOF {
		return modeNone, br, nil
	}
	if err != nil {
		return modeNone, br, &cutError{err: err, line: 1}
	}
	switch first {
	case '[', '{':
		// A first line that is a whole JSON value of at most the maximum
		// record size means JSON lines (a one-line array or envelope is
		// fine too: its elements are expanded later); otherwise the value
		// spans lines, or is one line too long to be a record (a compact
		// export of a top-level array), and is framed value by value.
		line, whole := peekLine(br)
		if !whole {
			head, fits, err := readHead(br, lim.MaxRecordBytes)
			if err != nil {
				return modeNone, br, &cutError{err: err, line: 1}
			}
			br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), br), br.Size())
			if !fits {
				return modeStructural, br, nil
			}
			line = head
		}
		if len(line) <= lim.MaxRecordBytes && oneValue(line) {
			return modeLines, br, nil
		}
		return modeStructural, br, nil
	default:
		return modeCSV, br, nil
	}
}

// readHead reads through the first non-blank line, or more than maxRec
// bytes of it.
func readHead(br *bufio.Reader, maxRec int) (head []byte, fits bool, err error) {
	for {
		l, err := br.ReadSlice('\n')
		head = append(head, l...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if len(head) > maxRec {
				return head, false, nil
			}
			continue
		case err == io.EOF:
			return head, len(head) <= maxRec, nil
		case err != nil:
			return head, false, err
		}
		if len(bytes.TrimSpace(head)) > 0 {
			return head, len(head) <= maxRec, nil
		}
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

// oneValue reports whether b holds exactly one JSON value, judged by its
// structure only (the decoder validates); it keeps no stack, so no depth
// of nesting can exhaust it.
func oneValue(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return false
	}
	end := valueEnd(b, 0)
	return end > 0 && len(bytes.TrimSpace(b[end:])) == 0
}

// chunkSize is how much JSON-lines input one batch of records shares.
const chunkSize = 1 << 20

// lines splits JSON lines. Lines are sliced from large chunks so a batch
// of records costs one allocation; a line longer than a chunk grows its
// buffer by doubling (linear work), and one past the maximum record size
// is quarantined with its start and skipped.
func (f *framer) lines(br *bufio.Reader, offset int64, line int) error {
	var (
		carry  []byte
		maxRec = f.lim.MaxRecordBytes
	)
	var spare []byte // with f.discard, the last chunk, used again
	for {
		size := max(f.chunkSize(), len(carry))
		var chunk []byte
		if cap(spare) >= len(carry)+size {
			chunk = spare[:len(carry)]
		} else {
			chunk = make([]byte, len(carry), len(carry)+size)
			if f.discard {
				spare = chunk
			}
		}
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
				if len(chunk) <= maxRec {
					carry = chunk // a line longer than the chunk: keep reading
					continue
				}
				// Past the maximum: keep the start, skip to the line's end.
				if f.mark != nil {
					f.mark(offset, line)
				}
				skipped, nl, serr := skipLine(br)
				size := int64(len(chunk)) + skipped
				if err := f.emit(rawRecord{raw: prefix(chunk), line: line, offset: offset,
					err: reject("record too large", tooLarge(size, maxRec, serr == nil || serr == io.EOF))}); err != nil {
					return err
				}
				offset += size
				if nl {
					offset++
				}
				line++
				carry = nil
				if serr == io.EOF {
					return nil
				}
				if serr != nil {
					return &cutError{offset: offset, line: line, err: serr}
				}
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
				if f.mark != nil {
					f.mark(start, line)
				}
				r := rawRecord{raw: t, line: line, offset: start}
				if len(t) > maxRec {
					r.raw, r.err = prefix(t), reject("record too large", tooLarge(int64(len(t)), maxRec, true))
				}
				if err := f.emit(r); err != nil {
					return err
				}
			}
			line++
		}
		if eof {
			return nil
		}
		if rerr != nil {
			return &cutError{offset: offset, line: line, err: rerr}
		}
	}
}

// skipLine discards input through the next newline; n counts the bytes
// before it, nl says whether one was found.
func skipLine(br *bufio.Reader) (n int64, nl bool, err error) {
	for {
		b, err := br.ReadSlice('\n')
		n += int64(len(b))
		switch {
		case err == nil:
			return n - 1, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return n, false, err
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

// stream reads JSON values from a buffered reader without holding more
// than the value being read (and at most the maximum record size of it).
type stream struct {
	br    *bufio.Reader
	off   int64 // bytes consumed
	line  int
	arena []byte // the values of a batch share it
}

// buffered returns the bytes buffered, reading more when there are none;
// the error is returned only once nothing is left.
func (s *stream) buffered() ([]byte, error) {
	if s.br.Buffered() == 0 {
		if _, err := s.br.Peek(1); s.br.Buffered() == 0 {
			return nil, err
		}
	}
	b, _ := s.br.Peek(s.br.Buffered())
	return b, nil
}

func (s *stream) consume(n int, b []byte) {
	s.line += bytes.Count(b[:n], []byte{'\n'})
	s.off += int64(n)
	_, _ = s.br.Discard(n)
}

// skipSpace consumes whitespace and returns the next byte (unconsumed).
func (s *stream) skipSpace() (byte, error) {
	for {
		b, err := s.buffered()
		if len(b) == 0 {
			return 0, err
		}
		i := 0
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		s.consume(i, b)
		if i < len(b) {
			return b[i], nil
		}
	}
}

// value reads the JSON value starting at the next byte, which is not
// space. It returns its bytes (only the first ones when it is longer than
// maxRec; size says how long it was) or, when framing is lost, an error.
// A value nested deeper than maxDepth is read to the end of the line it
// reached that depth on, and returned with a depthError: its end cannot be
// trusted, and framing resumes on the next line (a line of a million '['
// would otherwise swallow every record after it).
func (s *stream) value(maxRec, maxDepth int) (raw []byte, size int64, err error) {
	if len(s.arena) > chunkSize {
		s.arena = make([]byte, 0, chunkSize)
	}
	start := len(s.arena)
	var (
		kind  byte
		depth int
		inStr bool
		esc   bool
		keep  = true
	)
	for {
		b, rerr := s.buffered()
		if len(b) == 0 {
			if rerr != nil && rerr != io.EOF {
				return nil, size, rerr
			}
			switch {
			case kind == 'x': // a number or literal ends with the input
			case inStr:
				return s.kept(start), size, framingError("truncated JSON: unterminated string")
			default:
				return s.kept(start), size, framingError("truncated JSON: unbalanced braces")
			}
			break
		}
		if kind == 0 {
			switch c := b[0]; c {
			case '{', '[':
				kind = '{'
			case '"':
				kind, inStr = '"', true
				s.take(b[:1], start, maxRec, &keep)
				s.consume(1, b)
				size++
				continue
			case ',', ']', '}':
				return nil, 0, framingError(fmt.Sprintf("invalid JSON: unexpected %q", c))
			default:
				kind = 'x'
			}
		}
		i, done := 0, false
	scan:
		for i < len(b) {
			c := b[i]
			if inStr {
				switch {
				case esc:
					esc = false
				case c == '\\':
					esc = true
				case c == '"':
					inStr = false
					if kind == '"' {
						i++
						done = true
						break scan
					}
				case c == '\n':
					s.take(b[:i], start, maxRec, &keep)
					s.consume(i, b)
					return s.kept(start), size + int64(i), framingError("invalid JSON: newline inside a string")
				}
				i++
				continue
			}
			switch kind {
			case '{':
				switch c {
				case '"':
					inStr = true
				case '{', '[':
					depth++
					if depth > maxDepth {
						s.take(b[:i], start, maxRec, &keep)
						s.consume(i, b)
						n, _, rerr := skipLine(s.br)
						s.off += n + 1
						s.line++
						if rerr != nil && rerr != io.EOF {
							return nil, size, rerr
						}
						return s.kept(start), size + int64(i) + n, depthError{maxDepth}
					}
				case '}', ']':
					depth--
					if depth == 0 {
						i++
						done = true
						break scan
					}
				}
			case 'x':
				if isSpace(c) || c == ',' || c == ']' || c == '}' {
					done = true
					break scan
				}
			}
			i++
		}
		s.take(b[:i], start, maxRec, &keep)
		s.consume(i, b)
		size += int64(i)
		if done {
			break
		}
	}
	return s.kept(start), size, nil
}

// take appends b to the value being read while it fits maxRec; past it, the
// value keeps its first bytes only.
func (s *stream) take(b []byte, start, maxRec int, keep *bool) {
	if !*keep {
		return
	}
	if len(s.arena)-start+len(b) > maxRec {
		*keep = false
		n := recordPrefix - (len(s.arena) - start)
		if n > 0 {
			s.arena = append(s.arena, b[:min(n, len(b))]...)
		}
		if len(s.arena)-start > recordPrefix {
			s.arena = s.arena[:start+recordPrefix]
		}
		return
	}
	s.arena = append(s.arena, b...)
}

// kept returns what the value being read keeps of its bytes.
func (s *stream) kept(start int) []byte {
	return s.arena[start:len(s.arena):len(s.arena)]
}

// rest consumes the input to its end and says how long it was.
func (s *stream) rest() (int64, error) {
	var n int64
	for {
		b, err := s.buffered()
		if len(b) == 0 {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		n += int64(len(b))
		s.consume(len(b), b)
	}
}

// structural reads the input as JSON values, streaming: the elements of
// a top-level array, or each of a series of concatenated (possibly
// pretty-printed) values. Framing needs no more memory than the largest
// record it keeps.
func (f *framer) structural(br *bufio.Reader) error {
	s := &stream{br: br, line: 1, arena: make([]byte, 0, 64<<10)}
	cut := func(err error) error { return &cutError{offset: s.off, line: s.line, err: err} }
	c, err := s.skipSpace()
	if err != nil && err != io.EOF {
		return cut(err)
	}
	inArray := c == '['
	if inArray {
		s.consume(1, []byte{c})
	}
	f.inArray = inArray
	return f.values(s, inArray)
}

// values frames the values of a structural input from s on, inside its
// top-level array or not.
func (f *framer) values(s *stream, inArray bool) error {
	maxRec := f.lim.MaxRecordBytes
	cut := func(err error) error { return &cutError{offset: s.off, line: s.line, err: err} }
	for {
		c, err := s.skipSpace()
		if inArray && err == nil && c == ',' {
			s.consume(1, []byte{c})
			c, err = s.skipSpace()
		}
		if err == io.EOF {
			if inArray && !f.segment {
				return f.emit(rawRecord{line: s.line, offset: s.off,
					err: errors.New("truncated JSON: the top-level array is not closed")})
			}
			return nil
		}
		if err != nil {
			return cut(err)
		}
		if inArray && c == ']' {
			s.consume(1, []byte{c})
			if c, err := s.skipSpace(); err == nil {
				start, line := s.off, s.line
				raw, _, _ := s.value(recordPrefix, f.lim.MaxDepth)
				n, rerr := s.rest()
				if rerr != nil {
					return cut(rerr)
				}
				return f.emit(rawRecord{raw: prefix(raw), line: line, offset: start,
					err: fmt.Errorf("trailing data after the top-level array (%d bytes from %q)", n+int64(len(raw)), c)})
			} else if err != io.EOF {
				return cut(err)
			}
			return nil
		}
		start, line := s.off, s.line
		if f.mark != nil && c != ',' && c != ']' && c != '}' {
			// Framing started again here (in the same array or not) reads
			// the same values; at a stray separator it would not.
			f.mark(start, line)
		}
		raw, size, verr := s.value(maxRec, f.lim.MaxDepth)
		var de depthError
		if errors.As(verr, &de) {
			if err := f.emit(rawRecord{raw: prefix(raw), line: line, offset: start,
				err: reject("record limit", fmt.Errorf("%w; the record is cut at the end of its line %d (%d bytes) and framing resumes on the next", de, s.line-1, size))}); err != nil {
				return err
			}
			continue
		}
		if verr != nil {
			if !errors.As(verr, new(framingError)) {
				return &cutError{offset: start, line: line, err: verr}
			}
			// Framing lost: everything from here is quarantined as one piece.
			n, rerr := s.rest()
			if rerr != nil {
				return cut(rerr)
			}
			reason := verr
			if n > 0 || size > int64(len(raw)) {
				reason = fmt.Errorf("%w; the rest of the input (%d bytes from line %d) is quarantined as one piece, its first %d bytes kept",
					verr, size+n, line, len(raw))
			}
			return f.emit(rawRecord{raw: raw, line: line, offset: start, err: reason})
		}
		r := rawRecord{raw: raw, line: line, offset: start}
		if size > int64(maxRec) {
			r.err = reject("record too large", tooLarge(size, maxRec, true))
		}
		if err := f.emit(r); err != nil {
			return err
		}
	}
}

// framingError is an error of stream.value that means the input is not
// JSON as framed, rather than unreadable.
type framingError string

func (e framingError) Error() string { return string(e) }
