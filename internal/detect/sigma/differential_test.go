package sigma

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"testing"

	sigmago "github.com/bradleyjkemp/sigma-go"
	"github.com/bradleyjkemp/sigma-go/evaluator"
)

// TestDifferentialSigmaGo compares this engine with bradleyjkemp/sigma-go
// (v0.6.6) on rules and events both support: flat string fields, the
// modifiers sigma-go has (contains, startswith, endswith, all, re, cidr,
// gt/gte/lt/lte, base64), lists, maps and the condition grammar.
// sigma-go does not expand wildcards in plain values ("fo*" is compared
// literally), so those stay in TestModifiers only. Events are random draws from a vocabulary built to hit edge
// cases (case, prefixes, empty values, missing fields).
func TestDifferentialSigmaGo(t *testing.T) {
	detections := []string{
		"sel:\n    A: foo\ncondition: sel",
		"sel:\n    A|contains: oob\ncondition: sel",
		"sel:\n    A|startswith: bar\ncondition: sel",
		"sel:\n    A|endswith: [bar, foo]\ncondition: sel",
		"sel:\n    A|contains|all: [foo, bar]\ncondition: sel",
		"sel:\n    A|re: '^f.o$'\ncondition: sel",
		"sel:\n    A|re: 'o{2}'\ncondition: sel",
		"sel:\n    B|cidr: 10.0.0.0/8\ncondition: sel",
		"sel:\n    B|cidr: [192.168.0.0/16, 2001:db8::/32]\ncondition: sel",
		"sel:\n    C|gt: 5\ncondition: sel",
		"sel:\n    C|lte: 12\ncondition: sel",
		"sel:\n    A|base64: foo\ncondition: sel",
		"sel:\n    A: foo\n    C: 5\ncondition: sel",
		"sel:\n    - A: foo\n    - C: 5\ncondition: sel",
		"sel:\n    A: foo\nfilter:\n    B: 10.1.2.3\ncondition: sel and not filter",
		"s1:\n    A: foo\ns2:\n    A: bar\ns3:\n    C: 12\ncondition: 1 of s*",
		"s1:\n    A|contains: o\ns2:\n    C|gte: 5\ncondition: all of s*",
		"s1:\n    A: foo\ns2:\n    B: 10.1.2.3\ns3:\n    C: 5\ncondition: s1 or s2 and not s3",
		"s1:\n    A: foo\ns2:\n    B: 10.1.2.3\ns3:\n    C: 5\ncondition: (s1 or s2) and not s3",
		"s1:\n    A: foo\ns2:\n    B: 10.1.2.3\ncondition: 1 of them",
		"s1:\n    A|startswith: f\ns2:\n    C|lt: 20\ncondition: all of them",
		"s1:\n    A: [foo, bar, '']\ncondition: s1",
	}
	vocab := map[string][]string{
		"A": {"foo", "FOO", "Foo", "foobar", "barfoo", "bar", "fxo", "fo", "", "o", "oob", "x foo y", base64.StdEncoding.EncodeToString([]byte("foo")), "Zm9v"},
		"B": {"10.1.2.3", "10.255.0.1", "11.0.0.1", "192.168.1.1", "2001:db8::5", "2001:db9::5", "not-an-ip", ""},
		"C": {"5", "12", "4.5", "20", "0", "-3"}, // sigma-go fails on non-numbers here
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for _, det := range detections {
		src := m365Rule(det)
		mine := mustCompile(t, src)
		r, err := sigmago.ParseRule([]byte(src))
		if err != nil {
			t.Fatalf("sigma-go cannot parse %q: %v", det, err)
		}
		theirs := evaluator.ForRule(r)
		diffs := 0
		for i := 0; i < 300; i++ {
			ev := map[string]any{}
			for f, vs := range vocab {
				if rng.IntN(5) > 0 { // sometimes absent
					ev[f] = vs[rng.IntN(len(vs))]
				}
			}
			js, _ := json.Marshal(ev)
			got := len(titles(mine, mkEvent(t, "m365.ual", string(js)))) > 0
			res, err := theirs.Matches(ctx, ev)
			if err != nil {
				t.Fatalf("sigma-go: %v", err)
			}
			if got != res.Match {
				diffs++
				if diffs <= 3 {
					t.Errorf("%q on %s: vigil %v, sigma-go %v", det, js, got, res.Match)
				}
			}
		}
		if diffs > 3 {
			t.Errorf("%q: %d more differences", det, diffs-3)
		}
	}
}
