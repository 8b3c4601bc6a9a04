package sigma

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"go.yaml.in/yaml/v3"
)

type rawCorrelation struct {
	Type      string                       `yaml:"type"`
	Rules     []string                     `yaml:"rules"`
	GroupBy   []string                     `yaml:"group-by"`
	Timespan  string                       `yaml:"timespan"`
	Condition yaml.Node                    `yaml:"condition"`
	Aliases   map[string]map[string]string `yaml:"aliases"`
	Generate  *bool                        `yaml:"generate"`
}

// CorrelationResult is what a correlation detection adds.
type CorrelationResult struct {
	Type   string
	Group  []MatchedField // group-by field and value
	Count  int            // events (event_count), distinct values (value_count) or rules (temporal)
	Events []EventRef     // the contributing events, oldest first (at most maxRefs)
}

// EventRef identifies an event that contributed to a correlation.
type EventRef struct {
	Time     time.Time
	Source   string
	RecordID string
	User     string
	RuleID   string // the referenced rule it matched
}

// maxRefs bounds the events kept per correlation group for reporting; the
// counts themselves are exact.
const maxRefs = 32

// correlation is a compiled correlation rule.
type correlation struct {
	rule     *Rule
	typ      string
	refs     []*Rule
	groupBy  []string
	span     time.Duration
	lo, hi   int64 // count bounds, inclusive; hi < 0: none
	upper    bool  // has an upper bound: decided when the window closes
	field    string
	expr     *node // temporal: boolean condition over refs; nil = all
	minRules int   // temporal with a count condition
	// per referenced rule key: alias field for each group-by field
	alias map[string][]string

	resolvers map[resKey]*resolver
	groups    map[string]*group
	lastSweep time.Time
}

type resKey struct{ field, source string }

var timespanRE = regexp.MustCompile(`^([0-9]+)([smhdw])$`)

