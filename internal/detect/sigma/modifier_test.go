package sigma

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf16"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func le16(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

func be16(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return string(b)
}

// js encodes a one-field record {"F": v}.
func js(v any) string {
	b, _ := json.Marshal(map[string]any{"F": v})
	return string(b)
}

// TestModifiers checks each value modifier of the spec (modifiers appendix
// v2.1) and the value syntax (wildcards, escaping, null, lists, maps) with
// a positive and a negative event.
func TestModifiers(t *testing.T) {
	cases := []struct {
		name string
		sel  string // selection body
		rec  string
		want bool
	}{
		{"equal case-insensitive", "F: abc", js("ABC"), true},
		{"equal whole value", "F: abc", js("abcd"), false},
		{"wildcard star", "F: 'a*c'", js("aXYZc"), true},
		{"wildcard star neg", "F: 'a*c'", js("aXYZd"), false},
		{"wildcard question", "F: 'a?c'", js("abc"), true},
		{"wildcard question needs one", "F: 'a?c'", js("ac"), false},
		{"wildcard question one rune", "F: 'a?c'", js("aéc"), true},
		{"escaped star literal", `F: 'a\*c'`, js("a*c"), true},
		{"escaped star not wildcard", `F: 'a\*c'`, js("abc"), false},
		{"escaped backslash then star", `F: 'a\\*'`, js(`a\xyz`), true},
		{"plain backslash", `F: 'C:\Windows\cmd.exe'`, js(`c:\windows\cmd.exe`), true},
		{"glob several stars", "F: '*a*b*c*'", js("xxAyyBzzC"), true},
		{"glob several stars neg", "F: '*a*b*c*'", js("xxCyyBzzA"), false},
		{"lone star matches empty", "F: '*'", js(""), true},
		{"list is OR", "F: [x, y]", js("Y"), true},
		{"list is OR neg", "F: [x, y]", js("z"), false},
		{"map is AND", "F: x\nG: y", `{"F":"x","G":"y"}`, true},
		{"map is AND neg", "F: x\nG: y", `{"F":"x","G":"z"}`, false},
		{"number", "F: 50057", js(50057), true},
		{"number as string", "F: 50057", js("50057"), true},
		{"number neg", "F: 50057", js(50058), false},
		{"bool", "F: true", js(true), true},
		{"bool vs string", "F: 'false'", js("False"), true},
		{"null absent", "F: null", `{"G":1}`, true},
		{"null json", "F: null", js(nil), true},
		{"null present", "F: null", js("x"), false},
		{"empty string", "F: ''", js(""), true},
		{"empty string absent", "F: ''", `{"G":1}`, false},
		{"array any element", "F: b", js([]string{"a", "b"}), true},
		{"array neg", "F: c", js([]string{"a", "b"}), false},
		{"nested name", "A.B: x", `{"A":{"B":"X"}}`, true},
		{"object name matches leaves", "A|contains: needle", `{"A":{"B":"x","C":"a needle"}}`, true},
		{"contains", "F|contains: bc", js("ABCD"), true},
		{"contains neg", "F|contains: bc", js("acb"), false},
		{"contains non-ascii", "F|contains: é", js("CAFÉ"), true},
		{"startswith", "F|startswith: ab", js("ABC"), true},
		{"startswith neg", "F|startswith: ab", js("cab"), false},
		{"endswith", "F|endswith: bc", js("aBC"), true},
		{"endswith neg", "F|endswith: bc", js("bca"), false},
		{"contains all", "F|contains|all: [a, z]", js("a..z"), true},
		{"contains all neg", "F|contains|all: [a, z]", js("a..y"), false},
		{"all across array", "F|all: [a, b]", js([]string{"a", "b"}), true},
		{"exists true", "F|exists: true", js(""), true},
		{"exists true neg", "F|exists: true", `{"G":1}`, false},
		{"exists false", "F|exists: false", `{"G":1}`, true},
		{"exists false neg", "F|exists: false", js(nil), false},
		{"cased", "F|cased: Abc", js("Abc"), true},
		{"cased neg", "F|cased: Abc", js("abc"), false},
		{"cased contains", "F|contains|cased: Bc", js("aBcd"), true},
		{"cased contains neg", "F|contains|cased: Bc", js("abcd"), false},
		{"neq", "F|neq: x", js("y"), true},
		{"neq neg", "F|neq: x", js("X"), false},
		{"neq list", "F|neq: [x, y]", js("z"), true},
		{"neq list neg", "F|neq: [x, y]", js("y"), false},
		{"neq absent", "F|neq: x", `{"G":1}`, false},
		{"neq number", "F|neq: 0", js(50126), true},
		{"windash slash", "F|windash|contains: ' -exec'", js("cmd /exec"), true},
		{"windash en dash", "F|windash|contains: ' -exec'", js("cmd –exec"), true},
		{"windash em dash", "F|windash|contains: ' -exec'", js("cmd —exec"), true},
		{"windash horizontal bar", "F|windash|contains: ' -exec'", js("cmd ―exec"), true},
		{"windash original", "F|windash|contains: ' -exec'", js("cmd -exec"), true},
		{"windash neg", "F|windash|contains: ' -exec'", js("cmd +exec"), false},
		{"re", "F|re: '^a.c$'", js("abc"), true},
		{"re case-sensitive", "F|re: '^a.c$'", js("ABC"), false},
		{"re unanchored", "F|re: 'b+'", js("abbbc"), true},
		{"re i", "F|re|i: '^a.c$'", js("ABC"), true},
		{"re m", "F|re|m: '^b$'", js("a\nb"), true},
		{"re without m", "F|re: '^b$'", js("a\nb"), false},
		{"re s", "F|re|s: 'a.b'", js("a\nb"), true},
		{"re without s", "F|re: 'a.b'", js("a\nb"), false},
		{"base64", "F|base64: hello", js(b64("hello")), true},
		{"base64 neg", "F|base64: hello", js(b64("hellO")), false},
		{"base64 contains", "F|base64|contains: hello", js("x" + b64("hello") + "y"), true},
		{"base64offset 0", "F|base64offset|contains: hello", js(b64("hello world")), true},
		{"base64offset 1", "F|base64offset|contains: hello", js(b64("_hello world")), true},
		{"base64offset 2", "F|base64offset|contains: hello", js(b64("__hello world")), true},
		{"base64offset 3", "F|base64offset|contains: hello", js(b64("___hello")), true},
		{"base64offset neg", "F|base64offset|contains: hello", js(b64("__goodbye world")), false},
		{"utf16le", "F|utf16le|contains: cmd", js("x" + le16("cmd")), true},
		{"utf16le neg", "F|utf16le|contains: cmd", js("cmd"), false},
		{"wide", "F|wide|contains: cmd", js(le16("run cmd")), true},
		{"utf16be", "F|utf16be: cmd", js(be16("cmd")), true},
		{"utf16be neg", "F|utf16be: cmd", js(le16("cmd")), false},
		{"utf16 bom", "F|utf16: cmd", js("\ufeff"[0:0] + "\xff\xfe" + le16("cmd")), true},
		{"utf16le base64offset", "F|utf16le|base64offset|contains: whoami", js(b64(le16("cmd /c whoami /all"))), true},
		{"utf16le base64offset neg", "F|utf16le|base64offset|contains: whoami", js(b64("cmd /c whoami /all")), false},
		{"gt", "F|gt: 5", js(6), true},
		{"gt equal", "F|gt: 5", js(5), false},
		{"gte", "F|gte: 5", js("5"), true},
		{"lt", "F|lt: 5", js(4.5), true},
		{"lt neg", "F|lt: 5", js(5), false},
		{"lte", "F|lte: 5", js(5), true},
		{"numeric on text", "F|gt: 5", js("many"), false},
		{"cidr v4", "F|cidr: 10.0.0.0/8", js("10.1.2.3"), true},
		{"cidr v4 neg", "F|cidr: 10.0.0.0/8", js("11.0.0.1"), false},
		{"cidr with port", "F|cidr: 10.0.0.0/8", js("10.1.2.3:443"), true},
		{"cidr v6", "F|cidr: 2001:db8::/32", js("2001:db8::1"), true},
		{"cidr v6 neg", "F|cidr: 2001:db8::/32", js("2001:db9::1"), false},
		{"cidr list", "F|cidr: [192.168.0.0/16, 10.0.0.0/8]", js("192.168.4.4"), true},
		{"cidr not an ip", "F|cidr: 10.0.0.0/8", js("host"), false},
		{"fieldref", "F|fieldref: G", `{"F":"x","G":"X"}`, true},
		{"fieldref neg", "F|fieldref: G", `{"F":"x","G":"y"}`, false},
		{"fieldref missing", "F|fieldref: G", `{"F":"x"}`, false},
		{"fieldref neq", "F|fieldref|neq: G", `{"F":"x","G":"y"}`, true},
		{"fieldref neq neg", "F|fieldref|neq: G", `{"F":"x","G":"x"}`, false},
		{"fieldref contains", "F|fieldref|contains: G", `{"F":"alice@x","G":"alice"}`, true},
		{"fieldref cased", "F|fieldref|cased: G", `{"F":"x","G":"X"}`, false},
		{"minute", "F|minute: 4", js("2024-03-05T02:04:05Z"), true},
		{"hour", "F|hour: 2", js("2024-03-05T02:04:05Z"), true},
		{"hour neg", "F|hour: 3", js("2024-03-05T02:04:05Z"), false},
		{"hour gte", "F|hour|gte: 22", js("2024-03-05T23:00:00Z"), true},
		{"hour lt", "F|hour|lt: 6", js("2024-03-05T23:00:00Z"), false},
		{"hour zone", "F|hour: 1", js("2024-03-05T02:04:05+01:00"), true},
		{"hour no zone", "F|hour: 2", js("2024-03-05T02:04:05"), true},
		{"day", "F|day: 5", js("2024-03-05T02:04:05Z"), true},
		{"week", "F|week: 10", js("2024-03-05T02:04:05Z"), true},
		{"month", "F|month: 3", js("2024-03-05T02:04:05Z"), true},
		{"year", "F|year: 2024", js("2024-03-05T02:04:05Z"), true},
		{"year neq", "F|year|neq: 2024", js("2023-03-05T02:04:05Z"), true},
		{"time part on text", "F|year: 2024", js("yesterday"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := mustCompile(t, m365Rule("sel:\n"+indent(c.sel, "    ")+"\ncondition: sel"))
			got := len(titles(rs, mkEvent(t, "m365.ual", c.rec))) > 0
			if got != c.want {
				t.Errorf("%s on %s: got %v, want %v", c.sel, c.rec, got, c.want)
			}
		})
	}
}

