package sigma

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/event"
)

// Detection is one rule match.
type Detection struct {
	RuleID string // id, else name
	Title  string
	Level  string
	Tags   []string
	// Author is the rule's author; DRL 1.1 asks that messages based on
	// matches with SigmaHQ rules keep it.
	Author string
	Rule   *Rule
	Time   time.Time
	// Event is the event that matched (or completed a correlation); nil
	// for correlations decided when their window closed. It is the caller's
	// event: copy what you need before reusing it.
	Event *event.Event
	// Fields are the field values that satisfied the rule (detection
	// rules only).
	Fields []MatchedField
	// Correlation is set for correlation rules.
	Correlation *CorrelationResult
}

// Stats counts correlation inputs that could not be used.
type Stats struct {
	Late         uint64 // older than the group's window when they arrived
	Untimed      uint64 // events without a time, skipped by correlations
	NoGroupValue uint64 // missing a group-by or value_count field
}

// Ruleset is a compiled set of rules.
//
// Match may be called from several goroutines at once: detection rules
// share only immutable compiled state, and correlation state sits behind
// one mutex taken only when an event matched a rule some correlation
// uses (or to close expired windows). Detections are emitted from the
// calling goroutine.
type Ruleset struct {
	rules   []*Rule
	buckets map[string]*bucket
	corrs   []*correlation

	mu        sync.Mutex // guards correlation state and stats
	stats     Stats
	watermark atomic.Int64 // newest event time seen (UnixNano)
	nextSweep atomic.Int64
	minSpan   time.Duration
}

// compiled is a rule's detection for one source.
type compiled struct {
	rule *Rule
	det  *detection
}

// bucket holds the rules of one source: indexed by the exact value of a
// field every match requires, or always evaluated.
type bucket struct {
	always  []*compiled
	indexed []*indexField
}

type indexField struct {
	res    *resolver
	byVal  map[string][]*compiled
	nrules int
}

func newRuleset() *Ruleset { return &Ruleset{buckets: map[string]*bucket{}} }

func (rs *Ruleset) add(r *Rule) {
	r.ord = len(rs.rules)
	rs.rules = append(rs.rules, r)
	if r.corr != nil {
		rs.corrs = append(rs.corrs, r.corr)
	}
}

// Rules returns every loaded rule in load order.
func (rs *Ruleset) Rules() []*Rule { return rs.rules }

// Len is the number of loaded rules.
func (rs *Ruleset) Len() int { return len(rs.rules) }

// Stats returns correlation input counters.
func (rs *Ruleset) Stats() Stats {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.stats
}

// finish builds the per-source index.
func (rs *Ruleset) finish() {
	for _, r := range rs.rules {
		for _, src := range r.Sources {
			det := r.det[src]
			b := rs.buckets[src]
			if b == nil {
				b = &bucket{}
				rs.buckets[src] = b
			}
			c := &compiled{rule: r, det: det}
			field, vals := bestRequirement(det)
			if field == "" {
				b.always = append(b.always, c)
				continue
			}
			var f *indexField
			for _, x := range b.indexed {
				if x.res.name == field {
					f = x
				}
			}
			if f == nil {
				f = &indexField{res: newResolver(field, src), byVal: map[string][]*compiled{}}
				b.indexed = append(b.indexed, f)
			}
			f.nrules++
			for v := range vals {
				f.byVal[v] = append(f.byVal[v], c)
			}
		}
	}
	for _, co := range rs.corrs {
		if rs.minSpan == 0 || co.span < rs.minSpan {
			rs.minSpan = co.span
		}
	}
}

// IndexStats reports, per source, how many rules are indexed and how many
// run on every event.
func (rs *Ruleset) IndexStats() map[string][2]int {
	out := map[string][2]int{}
	for s, b := range rs.buckets {
		n := 0
		for _, f := range b.indexed {
			n += f.nrules
		}
		out[s] = [2]int{n, len(b.always)}
	}
	return out
}

// requirement: canonical field name → the lower-cased exact values one of
// which the field must hold for the rule to match.
type requirement map[string]map[string]bool

var preferredIndex = []string{"operation", "eventname", "operationname", "riskeventtype", "activitydisplayname", "properties.message"}

// bestRequirement picks the field to index a detection by, or "".
func bestRequirement(d *detection) (string, map[string]bool) {
	req := nodeRequirement(d.cond, d.sels)
	if len(req) == 0 {
		return "", nil
	}
	keys := make([]string, 0, len(req))
	for k := range req {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		pi, pj := prefRank(keys[i]), prefRank(keys[j])
		if pi != pj {
			return pi < pj
		}
		if len(req[keys[i]]) != len(req[keys[j]]) {
			return len(req[keys[i]]) < len(req[keys[j]])
		}
		return keys[i] < keys[j]
	})
	return req.name(keys[0]), req[keys[0]]
}

// name recovers the field name: requirement keys are "canonical\x00name".
func (requirement) name(k string) string { _, n, _ := strings.Cut(k, "\x00"); return n }

