package sigma

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"
	"github.com/vigil-audit/vigil/internal/event"
)

// mkEvent builds an event of source from a JSON record, as a decoder
// would: flattened fields, raw bytes, normalized fields.
func mkEvent(t testing.TB, source, js string) *event.Event {
	t.Helper()
	var p fastjson.Parser
	v, err := p.Parse(js)
	if err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	b := event.NewBuilder()
	b.Flatten("", v)
	e := &event.Event{}
	b.Finish(e)
	e.Source = source
	e.Raw = []byte(js)
	e.Normalize()
	return e
}

// at sets the event time and user and re-normalizes.
func at(e *event.Event, t time.Time, user string) *event.Event {
	e.Time = t
	if user != "" {
		e.User = user
	}
	e.Normalize()
	return e
}

func compile(t testing.TB, opts Options, files map[string]string) (*Ruleset, []Refusal) {
	t.Helper()
	c := NewCompiler(opts)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.AddFile(n, []byte(files[n]))
	}
	return c.Compile()
}

func mustCompile(t testing.TB, yml string) *Ruleset {
	t.Helper()
	rs, ref := compile(t, Options{}, map[string]string{"rule.yml": yml})
	for _, r := range ref {
		t.Fatalf("refused: %s", r.Reason)
	}
	return rs
}

// titles runs e through rs and returns the titles that fired.
func titles(rs *Ruleset, evs ...*event.Event) []string {
	var out []string
	for _, e := range evs {
		rs.Match(e, func(d Detection) { out = append(out, d.Title) })
	}
	rs.Flush(func(d Detection) { out = append(out, d.Title) })
	return out
}

// m365Rule wraps detection lines (already indented 4 spaces) in a rule.
func m365Rule(det string) string {
	return "title: T\nid: 00000000-0000-4000-8000-000000000001\nlogsource:\n    product: m365\n    service: audit\ndetection:\n" +
		indent(det, "    ") + "\nlevel: high\n"
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}
