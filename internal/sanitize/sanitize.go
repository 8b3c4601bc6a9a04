package sanitize

import (
	"io"
	"strings"
	"unicode/utf8"
)

// formulaStart lists the first characters that make a spreadsheet read a
// cell as a formula (OWASP's CSV-injection list: = + - @ tab CR; OWASP
// ASVS 1.2.10 adds NUL).
const formulaStart = "=+-@\t\r\x00"

// CSVCell returns s as a CSV cell no spreadsheet will evaluate: a value
// that starts with a formula character gets a leading single quote, which
// Excel, LibreOffice and Google Sheets read as "this is text". A value
// that is entirely a plain decimal number ("-12.5", "+3", "-1e5") is kept
// as it is: a spreadsheet reads it as a number, never as a formula, and
// quoting it would turn negative numbers into text. The CSV writer's own
// quoting (RFC 4180) still applies on top.
func CSVCell(s string) string {
	if s == "" || !strings.ContainsRune(formulaStart, rune(s[0])) || isNumber(s) {
		return s
	}
	return "'" + s
}

// CSVRow applies CSVCell to every cell of row, in place, and returns it.
func CSVRow(row []string) []string {
	for i, c := range row {
		row[i] = CSVCell(c)
	}
	return row
}

// isNumber reports whether s is a plain decimal number: an optional sign,
// digits with at most one decimal point, and an optional exponent. No
// spaces, no hex, no Inf or NaN.
func isNumber(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

// Line returns s safe to print on one line of a terminal: every C0
// control (tab, newline and carriage return included), DEL, every C1
// control, the bidirectional overrides and isolates (which reorder what a
// reader sees) and every byte that is not valid UTF-8 are written as
// visible Go-style escapes (\x1b, \n, \u009b, \u202e, \xff). Nothing is
// dropped, so an analyst still sees that the record held them.
func Line(s string) string { return escape(s, false) }

// Text is Line for multi-line messages: newlines and tabs are kept, every
// other control is escaped.
func Text(s string) string { return escape(s, true) }

// unsafeRune reports whether r must not reach a terminal as it is.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

func escape(s string, layout bool) string {
	// Fast path: most values are clean and come back without a copy.
	i := 0
	for i < len(s) {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if bad(r, n, layout) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	const hex = "0123456789abcdef"
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !bad(r, n, layout):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&0xf])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			b.WriteString(`\x`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		default:
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[(r>>shift)&0xf])
			}
		}
		i += n
	}
	return b.String()
}

// bad reports whether the rune r, n bytes long, must be escaped.
func bad(r rune, n int, layout bool) bool {
	if r == utf8.RuneError {
		return n == 1 // an invalid byte; a real U+FFFD is fine
	}
	if layout && (r == '\n' || r == '\t') {
		return false
	}
	return unsafeRune(r)
}

// TextWriter returns a writer that passes everything through Text before
// w: for printing a report whose fields come from untrusted input (token
// claims, key sets) without escaping each one. Each Write is escaped on
// its own, so write whole lines or fields.
func TextWriter(w io.Writer) io.Writer { return textWriter{w} }

type textWriter struct{ w io.Writer }

func (t textWriter) Write(p []byte) (int, error) {
	s := Text(string(p))
	if _, err := io.WriteString(t.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
