package record

import (
	"hash/maphash"
	"slices"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
)

// Cache interns the repeated strings of a stream of records (operations,
// tenants, users, app ids, client strings), so decoding a record does not
// allocate a new copy of each. It is bounded: when full it starts over. A
// nil *Cache interns nothing. Not safe for concurrent use.
type Cache struct {
	m      map[string]string
	shapes map[uint64]*Shape
	keys   []string
	hot    []hotName
	spans  []eagerSpan // scratch for Eager
	miss   []event.Missing
	buf    []byte
	path   []byte
}

// hotName is a name rules look up, split in canonical segments.
type hotName struct {
	sym  event.Sym
	segs []string
}

var shapeSeed = maphash.MakeSeed()

const (
	cacheMax    = 1 << 16
	cacheMaxLen = 256
)

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{m: make(map[string]string, 1024), shapes: map[uint64]*Shape{}}
}

// Shape describes the key set of one kind of record: what SetTopKeys
// wants, and where the hot fields are. Shapes are cached and shared
// between events: they must not be modified.
type Shape struct {
	Top []event.Sym // sorted Syms of the top-level names (first path segments)
	hot []hotKey    // hot names by position of their key, in order
	dup []event.Sym // sorted Syms that more than one key flattens to
}

// Single reports whether exactly one top-level key of the record has the
// name s (names are case-insensitive, so "Operation" and "operation"
// collide): only then can a value read up front be the field's only one.
func (sh *Shape) Single(s event.Sym) bool {
	if _, found := slices.BinarySearch(sh.dup, s); found {
		return false
	}
	_, found := slices.BinarySearch(sh.Top, s)
	return found
}

// hotKey is a hot name whose first segment is one key of the record, at
// pos in the key sequence Shape hashed.
type hotKey struct {
	pos  int
	sym  event.Sym
	key  string   // the key as spelled
	segs []string // the name's segments after the first
}

// SetHot names the fields worth reading while a record is parsed anyway
// (the fields rules look up); Eager reads them by path.
func (c *Cache) SetHot(syms []event.Sym) {
	c.hot = c.hot[:0]
	seen := map[event.Sym]bool{}
	for _, s := range syms {
		if s == 0 || seen[s] {
			continue
		}
		seen[s] = true
		c.hot = append(c.hot, hotName{sym: s, segs: strings.Split(s.String(), ".")})
	}
	clear(c.shapes)
}

// Shape returns the Shape of the key set of the given objects (nil and
// non-objects are skipped). Records of one format repeat a few key sets,
// so shapes are cached by a hash of the key sequence.
func (c *Cache) Shape(vs ...*fastjson.Value) *Shape {
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
	if sh, ok := c.shapes[h]; ok {
		return sh
	}
	c.keys = c.keys[:0]
	objects := 0
	for _, v := range vs {
		if v == nil || v.Type() != fastjson.TypeObject {
			continue
		}
		objects++
		o, _ := v.Object()
		o.Visit(func(k []byte, _ *fastjson.Value) { c.keys = append(c.keys, string(k)) })
	}
	sh := &Shape{Top: event.TopKeys(c.keys)}
	// An empty key flattens its children to the top level under their own
	// names, which the key list does not show: know nothing then, so
	// every lookup flattens.
	if slices.Contains(c.keys, "") {
		sh.Top = nil
	}
	count := map[event.Sym]int{}
	for _, k := range c.keys {
		count[event.InternData(k)]++
	}
	for s, n := range count {
		if n > 1 {
			sh.dup = append(sh.dup, s)
		}
	}
	slices.Sort(sh.dup)
	if objects > 0 && sh.Top != nil {
		sh.hot = c.hotKeys()
	}
	if len(c.shapes) >= 4096 {
		clear(c.shapes)
	}
	c.shapes[h] = sh
	return sh
}

