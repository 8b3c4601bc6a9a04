package sigma

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestConditionGrammar evaluates conditions over four selections a, b,
// sel_c and _d (each true when its field is 1) for all 16 assignments and
// compares with the intended boolean formula, which pins precedence
// (or < and < not < x of < parentheses) and the "them"/pattern rules.
func TestConditionGrammar(t *testing.T) {
	cases := []struct {
		cond string
		want func(a, b, c, d bool) bool
	}{
		{"a", func(a, b, c, d bool) bool { return a }},
		{"a and b or sel_c", func(a, b, c, d bool) bool { return a && b || c }},
		{"sel_c or a and b", func(a, b, c, d bool) bool { return c || a && b }},
		{"a or b and sel_c", func(a, b, c, d bool) bool { return a || b && c }},
		{"not a and b", func(a, b, c, d bool) bool { return !a && b }},
		{"not a or b", func(a, b, c, d bool) bool { return !a || b }},
		{"not (a or b)", func(a, b, c, d bool) bool { return !(a || b) }},
		{"not not a", func(a, b, c, d bool) bool { return a }},
		{"(a or b) and sel_c", func(a, b, c, d bool) bool { return (a || b) && c }},
		{"a and (b or (sel_c and not _d))", func(a, b, c, d bool) bool { return a && (b || (c && !d)) }},
		{"A AND B", nil}, // identifiers are case-sensitive: refused below
		{"a AND b OR NOT sel_c", func(a, b, c, d bool) bool { return a && b || !c }},
		{"1 of them", func(a, b, c, d bool) bool { return a || b || c }},
		{"all of them", func(a, b, c, d bool) bool { return a && b && c }},
		{"1 of sel_*", func(a, b, c, d bool) bool { return c }},
		{"all of *", func(a, b, c, d bool) bool { return a && b && c && d }},
		{"1 of _*", func(a, b, c, d bool) bool { return d }},
		{"2 of them", func(a, b, c, d bool) bool { return btoi(a)+btoi(b)+btoi(c) >= 2 }},
		{"not 1 of them", func(a, b, c, d bool) bool { return !(a || b || c) }},
		{"a and not 1 of sel_* and not _d", func(a, b, c, d bool) bool { return a && !c && !d }},
		{"1 of them and _d", func(a, b, c, d bool) bool { return (a || b || c) && d }},
		{"all of them or _d", func(a, b, c, d bool) bool { return a && b && c || d }},
	}
	for _, tc := range cases {
		t.Run(tc.cond, func(t *testing.T) {
			rule := m365Rule("a:\n    A: 1\nb:\n    B: 1\nsel_c:\n    C: 1\n_d:\n    D: 1\ncondition: " + tc.cond)
			rs, ref := compile(t, Options{}, map[string]string{"r.yml": rule})
			if tc.want == nil {
				if len(ref) != 1 {
					t.Fatalf("want refusal, got %v", ref)
				}
				return
			}
			if len(ref) > 0 {
				t.Fatal(ref[0].Reason)
			}
			for m := 0; m < 16; m++ {
				a, b, c, d := m&1 != 0, m&2 != 0, m&4 != 0, m&8 != 0
				rec := map[string]int{"A": btoi(a), "B": btoi(b), "C": btoi(c), "D": btoi(d)}
				raw, _ := json.Marshal(rec)
				got := len(titles(rs, mkEvent(t, "m365.ual", string(raw)))) > 0
				if got != tc.want(a, b, c, d) {
					t.Errorf("a=%v b=%v c=%v d=%v: got %v", a, b, c, d, got)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestConditionList(t *testing.T) {
	rs := mustCompile(t, m365Rule("a:\n    A: 1\nb:\n    B: 1\ncondition:\n    - a\n    - b"))
	for rec, want := range map[string]bool{`{"A":1}`: true, `{"B":1}`: true, `{"A":0,"B":0}`: false} {
		if got := len(titles(rs, mkEvent(t, "m365.ual", rec))) > 0; got != want {
			t.Errorf("%s: got %v", rec, got)
		}
	}
}

// TestRefusals: rules using anything unsupported or invalid are refused
// with a reason, never loaded in part.
func TestRefusals(t *testing.T) {
	base := "sel:\n    F: x\n"
	cases := []struct{ name, rule, reason string }{
		{"unknown modifier", m365Rule("sel:\n    F|frobnicate: x\ncondition: sel"), `unsupported modifier "frobnicate"`},
		{"aggregation", m365Rule(base + "condition: sel | count() by F > 5"), "obsolete"},
		{"near", m365Rule(base + "other:\n    G: y\ncondition: sel near other"), "near operator is obsolete"},
		{"timeframe", m365Rule(base + "timeframe: 5m\ncondition: sel"), "timeframe is obsolete"},
		{"unknown identifier", m365Rule(base + "condition: sel and other"), `unknown search identifier "other"`},
		{"pattern matches nothing", m365Rule(base + "condition: 1 of filter_*"), "matches no search identifier"},
		{"dangling and", m365Rule(base + "condition: sel and"), "unexpected end"},
		{"unbalanced", m365Rule(base + "condition: (sel"), "missing )"},
		{"no condition", m365Rule(base), "no condition"},
		{"missing placeholder", m365Rule("sel:\n    F|expand: '%servers%'\ncondition: sel"), "placeholder %servers% needs values"},
		{"re2 lookbehind", m365Rule("sel:\n    F|re: '(?<=a)b'\ncondition: sel"), "regular expression not supported"},
		{"re with contains", m365Rule("sel:\n    F|re|contains: 'a'\ncondition: sel"), "cannot be combined"},
		{"sub-modifier without re", m365Rule("sel:\n    F|i: 'a'\ncondition: sel"), "must follow re"},
		{"base64 wildcard", m365Rule("sel:\n    F|base64: 'a*'\ncondition: sel"), "cannot encode a value with wildcards"},
		{"exists not bool", m365Rule("sel:\n    F|exists: maybe\ncondition: sel"), "exists takes a boolean"},
		{"gt not number", m365Rule("sel:\n    F|gt: many\ncondition: sel"), "needs a number"},
		{"bad cidr", m365Rule("sel:\n    F|cidr: 10.0.0.0/99\ncondition: sel"), "invalid CIDR"},
		{"two wraps", m365Rule("sel:\n    F|contains|startswith: a\ncondition: sel"), "more than one of contains"},
		{"null with modifier", m365Rule("sel:\n    F|contains: null\ncondition: sel"), "null cannot be used with modifiers"},
		{"nested value", m365Rule("sel:\n    F:\n        G: x\ncondition: sel"), "value must be a scalar"},
		{"empty list", m365Rule("sel:\n    F: []\ncondition: sel"), "empty value list"},
		{"missing logsource", "title: T\ndetection:\n    sel:\n        F: x\n    condition: sel\n", "missing logsource"},
		{"missing title", "logsource:\n    product: m365\ndetection:\n    sel:\n        F: x\n    condition: sel\n", "missing title"},
		{"bad level", strings.Replace(m365Rule(base+"condition: sel"), "level: high", "level: severe", 1), `unknown level "severe"`},
		{"legacy collection", "action: global\ntitle: T\n", "rule collections"},
		{"filter document", "title: F\nlogsource:\n    product: m365\nfilter:\n    rules: [x]\n    sel:\n        F: x\n    condition: not sel\n", "filter documents are not supported"},
		{"invalid yaml", "title: [unclosed\n", "invalid YAML"},
		{"windash explosion", m365Rule("sel:\n    F|windash: '-a-b-c-d-e-f'\ncondition: sel"), "windash expands to more than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, ref := compile(t, Options{}, map[string]string{"r.yml": c.rule})
			if rs.Len() != 0 {
				t.Errorf("rule loaded despite refusal")
			}
			if len(ref) != 1 || !strings.Contains(ref[0].Reason, c.reason) {
				t.Errorf("want one refusal containing %q, got %+v", c.reason, ref)
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	r := m365Rule("sel:\n    F: x\ncondition: sel")
	rs, ref := compile(t, Options{}, map[string]string{"a.yml": r, "b.yml": r})
	if rs.Len() != 1 || len(ref) != 1 || !strings.Contains(ref[0].Reason, "duplicate rule id") || ref[0].File != "b.yml" {
		t.Fatalf("got %d loaded, refusals %+v", rs.Len(), ref)
	}
}

func TestUnroutedRuleLoads(t *testing.T) {
	rs := mustCompile(t, "title: Win\nlogsource:\n    product: windows\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: '\\cmd.exe'\n    condition: sel\n")
	if rs.Len() != 1 || len(rs.Rules()[0].Sources) != 0 {
		t.Fatalf("want one unrouted rule, got %d rules", rs.Len())
	}
	if got := titles(rs, mkEvent(t, "m365.ual", `{"Image":"c:\\cmd.exe"}`)); len(got) != 0 {
		t.Fatalf("unrouted rule fired: %v", got)
	}
}

func TestRouting(t *testing.T) {
	cases := map[Logsource]string{
		{Product: "m365", Service: "exchange"}:                   "m365.ual",
		{Product: "azure", Service: "signinlogs"}:                "entra.signin",
		{Product: "azure", Service: "auditlogs"}:                 "entra.audit",
		{Product: "azure", Service: "pim"}:                       "entra.audit",
		{Product: "azure", Service: "riskdetection"}:             "entra.risk",
		{Product: "azure", Service: "activitylogs"}:              "azure.activity",
		{Product: "m365", Service: "inboxrule"}:                  "m365.inboxrule",
		{Product: "gcp", Service: "google_workspace.admin"}:      "gws.admin",
		{Product: "google_workspace", Service: "login"}:          "gws.login",
		{Product: "windows", Service: "security"}:                "",
		{Product: "gcp", Service: "gcp.audit"}:                   "",
		{Category: "process_creation"}:                           "",
		{Product: "azure", Service: "signinlogs", Category: "x"}: "entra.signin",
	}
	for ls, want := range cases {
		got := strings.Join(Route(ls), ",")
		if want == "" && got != "" || want != "" && got != want {
			t.Errorf("%s: got %q want %q", ls, got, want)
		}
	}
}
