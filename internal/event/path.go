package event

import (
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Found is what a lookup by path in a record's parse learned of a field
// name, as Builder.Flatten would name the record's leaves.
type Found uint8

// What a path lookup can tell without flattening.
const (
	// Unknown: only flattening can tell (arrays and JSON held in strings
	// on the path, several keys that flatten to the same name).
	Unknown Found = iota
	// One: exactly one value, a scalar.
	One
	// NoValue: no field of that name, but maybe fields below it (the
	// name holds an object).
	NoValue
	// Nothing: no field of that name, nor below it.
	Nothing
)

// maxWalk bounds the segments of a path lookup, well inside maxDepth, the
// depth past which flattening stops.
const maxWalk = maxDepth / 2

// Walk looks up segs, the remaining lower-case segments of a canonical
// field name, below v, the value at path (the source's spelling of the
// name's first segments, dot-joined). It returns the source spelling of
// the whole name and, for One, the value. The answer is what flattening
// v's record would give for that name, provided no other key of the
// record flattens to the name's first segments: the caller checks that.
func Walk(path []byte, v *fastjson.Value, segs []string) ([]byte, *fastjson.Value, Found) {
	if len(segs) > maxWalk {
		return path, nil, Unknown
	}
	for _, seg := range segs {
		switch v.Type() {
		case fastjson.TypeObject:
		case fastjson.TypeArray:
			// Elements flatten under this same name, and name/value lists
			// add path.<name> below it.
			if a, _ := v.Array(); len(a) == 0 {
				return path, nil, Nothing
			}
			return path, nil, Unknown
		case fastjson.TypeString:
			if jsonString(v) {
				return path, nil, Unknown // flattened below this name too
			}
			return path, nil, Nothing
		default:
			return path, nil, Nothing
		}
		o, _ := v.Object()
		var child *fastjson.Value
		var key []byte
		n, clash := 0, false
		o.Visit(func(k []byte, c *fastjson.Value) {
			switch keyMatch(k, seg) {
			case keyEqual:
				n++
				child, key = c, k
			case keyBelow:
				clash = true
			}
		})
		if clash || n > 1 {
			return path, nil, Unknown
		}
		if n == 0 {
			return path, nil, Nothing
		}
		path = append(append(path, '.'), key...)
		v = child
	}
	switch v.Type() {
	case fastjson.TypeObject:
		if o, _ := v.Object(); o.Len() == 0 {
			return path, nil, Nothing
		}
		return path, nil, NoValue
	case fastjson.TypeArray:
		if a, _ := v.Array(); len(a) == 0 {
			return path, nil, Nothing
		}
		return path, nil, Unknown
	case fastjson.TypeString:
		if jsonString(v) {
			return path, nil, Unknown
		}
	}
	return path, v, One
}

// jsonString reports whether a string value is one Builder.flatten also
// flattens as JSON.
func jsonString(v *fastjson.Value) bool {
	s, _ := v.StringBytes()
	return len(s) > 1 && (s[0] == '{' || s[0] == '[')
}

type keyRel uint8

const (
	keyOther keyRel = iota
	keyEqual        // the key's canonical name is seg
	keyBelow        // the key's canonical name starts with seg and a dot
)

// keyMatch compares a source key with a canonical segment as
// CanonicalName would (markers "[]" and "{}" dropped in one pass from the
// left, lower-cased) without allocating for ASCII keys.
func keyMatch(k []byte, seg string) keyRel {
	for _, c := range k {
		if c >= utf8.RuneSelf {
			c := CanonicalName(string(k))
			if c == seg {
				return keyEqual
			}
			if strings.HasPrefix(c, seg) && len(c) > len(seg) && c[len(seg)] == '.' {
				return keyBelow
			}
			return keyOther
		}
	}
	j := 0
	for i := 0; i < len(k); i++ {
		c := k[i]
		if i+1 < len(k) && (c == '[' && k[i+1] == ']' || c == '{' && k[i+1] == '}') {
			i++
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if j == len(seg) {
			if c == '.' {
				return keyBelow
			}
			return keyOther
		}
		if c != seg[j] {
			return keyOther
		}
		j++
	}
	if j == len(seg) {
		return keyEqual
	}
	return keyOther
}
