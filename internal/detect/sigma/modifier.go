package sigma

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/vigil-audit/vigil/internal/event"
	"go.yaml.in/yaml/v3"
)

// unsupportedError marks a reason to refuse a rule (as opposed to an I/O
// failure). Its text is the reason shown to the user.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

func refuse(format string, a ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, a...)}
}

// windashChars are the characters the windash modifier permutes (spec v2.1).
var windashChars = []string{"-", "/", "–", "—", "―"}

// maxExpansion bounds how many values one rule value may expand into
// (windash permutations, placeholder lists); beyond it the rule is refused
// rather than silently truncated.
const maxExpansion = 4096

// itemOp is what a field item tests.
type itemOp uint8

const (
	opValues   itemOp = iota // value tests, OR-ed (AND-ed with all)
	opExists                 // field presence
	opFieldRef               // compare with another field's values
)

// cmpOp is a numeric comparison.
type cmpOp uint8

const (
	cmpNone cmpOp = iota
	cmpEq
	cmpGt
	cmpGte
	cmpLt
	cmpLte
)

func (c cmpOp) eval(a, b float64) bool {
	switch c {
	case cmpEq:
		return a == b
	case cmpGt:
		return a > b
	case cmpGte:
		return a >= b
	case cmpLt:
		return a < b
	case cmpLte:
		return a <= b
	}
	return false
}

// timePart is a date component extracted by the time modifiers.
type timePart uint8

const (
	tpNone timePart = iota
	tpMinute
	tpHour
	tpDay
	tpWeek
	tpMonth
	tpYear
)

// valueTest is one compiled value of a field item.
type valueTest struct {
	null  bool // matches an absent field or a JSON null
	str   *strMatcher
	re    *regexp.Regexp
	cidr  netip.Prefix
	isNet bool
	cmp   cmpOp // numeric comparison against num (also for time parts)
	num   float64
	part  timePart
	raw   string // as written, for reports
}

func (t *valueTest) test(f *event.Field) bool {
	switch {
	case t.null:
		return f.Kind == event.Null
	case t.str != nil:
		if f.Kind == event.Null {
			return false
		}
		return t.str.match(f.Value)
	case t.re != nil:
		return f.Kind != event.Null && t.re.MatchString(f.Value)
	case t.isNet:
		a, ok := parseIP(f.Value)
		return ok && t.cidr.Contains(a)
	case t.part != tpNone:
		tm, ok := parseTime(f.Value)
		if !ok {
			return false
		}
		return t.cmp.eval(float64(extractPart(tm, t.part)), t.num)
	case t.cmp != cmpNone:
		x, err := strconv.ParseFloat(strings.TrimSpace(f.Value), 64)
		return err == nil && f.Kind != event.Null && t.cmp.eval(x, t.num)
	}
	return false
}

// fieldItem is one "field|modifiers: values" entry of a selection, or a
// keyword list when field is empty.
type fieldItem struct {
	key      string // as written, with modifiers
	field    string // field name as written ("" for keywords)
	res      *resolver
	op       itemOp
	all      bool
	neq      bool
	keywords bool
	exists   bool
	tests    []valueTest
	// fieldref
	refs     []*resolver
	refKind  strKind
	refCased bool
}

// parsedKey holds a field key's modifiers.
type parsedKey struct {
	field      string
	wrapOrTr   []string // transformations in written order (wrap + encodings)
	all        bool
	exists     bool
	cased      bool
	neq        bool
	re         bool
	reFlags    string
	cidr       bool
	cmp        cmpOp
	expand     bool
	fieldref   bool
	part       timePart
	hasWrap    bool
	hasEncode  bool
	modifierNs []string
}