func prefRank(k string) int {
	c, _, _ := strings.Cut(k, "\x00")
	for i, p := range preferredIndex {
		if c == p {
			return i
		}
	}
	return len(preferredIndex)
}

func nodeRequirement(n *node, sels []*selection) requirement {
	switch n.op {
	case nodeSel:
		return selRequirement(sels[n.sel])
	case nodeAnd:
		var acc requirement
		for _, k := range n.kids {
			acc = andReq(acc, nodeRequirement(k, sels))
		}
		return acc
	case nodeOr:
		return orReqs(n.kids, sels)
	case nodeOf:
		if n.min == len(n.kids) {
			var acc requirement
			for _, k := range n.kids {
				acc = andReq(acc, nodeRequirement(k, sels))
			}
			return acc
		}
		return orReqs(n.kids, sels)
	}
	return nil
}

func orReqs(kids []*node, sels []*selection) requirement {
	var acc requirement
	for i, k := range kids {
		r := nodeRequirement(k, sels)
		if i == 0 {
			acc = r
			continue
		}
		acc = orReq(acc, r)
	}
	return acc
}

func selRequirement(s *selection) requirement {
	var acc requirement
	for i, g := range s.groups {
		var gr requirement
		for _, it := range g {
			gr = andReq(gr, itemRequirement(it))
		}
		if i == 0 {
			acc = gr
		} else {
			acc = orReq(acc, gr)
		}
	}
	return acc
}

func itemRequirement(it *fieldItem) requirement {
	if it.keywords || it.op != opValues || it.neq || it.all || len(it.tests) == 0 {
		return nil
	}
	vals := map[string]bool{}
	for _, t := range it.tests {
		if t.str == nil || t.str.kind != kindExact {
			return nil
		}
		vals[strings.ToLower(t.str.lit)] = true
	}
	return requirement{event.CanonicalName(it.field) + "\x00" + it.field: vals}
}

func andReq(a, b requirement) requirement {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	out := requirement{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if cur, ok := out[k]; ok {
			inter := map[string]bool{}
			for x := range v {
				if cur[x] {
					inter[x] = true
				}
			}
			out[k] = inter
		} else {
			out[k] = v
		}
	}
	return out
}