func parseTimespan(s string) (time.Duration, error) {
	m := timespanRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, refuse("timespan %q: want a number and one of s, m, h, d, w", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n <= 0 {
		return 0, refuse("timespan %q must be positive", s)
	}
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit, nil
}

func (c *Compiler) compileCorrelationDoc(d *rawDoc, lookup func(string) (*Rule, error)) (*Rule, error) {
	m := d.meta
	if m.Detection.Kind != 0 {
		return nil, refuse("a document cannot hold both detection and correlation")
	}
	r, err := c.newRule(d)
	if err != nil {
		return nil, err
	}
	rc := m.Correlation
	co := &correlation{rule: r, typ: rc.Type, groupBy: rc.GroupBy, alias: map[string][]string{}, hi: -1,
		resolvers: map[resKey]*resolver{}, groups: map[string]*group{}}
	switch rc.Type {
	case "event_count", "value_count", "temporal", "temporal_ordered":
	case "":
		return nil, refuse("correlation has no type")
	default:
		return nil, refuse("unsupported correlation type %q", rc.Type)
	}
	r.Correlation = rc.Type
	if len(rc.Rules) == 0 {
		return nil, refuse("correlation refers to no rules")
	}
	if co.span, err = parseTimespan(rc.Timespan); err != nil {
		return nil, err
	}
	seen := map[*Rule]bool{}
	for _, ref := range rc.Rules {
		rr, err := lookup(ref)
		if err != nil {
			return nil, err
		}
		if seen[rr] {
			return nil, refuse("rule %q listed twice", ref)
		}
		seen[rr] = true
		co.refs = append(co.refs, rr)
	}
	if err := co.compileCondition(&rc.Condition); err != nil {
		return nil, err
	}
	// Aliases: alias → rule name/id → field.
	for alias, per := range rc.Aliases {
		for ref := range per {
			if _, err := lookup(ref); err != nil {
				return nil, fmt.Errorf("alias %s: %w", alias, err)
			}
		}
	}
	for _, rr := range co.refs {
		fields := make([]string, len(co.groupBy))
		for i, g := range co.groupBy {
			fields[i] = g
			if per, ok := rc.Aliases[g]; ok {
				f, ok1 := per[rr.Name]
				if !ok1 {
					f, ok1 = per[rr.ID]
				}
				if !ok1 {
					return nil, refuse("alias %q has no field for rule %q", g, rr.Key())
				}
				fields[i] = f
			}
		}
		co.alias[rr.Key()] = fields
		if rr.corr != nil {
			// Chained correlation: its hits carry only its group-by values.
			for _, f := range fields {
				if !containsStr(rr.corr.groupBy, f) {
					return nil, refuse("group-by field %q is not a group-by field of correlation %q", f, rr.Key())
				}
			}
			if co.field != "" && !containsStr(rr.corr.groupBy, co.field) {
				return nil, refuse("value_count field %q is not a group-by field of correlation %q", co.field, rr.Key())
			}
		}
		for _, s := range rr.Sources {
			for _, f := range append(append([]string(nil), fields...), co.field) {
				if f != "" {
					co.resolvers[resKey{f, s}] = newResolver(f, s)
				}
			}
		}
	}
	generate := false
	if rc.Generate != nil {
		generate = *rc.Generate
	} else if m.Generate != nil {
		generate = *m.Generate
	}
	for _, rr := range co.refs {
		rr.consumers = append(rr.consumers, co)
		if !generate {
			rr.standalone = false
		}
	}
	// A rule some correlation asks to generate stays standalone even if
	// another one does not.
	if generate {
		for _, rr := range co.refs {
			rr.standalone = true
		}
	}
	r.corr = co
	return r, nil
}

func (co *correlation) compileCondition(n *yaml.Node) error {
	switch co.typ {
	case "temporal", "temporal_ordered":
		if n.Kind == 0 {
			co.minRules = len(co.refs)
			return nil
		}
		if n.Kind == yaml.ScalarNode {
			if co.typ == "temporal_ordered" {
				return refuse("temporal_ordered takes no condition expression (order already requires every rule)")
			}
			idx := map[string]int{}
			for i, r := range co.refs {
				idx[r.Key()] = i
				if r.Name != "" {
					idx[r.Name] = i
				}
			}
			expr, err := parseTemporalExpr(n.Value, idx)
			if err != nil {
				return err
			}
			co.expr = expr
			return nil
		}
	}
	if n.Kind == 0 {
		return refuse("%s correlation needs a condition", co.typ)
	}
	if n.Kind != yaml.MappingNode {
		return refuse("correlation condition must be a map")
	}
	var lo, hi int64 = 0, -1
	bounds := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if k == "field" {
			if co.typ != "value_count" {
				return refuse("condition field is only valid for value_count")
			}
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return refuse("value_count takes one field name")
			}
			co.field = v.Value
			continue
		}
		x, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil || v.Kind != yaml.ScalarNode {
			return refuse("condition %s needs an integer, not %q", k, v.Value)
		}
		bounds++
		switch k {
		case "gt":
			lo = max(lo, x+1)
		case "gte":
			lo = max(lo, x)
		case "lt":
			hi = minBound(hi, x-1)
		case "lte":
			hi = minBound(hi, x)
		case "eq":
			lo, hi = max(lo, x), minBound(hi, x)
		case "neq":
			return refuse("condition neq is not supported for correlations")
		default:
			return refuse("unknown condition operator %q", k)
		}
	}
	if bounds == 0 {
		return refuse("correlation condition has no bound")
	}
	if co.typ == "value_count" && co.field == "" {
		return refuse("value_count needs condition.field")
	}
	co.lo, co.hi = lo, hi
	co.upper = hi >= 0
	if co.typ == "temporal" || co.typ == "temporal_ordered" {
		if co.upper {
			return refuse("%s condition with an upper bound is not supported", co.typ)
		}
		if co.typ == "temporal_ordered" && lo != int64(len(co.refs)) {
			return refuse("temporal_ordered must require all %d rules", len(co.refs))
		}
		co.minRules = int(max(lo, 1))
	}
	if co.lo < 1 && !co.upper {
		co.lo = 1
	}
	return nil
}

func minBound(hi, x int64) int64 {
	if hi < 0 || x < hi {
		return x
	}
	return hi
}

// parseTemporalExpr parses a boolean condition over rule names.
func parseTemporalExpr(s string, idx map[string]int) (*node, error) {
	names := make([]string, 0, len(idx))
	for k := range idx {
		names = append(names, k)
	}
	sort.Strings(names)
	n, err := parseCondition(s, names)
	if err != nil {
		return nil, err
	}
	// Map parser indexes (into names) onto rule indexes.
	var fix func(*node)
	fix = func(x *node) {
		if x.op == nodeSel {
			x.sel = idx[names[x.sel]]
		}
		for _, k := range x.kids {
			fix(k)
		}
	}
	fix(n)
	return n, nil
}

