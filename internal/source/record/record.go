// Package record holds the small helpers every format decoder uses to read
// a parsed JSON record: string lookups by path, timestamp layouts seen in
// Microsoft and Google exports, and client address normalization.
package record

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Str returns the string at keys (a path of object keys) or "". Numbers
// and booleans are returned as written, so ids typed either way read alike.
func Str(v *fastjson.Value, keys ...string) string {
	x := v.Get(keys...)
	if x == nil {
		return ""
	}
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return string(b)
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		return string(x.MarshalTo(nil))
	}
	return ""
}

// First returns the first non-empty Str among several single-key paths.
func First(v *fastjson.Value, keys ...string) string {
	for _, k := range keys {
		if s := Str(v, k); s != "" {
			return s
		}
	}
	return ""
}

// timeLayouts are tried in order. Layouts without a zone are UTC: the
// Management Activity API writes CreationTime that way, in UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05.9999999Z07:00",
	"2006-01-02 15:04:05.9999999",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05.9999999Z0700",
	"1/2/2006 3:04:05 PM",
	"1/2/2006 15:04:05",
	"2006-01-02T15:04Z07:00",
}

// ParseTime parses the timestamp formats seen in the supported exports,
// including Unix seconds or milliseconds as numbers.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty timestamp")
	}
	if t, ok := parseISO(s); ok {
		return t, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	// Unix time in seconds, milliseconds or microseconds, up to the year
	// 9999; Inf, NaN and absurd magnitudes are not times.
	if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 && n < 253402300800e6 {
		switch {
		case n > 1e14: // microseconds
			return time.UnixMicro(int64(n)).UTC(), nil
		case n > 1e11: // milliseconds
			return time.UnixMilli(int64(n)).UTC(), nil
		default:
			sec := int64(n)
			return time.Unix(sec, int64((n-float64(sec))*1e9)).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognized timestamp %q", s)
}

// ParseTimeBytes is ParseTime for bytes; the common ISO 8601 layouts are
// read without copying b.
func ParseTimeBytes(b []byte) (time.Time, error) {
	if t, ok := parseISO(b); ok {
		return t, nil
	}
	return ParseTime(string(b))
}

// TimeOf returns the parsed time of the first present key.
func TimeOf(v *fastjson.Value, keys ...string) (time.Time, string, error) {
	for _, k := range keys {
		if s := Str(v, strings.Split(k, ".")...); s != "" {
			t, err := ParseTime(s)
			if err != nil {
				return time.Time{}, k, fmt.Errorf("field %s: %w", k, err)
			}
			return t, k, nil
		}
	}
	return time.Time{}, "", fmt.Errorf("no timestamp field (looked for %s)", strings.Join(keys, ", "))
}

// IP normalizes a client address: strips a port ("1.2.3.4:5678",
// "[2001:db8::1]:443"), brackets and IPv4-mapped prefixes. Values that are
// not addresses are returned trimmed, unchanged.
func IP(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		// Most addresses are written canonically: keep s then, rather
		// than allocate its copy.
		var buf [64]byte
		if b := a.Unmap().AppendTo(buf[:0]); string(b) != s {
			return string(b)
		}
		return s
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String()
	}
	t := strings.Trim(s, "[]")
	if a, err := netip.ParseAddr(t); err == nil {
		return a.Unmap().String()
	}
	return s
}

// Strings returns the string values of every element of the arrays along
// path (arrays at any level are walked), in order.
func Strings(v *fastjson.Value, path ...string) []string {
	var out []string
	walkStrings(v, path, func(b []byte) { out = append(out, string(b)) })
	return out
}

func walkStrings(x *fastjson.Value, p []string, fn func([]byte)) {
	if x == nil {
		return
	}
	if x.Type() == fastjson.TypeArray {
		a, _ := x.Array()
		for _, el := range a {
			walkStrings(el, p, fn)
		}
		return
	}
	if len(p) == 0 {
		if x.Type() == fastjson.TypeString {
			b, _ := x.StringBytes()
			fn(b)
		}
		return
	}
	walkStrings(x.Get(p[0]), p[1:], fn)
}

// parseISO parses the common "2006-01-02T15:04:05[.fraction][Z|±hh:mm]"
// (zone-less is UTC) without allocating; ok is false for anything else,
// which then goes through the layouts.
func parseISO[T string | []byte](s T) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	i := 19
	nsec := 0
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		scale := 100000000
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if i-start < 9 {
				nsec += int(s[i]-'0') * scale
				scale /= 10
			}
			i++
		}
		if i == start {
			return time.Time{}, false
		}
	}
	offset := 0
	switch {
	case i == len(s):
	case s[i] == 'Z' && i+1 == len(s):
	case (s[i] == '+' || s[i] == '-') && len(s) == i+6 && s[i+3] == ':':
		h, okh := num(i+1, i+3)
		m, okm := num(i+4, i+6)
		if !okh || !okm {
			return time.Time{}, false
		}
		offset = h*3600 + m*60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, false
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}