func TestExpandPlaceholders(t *testing.T) {
	rule := m365Rule("sel:\n    F|expand: '%admins%'\ncondition: sel")
	_, ref := compile(t, Options{}, map[string]string{"r.yml": rule})
	if len(ref) != 1 || !strings.Contains(ref[0].Reason, "placeholder %admins% needs values") {
		t.Fatalf("want refusal for missing placeholder, got %+v", ref)
	}
	rs, ref := compile(t, Options{Placeholders: map[string][]string{"admins": {"alice", "b*"}}}, map[string]string{"r.yml": rule})
	if len(ref) != 0 {
		t.Fatal(ref)
	}
	for rec, want := range map[string]bool{js("alice"): true, js("bob"): true, js("carol"): false} {
		if got := len(titles(rs, mkEvent(t, "m365.ual", rec))) > 0; got != want {
			t.Errorf("%s: got %v want %v", rec, got, want)
		}
	}
	// Escaped percent is literal; the placeholder still expands.
	rs, ref = compile(t, Options{Placeholders: map[string][]string{"d": {"x"}}},
		map[string]string{"r.yml": m365Rule("sel:\n    F|expand: '\\%plain%d%'\ncondition: sel")})
	if len(ref) != 0 {
		t.Fatal(ref)
	}
	if len(titles(rs, mkEvent(t, "m365.ual", js("%plainx")))) != 1 {
		t.Errorf("%s should match %q", `\%plain%d%`, "%plainx")
	}
}

