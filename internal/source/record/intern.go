package record

import (
	"hash/maphash"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
)

// Cache interns the repeated strings of a stream of records (operations,
// tenants, users, app ids, client strings), so decoding a record does not
// allocate a new copy of each. It is bounded: when full it starts over. A
// nil *Cache interns nothing. Not safe for concurrent use.
type Cache struct {
	m      map[string]string
	shapes map[uint64][]event.Sym
	keys   []string
}

var shapeSeed = maphash.MakeSeed()

const (
	cacheMax    = 1 << 16
	cacheMaxLen = 256
)

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{m: make(map[string]string, 1024), shapes: map[uint64][]event.Sym{}}
}

// TopKeys returns, for event.SetTopKeys, the sorted Syms of the top-level
// keys of the given objects (nil and non-objects are skipped). Records of
// one format repeat a few key sets, so the result is cached by a hash of
// the key sequence and shared between events: it must not be modified.
func (c *Cache) TopKeys(vs ...*fastjson.Value) []event.Sym {
	var h uint64
	for _, v := range vs {
		if v == nil || v.Type() != fastjson.TypeObject {
			continue
		}
		o, _ := v.Object()
		o.Visit(func(k []byte, _ *fastjson.Value) {
			h = h*0x100000001b3 ^ maphash.Bytes(shapeSeed, k)
		})
		h = h*0x100000001b3 ^ 0xff // object separator
	}
	if syms, ok := c.shapes[h]; ok {
		return syms
	}
	c.keys = c.keys[:0]
	for _, v := range vs {
		if v == nil || v.Type() != fastjson.TypeObject {
			continue
		}
		o, _ := v.Object()
		o.Visit(func(k []byte, _ *fastjson.Value) { c.keys = append(c.keys, string(k)) })
	}
	syms := event.TopKeys(c.keys)
	if len(c.shapes) >= 4096 {
		clear(c.shapes)
	}
	c.shapes[h] = syms
	return syms
}

// Bytes returns b as an interned string.
func (c *Cache) Bytes(b []byte) string {
	if c == nil || len(b) > cacheMaxLen {
		return string(b)
	}
	if s, ok := c.m[string(b)]; ok {
		return s
	}
	if len(c.m) >= cacheMax {
		clear(c.m)
	}
	s := string(b)
	c.m[s] = s
	return s
}

// Str is like the package's Str, interning the result.
func (c *Cache) Str(v *fastjson.Value, keys ...string) string {
	x := v.Get(keys...)
	if x == nil {
		return ""
	}
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return c.Bytes(b)
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		var buf [32]byte
		return c.Bytes(x.MarshalTo(buf[:0]))
	}
	return ""
}

// First is like the package's First, interning the result.
func (c *Cache) First(v *fastjson.Value, keys ...string) string {
	for _, k := range keys {
		if s := c.Str(v, k); s != "" {
			return s
		}
	}
	return ""
}

// Strings is like the package's Strings, interning each value.
func (c *Cache) Strings(v *fastjson.Value, path ...string) []string {
	var out []string
	walkStrings(v, path, func(b []byte) { out = append(out, c.Bytes(b)) })
	return out
}