// hit is one input to a correlation: a base-rule match or a fired
// correlation.
type hit struct {
	rule   *Rule
	t      time.Time
	ev     *event.Event      // base-rule hit
	group  map[string]string // correlation hit: its group-by values
	events []EventRef        // correlation hit: its events
	count  int
	vals   []MatchedField
}

// fieldValue returns the value of field for the hit ("", false if absent).
// Arrays give their first element.
func (co *correlation) fieldValue(h *hit, field string) (string, bool) {
	if h.ev == nil {
		v, ok := h.group[field]
		return v, ok
	}
	r := co.resolvers[resKey{field, h.ev.Source}]
	if r == nil {
		r = newResolver(field, h.ev.Source)
	}
	var scratch [8]event.Field
	vs := r.values(h.ev, scratch[:0])
	for _, v := range vs {
		if v.Kind != event.Null && v.Value != "" {
			return v.Value, true
		}
	}
	return "", false
}

// group is the state of one group-by key.
type group struct {
	vals   []MatchedField
	newest time.Time
	start  time.Time // window start (upper-bound mode)
	// event_count / value_count: entries in time order
	entries  []entry
	distinct map[string]int // value_count: live entries per value
	// temporal: last time each referenced rule fired; ordered: chain start
	// time of the longest chain ending at each position
	seen  []time.Time
	chain []time.Time
	has   []bool
	refs  []EventRef
}

type entry struct {
	t     time.Time
	value string
}

// feed adds a hit and returns the correlation's results, if it fires.
func (co *correlation) feed(h *hit, st *Stats) []*hit {
	vals := make([]MatchedField, len(co.groupBy))
	fields := co.alias[h.rule.Key()]
	for i, g := range co.groupBy {
		v, ok := co.fieldValue(h, fields[i])
		if !ok {
			st.NoGroupValue++
			return nil
		}
		vals[i] = MatchedField{Field: g, Value: v}
	}
	value := ""
	if co.typ == "value_count" {
		v, ok := co.fieldValue(h, co.field)
		if !ok {
			st.NoGroupValue++
			return nil
		}
		value = v
	}
	var kb strings.Builder
	for _, v := range vals {
		kb.WriteString(v.Value)
		kb.WriteByte(0)
	}
	key := kb.String()
	g := co.groups[key]
	if g == nil {
		g = &group{vals: vals, start: h.t}
		co.groups[key] = g
	}
	var out []*hit
	if !g.newest.IsZero() && h.t.Before(g.newest.Add(-co.span)) {
		st.Late++
		return nil
	}
	if co.upper && !h.t.Before(g.start.Add(co.span)) {
		// The tumbling window closed: decide it, then start a new one.
		if r := co.decide(g); r != nil {
			out = append(out, r)
		}
		*g = group{vals: vals, start: h.t}
	}
	if h.t.After(g.newest) {
		g.newest = h.t
	}
	refs := h.events
	if h.ev != nil {
		refs = []EventRef{{Time: h.t, Source: h.ev.Source, RecordID: h.ev.RecordID, User: h.ev.User, RuleID: h.rule.Key()}}
	}
	switch co.typ {
	case "event_count", "value_count":
		if co.typ == "value_count" && g.distinct == nil {
			g.distinct = map[string]int{}
		}
		g.insert(entry{t: h.t, value: value})
		g.expire(co.span, co.upper)
		g.addRefs(refs)
		if !co.upper && co.count(g) >= co.lo {
			out = append(out, co.result(g, int(co.count(g))))
			g.entries, g.refs, g.distinct = nil, nil, nil
		}
	case "temporal":
		idx := co.refIndex(h.rule)
		if g.seen == nil {
			g.seen = make([]time.Time, len(co.refs))
			g.has = make([]bool, len(co.refs))
		}
		if !g.has[idx] || h.t.After(g.seen[idx]) {
			g.seen[idx], g.has[idx] = h.t, true
		}
		g.addRefs(refs)
		present := make([]bool, len(co.refs))
		n := 0
		for i := range co.refs {
			if g.has[i] && !g.seen[i].Before(g.newest.Add(-co.span)) {
				present[i] = true
				n++
			}
		}
		ok := n >= co.minRules
		if co.expr != nil {
			ok = co.expr.eval(func(i int) bool { return present[i] })
		}
		if ok {
			out = append(out, co.result(g, n))
			g.seen, g.has, g.refs = nil, nil, nil
		}
	case "temporal_ordered":
		if g.chain == nil {
			g.chain = make([]time.Time, len(co.refs))
			g.has = make([]bool, len(co.refs))
		}
		// Highest position first so one event never fills two positions.
		for k := len(co.refs) - 1; k >= 0; k-- {
			if co.refs[k] != h.rule {
				continue
			}
			if k == 0 {
				g.chain[0], g.has[0] = h.t, true
				continue
			}
			if g.has[k-1] && !h.t.Before(g.chain[k-1]) && h.t.Sub(g.chain[k-1]) <= co.span {
				if !g.has[k] || g.chain[k-1].After(g.chain[k]) {
					g.chain[k], g.has[k] = g.chain[k-1], true
				}
			}
		}
		g.addRefs(refs)
		last := len(co.refs) - 1
		if g.has[last] {
			out = append(out, co.result(g, len(co.refs)))
			g.chain, g.has, g.refs = nil, nil, nil
		}
	}
	return out
}

