package sigma

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCompile feeds arbitrary YAML to the compiler and matches whatever
// loads against a few events: parsing and matching must never panic, and
// every document must end up loaded or refused.
func FuzzCompile(f *testing.F) {
	seeds := []string{
		m365Rule("sel:\n    F|contains|all: [a, b]\n    G|re|i: '^x+$'\ncondition: sel and not 1 of f*\nf1:\n    H: null"),
		m365Rule("kw:\n    - 'evil*'\ncondition: kw"),
		m365Rule("sel:\n    F|windash|base64offset|contains: ' -e'\n    T|hour|gte: 3\n    C|cidr: 10.0.0.0/8\ncondition: all of them"),
		signinRules + "---\ntitle: C\ncorrelation:\n    type: temporal_ordered\n    rules: [failed_signin, ok_signin]\n    group-by: [user]\n    timespan: 5m\n",
		"title: [\n",
		"---\n---\n",
	}
	if dir, err := filepath.Abs(filepath.Join("..", "..", "..", "rules", "vigil")); err == nil {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && filepath.Ext(e.Name()) == ".yml" {
				seeds = append(seeds, string(b))
			}
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	evs := []struct{ src, js string }{
		{"m365.ual", `{"F":"a b","G":"XX","H":null,"T":"2024-01-01T04:00:00Z","C":"10.0.0.1","Operation":"New-InboxRule","Parameters":[{"Name":"ForwardTo","Value":"x@y"}]}`},
		{"entra.signin", `{"userPrincipalName":"a@x","status":{"errorCode":50126}}`},
		{"entra.signin", `{"userPrincipalName":"a@x","status":{"errorCode":0}}`},
	}
	f.Fuzz(func(t *testing.T, yml string) {
		c := NewCompiler(Options{Placeholders: map[string][]string{"p": {"x"}}})
		c.AddFile("f.yml", []byte(yml))
		rs, _ := c.Compile()
		for i, ev := range evs {
			e := mkEvent(t, ev.src, ev.js)
			e.Time = t0.Add(timeDuration(i) * 1e9)
			rs.Match(e, func(Detection) {})
		}
		rs.Flush(func(Detection) {})
	})
}
