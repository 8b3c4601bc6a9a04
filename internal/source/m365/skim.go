package m365

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Skim reads the Folders list of a Management Activity API record from
// its raw bytes, without building a parsed tree of it. A MailItemsAccessed
// Bind lists every message read (Folders[].FolderItems[]), often most of
// the record's bytes, yet decoding needs only the folder paths and message
// ids, and rules rarely look deeper. Skim finds the list, validates it,
// copies out those strings, and hands back the record with the list
// replaced by [] for the JSON parser; the event's Raw stays the original
// record, so flattening it on demand still sees every folder item.
//
// Skim is exact or declines: any input it is not sure to read exactly as
// the parser would (escaped keys, a repeated Folders key, a surrogate
// escape, invalid or deeply nested JSON in the list) makes it report false,
// and the record is decoded the ordinary way. A Skim is reused from record
// to record; it is not safe for concurrent use.
type Skim struct {
	rest  []byte // the record with the Folders value replaced by []
	paths []byte // unescaped Path strings, concatenated
	pEnd  []int
	ids   []byte // unescaped InternetMessageId strings, concatenated
	iEnd  []int
	// The list folder by folder, as event.MailAccessOf reads it: each
	// folder's index in pEnd (-1: no Path) and its end in iEnd. plain is
	// false when the list has a shape that reading tells apart from the
	// skim's (Folders shows it).
	fPath []int
	fIDs  []int
	plain bool
}

// foldersKey is searched for before anything else; it starts with a
// byte rarer than the quote.
var foldersKey = []byte(`Folders"`)

// minSkim is the smallest Folders value worth skimming: below it the
// parser is as cheap as the copy.
const minSkim = 256

// Record prepares raw (one JSON object) for parsing: when it is a
// Management Activity API record (Detect's ManagementAPI, and nothing
// gws.Detect claims) with a top-level Folders array that Skim can read
// exactly, it returns the record with that array replaced by [] and true;
// else raw and false. The returned bytes are valid until the next call.
func (s *Skim) Record(raw []byte) ([]byte, bool) {
	if len(raw) < minSkim {
		return raw, false
	}
	// The value of a top-level Folders key lies after the key's first
	// occurrence: when what follows is too short, the scan is not worth it
	// (a MailItemsAccessed Bind of one message with Folders last).
	if k := bytes.Index(raw, foldersKey); k < 0 || len(raw)-k-len(foldersKey) < minSkim {
		return raw, false
	}
	start, end, ok := s.scan(raw)
	if !ok || end-start < minSkim {
		return raw, false
	}
	s.rest = append(s.rest[:0], raw[:start]...)
	s.rest = append(s.rest, "[]"...)
	s.rest = append(s.rest, raw[end:]...)
	return s.rest, true
}

// Fill sets e's Folders and MessageIDs from the list the last successful
// Record read: what record.Strings(folders, "Path") (interned through c)
// and record.Strings(folders, "FolderItems", "InternetMessageId") give for
// the parsed list. The message ids share one allocation.
func (s *Skim) Fill(e *event.Event, c *record.Cache) {
	e.Folders, e.MessageIDs = nil, nil
	np, ni := len(s.pEnd), len(s.iEnd)
	if np+ni == 0 {
		return
	}
	// One slice holds both lists; each is capped, so appending to one
	// (mailItems adds Item's folder and id) cannot overwrite the other.
	all := make([]string, np+ni)
	off := 0
	for i, end := range s.pEnd {
		all[i] = c.Bytes(s.paths[off:end])
		off = end
	}
	if ni > 0 {
		backing := string(s.ids)
		off = 0
		for i, end := range s.iEnd {
			all[np+i] = backing[off:end]
			off = end
		}
		e.MessageIDs = all[np : np+ni : np+ni]
	}
	if np > 0 {
		e.Folders = all[:np:np]
	}
}

// scan walks the top level of the object raw, skipping values, and reads
// the Folders value strictly; it returns that value's span.
func (s *Skim) scan(b []byte) (start, end int, ok bool) {
	s.paths, s.pEnd, s.ids, s.iEnd = s.paths[:0], s.pEnd[:0], s.ids[:0], s.iEnd[:0]
	s.fPath, s.fIDs, s.plain = s.fPath[:0], s.fIDs[:0], true
	start = -1
	need := 0 // the keys that make a Management Activity API record (Detect)
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, 0, false
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, 0, false
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, 0, false
		}
		ks := i + 1
		ke := ks
		for ke < len(b) && b[ke] != '"' {
			if b[ke] == '\\' {
				// An escaped key may unescape to "Folders": leave such
				// records to the parser.
				return 0, 0, false
			}
			ke++
		}
		if ke >= len(b) {
			return 0, 0, false
		}
		key := b[ks:ke]
		i = ws(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return 0, 0, false
		}
		i = ws(b, i+1)
		switch string(key) {
		case "CreationTime":
			need |= 1
		case "Operation":
			need |= 2
		case "RecordType":
			need |= 4
		case "auditData", "auditLogRecordType", "kind", "id", "events":
			// Another shape may claim the record (Detect, gws.Detect).
			return 0, 0, false
		}
		if string(key) == "Folders" {
			if start >= 0 || i >= len(b) || b[i] != '[' {
				return 0, 0, false // repeated, or not a list
			}
			e, ok := s.value(b, i, 0, stFolders)
			if !ok {
				return 0, 0, false
			}
			start, end = i, e
			i = e
		} else {
			var ok bool
			if i, ok = skip(b, i); !ok {
				return 0, 0, false
			}
		}
		i = ws(b, i)
		if i >= len(b) {
			return 0, 0, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return 0, 0, false
		}
		i = ws(b, i+1)
	}
	if ws(b, i+1) != len(b) || start < 0 || need != 7 {
		return 0, 0, false
	}
	return start, end, true
}

