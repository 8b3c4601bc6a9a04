package event

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fastjson"
)

// Kind is the JSON type a flattened value had in the source record.
type Kind uint8

// Kinds of flattened values.
const (
	String Kind = iota
	Number
	Bool
	Null
)

// Field is one flattened value of the source record. An array yields one
// Field per element under the same name, in source order.
type Field struct {
	Sym   Sym
	Name  string // dotted path as spelled in the source, without array markers
	Value string // strings unescaped; numbers and booleans as written
	Kind  Kind
}

// Origin says where a record came from, for provenance and quarantine.
type Origin struct {
	File   string // path, "-" for stdin
	Line   int    // 1-based line of the record's first byte, 0 if unknown
	Offset int64  // byte offset of the record in the (decompressed) input
	Index  int    // 0-based record number within the file
}

// Event is one normalized audit event.
type Event struct {
	Time      time.Time
	Tenant    string
	Source    string // "m365.ual", "entra.signin", "entra.audit", "entra.risk", "gws.login", ...
	Operation string
	Result    string // as the source says it ("Succeeded", "0", "success", ...)
	Failed    bool   // the source says the operation failed

	User             string // UPN or e-mail of the acting user, lower-cased
	AppID            string // application (resource or client) id the source names
	ClientAppID      string // client application id, when the source separates it
	ServicePrincipal string

	IP        string // client IP without port
	ASN       uint32
	Country   string
	UserAgent string // user agent or ClientInfoString

	SessionID string
	TokenID   string

	Mailbox    string   // mailbox owner UPN for mail access
	Folders    []string // folder paths touched
	MessageIDs []string // InternetMessageIds read
	ItemCount  int

	RecordID string // the source's own record id (M365 Id, Entra id, Workspace uniqueQualifier)
	Raw      []byte // the record's bytes verbatim
	Origin   Origin

	fields []Field // sorted by Sym, stable
	// norm is built from the struct fields on the first lookup of a
	// normalized name; Normalize clears it.
	norm atomic.Pointer[normTable]
	// access is the mail access MailAccessOf read from the record.
	access *MailAccess

	// Lazily flattened events keep only Raw until a lookup needs a source
	// field: most events of a hunt are skipped by the rule index on their
	// operation alone, and never pay for flattening.
	lazy  Flattener
	arg   int
	top   []Sym // sorted Syms of the record's top-level names; nil: unknown
	eager []Field
	// missing are names known, from the decoder's parse, to have no value.
	missing []Missing
	once    sync.Once
	flat    atomic.Bool // a lazy event was flattened
}

// Missing is a name a lazy event's record has no field of, read from the
// decoder's parse of it (Walk), so lookups of it need no flattening.
type Missing struct {
	Sym Sym
	// Below: nor any field named below it (Sym's name, a dot, more).
	Below bool
}

// SetMissing supplies names the record is known to have no field of; ms is
// kept, not copied.
func (e *Event) SetMissing(ms []Missing) { e.missing = ms }

// Flattened reports whether the event's source fields have been built: a
// lazy event is flattened on the first lookup its shortcuts (top-level
// keys, eager fields, missing names) cannot answer.
func (e *Event) Flattened() bool {
	return e.lazy == nil || e.flat.Load()
}

// NoneBelow reports whether the record certainly has no source field whose
// name starts with s's name and a dot, known without flattening. False
// means only that it does not know.
func (e *Event) NoneBelow(s Sym) bool {
	if s == 0 || e.lazy == nil {
		return false
	}
	if e.top != nil {
		if _, found := slices.BinarySearch(e.top, s.First()); !found {
			return true
		}
	}
	for _, m := range e.missing {
		if m.Sym == s {
			return m.Below
		}
	}
	return false
}

// SetTopKeys records the sorted Syms of every top-level field name the
// lazy event's flattening would produce (for a key holding a dot, its first
// segment). A lookup whose first path segment is not among them is
// answered, as absent, without flattening. The slice is shared, not copied.
func (e *Event) SetTopKeys(syms []Sym) { e.top = syms }

