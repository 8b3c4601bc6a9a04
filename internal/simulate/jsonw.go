package simulate

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// jw appends JSON to a byte slice without reflection: the record writers
// are the generator's hot path. Callers write keys in the order the real
// records use.
type jw struct {
	b     []byte
	comma bool
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func (w *jw) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jw) open()  { w.b = append(w.b, '{'); w.comma = false }
func (w *jw) close() { w.b = append(w.b, '}'); w.comma = true }

// obj starts a nested object under k.
func (w *jw) obj(k string) { w.key(k); w.b = append(w.b, '{'); w.comma = false }

// arr starts a nested array under k; elements are written with elem*.
func (w *jw) arr(k string)     { w.key(k); w.b = append(w.b, '['); w.comma = false }
func (w *jw) endArr()          { w.b = append(w.b, ']'); w.comma = true }
func (w *jw) elemOpen()        { w.sep(); w.b = append(w.b, '{'); w.comma = false }
func (w *jw) elemStr(s string) { w.sep(); w.b = appendJSONString(w.b, s); w.comma = true }
func (w *jw) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
}

func (w *jw) str(k, v string) { w.key(k); w.b = appendJSONString(w.b, v) }
func (w *jw) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}
func (w *jw) bool(k string, v bool) { w.key(k); w.b = strconv.AppendBool(w.b, v) }
func (w *jw) null(k string)         { w.key(k); w.b = append(w.b, "null"...) }
func (w *jw) float(k string, v float64) {
	w.key(k)
	w.b = strconv.AppendFloat(w.b, v, 'f', 5, 64)
}
func (w *jw) guid(k string, v id16) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendGUID(w.b, v)
	w.b = append(w.b, '"')
}
func (w *jw) token(k string, v id16) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendTokenID(w.b, v)
	w.b = append(w.b, '"')
}

// emptyArr writes k: [].
func (w *jw) emptyArr(k string) { w.key(k); w.b = append(w.b, '[', ']') }

// Time layouts of the real records.
const (
	layoutUAL     = "2006-01-02T15:04:05"          // Management Activity API CreationTime
	layoutGraph   = "2006-01-02T15:04:05Z"         // Graph signIn createdDateTime
	layoutGWS     = "2006-01-02T15:04:05.000Z"     // Reports API id.time
	layoutPurview = "2006-01-02T15:04:05.0000000Z" // Purview CSV CreationDate
)

func (w *jw) time(k string, t int64, layout string) {
	w.key(k)
	w.b = append(w.b, '"')
	if t%int64(time.Second) == 0 && (layout == layoutUAL || layout == layoutGraph) {
		w.b = appendSeconds(w.b, t/int64(time.Second))
		if layout == layoutGraph {
			w.b = append(w.b, 'Z')
		}
	} else {
		w.b = time.Unix(0, t).UTC().AppendFormat(w.b, layout)
	}
	w.b = append(w.b, '"')
}

// appendSeconds appends unix time u as 2006-01-02T15:04:05 (UTC); the
// record writers format millions of times and AppendFormat is general.
func appendSeconds(b []byte, u int64) []byte {
	days, secs := u/86400, u%86400
	if secs < 0 {
		secs += 86400
		days--
	}
	// civil-from-days (Howard Hinnant)
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	two := func(b []byte, v int64) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	b = append(b, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = two(b, m)
	b = append(b, '-')
	b = two(b, d)
	b = append(b, 'T')
	b = two(b, secs/3600)
	b = append(b, ':')
	b = two(b, secs/60%60)
	b = append(b, ':')
	return two(b, secs%60)
}