// hotKeys returns the hot names Eager can answer for the key set in
// c.keys, by position of their first segment's key: those whose first
// segment is the canonical name of exactly one key of the objects
// flattened to the top level, and no other key flattens below it ("a.b"
// and "a":{"b":..} flatten to the same name; "A" and "a" too).
func (c *Cache) hotKeys() []hotKey {
	type keyInfo struct {
		canon, key string
		pos        int
	}
	bySeg := map[string][]keyInfo{} // first canonical segment -> keys
	for pos, k := range c.keys {
		canon := event.CanonicalName(k)
		seg, _, _ := strings.Cut(canon, ".")
		bySeg[seg] = append(bySeg[seg], keyInfo{canon, k, pos})
	}
	var out []hotKey
	for _, h := range c.hot {
		ks := bySeg[h.segs[0]]
		if len(ks) != 1 || ks[0].canon != h.segs[0] {
			continue
		}
		out = append(out, hotKey{pos: ks[0].pos, sym: h.sym, key: ks[0].key, segs: h.segs[1:]})
	}
	slices.SortStableFunc(out, func(a, b hotKey) int { return a.pos - b.pos })
	return out
}

// Eager reads the hot names of a record whose Shape is sh (v and hoisted
// being the objects given to Shape) by path from the parse: a name with
// exactly one scalar value becomes a field, exactly as flattening them
// with event.Builder would produce it; a name the record has no field of
// becomes a Missing, when missing is set (the parse is then the whole
// record). Names below arrays or JSON held in strings are left to
// flattening (event.Walk). The values share one new string: one
// allocation per record whatever the number of fields.
func (c *Cache) Eager(sh *Shape, v, hoisted *fastjson.Value, missing bool) ([]event.Field, []event.Missing) {
	if len(sh.hot) == 0 {
		return nil, nil
	}
	spans := c.spans[:0]
	miss := c.miss[:0]
	buf := c.buf[:0]
	pos, next := 0, 0
	visit := func(k []byte, x *fastjson.Value) {
		for next < len(sh.hot) && sh.hot[next].pos == pos {
			hk := &sh.hot[next]
			next++
			path, leaf, found := event.Walk(append(c.path[:0], k...), x, hk.segs)
			c.path = path
			switch found {
			case event.NoValue, event.Nothing:
				if missing {
					miss = append(miss, event.Missing{Sym: hk.sym, Below: found == event.Nothing})
				}
				continue
			case event.Unknown:
				continue
			}
			off := len(buf)
			kind := event.String
			switch leaf.Type() {
			case fastjson.TypeString:
				b, _ := leaf.StringBytes()
				buf = append(buf, b...)
			case fastjson.TypeNumber:
				buf = leaf.MarshalTo(buf)
				kind = event.Number
			case fastjson.TypeTrue:
				buf = append(buf, "true"...)
				kind = event.Bool
			case fastjson.TypeFalse:
				buf = append(buf, "false"...)
				kind = event.Bool
			case fastjson.TypeNull:
				kind = event.Null
			}
			name := hk.key
			if len(hk.segs) > 0 {
				name = c.Bytes(path)
			}
			spans = append(spans, eagerSpan{sym: hk.sym, name: name, off: off, n: len(buf) - off, kind: kind})
		}
		pos++
	}
	for _, r := range [2]*fastjson.Value{v, hoisted} {
		if r != nil && r.Type() == fastjson.TypeObject && next < len(sh.hot) {
			o, _ := r.Object()
			o.Visit(visit)
		}
	}
	c.spans, c.miss, c.buf = spans, miss, buf
	var out []event.Field
	if len(spans) > 0 {
		backing := string(buf)
		// Room for the decoders' own up-front fields (event.AddEager), so
		// adding them does not copy the slice.
		out = make([]event.Field, len(spans), len(spans)+2)
		for i, sp := range spans {
			out[i] = event.Field{Sym: sp.sym, Name: sp.name, Value: backing[sp.off : sp.off+sp.n], Kind: sp.kind}
		}
	}
	if len(miss) == 0 {
		return out, nil
	}
	return out, slices.Clone(miss)
}

type eagerSpan struct {
	sym    event.Sym
	name   string
	off, n int
	kind   event.Kind
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

// Strings is like the package's Strings, interning each value.
func (c *Cache) Strings(v *fastjson.Value, path ...string) []string {
	var out []string
	walkStrings(v, path, func(b []byte) { out = append(out, c.Bytes(b)) })
	return out
}