func parseKey(key string) (parsedKey, error) {
	parts := strings.Split(key, "|")
	pk := parsedKey{field: parts[0]}
	for _, m := range parts[1:] {
		pk.modifierNs = append(pk.modifierNs, m)
		switch m {
		case "contains", "startswith", "endswith":
			if pk.hasWrap {
				return pk, refuse("%q: more than one of contains/startswith/endswith", key)
			}
			pk.hasWrap = true
			pk.wrapOrTr = append(pk.wrapOrTr, m)
		case "windash":
			pk.wrapOrTr = append(pk.wrapOrTr, m)
		case "base64", "base64offset", "utf16le", "utf16be", "utf16", "wide":
			pk.hasEncode = true
			pk.wrapOrTr = append(pk.wrapOrTr, m)
		case "all":
			pk.all = true
		case "exists":
			pk.exists = true
		case "cased":
			pk.cased = true
		case "neq":
			pk.neq = true
		case "re":
			pk.re = true
		case "i", "m", "s":
			if !pk.re {
				return pk, refuse("%q: sub-modifier %q must follow re", key, m)
			}
			pk.reFlags += m
		case "cidr":
			pk.cidr = true
		case "gt", "gte", "lt", "lte":
			if pk.cmp != cmpNone {
				return pk, refuse("%q: more than one comparison modifier", key)
			}
			pk.cmp = map[string]cmpOp{"gt": cmpGt, "gte": cmpGte, "lt": cmpLt, "lte": cmpLte}[m]
		case "expand":
			pk.expand = true
		case "fieldref":
			pk.fieldref = true
		case "minute", "hour", "day", "week", "month", "year":
			if pk.part != tpNone {
				return pk, refuse("%q: more than one time-part modifier", key)
			}
			pk.part = map[string]timePart{"minute": tpMinute, "hour": tpHour, "day": tpDay, "week": tpWeek, "month": tpMonth, "year": tpYear}[m]
		case "":
			return pk, refuse("%q: empty modifier", key)
		default:
			return pk, refuse("%q: unsupported modifier %q", key, m)
		}
	}
	return pk, pk.validate(key)
}

