package index

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-audit/vigil/internal/alert"
)

// QueryError points at the part of a query that is wrong.
type QueryError struct {
	Pos  int    // byte offset of the offending term in the query
	Term string // the term as written
	Msg  string
}

func (e *QueryError) Error() string {
	if e.Term == "" {
		return fmt.Sprintf("query: at column %d: %s", e.Pos+1, e.Msg)
	}
	return fmt.Sprintf("query: at column %d, %q: %s", e.Pos+1, e.Term, e.Msg)
}

// Node is a parsed query.
type Node struct {
	Op    string // "and", "or", "not", "term"
	Kids  []*Node
	Field string // "" for free text
	Value string
	Pos   int
	Text  string // the term as written, for errors
}

// Fields the query language knows, in the order help lists them.
var Fields = []string{"user", "mailbox", "ip", "asn", "app", "client_app", "op", "source", "session", "token",
	"message", "folder", "country", "kind", "level", "rule", "since", "until"}

type tokKind int

const (
	tEOF tokKind = iota
	tLParen
	tRParen
	tAnd
	tOr
	tNot
	tTerm
)

type token struct {
	kind  tokKind
	pos   int
	text  string // as written
	field string
	value string
}

// maxQueryLen bounds a query; longer ones are refused, not cut.
const maxQueryLen = 8 << 10

// maxDepth bounds nesting, so a hostile query cannot exhaust the stack.
const maxDepth = 64

func lex(q string) ([]token, error) {
	var out []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{kind: tLParen, pos: i, text: "("})
			i++
		case c == ')':
			out = append(out, token{kind: tRParen, pos: i, text: ")"})
			i++
		case c == '-' && i+1 < len(q) && q[i+1] != ' ' && q[i+1] != ')' && (i == 0 || isSep(q[i-1])):
			out = append(out, token{kind: tNot, pos: i, text: "-"})
			i++
		default:
			t, n, err := lexTerm(q, i)
			if err != nil {
				return nil, err
			}
			i = n
			if t.field == "" && !t.quoted() {
				switch t.value {
				case "AND":
					t.kind = tAnd
				case "OR":
					t.kind = tOr
				case "NOT":
					t.kind = tNot
				}
			}
			out = append(out, t)
		}
	}
	return append(out, token{kind: tEOF, pos: len(q)}), nil
}

func isSep(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' }

func (t token) quoted() bool { return strings.HasSuffix(t.text, `"`) }

// lexTerm reads field:value, field:"quoted value", "quoted phrase" or a
// bare word starting at i.
func lexTerm(q string, i int) (token, int, error) {
	start := i
	t := token{kind: tTerm, pos: start}
	// A field name is letters and underscores followed by ':'.
	j := i
	for j < len(q) && (q[j] == '_' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z') {
		j++
	}
	if j > i && j < len(q) && q[j] == ':' {
		t.field = strings.ToLower(q[i:j])
		i = j + 1
		if i >= len(q) || isSep(q[i]) || q[i] == ')' {
			return t, 0, &QueryError{Pos: start, Term: q[start:i], Msg: "no value after ':'"}
		}
	}
	if q[i] == '"' {
		var b strings.Builder
		k := i + 1
		for {
			if k >= len(q) {
				return t, 0, &QueryError{Pos: start, Term: q[start:], Msg: "unterminated quote"}
			}
			if q[k] == '\\' && k+1 < len(q) && (q[k+1] == '"' || q[k+1] == '\\') {
				b.WriteByte(q[k+1])
				k += 2
				continue
			}
			if q[k] == '"' {
				break
			}
			b.WriteByte(q[k])
			k++
		}
		t.value = b.String()
		t.text = q[start : k+1]
		return t, k + 1, nil
	}
	k := i
	for k < len(q) && !isSep(q[k]) && q[k] != ')' {
		if q[k] == '"' {
			return t, 0, &QueryError{Pos: k, Term: q[start : k+1], Msg: "quote inside a word (quote the whole value)"}
		}
		k++
	}
	t.value = q[i:k]
	t.text = q[start:k]
	return t, k, nil
}

// Parse parses a query. The empty query matches everything.
func Parse(q string) (*Node, error) {
	if len(q) > maxQueryLen {
		return nil, &QueryError{Pos: maxQueryLen, Msg: fmt.Sprintf("query is %d bytes, limit %d", len(q), maxQueryLen)}
	}
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEOF {
		return &Node{Op: "and"}, nil
	}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		msg := "unexpected here"
		if t.kind == tRParen {
			msg = "')' without a matching '('"
		}
		return nil, &QueryError{Pos: t.pos, Term: t.text, Msg: msg}
	}
	return n, nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) or(depth int) (*Node, error) {
	if depth > maxDepth {
		return nil, &QueryError{Pos: p.peek().pos, Term: p.peek().text, Msg: fmt.Sprintf("nested more than %d deep", maxDepth)}
	}
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	kids := []*Node{l}
	for p.peek().kind == tOr {
		p.next()
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		kids = append(kids, r)
	}
	if len(kids) == 1 {
		return l, nil
	}
	return &Node{Op: "or", Kids: kids}, nil
}

