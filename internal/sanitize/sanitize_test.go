package sanitize

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCSVCell(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"alice@contoso.com", "alice@contoso.com"},
		{"=cmd|'/c calc'!A1", "'=cmd|'/c calc'!A1"},
		{"+1+cmd|' /c calc'!A0", "'+1+cmd|' /c calc'!A0"},
		{"-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"},
		{"@SUM(1+9)*cmd|' /C calc'!A0", "'@SUM(1+9)*cmd|' /C calc'!A0"},
		{"\t=1+1", "'\t=1+1"},
		{"\r=1+1", "'\r=1+1"},
		{"\x00=1", "'\x00=1"},
		{"=HYPERLINK(\"http://x.example\")", "'=HYPERLINK(\"http://x.example\")"},
		// Genuine numbers stay numbers: a spreadsheet reads them as
		// values, never as formulas.
		{"-1", "-1"},
		{"-12.5", "-12.5"},
		{"+3", "+3"},
		{"-1e5", "-1e5"},
		{"-1-1", "'-1-1"},
		{"-1e5+cmd", "'-1e5+cmd"},
		{"-", "'-"},
		{"-.5", "-.5"},
		{"- 1", "'- 1"},
		{"-Inf", "'-Inf"},
		{"-0x10", "'-0x10"},
		{"1=1", "1=1"},
		{"'=already", "'=already"},
	} {
		if got := CSVCell(c.in); got != c.want {
			t.Errorf("CSVCell(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCSVRowInPlace(t *testing.T) {
	row := []string{"ok", "=1+1", "-3"}
	CSVRow(row)
	if strings.Join(row, ",") != "ok,'=1+1,-3" {
		t.Errorf("CSVRow: %q", row)
	}
}

func TestLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"plain text", "plain text"},
		{"naïve 日本 ✓", "naïve 日本 ✓"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"\x1b]0;owned\x07", `\x1b]0;owned\x07`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"del\x7f", `del\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"nel\u0085", `nel\u0085`},
		{"bad \xff\x9b byte", `bad \xff\x9b byte`},
		{"bidi \u202eevil\u202c", `bidi \u202eevil\u202c`},
		{"iso \u2066x\u2069", `iso \u2066x\u2069`},
	} {
		if got := Line(c.in); got != c.want {
			t.Errorf("Line(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTextKeepsLayout(t *testing.T) {
	in := "first line\n\tindented \x1b[2J\x1bc\r\n"
	want := "first line\n\tindented \\x1b[2J\\x1bc\\r\n"
	if got := Text(in); got != want {
		t.Errorf("Text(%q) = %q, want %q", in, got, want)
	}
}

// Clean strings come back as they are, without a copy: the sanitisers sit
// on every cell of large outputs.
func TestCleanStringsNotCopied(t *testing.T) {
	s := strings.Repeat("mailbox@contoso.com ", 10)
	if n := testing.AllocsPerRun(100, func() { _ = Line(s); _ = Text(s); _ = CSVCell(s) }); n != 0 {
		t.Errorf("%v allocations for clean input", n)
	}
}

// safeLine reports whether s is what Line promises: valid UTF-8 with no
// control, DEL, C1 or bidi-override character left.
func safeLine(s string, allow string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if strings.ContainsRune(allow, r) {
			continue
		}
		if unsafeRune(r) {
			return false
		}
	}
	return true
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "=1+1", "-1", "\x1b[31m", "\u009b", "\xff", "\u202e", "a\tb\nc", "-1e5", "+.5e-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if l := Line(s); !safeLine(l, "") {
			t.Fatalf("Line(%q) = %q still holds a control", s, l)
		}
		if x := Text(s); !safeLine(x, "\n\t") {
			t.Fatalf("Text(%q) = %q still holds a control", s, x)
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune) && Line(s) != s {
			t.Fatalf("Line changed clean %q", s)
		}
		c := CSVCell(s)
		if c != "" && strings.ContainsRune(formulaStart, rune(c[0])) && !isNumber(c) {
			t.Fatalf("CSVCell(%q) = %q starts a formula", s, c)
		}
		if c != s && c != "'"+s {
			t.Fatalf("CSVCell(%q) = %q: more than a quote added", s, c)
		}
	})
}

func TestTextWriter(t *testing.T) {
	var b strings.Builder
	w := TextWriter(&b)
	in := []byte("iss=\x1b]0;x\x07\n")
	n, err := w.Write(in)
	if err != nil || n != len(in) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if b.String() != "iss=\\x1b]0;x\\x07\n" {
		t.Errorf("wrote %q", b.String())
	}
}