// The roles a value in the Folders list plays for record.Strings's two
// walks: the list itself (both walks), a Path value, a FolderItems value,
// an InternetMessageId value, or none.
type state uint8

const (
	stNone state = iota
	stFolders
	stPath
	stItems
	stID
)

const maxSkimDepth = 64

// knownKeys are the keys of Folders elements and of their items, most
// frequent first.
var knownKeys = [...][]string{
	stNone:    {"Id", "InternetMessageId", "SizeInBytes"},
	stFolders: {"Id", "Path", "FolderItems"},
	stPath:    nil,
	stItems:   {"Id", "InternetMessageId", "SizeInBytes"},
	stID:      nil,
}

// value reads the JSON value at b[i] strictly, collecting the strings its
// state asks for, and returns where it ends.
func (s *Skim) value(b []byte, i, depth int, st state) (int, bool) {
	if depth > maxSkimDepth || i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '[':
		// The list at depth 0, a folder's FolderItems at depth 2; an
		// array anywhere else in those roles is not plain.
		if st == stFolders && depth != 0 || st == stItems && depth != 2 || st == stPath || st == stID {
			s.plain = false
		}
		i = ws(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			// Arrays are walked at every level, in the same role.
			var ok bool
			if i, ok = s.value(b, i, depth+1, st); !ok {
				return 0, false
			}
			i = ws(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return 0, false
			}
			i = ws(b, i+1)
		}
	case c == '{':
		// A folder at depth 1, an item at depth 3.
		folder := st == stFolders && depth == 1
		if st == stFolders && depth != 1 || st == stItems && depth != 3 || st == stPath || st == stID {
			s.plain = false
		}
		pBefore := len(s.pEnd)
		var lower, wrongType bool // a lower-case spelling of the key read; its value not a string or list
		end := func(at int) (int, bool) {
			switch {
			case lower || wrongType:
				s.plain = false
			case folder:
				p := -1
				if len(s.pEnd) > pBefore {
					p = pBefore
				}
				s.fPath = append(s.fPath, p)
				s.fIDs = append(s.fIDs, len(s.iEnd))
			}
			return at, true
		}
		i = ws(b, i+1)
		if i < len(b) && b[i] == '}' {
			return end(i + 1)
		}
		var seenA, seenB bool // the first matching key wins, as in Object.Get
		for {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			ks := i + 1
			ke := -1
			// The keys Exchange writes are compared in place; others are
			// searched for their end.
			for _, k := range knownKeys[st] {
				if e := ks + len(k); e < len(b) && b[e] == '"' && string(b[ks:e]) == k {
					ke = e
					break
				}
			}
			if ke < 0 {
				if ke = plainEnd(b, ks); ke >= len(b) || b[ke] != '"' {
					return 0, false // escaped keys are the parser's
				}
			}
			key := b[ks:ke]
			i = ws(b, ke+1)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			i = ws(b, i+1)
			if i >= len(b) {
				return 0, false
			}
			next := stNone
			switch st {
			case stFolders:
				if !seenA && string(key) == "Path" {
					seenA, next = true, stPath
					wrongType = wrongType || b[i] != '"'
				} else if !seenB && string(key) == "FolderItems" {
					seenB, next = true, stItems
					wrongType = wrongType || b[i] != '['
				}
				// Read when Path is missing or empty, FolderItems missing.
				lower = lower || string(key) == "path" || string(key) == "folderItems"
			case stItems:
				if !seenA && string(key) == "InternetMessageId" {
					seenA, next = true, stID
					wrongType = wrongType || b[i] != '"'
				}
				lower = lower || string(key) == "internetMessageId"
			}
			var ok bool
			switch c := b[i]; {
			case next == stNone && c == '"':
				i, ok = skipString(b, i)
			case c == '-' || c >= '0' && c <= '9':
				i, ok = number(b, i)
			default:
				i, ok = s.value(b, i, depth+1, next)
			}
			if !ok {
				return 0, false
			}
			i = ws(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == '}' {
				return end(i + 1)
			}
			if b[i] != ',' {
				return 0, false
			}
			i = ws(b, i+1)
		}
	case c == '"':
		switch st {
		case stPath:
			e, ok := appendString(&s.paths, b, i)
			s.pEnd = append(s.pEnd, len(s.paths))
			return e, ok
		case stID:
			e, ok := appendString(&s.ids, b, i)
			s.iEnd = append(s.iEnd, len(s.ids))
			return e, ok
		}
		if st == stFolders || st == stItems {
			s.plain = false // a folder or item that is not an object
		}
		// A string nobody reads: the parser only looks for its end.
		return skipString(b, i)
	}
	if st != stNone {
		s.plain = false // a literal or number where a folder, item or string belongs
	}
	switch c := b[i]; {
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	}
	return number(b, i)
}