func (p *parser) and(depth int) (*Node, error) {
	var kids []*Node
	for {
		t := p.peek()
		switch t.kind {
		case tEOF, tRParen, tOr:
			if len(kids) == 0 {
				return nil, p.missing(t)
			}
			if len(kids) == 1 {
				return kids[0], nil
			}
			return &Node{Op: "and", Kids: kids}, nil
		case tAnd:
			if len(kids) == 0 {
				return nil, &QueryError{Pos: t.pos, Term: t.text, Msg: "AND needs a term on its left"}
			}
			p.next()
			if k := p.peek().kind; k == tEOF || k == tRParen || k == tOr || k == tAnd {
				return nil, p.missing(p.peek())
			}
		}
		n, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		kids = append(kids, n)
	}
}

func (p *parser) missing(t token) error {
	switch t.kind {
	case tEOF:
		return &QueryError{Pos: t.pos, Msg: "a term is missing at the end"}
	case tRParen:
		return &QueryError{Pos: t.pos, Term: t.text, Msg: "a term is missing before ')'"}
	default:
		return &QueryError{Pos: t.pos, Term: t.text, Msg: "a term is missing before " + t.text}
	}
}

func (p *parser) unary(depth int) (*Node, error) {
	t := p.peek()
	switch t.kind {
	case tNot:
		p.next()
		if k := p.peek().kind; k == tEOF || k == tRParen || k == tOr || k == tAnd {
			return nil, &QueryError{Pos: t.pos, Term: t.text, Msg: "NOT needs a term after it"}
		}
		if depth > maxDepth {
			return nil, &QueryError{Pos: t.pos, Term: t.text, Msg: fmt.Sprintf("nested more than %d deep", maxDepth)}
		}
		k, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Node{Op: "not", Kids: []*Node{k}, Pos: t.pos, Text: t.text}, nil
	case tLParen:
		p.next()
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tRParen {
			return nil, &QueryError{Pos: t.pos, Term: "(", Msg: "'(' is never closed"}
		}
		p.next()
		return n, nil
	case tTerm:
		p.next()
		n := &Node{Op: "term", Field: t.field, Value: t.value, Pos: t.pos, Text: t.text}
		if err := checkTerm(n); err != nil {
			return nil, err
		}
		return n, nil
	default:
		return nil, p.missing(t)
	}
}

// checkTerm validates a term's field and value, so errors come from
// parsing and point at the term.
func checkTerm(n *Node) error {
	bad := func(format string, a ...any) error {
		return &QueryError{Pos: n.Pos, Term: n.Text, Msg: fmt.Sprintf(format, a...)}
	}
	if n.Field == "" {
		if strings.TrimSpace(n.Value) == "" {
			return bad("empty phrase")
		}
		return nil
	}
	if !slices.Contains(Fields, n.Field) {
		return bad("unknown field %q (fields: %s)", n.Field, strings.Join(Fields, ", "))
	}
	switch n.Field {
	case "ip":
		if _, _, _, _, err := ipRange(n.Value); err != nil {
			return bad("%v", err)
		}
	case "asn":
		if _, err := parseASN(n.Value); err != nil {
			return bad("%v", err)
		}
	case "since", "until":
		if _, err := ParseTime(n.Value, time.Now()); err != nil {
			return bad("%v", err)
		}
	case "kind":
		if !slices.Contains([]string{KindSignin, KindMail, KindAudit}, strings.ToLower(n.Value)) {
			return bad("kind is one of signin, mail, audit")
		}
	case "level":
		if !strings.Contains(n.Value, "*") {
			if _, err := alert.ParseLevel(n.Value); err != nil {
				return bad("level is one of informational, low, medium, high, critical")
			}
		}
	}
	return nil
}

func parseASN(s string) (uint32, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "AS"), "as")
	v, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("asn wants a number such as 8075 or AS8075")
	}
	return uint32(v), nil
}

// ipRange turns an address or CIDR prefix into the inclusive range of
// (ip_hi, ip_lo) keys it covers.
func ipRange(s string) (sh, sl, eh, el uint64, err error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		if p, err = netip.ParsePrefix(s); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("not an address or CIDR prefix")
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("not an address or CIDR prefix")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	sh, sl, _ = ipKey(p.Addr().String())
	// The last address: set every host bit.
	eh, el = sh, sl
	host := 128 - bits
	switch {
	case host >= 64:
		el = ^uint64(0)
		if host > 64 {
			eh |= ^uint64(0) >> (128 - host)
		}
		if host == 128 {
			eh = ^uint64(0)
		}
	case host > 0:
		el |= ^uint64(0) >> (64 - host)
	}
	return sh, sl, eh, el, nil
}

// ParseTime reads an absolute time (RFC 3339, "2006-01-02T15:04[:05]"
// in UTC, or a date "2006-01-02" meaning its midnight UTC) or a duration
// back from now ("90d", "12h", "30m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	if n := len(s); n > 1 && unicode.IsDigit(rune(s[0])) && strings.IndexByte("dhmsw", s[n-1]) >= 0 && !strings.ContainsAny(s, "-:T") {
		v, err := strconv.ParseFloat(s[:n-1], 64)
		if err == nil && v >= 0 && v < 1e6 {
			unit := map[byte]time.Duration{'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}[s[n-1]]
			return now.Add(-time.Duration(v * float64(unit))).UTC(), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time: want 2026-03-05, 2026-03-05T02:00, RFC 3339 or a duration back from now such as 90d or 12h")
}