func TestKeywords(t *testing.T) {
	cases := []struct {
		det  string
		rec  string
		want bool
	}{
		{"kw:\n    - 'roleAssignments/write'\ncondition: kw", `{"operationName":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"}`, true},
		{"kw:\n    - 'roleAssignments/write'\ncondition: kw", `{"operationName":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/READ"}`, false},
		{"kw:\n    - 'evil*tool'\ncondition: kw", `{"a":{"b":"the EVIL hacking TOOL"}}`, true},
		{"kw:\n    '|all':\n        - 'OabVirtualDirectory'\n        - ' -ExternalUrl '\ncondition: kw", `{"p":"Set-OabVirtualDirectory -ExternalUrl x"}`, true},
		{"kw:\n    '|all':\n        - 'OabVirtualDirectory'\n        - ' -ExternalUrl '\ncondition: kw", `{"p":"Set-OabVirtualDirectory"}`, false},
		{"kw: single\ncondition: kw", `{"p":"a single value"}`, true},
	}
	for _, c := range cases {
		rs := mustCompile(t, m365Rule(c.det))
		if got := len(titles(rs, mkEvent(t, "m365.ual", c.rec))) > 0; got != c.want {
			t.Errorf("%q on %s: got %v want %v", c.det, c.rec, got, c.want)
		}
	}
}