// appendString reads the JSON string at b[i], appending its unescaped
// bytes to *dst (when dst is not nil), and returns where it ends. Like the
// parser, it keeps control characters and invalid UTF-8 as they are;
// escapes unescape as the parser's StringBytes does, except that unknown
// escapes and surrogate escapes (which the parser reads leniently) make
// the record the parser's.
func appendString(dst *[]byte, b []byte, i int) (int, bool) {
	i++
	j := bytes.IndexByte(b[i:], '"')
	if j < 0 {
		return 0, false
	}
	j += i
	if bytes.IndexByte(b[i:j], '\\') < 0 {
		if dst != nil {
			*dst = append(*dst, b[i:j]...)
		}
		return j + 1, true
	}
	for {
		j := i
		for j < len(b) && b[j] != '"' && b[j] != '\\' {
			j++
		}
		if dst != nil {
			*dst = append(*dst, b[i:j]...)
		}
		if j+1 >= len(b) {
			return 0, false
		}
		if b[j] == '"' {
			return j + 1, true
		}
		var r byte
		switch b[j+1] {
		case '"':
			r = '"'
		case '\\':
			r = '\\'
		case '/':
			r = '/'
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'u':
			if j+6 > len(b) {
				return 0, false
			}
			x, ok := hex4(b[j+2 : j+6])
			if !ok || utf16.IsSurrogate(rune(x)) {
				return 0, false
			}
			if dst != nil {
				*dst = utf8.AppendRune(*dst, rune(x))
			}
			i = j + 6
			continue
		default:
			return 0, false
		}
		if dst != nil {
			*dst = append(*dst, r)
		}
		i = j + 2
	}
}

func hex4(h []byte) (uint32, bool) {
	var x uint32
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		x = x<<4 | uint32(c)
	}
	return x, true
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// number reads a JSON number strictly: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
func number(b []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

// skip passes over the value at b[i] without checking it: the parser
// checks everything outside the Folders list, and fails on the copy
// whenever the original would fail.
func skip(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				var ok bool
				if i, ok = skipString(b, i); !ok {
					return 0, false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i, true
		}
		i++
	}
	return i, true
}

func skipString(b []byte, i int) (int, bool) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false
		}
		j += i
		// The quote ends the string unless an odd run of backslashes
		// precedes it.
		n := 0
		for k := j - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1, true
		}
		i = j + 1
	}
}

func ws(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainEnd returns the index of the first byte at or after i that is a
// quote, a backslash or a control character (len(b) if none), eight
// bytes at a time.
func plainEnd(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (ones * '"')
		bs := x ^ (ones * '\\')
		// A byte is flagged when it is zero after the xor (a quote or a
		// backslash) or below 0x20; the lowest flag is always exact.
		m := ((q - ones) &^ q) | ((bs - ones) &^ bs) | ((x - ones*0x20) &^ x)
		if m &= highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}

// Folders returns the list the last successful Record read as
// event.MailAccessOf reads it from the parsed record (each folder's Path
// and its items' non-empty InternetMessageIds); ok is false when the list
// has a shape where that reading and the skim's differ (a lower-case key
// it falls back on, a value of another type, nested lists), and the
// access is then read from the record.
func (s *Skim) Folders() (out []event.FolderRead, ok bool) {
	if !s.plain {
		return nil, false
	}
	// Three allocations whatever the list's length: the strings share
	// two, the folders' messages one slice.
	paths, ids := string(s.paths), string(s.ids)
	msgs := make([]string, 0, len(s.iEnd))
	out = make([]event.FolderRead, len(s.fPath))
	from := 0
	for k, p := range s.fPath {
		if p >= 0 {
			start := 0
			if p > 0 {
				start = s.pEnd[p-1]
			}
			out[k].Path = paths[start:s.pEnd[p]]
		}
		first := len(msgs)
		for j := from; j < s.fIDs[k]; j++ {
			start := 0
			if j > 0 {
				start = s.iEnd[j-1]
			}
			if id := ids[start:s.iEnd[j]]; id != "" {
				msgs = append(msgs, id)
			}
		}
		if len(msgs) > first {
			out[k].Messages = msgs[first:len(msgs):len(msgs)]
		}
		from = s.fIDs[k]
	}
	return out, true
}
