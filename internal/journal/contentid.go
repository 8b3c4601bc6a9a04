package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"

	"github.com/valyala/fastjson"
)

// ContentIDPrefix starts every content id (see ContentID).
const ContentIDPrefix = "sha256:"

// ContentID returns the record id of a record that carries none of its
// own: "sha256:" and the hex SHA-256 of the record's canonical form.
// Appended as Entry.RecordID, it deduplicates such records by content
// (with the Source, like any record id), so the same record delivered
// twice is stored once however its JSON was laid out.
//
// The canonical form of a JSON value is its compact encoding with every
// object's members sorted by key (byte order of the unescaped key; members
// with the same key keep their order), strings unescaped and written back
// escaping only '"', '\' and bytes below 0x20 (as \u00XX), other bytes as
// they are (invalid UTF-8 included), and numbers, true, false and null as
// written. Key order, whitespace and string escapes therefore do not
// change it; a number written differently (1.0, 1) does. Bytes that are
// not one JSON value (a CSV line, JSON nested past fastjson's depth
// limit) are their own canonical form.
func ContentID(raw []byte) string {
	c := canonPool.Get().(*canonicalizer)
	defer canonPool.Put(c)
	c.buf = c.buf[:0]
	canon := raw
	if v, err := c.p.ParseBytes(raw); err == nil {
		c.buf = appendCanonical(c.buf, v)
		canon = c.buf
	}
	sum := sha256.Sum256(canon)
	out := make([]byte, len(ContentIDPrefix)+hex.EncodedLen(len(sum)))
	copy(out, ContentIDPrefix)
	hex.Encode(out[len(ContentIDPrefix):], sum[:])
	return string(out)
}

type canonicalizer struct {
	p   fastjson.Parser
	buf []byte
}

var canonPool = sync.Pool{New: func() any { return new(canonicalizer) }}

type member struct {
	key []byte
	v   *fastjson.Value
}

func appendCanonical(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		ms := make([]member, 0, o.Len())
		o.Visit(func(k []byte, x *fastjson.Value) { ms = append(ms, member{k, x}) })
		slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonicalString(dst, m.key)
			dst = append(dst, ':')
			dst = appendCanonical(dst, m.v)
		}
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, x := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, x)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		return appendCanonicalString(dst, s)
	default: // numbers as written, true, false, null
		return v.MarshalTo(dst)
	}
}

const hexDigits = "0123456789abcdef"

func appendCanonicalString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, c := range s {
		if c != '"' && c != '\\' && c >= 0x20 {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		if c < 0x20 {
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