// validate rejects combinations whose meaning the spec leaves undefined,
// so a rule is never applied with a guessed meaning.
func (pk *parsedKey) validate(key string) error {
	typed := 0
	for _, b := range []bool{pk.re, pk.cidr, pk.cmp != cmpNone && pk.part == tpNone, pk.exists, pk.fieldref, pk.part != tpNone} {
		if b {
			typed++
		}
	}
	if typed > 1 {
		return refuse("%q: modifiers %s cannot be combined", key, strings.Join(pk.modifierNs, "|"))
	}
	special := typed == 1
	switch {
	case pk.exists && (len(pk.wrapOrTr) > 0 || pk.all || pk.neq || pk.cased || pk.expand):
		return refuse("%q: exists takes no other modifier", key)
	case (pk.re || pk.cidr || pk.cmp != cmpNone || pk.part != tpNone) && (len(pk.wrapOrTr) > 0 || pk.expand):
		return refuse("%q: modifiers %s cannot be combined", key, strings.Join(pk.modifierNs, "|"))
	case pk.fieldref && (pk.hasEncode || pk.expand || containsStr(pk.wrapOrTr, "windash")):
		return refuse("%q: fieldref cannot be combined with encodings, windash or expand", key)
	case pk.neq && (pk.re || pk.cidr || pk.cmp != cmpNone && pk.part == tpNone || pk.all):
		return refuse("%q: neq cannot be combined with %s", key, strings.Join(pk.modifierNs, "|"))
	case pk.expand && pk.hasEncode:
		return refuse("%q: expand cannot be combined with encodings", key)
	case pk.cased && (pk.cidr || pk.cmp != cmpNone || pk.part != tpNone):
		return refuse("%q: cased applies to strings only", key)
	}
	_ = special
	return nil
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// scalar is one YAML value of a field item.
type scalar struct {
	s    string
	null bool
	tag  string
}

func scalars(n *yaml.Node, key string) ([]scalar, error) {
	var nodes []*yaml.Node
	switch n.Kind {
	case yaml.SequenceNode:
		nodes = n.Content
		if len(nodes) == 0 {
			return nil, refuse("%q: empty value list", key)
		}
	case yaml.ScalarNode:
		nodes = []*yaml.Node{n}
	case yaml.AliasNode:
		return scalars(n.Alias, key)
	default:
		return nil, refuse("%q: value must be a scalar or a list of scalars", key)
	}
	out := make([]scalar, 0, len(nodes))
	for _, v := range nodes {
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if v.Kind != yaml.ScalarNode {
			return nil, refuse("%q: nested lists or maps are not valid values", key)
		}
		out = append(out, scalar{s: v.Value, null: v.Tag == "!!null", tag: v.Tag})
	}
	return out, nil
}

// compileItem compiles "key: value" into a field item for one source.
func (rc *ruleCompiler) compileItem(key string, val *yaml.Node) (*fieldItem, error) {
	pk, err := parseKey(key)
	if err != nil {
		return nil, err
	}
	vals, err := scalars(val, key)
	if err != nil {
		return nil, err
	}
	it := &fieldItem{key: key, field: pk.field, all: pk.all, neq: pk.neq}
	if pk.field == "" {
		if pk.exists || pk.fieldref || pk.neq {
			return nil, refuse("%q: keyword search cannot use exists, fieldref or neq", key)
		}
		it.keywords = true
		if !pk.hasWrap {
			// Keywords are full-text terms: found anywhere in a value.
			pk.wrapOrTr = append(pk.wrapOrTr, "contains")
		}
	} else {
		it.res = rc.resolver(pk.field)
	}
	for _, v := range vals {
		if v.null && (len(pk.modifierNs) > 0 && !(len(pk.modifierNs) == 1 && pk.all)) {
			return nil, refuse("%q: null cannot be used with modifiers", key)
		}
	}
	switch {
	case pk.exists:
		if len(vals) != 1 {
			return nil, refuse("%q: exists takes one boolean", key)
		}
		b, err := strconv.ParseBool(vals[0].s)
		if err != nil || vals[0].null {
			return nil, refuse("%q: exists takes a boolean, not %q", key, vals[0].s)
		}
		it.op, it.exists = opExists, b
		return it, nil
	case pk.fieldref:
		it.op = opFieldRef
		it.refCased = pk.cased
		it.refKind = kindExact
		for _, w := range pk.wrapOrTr {
			it.refKind = map[string]strKind{"contains": kindContains, "startswith": kindPrefix, "endswith": kindSuffix}[w]
		}
		for _, v := range vals {
			if v.null || v.s == "" {
				return nil, refuse("%q: fieldref needs a field name", key)
			}
			it.refs = append(it.refs, rc.resolver(v.s))
		}
		return it, nil
	}
	for _, v := range vals {
		if v.null {
			it.tests = append(it.tests, valueTest{null: true, raw: "null"})
			continue
		}
		switch {
		case pk.re:
			expr := v.s
			if pk.reFlags != "" {
				expr = "(?" + pk.reFlags + ")" + expr
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				return nil, refuse("%q: regular expression not supported (Go RE2 syntax): %v", key, err)
			}
			it.tests = append(it.tests, valueTest{re: re, raw: v.s})
		case pk.cidr:
			p, err := netip.ParsePrefix(strings.TrimSpace(v.s))
			if err != nil {
				return nil, refuse("%q: invalid CIDR %q", key, v.s)
			}
			it.tests = append(it.tests, valueTest{cidr: p.Masked(), isNet: true, raw: v.s})
		case pk.part != tpNone || pk.cmp != cmpNone:
			x, err := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
			if err != nil || math.IsNaN(x) {
				return nil, refuse("%q: needs a number, not %q", key, v.s)
			}
			op := pk.cmp
			if op == cmpNone {
				op = cmpEq
			}
			it.tests = append(it.tests, valueTest{cmp: op, num: x, part: pk.part, raw: v.s})
		default:
			raws := []string{v.s}
			if pk.expand {
				raws, err = rc.expand(v.s, key)
				if err != nil {
					return nil, err
				}
			}
			for _, r := range raws {
				ss, err := applyTransforms(parseSString(r), pk.wrapOrTr, key)
				if err != nil {
					return nil, err
				}
				for _, s := range ss {
					it.tests = append(it.tests, valueTest{str: newStrMatcher(s, pk.cased), raw: v.s})
				}
			}
			if len(it.tests) > maxExpansion {
				return nil, refuse("%q: expands to more than %d values", key, maxExpansion)
			}
		}
	}
	if pk.all && len(vals) < 2 && len(pk.wrapOrTr) == 0 {
		// The spec forbids all on a single value; it means the same as
		// no all, so accept it rather than refuse an otherwise valid rule.
		it.all = false
	}
	return it, nil
}

// expand replaces %name% placeholders (spec: Placeholders) with every
// combination of the supplied values. "\%" is a literal percent.
func (rc *ruleCompiler) expand(s, key string) ([]string, error) {
	outs := []string{""}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && s[i+1] == '%' {
			for j := range outs {
				outs[j] += "%"
			}
			i++
			continue
		}
		if c == '%' {
			end := strings.IndexByte(s[i+1:], '%')
			if end < 0 {
				return nil, refuse("%q: unterminated placeholder in %q", key, s)
			}
			name := s[i+1 : i+1+end]
			vals, ok := rc.opts.Placeholders[name]
			if !ok || len(vals) == 0 {
				return nil, refuse("%q: placeholder %%%s%% needs values (external input the spec leaves to the user: supply them with --placeholders FILE)", key, name)
			}
			var next []string
			for _, o := range outs {
				for _, v := range vals {
					next = append(next, o+v)
				}
			}
			if len(next) > maxExpansion {
				return nil, refuse("%q: placeholders expand to more than %d values", key, maxExpansion)
			}
			outs = next
			i += end + 1
			continue
		}
		for j := range outs {
			outs[j] += string(c)
		}
	}
	return outs, nil
}