// TopKeys builds the argument of SetTopKeys from key names.
func TopKeys(keys []string) []Sym {
	out := make([]Sym, 0, len(keys))
	for _, k := range keys {
		s := InternData(k)
		if s == 0 {
			// Past maxDataSyms a new dotted name is not interned; its first
			// segment may be (a name rules look up).
			seg, _, _ := strings.Cut(k, ".")
			s = InternData(seg)
		}
		if s != 0 {
			out = append(out, s.First())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AddEager supplies the value of a single-valued source field up front, so
// lookups of it need no flattening. The value must be exactly what
// flattening would produce for that name, and the only one.
func (e *Event) AddEager(s Sym, name, value string, kind Kind) {
	e.eager = append(e.eager, Field{Sym: s, Name: name, Value: value, Kind: kind})
}

// Eager returns the fields supplied up front.
func (e *Event) Eager() []Field { return e.eager }

// SetEager is AddEager for several fields at once; fs is kept, not copied.
func (e *Event) SetEager(fs []Field) { e.eager = fs }

// Flattener re-creates an event's source fields from its parsed Raw bytes;
// arg says which part of the record the event is (a Workspace activity's
// event index).
type Flattener func(b *Builder, v *fastjson.Value, arg int)

// SetLazy defers flattening until a lookup needs the source fields. Raw
// must hold the record's JSON. SetTopKeys and AddEager let more lookups be
// answered without flattening.
func (e *Event) SetLazy(f Flattener, arg int) { e.lazy, e.arg = f, arg }

var (
	parserPool  = sync.Pool{New: func() any { return new(fastjson.Parser) }}
	builderPool = sync.Pool{New: func() any { return NewBuilder() }}
)

// materialize flattens a lazy event. A record that no longer parses (it
// did when decoded) leaves the event with no source fields.
func (e *Event) materialize() {
	if e.lazy == nil {
		return
	}
	e.once.Do(func() {
		p := parserPool.Get().(*fastjson.Parser)
		b := builderPool.Get().(*Builder)
		if v, err := p.ParseBytes(e.Raw); err == nil {
			e.lazy(b, v, e.arg)
			e.fields = b.fields()
		}
		b.Reset()
		builderPool.Put(b)
		parserPool.Put(p)
		e.flat.Store(true)
	})
}

// Normalized field names rules can use in addition to the source's own.
var (
	SymTime             = Intern("time")
	SymTenant           = Intern("tenant")
	SymSource           = Intern("source")
	SymOperation        = Intern("operation")
	SymResult           = Intern("result")
	SymUser             = Intern("user")
	SymAppID            = Intern("app_id")
	SymClientAppID      = Intern("client_app_id")
	SymServicePrincipal = Intern("service_principal")
	SymSrcIP            = Intern("src_ip")
	SymCountry          = Intern("country")
	SymUserAgent        = Intern("user_agent")
	SymSessionID        = Intern("session_id")
	SymTokenID          = Intern("token_id")
	SymMailbox          = Intern("mailbox")
	SymRecordID         = Intern("record_id")
)

const numNorm = 16

// Fields returns every flattened source field, sorted by Sym.
func (e *Event) Fields() []Field {
	e.materialize()
	return e.fields
}

// Values returns the values of the field named by s: the source's own
// field when the record has it, else the normalized field of that name.
// The result aliases the event; callers must not modify it.
func (e *Event) Values(s Sym) []Field {
	if s == 0 {
		return nil // not a name (see maxDataSyms)
	}
	if e.lazy != nil {
		for i := range e.eager {
			if e.eager[i].Sym == s {
				return e.eager[i : i+1]
			}
		}
		for i := range e.missing {
			if e.missing[i].Sym == s {
				return e.normValues(s)
			}
		}
		if e.top != nil {
			if _, found := slices.BinarySearch(e.top, s.First()); !found {
				return e.normValues(s)
			}
		}
		e.materialize()
	}
	f := e.fields
	i := sort.Search(len(f), func(i int) bool { return f[i].Sym >= s })
	j := i
	for j < len(f) && f[j].Sym == s {
		j++
	}
	if j > i {
		return f[i:j]
	}
	return e.normValues(s)
}

func (e *Event) normValues(s Sym) []Field {
	if s < SymTime || s >= SymTime+numNorm {
		return nil
	}
	t := e.norm.Load()
	if t == nil || (s == SymTime && !t.withTime) {
		// Formatting the time is the costly part; only done when asked.
		t = e.buildNorm(s == SymTime || (t != nil && t.withTime))
		e.norm.Store(t) // concurrent builders store equivalent tables
	}
	if i := s - SymTime; t.f[i].Sym == s {
		return t.f[i : i+1]
	}
	return nil
}

type normTable struct {
	f        [numNorm]Field
	withTime bool
}

// Get returns the first value of the field called name, or "".
func (e *Event) Get(name string) string {
	if v := e.Values(Intern(name)); len(v) > 0 {
		return v[0].Value
	}
	return ""
}

// Normalize must be called after changing the struct fields of an event
// whose fields were already looked up by name: it drops the normalized
// lookups, which are rebuilt from the struct on the next lookup.
func (e *Event) Normalize() { e.norm.Store(nil) }

var normNames = func() (n [numNorm]string) {
	for i := range n {
		n[i] = (SymTime + Sym(i)).String()
	}
	return n
}()

func (e *Event) buildNorm(withTime bool) *normTable {
	t := &normTable{withTime: withTime}
	set := func(s Sym, v string) {
		if v != "" {
			t.f[s-SymTime] = Field{Sym: s, Name: normNames[s-SymTime], Value: v}
		}
	}
	if withTime && !e.Time.IsZero() {
		set(SymTime, e.Time.UTC().Format(time.RFC3339Nano))
	}
	set(SymTenant, e.Tenant)
	set(SymSource, e.Source)
	set(SymOperation, e.Operation)
	set(SymResult, e.Result)
	set(SymUser, e.User)
	set(SymAppID, e.AppID)
	set(SymClientAppID, e.ClientAppID)
	set(SymServicePrincipal, e.ServicePrincipal)
	set(SymSrcIP, e.IP)
	set(SymCountry, e.Country)
	set(SymUserAgent, e.UserAgent)
	set(SymSessionID, e.SessionID)
	set(SymTokenID, e.TokenID)
	set(SymMailbox, e.Mailbox)
	set(SymRecordID, e.RecordID)
	return t
}

// sortFields sorts stably by Sym. Records have a few dozen fields, often
// already nearly in order: insertion sort, without reflection or
// allocation, is fastest then; past insertionMax fields it would be
// quadratic (a record of a million keys), so a merge sort takes over.
const insertionMax = 256

func sortFields(fs []Field) {
	if len(fs) > insertionMax {
		slices.SortStableFunc(fs, func(a, b Field) int { return cmp.Compare(a.Sym, b.Sym) })
		return
	}
	for i := 1; i < len(fs); i++ {
		x := fs[i]
		j := i
		for j > 0 && fs[j-1].Sym > x.Sym {
			fs[j] = fs[j-1]
			j--
		}
		fs[j] = x
	}
}
