package event

import (
	"bytes"
	"strings"

	"github.com/valyala/fastjson"
)

func init() {
	// Values relies on the normalized Syms being the first, consecutive ones.
	if SymRecordID != SymTime+numNorm-1 {
		panic("event: normalized syms are not consecutive")
	}
}

// Builder flattens decoded JSON into an Event's fields. It caches interned
// names and reuses its buffers, so flattening a record costs two
// allocations (the values' backing string and the field slice). A Builder
// is not safe for concurrent use: use one per goroutine.
type Builder struct {
	names   map[string]int32 // path -> index in list
	list    []nameSym
	path    []byte
	arena   []byte
	pending []pendingField
	inner   fastjson.Parser // for JSON held in string values
	depth   int
	// inNested is set while flattening JSON found inside a string; one
	// level is enough for the exports seen and bounds the work.
	inNested bool
}

type nameSym struct {
	name string
	sym  Sym
}

// pendingField holds no pointers, so appending it costs no GC write
// barriers; names and values are resolved in Finish.
type pendingField struct {
	name   int32 // index in Builder.list
	off, n int32 // value bytes in arena
	kind   Kind
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{names: map[string]int32{}} }

// Reset starts a new event.
func (b *Builder) Reset() {
	b.arena = b.arena[:0]
	b.pending = b.pending[:0]
	b.path = b.path[:0]
	// Records whose keys are data (ids, addresses) would grow the name
	// cache without end; start it over between records instead.
	if len(b.list) > maxBuilderNames {
		clear(b.names)
		b.list = b.list[:0]
	}
}

func (b *Builder) intern(path []byte) int32 {
	if i, ok := b.names[string(path)]; ok {
		return i
	}
	name := string(path)
	i := int32(len(b.list))
	b.list = append(b.list, nameSym{name: name, sym: InternData(name)})
	b.names[name] = i
	return i
}

// add appends a field whose value is the bytes v.
func (b *Builder) add(kind Kind, v []byte) {
	off := len(b.arena)
	b.arena = append(b.arena, v...)
	b.pending = append(b.pending, pendingField{name: b.intern(b.path), off: int32(off), n: int32(len(v)), kind: kind})
}

// AddString adds one string field called name (a dotted path). Like
// Flatten, a value holding a JSON object or array is also flattened under
// name, since CSV exports nest JSON that way.
func (b *Builder) AddString(name string, value []byte) {
	b.path = append(b.path[:0], name...)
	b.add(String, value)
	if len(value) > 1 && (value[0] == '{' || value[0] == '[') {
		b.nested(value)
	}
}

// Flatten adds every leaf of v under prefix (may be empty). Objects add
// ".key" to the path; arrays add nothing, so all elements share one name.
// Name/value lists (elements shaped {"Name":..,"Value":..}, as in M365
// Parameters, ExtendedProperties and Google parameters) also add each
// value under path.<Name>. String values that hold a JSON object or array
// (Sentinel exports nest them so) are flattened under the same path too.
func (b *Builder) Flatten(prefix string, v *fastjson.Value) {
	b.path = append(b.path[:0], prefix...)
	b.flatten(v)
}

const maxDepth = 32

// maxBuilderNames bounds a Builder's cache of field names.
const maxBuilderNames = 1 << 16

var (
	litTrue  = []byte("true")
	litFalse = []byte("false")
)

func (b *Builder) flatten(v *fastjson.Value) {
	if b.depth > maxDepth {
		return
	}
	b.depth++
	defer func() { b.depth-- }()
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		base := len(b.path)
		o.Visit(func(k []byte, c *fastjson.Value) {
			b.path = b.path[:base]
			if base > 0 {
				b.path = append(b.path, '.')
			}
			b.path = append(b.path, k...)
			b.flatten(c)
		})
		b.path = b.path[:base]
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, c := range a {
			b.flatten(c)
		}
		b.nameValueList(a)
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		b.add(String, s)
		if len(s) > 1 && (s[0] == '{' || s[0] == '[') && !b.inNested {
			b.nested(s)
		}
	case fastjson.TypeNumber:
		off := len(b.arena)
		b.arena = v.MarshalTo(b.arena)
		b.pending = append(b.pending, pendingField{name: b.intern(b.path), off: int32(off), n: int32(len(b.arena) - off), kind: Number})
	case fastjson.TypeTrue:
		b.add(Bool, litTrue)
	case fastjson.TypeFalse:
		b.add(Bool, litFalse)
	case fastjson.TypeNull:
		b.add(Null, nil)
	}
}

// nested flattens JSON held inside a string value, under the current path.
// Values are copied into the arena, so the inner parser is free again as
// soon as this returns.
func (b *Builder) nested(s []byte) {
	trimmed := bytes.TrimSpace(s)
	last := trimmed[len(trimmed)-1]
	if last != '}' && last != ']' {
		return
	}
	v, err := b.inner.ParseBytes(trimmed)
	if err != nil {
		return
	}
	b.inNested = true
	b.flatten(v)
	b.inNested = false
}

var (
	nameKeys  = []string{"Name", "name", "displayName", "key", "Key"}
	valueKeys = []string{"Value", "value", "NewValue", "newValue", "OldValue", "oldValue", "intValue", "boolValue", "multiValue", "multiIntValue"}
)

// nameValueList adds path.<name>[.<valueKey>] for lists of name/value
// objects.
func (b *Builder) nameValueList(a []*fastjson.Value) {
	if len(a) == 0 || a[0].Type() != fastjson.TypeObject {
		return
	}
	base := len(b.path)
	for _, el := range a {
		o, err := el.Object()
		if err != nil {
			continue
		}
		var name []byte
		for _, k := range nameKeys {
			if nv := o.Get(k); nv != nil && nv.Type() == fastjson.TypeString {
				name, _ = nv.StringBytes()
				break
			}
		}
		if len(name) == 0 {
			continue
		}
		// Copy: the path buffer may be reused by the recursive flatten.
		name = append([]byte(nil), name...)
		nvals := 0
		for _, k := range valueKeys {
			if o.Get(k) != nil {
				nvals++
			}
		}
		for _, k := range valueKeys {
			vv := o.Get(k)
			if vv == nil {
				continue
			}
			b.path = b.path[:base]
			if base > 0 {
				b.path = append(b.path, '.')
			}
			b.path = append(b.path, name...)
			// Old/new pairs keep the value key so both stay distinguishable;
			// a lone value sits at path.<name>.
			if nvals > 1 || strings.HasPrefix(strings.ToLower(k), "old") || strings.HasPrefix(strings.ToLower(k), "new") {
				b.path = append(b.path, '.')
				b.path = append(b.path, k...)
			}
			b.flatten(vv)
		}
	}
	b.path = b.path[:base]
}

// Finish moves the flattened fields into e (replacing any it had) and
// fills the normalized lookups. The Builder may be reused afterwards.
func (b *Builder) Finish(e *Event) {
	e.fields = b.fields()
	e.Normalize()
	b.Reset()
}

// fields resolves the pending fields, sorted.
func (b *Builder) fields() []Field {
	backing := string(b.arena)
	fs := make([]Field, len(b.pending))
	for i, p := range b.pending {
		ns := b.list[p.name]
		fs[i] = Field{Sym: ns.sym, Name: ns.name, Kind: p.kind, Value: backing[p.off : p.off+p.n]}
	}
	sortFields(fs)
	return fs
}