func (co *correlation) refIndex(r *Rule) int {
	for i, x := range co.refs {
		if x == r {
			return i
		}
	}
	return -1
}

func (g *group) insert(e entry) {
	i := len(g.entries)
	for i > 0 && g.entries[i-1].t.After(e.t) {
		i--
	}
	g.entries = append(g.entries, entry{})
	copy(g.entries[i+1:], g.entries[i:])
	g.entries[i] = e
	if g.distinct != nil {
		g.distinct[e.value]++
	}
}

// expire drops entries older than the sliding window (tumbling windows
// keep everything until they close).
func (g *group) expire(span time.Duration, tumbling bool) {
	if tumbling {
		return
	}
	cut := g.newest.Add(-span)
	i := 0
	for i < len(g.entries) && g.entries[i].t.Before(cut) {
		if g.distinct != nil {
			v := g.entries[i].value
			if g.distinct[v]--; g.distinct[v] == 0 {
				delete(g.distinct, v)
			}
		}
		i++
	}
	g.entries = g.entries[i:]
	j := 0
	for j < len(g.refs) && g.refs[j].Time.Before(cut) {
		j++
	}
	g.refs = g.refs[j:]
}

func (g *group) addRefs(refs []EventRef) {
	for _, r := range refs {
		if len(g.refs) >= maxRefs {
			// Keep the first and the most recent ones.
			copy(g.refs[maxRefs/2:], g.refs[maxRefs/2+1:])
			g.refs = g.refs[:maxRefs-1]
		}
		g.refs = append(g.refs, r)
	}
}

func (co *correlation) count(g *group) int64 {
	if co.typ == "event_count" {
		return int64(len(g.entries))
	}
	return int64(len(g.distinct))
}

// decide evaluates a closed window of an upper-bounded condition.
func (co *correlation) decide(g *group) *hit {
	if len(g.entries) == 0 {
		return nil
	}
	n := co.count(g)
	if n >= co.lo && n <= co.hi {
		return co.result(g, int(n))
	}
	return nil
}

func (co *correlation) result(g *group, n int) *hit {
	m := make(map[string]string, len(g.vals))
	for _, v := range g.vals {
		m[v.Field] = v.Value
	}
	refs := append([]EventRef(nil), g.refs...)
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].Time.Before(refs[j].Time) })
	return &hit{rule: co.rule, t: g.newest, group: m, events: refs, count: n, vals: append([]MatchedField(nil), g.vals...)}
}

// sweep closes groups idle for longer than the span before watermark.
func (co *correlation) sweep(watermark time.Time, all bool) []*hit {
	var out []*hit
	keys := make([]string, 0, len(co.groups))
	for k := range co.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := co.groups[k]
		expired := all || g.newest.Before(watermark.Add(-co.span))
		if co.upper && (all || !watermark.Before(g.start.Add(co.span))) {
			if r := co.decide(g); r != nil {
				out = append(out, r)
			}
			delete(co.groups, k)
			continue
		}
		if expired {
			delete(co.groups, k)
		}
	}
	co.lastSweep = watermark
	return out
}