// applyTransforms applies wrap and encoding modifiers in written order.
func applyTransforms(s sstring, trs []string, key string) ([]sstring, error) {
	cur := []sstring{s}
	for _, tr := range trs {
		var next []sstring
		for _, v := range cur {
			switch tr {
			case "contains":
				next = append(next, v.wrap(true, true))
			case "startswith":
				next = append(next, v.wrap(false, true))
			case "endswith":
				next = append(next, v.wrap(true, false))
			case "windash":
				w, err := windash(v, key)
				if err != nil {
					return nil, err
				}
				next = append(next, w...)
			default:
				p, ok := v.plain()
				if !ok {
					return nil, refuse("%q: %s cannot encode a value with wildcards", key, tr)
				}
				for _, enc := range encode(tr, p) {
					next = append(next, sstring{{lit: enc}})
				}
			}
		}
		if len(next) > maxExpansion {
			return nil, refuse("%q: expands to more than %d values", key, maxExpansion)
		}
		cur = next
	}
	return cur, nil
}

func windash(s sstring, key string) ([]sstring, error) {
	out := []sstring{nil}
	for _, g := range s {
		if g.wild != 0 {
			for i := range out {
				out[i] = append(out[i], g)
			}
			continue
		}
		// Split the literal at dash characters and branch at each.
		parts := []string{""}
		rest := g.lit
		for rest != "" {
			idx, n := -1, 0
			for _, d := range windashChars {
				if j := strings.Index(rest, d); j >= 0 && (idx < 0 || j < idx) {
					idx, n = j, len(d)
				}
			}
			if idx < 0 {
				for i := range parts {
					parts[i] += rest
				}
				break
			}
			var next []string
			for _, p := range parts {
				for _, d := range windashChars {
					next = append(next, p+rest[:idx]+d)
				}
			}
			if len(next)*len(out) > maxExpansion {
				return nil, refuse("%q: windash expands to more than %d values", key, maxExpansion)
			}
			parts = next
			rest = rest[idx+n:]
		}
		var next []sstring
		for _, o := range out {
			for _, p := range parts {
				c := append(append(sstring(nil), o...), segment{lit: p})
				next = append(next, c)
			}
		}
		out = next
	}
	return out, nil
}

func encode(mod, p string) []string {
	switch mod {
	case "base64":
		return []string{base64.StdEncoding.EncodeToString([]byte(p))}
	case "base64offset":
		// pySigma's three shifted encodings: the stable middle part of the
		// value's encoding at byte offsets 0, 1 and 2.
		start := [3]int{0, 2, 3}
		endTrim := [3]int{0, 3, 2}
		out := make([]string, 0, 3)
		for i := 0; i < 3; i++ {
			enc := base64.StdEncoding.EncodeToString(append([]byte(strings.Repeat(" ", i)), p...))
			end := len(enc) - endTrim[(len(p)+i)%3]
			if start[i] > end {
				continue
			}
			out = append(out, enc[start[i]:end])
		}
		return out
	case "utf16le", "wide":
		return []string{utf16Bytes(p, binary.LittleEndian, false)}
	case "utf16be":
		return []string{utf16Bytes(p, binary.BigEndian, false)}
	case "utf16":
		return []string{utf16Bytes(p, binary.LittleEndian, true)}
	}
	return nil
}

func utf16Bytes(s string, order binary.AppendByteOrder, bom bool) string {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	if bom {
		b = order.AppendUint16(b, 0xFEFF)
	}
	for _, x := range u {
		b = order.AppendUint16(b, x)
	}
	return string(b)
}

func parseIP(v string) (netip.Addr, bool) {
	v = strings.TrimSpace(v)
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"1/2/2006 3:04:05 PM",
	"2006-01-02",
}

// parseTime reads the date formats seen in the supported exports; values
// without a zone are taken as UTC (the audit sources all log UTC).
func parseTime(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func extractPart(t time.Time, p timePart) int {
	switch p {
	case tpMinute:
		return t.Minute()
	case tpHour:
		return t.Hour()
	case tpDay:
		return t.Day()
	case tpWeek:
		_, w := t.ISOWeek()
		return w
	case tpMonth:
		return int(t.Month())
	case tpYear:
		return t.Year()
	}
	return 0
}
