package sigma

import (
	"path"
	"strconv"
	"strings"
	"unicode"
)

// nodeOp is a condition operator.
type nodeOp uint8

const (
	nodeSel nodeOp = iota
	nodeAnd
	nodeOr
	nodeNot
	nodeOf // at least min of kids (min == len(kids) for "all of")
)

// node is a compiled condition. Identifiers are resolved to indexes at
// parse time, so evaluation does no name lookups.
type node struct {
	op   nodeOp
	kids []*node
	sel  int
	min  int
}

// evalFunc evaluates identifier i.
type evalFunc func(i int) bool

func (n *node) eval(f evalFunc) bool {
	switch n.op {
	case nodeSel:
		return f(n.sel)
	case nodeAnd:
		for _, k := range n.kids {
			if !k.eval(f) {
				return false
			}
		}
		return true
	case nodeOr:
		for _, k := range n.kids {
			if k.eval(f) {
				return true
			}
		}
		return false
	case nodeNot:
		return !n.kids[0].eval(f)
	case nodeOf:
		hits := 0
		for i, k := range n.kids {
			if k.eval(f) {
				hits++
				if hits >= n.min {
					return true
				}
			}
			if hits+len(n.kids)-i-1 < n.min {
				return false
			}
		}
		return hits >= n.min
	}
	return false
}

// walkPositive calls f for identifiers reached without negation.
func (n *node) walkPositive(neg bool, f func(sel int)) {
	switch n.op {
	case nodeSel:
		if !neg {
			f(n.sel)
		}
	case nodeNot:
		n.kids[0].walkPositive(!neg, f)
	default:
		for _, k := range n.kids {
			k.walkPositive(neg, f)
		}
	}
}

type token struct {
	kind byte // 'i' identifier/word, '(' , ')', 0 end
	text string
	pos  int
}

func lexCondition(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{kind: c, text: string(c), pos: i})
			i++
		case c == '|':
			return nil, refuse("condition %q: aggregation expressions (\"| count() ...\") are obsolete; use a correlation rule", s)
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()|", rune(s[j])) {
				j++
			}
			w := s[i:j]
			for _, r := range w {
				if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '*' || r == '-' || r == '.') {
					return nil, refuse("condition %q: unexpected character %q", s, r)
				}
			}
			if strings.EqualFold(w, "near") {
				return nil, refuse("condition %q: the near operator is obsolete; use a temporal correlation rule", s)
			}
			toks = append(toks, token{kind: 'i', text: w, pos: i})
			i = j
		}
	}
	return append(toks, token{pos: len(s)}), nil
}

// condParser parses the Sigma condition grammar. Precedence, loosest
// first: or, and, not, "x of", parentheses (spec: Condition).
type condParser struct {
	src   string
	toks  []token
	p     int
	names []string // identifiers in definition order
	index map[string]int
}

func parseCondition(src string, names []string) (*node, error) {
	toks, err := lexCondition(src)
	if err != nil {
		return nil, err
	}
	cp := &condParser{src: src, toks: toks, names: names, index: map[string]int{}}
	for i, n := range names {
		cp.index[n] = i
	}
	n, err := cp.or()
	if err != nil {
		return nil, err
	}
	if t := cp.peek(); t.kind != 0 {
		return nil, cp.errAt(t, "unexpected %q", t.text)
	}
	return n, nil
}

func (cp *condParser) peek() token { return cp.toks[cp.p] }
func (cp *condParser) next() token { t := cp.toks[cp.p]; cp.p++; return t }

func (cp *condParser) errAt(t token, format string, a ...any) error {
	return refuse("condition %q at %d: %s", cp.src, t.pos, refuse(format, a...).Error())
}

func isWord(t token, w string) bool { return t.kind == 'i' && strings.EqualFold(t.text, w) }

func (cp *condParser) or() (*node, error) {
	l, err := cp.and()
	if err != nil {
		return nil, err
	}
	kids := []*node{l}
	for isWord(cp.peek(), "or") {
		cp.next()
		r, err := cp.and()
		if err != nil {
			return nil, err
		}
		kids = append(kids, r)
	}
	if len(kids) == 1 {
		return l, nil
	}
	return &node{op: nodeOr, kids: kids}, nil
}

func (cp *condParser) and() (*node, error) {
	l, err := cp.not()
	if err != nil {
		return nil, err
	}
	kids := []*node{l}
	for isWord(cp.peek(), "and") {
		cp.next()
		r, err := cp.not()
		if err != nil {
			return nil, err
		}
		kids = append(kids, r)
	}
	if len(kids) == 1 {
		return l, nil
	}
	return &node{op: nodeAnd, kids: kids}, nil
}

func (cp *condParser) not() (*node, error) {
	if isWord(cp.peek(), "not") {
		cp.next()
		k, err := cp.not()
		if err != nil {
			return nil, err
		}
		return &node{op: nodeNot, kids: []*node{k}}, nil
	}
	return cp.primary()
}

var reserved = map[string]bool{"and": true, "or": true, "not": true, "of": true, "them": true, "near": true}

func (cp *condParser) primary() (*node, error) {
	t := cp.next()
	switch {
	case t.kind == '(':
		n, err := cp.or()
		if err != nil {
			return nil, err
		}
		if c := cp.next(); c.kind != ')' {
			return nil, cp.errAt(c, "missing )")
		}
		return n, nil
	case t.kind == 0:
		return nil, cp.errAt(t, "unexpected end")
	case t.kind == ')':
		return nil, cp.errAt(t, "unexpected )")
	}
	if isWord(cp.peek(), "of") {
		return cp.quantifier(t)
	}
	lw := strings.ToLower(t.text)
	if reserved[lw] || lw == "all" {
		return nil, cp.errAt(t, "unexpected %q", t.text)
	}
	i, ok := cp.index[t.text]
	if !ok {
		return nil, cp.errAt(t, "unknown search identifier %q", t.text)
	}
	return &node{op: nodeSel, sel: i}, nil
}

func (cp *condParser) quantifier(q token) (*node, error) {
	cp.next() // of
	target := cp.next()
	if target.kind != 'i' {
		return nil, cp.errAt(target, "\"of\" needs a pattern or them")
	}
	var kids []*node
	if isWord(target, "them") {
		for i, n := range cp.names {
			if !strings.HasPrefix(n, "_") {
				kids = append(kids, &node{op: nodeSel, sel: i})
			}
		}
	} else {
		for i, n := range cp.names {
			if ok, _ := path.Match(escapeMeta(target.text), n); ok {
				kids = append(kids, &node{op: nodeSel, sel: i})
			}
		}
	}
	if len(kids) == 0 {
		return nil, cp.errAt(target, "%q matches no search identifier", target.text)
	}
	min := 0
	switch {
	case strings.EqualFold(q.text, "all"):
		min = len(kids)
	case strings.EqualFold(q.text, "any"):
		min = 1
	default:
		n, err := strconv.Atoi(q.text)
		if err != nil || n < 1 {
			return nil, cp.errAt(q, "quantifier must be a positive number or all, not %q", q.text)
		}
		min = n
	}
	return &node{op: nodeOf, kids: kids, min: min}, nil
}

// escapeMeta keeps only '*' special for path.Match.
func escapeMeta(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r == '?' || r == '[' || r == ']' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
