package source

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// recordScan is what one structural pass over a record's bytes finds,
// before anything is parsed: parsing allocates per value, so the limits
// are judged on the bytes first. The pass keeps no stack beyond the depth
// limit and allocates nothing for ordinary records.
type recordScan struct {
	fields   int // object members at any depth, plus the estimated values of JSON held in strings
	elements int // array elements at any depth
	root     byte
	rootAt   int // index of the root's first byte
	rootLen  int // elements of a top-level array
	// members of a top-level object, while there are at most
	// maxPageMembers of them (an API page has few).
	member   [maxPageMembers]member
	nmembers int
	tooMany  bool
	scanned  int  // bytes scanned when an error stopped the pass
	complete bool // the bytes held one whole value
}

// member is one top-level member: the spans of its raw key and its value;
// elems counts the value's own elements when it is an array.
type member struct {
	keyStart, keyEnd int
	start, end       int
	elems            int
}

// key returns the member's key, unescaped.
func (m *member) key(b []byte) string { return keyString(b[m.keyStart:m.keyEnd]) }

// valueAt notes that a value starts at i, stack being the open containers
// and cur the top-level member being read (-1: none).
func (s *recordScan) valueAt(i int, stack []byte, cur int) {
	d := len(stack)
	if d == 0 {
		return
	}
	if stack[d-1] == '[' {
		s.elements++
		if d == 1 {
			s.rootLen++
		} else if d == 2 && cur >= 0 && stack[0] == '{' {
			s.member[cur].elems++
		}
	}
	if d == 1 && stack[0] == '{' && cur >= 0 {
		s.member[cur].start = i
	}
}

// endedAt notes that a value ended just before i.
func (s *recordScan) endedAt(i int, stack []byte, cur int) {
	if len(stack) == 1 && stack[0] == '{' && cur >= 0 {
		s.member[cur].end = i
	}
	if len(stack) == 0 {
		s.complete = true
	}
}

const maxPageMembers = 4

// depthError is a record nested past the limit.
type depthError struct{ max int }

func (e depthError) Error() string {
	return fmt.Sprintf("nesting depth exceeds the limit of %d", e.max)
}

// scanRecord measures b, stopping at the first container nested deeper
// than maxDepth. Malformed JSON is not an error here: the parser that
// follows says what is wrong with it.
func scanRecord(b []byte, maxDepth int) (recordScan, error) {
	var (
		s         recordScan
		small     [128]byte
		stack     = small[:0]
		expectKey bool
		cur       = -1 // index in s.member of the top-level member being read
	)
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i < len(b) {
		s.root, s.rootAt = b[i], i
	}
	for i < len(b) {
		c := b[i]
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			if d := len(stack); d > 0 && stack[d-1] == '{' {
				expectKey = true
			}
			i++
		case '{', '[':
			if s.complete {
				s.complete = false // trailing data: let the parser say so
				return s, nil
			}
			s.valueAt(i, stack, cur)
			if len(stack) >= maxDepth {
				s.scanned = i
				return s, depthError{maxDepth}
			}
			stack = append(stack, c)
			expectKey = c == '{'
			i++
		case '}', ']':
			if len(stack) == 0 {
				return s, nil
			}
			stack = stack[:len(stack)-1]
			expectKey = false
			i++
			s.endedAt(i, stack, cur)
		case '"':
			end := stringEnd(b, i)
			if end < 0 {
				return s, nil
			}
			d := len(stack)
			if expectKey && d > 0 && stack[d-1] == '{' {
				s.fields++
				if d == 1 {
					cur = -1
					if s.nmembers < maxPageMembers && !s.tooMany {
						s.member[s.nmembers] = member{keyStart: i + 1, keyEnd: end - 1}
						cur = s.nmembers
						s.nmembers++
					} else {
						s.tooMany = true
					}
				}
				expectKey = false
			} else {
				if s.complete {
					s.complete = false
					return s, nil
				}
				s.valueAt(i, stack, cur)
				s.fields += nestedFields(b[i+1 : end-1])
				s.endedAt(end, stack, cur)
			}
			i = end
		default:
			if s.complete {
				s.complete = false
				return s, nil
			}
			s.valueAt(i, stack, cur)
			j := i + 1
			for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != ']' && b[j] != '}' && b[j] != ':' {
				j++
			}
			i = j
			s.endedAt(i, stack, cur)
		}
	}
	return s, nil
}

// stringEnd returns the index just past the string starting at b[i] (a
// quote), or -1 when it is not terminated.
func stringEnd(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		bs := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1
		}
		j++
	}
}

func keyString(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var k string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) != nil {
		return string(raw)
	}
	return k
}

// nestedFields estimates, from above, how many values flattening JSON
// held in a string adds (Sentinel and CSV exports nest JSON so): one per
// separator.
func nestedFields(raw []byte) int {
	t := bytes.TrimSpace(raw)
	if len(t) < 2 || (t[0] != '{' && t[0] != '[') || (t[len(t)-1] != '}' && t[len(t)-1] != ']') {
		return 0
	}
	return 1 + bytes.Count(t, []byte{','}) + bytes.Count(t, []byte{':'})
}

// page returns the span of the list of records b holds when b is an API
// page: a top-level array, or an envelope ({"value":[...]} from Graph,
// {"records":[...]} from Event Hub, {"items":[...]} from Google) whose
// other members are paging metadata. n is the list's length.
func (s *recordScan) page(b []byte) (start, end, n int, ok bool) {
	switch s.root {
	case '[':
		return s.rootAt, len(b), s.rootLen, true
	case '{':
	default:
		return 0, 0, 0, false
	}
	if s.tooMany {
		return 0, 0, 0, false
	}
	var keys [maxPageMembers]string
	for i := range s.nmembers {
		keys[i] = s.member[i].key(b)
	}
	for _, k := range []string{"records", "value", "items"} {
		var list *member
		for i := range s.nmembers {
			if keys[i] == k {
				list = &s.member[i]
				break
			}
		}
		if list == nil || list.end <= list.start || b[list.start] != '[' {
			continue
		}
		// A list of non-objects is a record's field, not a page.
		j := list.start + 1
		for j < list.end && isSpace(b[j]) {
			j++
		}
		if j < list.end && b[j] != ']' && b[j] != '{' {
			return 0, 0, 0, false
		}
		ok := true
		for _, mk := range keys[:s.nmembers] {
			if mk != k && !isPagingKey(mk) {
				ok = false
			}
		}
		if ok {
			return list.start, list.end, list.elems, true
		}
	}
	return 0, 0, 0, false
}

func isPagingKey(k string) bool {
	return len(k) >= 6 && k[:6] == "@odata" || k == "nextPageToken" || k == "kind" || k == "etag"
}

// elementSpans calls fn with the span of each element of the array b
// (which begins with '['), in order.
func elementSpans(b []byte, fn func(s, e int) error) error {
	i := 1
	for {
		for i < len(b) && (isSpace(b[i]) || b[i] == ',') {
			i++
		}
		if i >= len(b) || b[i] == ']' {
			return nil
		}
		j := valueEnd(b, i)
		if j < 0 {
			return fmt.Errorf("truncated JSON")
		}
		if err := fn(i, j); err != nil {
			return err
		}
		i = j
	}
}

// valueEnd returns the index just past the JSON value starting at b[i],
// or -1.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				e := stringEnd(b, i)
				if e < 0 {
					return -1
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != ']' && b[i] != '}' {
			i++
		}
		return i
	}
}
