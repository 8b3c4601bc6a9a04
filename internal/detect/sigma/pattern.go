package sigma

import (
	"strings"
	"unicode/utf8"
)

// segment is one piece of a Sigma string value: a literal run, or one of
// the wildcards '*' (any run) and '?' (one character).
type segment struct {
	lit  string
	wild byte // 0 for a literal, '*' or '?'
}

// sstring is a Sigma string after escape processing.
type sstring []segment

// parseSString splits a rule value into literals and wildcards. Backslash
// escapes '*', '?' and itself; before any other character it is a plain
// backslash (spec: "Escaping").
func parseSString(s string) sstring {
	var out sstring
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\') {
				lit.WriteByte(s[i+1])
				i++
			} else {
				lit.WriteByte('\\')
			}
		case '*', '?':
			flush()
			out = append(out, segment{wild: c})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return out
}

// plain returns the value as one literal string when it has no wildcards.
func (s sstring) plain() (string, bool) {
	var b strings.Builder
	for _, g := range s {
		if g.wild != 0 {
			return "", false
		}
		b.WriteString(g.lit)
	}
	return b.String(), true
}

func (s sstring) hasWildcard() bool {
	for _, g := range s {
		if g.wild != 0 {
			return true
		}
	}
	return false
}

// String renders the value back in Sigma syntax (escaped).
func (s sstring) String() string {
	var b strings.Builder
	for _, g := range s {
		if g.wild != 0 {
			b.WriteByte(g.wild)
			continue
		}
		for i := 0; i < len(g.lit); i++ {
			if c := g.lit[i]; c == '*' || c == '?' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(g.lit[i])
		}
	}
	return b.String()
}

// wrap adds '*' at the start and/or end unless already there.
func (s sstring) wrap(start, end bool) sstring {
	out := append(sstring(nil), s...)
	if start && (len(out) == 0 || out[0].wild != '*') {
		out = append(sstring{{wild: '*'}}, out...)
	}
	if end && (len(out) == 0 || out[len(out)-1].wild != '*') {
		out = append(out, segment{wild: '*'})
	}
	return out
}

// strMatcher matches one event value against one compiled Sigma string.
type strMatcher struct {
	kind  strKind
	lit   string // lower-cased unless cased
	cased bool
	ascii bool    // lit is ASCII: case-folding needs no allocation
	glob  sstring // for kindGlob, literals lower-cased unless cased
	// raw is the value as written, for reports and index keys.
	raw string
}

type strKind uint8

const (
	kindExact strKind = iota
	kindPrefix
	kindSuffix
	kindContains
	kindGlob
	kindAny // a lone '*': any value, including empty
)

func newStrMatcher(s sstring, cased bool) *strMatcher {
	m := &strMatcher{cased: cased, raw: s.String()}
	lower := func(x string) string {
		if cased {
			return x
		}
		return strings.ToLower(x)
	}
	// Classify: literal, *lit, lit*, *lit*, else general glob.
	n := len(s)
	switch {
	case n == 0:
		m.kind, m.lit = kindExact, ""
	case n == 1 && s[0].wild == '*':
		m.kind = kindAny
	case !s.hasWildcard():
		p, _ := s.plain()
		m.kind, m.lit = kindExact, lower(p)
	case n == 2 && s[0].wild == 0 && s[1].wild == '*':
		m.kind, m.lit = kindPrefix, lower(s[0].lit)
	case n == 2 && s[0].wild == '*' && s[1].wild == 0:
		m.kind, m.lit = kindSuffix, lower(s[1].lit)
	case n == 3 && s[0].wild == '*' && s[1].wild == 0 && s[2].wild == '*':
		m.kind, m.lit = kindContains, lower(s[1].lit)
	default:
		m.kind = kindGlob
		for _, g := range s {
			if g.wild == 0 {
				g.lit = lower(g.lit)
			}
			m.glob = append(m.glob, g)
		}
	}
	m.ascii = isASCII(m.lit)
	return m
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func (m *strMatcher) match(v string) bool {
	switch m.kind {
	case kindAny:
		return true
	case kindExact:
		if m.cased {
			return v == m.lit
		}
		if m.ascii {
			return equalFoldASCII(v, m.lit)
		}
		return strings.EqualFold(v, m.lit)
	case kindPrefix:
		if m.cased {
			return strings.HasPrefix(v, m.lit)
		}
		if m.ascii {
			return len(v) >= len(m.lit) && equalFoldASCII(v[:len(m.lit)], m.lit)
		}
		return strings.HasPrefix(strings.ToLower(v), m.lit)
	case kindSuffix:
		if m.cased {
			return strings.HasSuffix(v, m.lit)
		}
		if m.ascii {
			return len(v) >= len(m.lit) && equalFoldASCII(v[len(v)-len(m.lit):], m.lit)
		}
		return strings.HasSuffix(strings.ToLower(v), m.lit)
	case kindContains:
		if m.cased {
			return strings.Contains(v, m.lit)
		}
		if m.ascii {
			return indexFoldASCII(v, m.lit) >= 0
		}
		return strings.Contains(strings.ToLower(v), m.lit)
	default:
		if !m.cased {
			v = strings.ToLower(v)
		}
		return globMatch(m.glob, v)
	}
}

// equalFoldASCII compares s with lower, an ASCII lower-case string, folding
// ASCII letters of s only. Non-ASCII bytes of s never equal ASCII bytes.
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// indexFoldASCII finds lower (ASCII, lower-case) in s ignoring ASCII case.
func indexFoldASCII(s, lower string) int {
	n := len(lower)
	if n == 0 {
		return 0
	}
	if n > len(s) {
		return -1
	}
	c0 := lower[0]
	up := c0
	if 'a' <= c0 && c0 <= 'z' {
		up = c0 - ('a' - 'A')
	}
	for i := 0; i <= len(s)-n; i++ {
		// Skip quickly to the next candidate first byte.
		j := strings.IndexByte(s[i:len(s)-n+1], c0)
		if up != c0 {
			if k := strings.IndexByte(s[i:len(s)-n+1], up); k >= 0 && (j < 0 || k < j) {
				j = k
			}
		}
		if j < 0 {
			return -1
		}
		i += j
		if equalFoldASCII(s[i:i+n], lower) {
			return i
		}
	}
	return -1
}

// globMatch matches v against segments; '?' matches one rune. Iterative
// with single-star backtracking, so it is linear-ish and cannot blow up.
func globMatch(p sstring, v string) bool {
	pi, vi := 0, 0
	starP, starV := -1, 0
	for {
		if pi < len(p) {
			g := p[pi]
			switch g.wild {
			case '*':
				starP, starV = pi, vi
				pi++
				continue
			case '?':
				if vi < len(v) {
					_, sz := utf8.DecodeRuneInString(v[vi:])
					vi += sz
					pi++
					continue
				}
			default:
				if strings.HasPrefix(v[vi:], g.lit) {
					vi += len(g.lit)
					pi++
					continue
				}
			}
		} else if vi == len(v) {
			return true
		}
		if starP < 0 || starV >= len(v) {
			return false
		}
		_, sz := utf8.DecodeRuneInString(v[starV:])
		starV += sz
		pi, vi = starP+1, starV
	}
}