func orReq(a, b requirement) requirement {
	if a == nil || b == nil {
		return nil
	}
	out := requirement{}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			continue
		}
		u := map[string]bool{}
		for x := range v {
			u[x] = true
		}
		for x := range w {
			u[x] = true
		}
		out[k] = u
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// appendLower lower-cases v into dst (ASCII fast path).
func appendLower(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= utf8.RuneSelf {
			return append(dst[:0], strings.ToLower(v)...)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Match runs the rules for e's source over e and calls emit for each
// detection, in rule load order (correlations after the rules they use).
// It is Apply(e, Detect(e), emit).
func (rs *Ruleset) Match(e *event.Event, emit func(Detection)) {
	rs.Apply(e, rs.Detect(e), emit)
}

// Matches is what Detect found in one event: the detection rules that
// matched it, for Apply to emit and to pass on to the correlations.
type Matches struct {
	dets []Detection // standalone rules' detections
	hits []*hit      // hits for correlations
}

// Len is how many rules matched.
func (m Matches) Len() int { return len(m.dets) + len(m.hits) }

// Detect runs the detection rules for e's source over e. It reads no
// correlation state, so it may run on many goroutines at once, ahead of
// Apply, which must see the events in order.
func (rs *Ruleset) Detect(e *event.Event) Matches {
	var m Matches
	b := rs.buckets[e.Source]
	if b == nil {
		return m
	}
	var candBuf [32]*compiled
	cands := candBuf[:0]
	cands = append(cands, b.always...)
	if len(b.indexed) > 0 {
		var scratch [8]event.Field
		var kb [96]byte
		multi := false
		for _, f := range b.indexed {
			vals := f.res.values(e, scratch[:0])
			for i := range vals {
				key := appendLower(kb[:0], vals[i].Value)
				if hits, ok := f.byVal[string(key)]; ok {
					cands = append(cands, hits...)
					multi = multi || len(vals) > 1
				}
			}
		}
		if len(cands) > 1 {
			sortCompiled(cands)
			if multi {
				cands = dedupe(cands)
			}
		}
	}
	for _, c := range cands {
		if !c.det.match(e) {
			continue
		}
		r := c.rule
		if r.standalone {
			d := Detection{RuleID: r.Key(), Title: r.Title, Level: r.Level, Tags: r.Tags, Author: r.Author, Rule: r, Time: e.Time, Event: e}
			d.Fields = c.det.explain(e)
			m.dets = append(m.dets, d)
		}
		if len(r.consumers) > 0 {
			m.hits = append(m.hits, &hit{rule: r, t: e.Time, ev: e})
		}
	}
	return m
}

// EmitSingle emits the single-event detections among m, leaving the
// correlations alone: for an event that cannot be placed in time.
func (m Matches) EmitSingle(emit func(Detection)) {
	for _, d := range m.dets {
		emit(d)
	}
}

// Apply takes what Detect found in e, in event order: it closes the
// correlation windows e's time ends, emits the detections and feeds the
// correlations.
func (rs *Ruleset) Apply(e *event.Event, m Matches, emit func(Detection)) {
	if len(rs.corrs) > 0 && !e.Time.IsZero() {
		rs.advance(e.Time, emit)
	}
	for _, d := range m.dets {
		emit(d)
	}
	if len(m.hits) > 0 {
		rs.feed(m.hits, e, emit)
	}
}

func sortCompiled(c []*compiled) {
	for i := 1; i < len(c); i++ {
		x := c[i]
		j := i
		for j > 0 && c[j-1].rule.ord > x.rule.ord {
			c[j] = c[j-1]
			j--
		}
		c[j] = x
	}
}

func dedupe(c []*compiled) []*compiled {
	out := c[:1]
	for _, x := range c[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// explain lists the field values behind a match: the items of the
// selections that hold and are not negated in the condition.
func (d *detection) explain(e *event.Event) []MatchedField {
	var out []MatchedField
	seen := make([]bool, len(d.sels))
	d.cond.walkPositive(false, func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		d.sels[i].eval(e, &out)
	})
	return out
}

// feed passes base-rule hits to the correlations, under the lock, and
// emits what fires (chained correlations included).
func (rs *Ruleset) feed(hits []*hit, e *event.Event, emit func(Detection)) {
	var fired []Detection
	rs.mu.Lock()
	queue := hits
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if h.t.IsZero() {
			rs.stats.Untimed++
			continue
		}
		for _, co := range h.rule.consumers {
			for _, out := range co.feed(h, &rs.stats) {
				fired = append(fired, co.detection(out, e))
				queue = append(queue, out)
			}
		}
	}
	rs.mu.Unlock()
	for _, d := range fired {
		if d.Rule.standalone {
			emit(d)
		}
	}
}

func (co *correlation) detection(h *hit, e *event.Event) Detection {
	r := co.rule
	d := Detection{RuleID: r.Key(), Title: r.Title, Level: r.Level, Tags: r.Tags, Author: r.Author, Rule: r, Time: h.t, Event: e,
		Correlation: &CorrelationResult{Type: co.typ, Group: h.vals, Count: h.count, Events: h.events}}
	if e != nil && !e.Time.Equal(h.t) {
		d.Event = nil
	}
	return d
}

// advance moves the watermark and closes correlation windows that ended.
func (rs *Ruleset) advance(t time.Time, emit func(Detection)) {
	ns := t.UnixNano()
	for {
		cur := rs.watermark.Load()
		if ns <= cur || rs.watermark.CompareAndSwap(cur, ns) {
			break
		}
	}
	next := rs.nextSweep.Load()
	if next != 0 && ns < next {
		return
	}
	if !rs.nextSweep.CompareAndSwap(next, ns+int64(rs.minSpan)) {
		return
	}
	if next == 0 {
		return // first event: nothing to close yet
	}
	rs.closeWindows(time.Unix(0, rs.watermark.Load()).UTC(), false, emit)
}

// Flush decides every open correlation window (end of input) and emits
// what fires. Match must not run concurrently with Flush.
func (rs *Ruleset) Flush(emit func(Detection)) {
	rs.closeWindows(time.Unix(0, rs.watermark.Load()).UTC(), true, emit)
}

func (rs *Ruleset) closeWindows(wm time.Time, all bool, emit func(Detection)) {
	var fired []Detection
	rs.mu.Lock()
	var queue []*hit
	for _, co := range rs.corrs {
		for _, out := range co.sweep(wm, all) {
			fired = append(fired, co.detection(out, nil))
			queue = append(queue, out)
		}
	}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		for _, co := range h.rule.consumers {
			for _, out := range co.feed(h, &rs.stats) {
				fired = append(fired, co.detection(out, nil))
				queue = append(queue, out)
			}
		}
	}
	rs.mu.Unlock()
	for _, d := range fired {
		if d.Rule.standalone {
			emit(d)
		}
	}
}

// FieldSyms returns every field name (as Syms) the rules may look up,
// over all sources. Decoders use it to read those fields up front, while
// the record is parsed anyway, so that matching rarely has to flatten an
// event.
func (rs *Ruleset) FieldSyms() []event.Sym {
	seen := map[event.Sym]bool{}
	addRes := func(r *resolver) {
		if r == nil {
			return
		}
		for _, s := range r.syms {
			seen[s] = true
		}
		for _, s := range r.unquote {
			seen[s] = true
		}
	}
	addDet := func(d *detection) {
		for _, sel := range d.sels {
			for _, g := range sel.groups {
				for _, it := range g {
					addRes(it.res)
					for _, r := range it.refs {
						addRes(r)
					}
				}
			}
		}
	}
	for _, b := range rs.buckets {
		for _, c := range b.always {
			addDet(c.det)
		}
		for _, f := range b.indexed {
			addRes(f.res)
			for _, cs := range f.byVal {
				for _, c := range cs {
					addDet(c.det)
				}
			}
		}
	}
	out := make([]event.Sym, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
