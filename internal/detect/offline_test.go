package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// huntResult is what hunt --report writes from a run: every alert and the
// incidents with their impact.
type huntResult struct {
	alerts, incidents []byte
	stats             Stats
}

// huntFiles runs the built-in rules, the behaviours and incidents over
// paths, merged by RunOrdered when sorted is false, else through a Sorter
// holding runEvents events a run.
func huntFiles(t *testing.T, dir string, paths []string, sorted bool, runEvents int) (huntResult, error) {
	t.Helper()
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	rs := builtinRules(t)
	cfg := behavior.DefaultConfig()
	ic := cfg.IncidentConfig()
	pl := New(Config{Rules: rs, Behaviours: behavior.New(cfg, behavior.Options{Networks: nets}), Incidents: &ic, TempDir: t.TempDir(), ResultOnly: true}, nil)
	opts := source.Options{Hot: append(rs.FieldSyms(), event.HotFields...)}
	var res *Result
	if sorted {
		sorter := NewSorter(t.TempDir(), func() Decoder { return source.NewDecoder(nil, opts.Hot) })
		sorter.RunEvents = runEvents
		res, err = RunOffline(t.Context(), pl, sorter, func(emit func(*event.Event) error) error {
			_, err := source.ReadPaths(t.Context(), paths, opts, emit)
			return err
		}, nil)
	} else {
		res, err = RunOrdered(t.Context(), pl, func(emit func(*event.Event) error) error {
			_, err := source.ReadMerged(t.Context(), paths, opts, emit)
			return err
		}, nil)
	}
	if err != nil {
		return huntResult{}, err
	}
	var out huntResult
	if out.alerts, err = json.Marshal(allAlerts(t, res)); err != nil {
		t.Fatal(err)
	}
	if out.incidents, err = json.Marshal(res.Incidents); err != nil {
		t.Fatal(err)
	}
	out.stats = res.Stats
	return out, nil
}

// Inputs each in time order, merged as they are read and decoded once,
// give exactly what sorting them (in memory, or spilled in runs and
// merged) gives: the same alerts, incidents and impact, byte for byte.
func TestMergedEqualsSorted(t *testing.T) {
	dir, truth := scenario(t)
	paths := rewrite(t, dir, t.TempDir(), func([][]byte) {})
	merged, err := huntFiles(t, dir, paths, false, 0)
	if err != nil {
		t.Fatalf("simulated logs, each in time order: %v", err)
	}
	var incs []struct {
		Impact struct {
			MessageCount int `json:"message_count"`
		} `json:"impact"`
	}
	if err := json.Unmarshal(merged.incidents, &incs); err != nil {
		t.Fatal(err)
	}
	msgs := 0
	for _, inc := range incs {
		msgs += inc.Impact.MessageCount
	}
	if len(incs) < len(truth.Campaigns) || msgs == 0 {
		t.Fatalf("%d incidents reading %d messages for %d campaigns: too little to compare", len(incs), msgs, len(truth.Campaigns))
	}
	for _, run := range []int{DefaultRunEvents, 997} {
		sorted, err := huntFiles(t, dir, paths, true, run)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(merged.alerts, sorted.alerts) {
			t.Errorf("runs of %d: alerts differ:\n%.1500s\nsorted\n%.1500s", run, merged.alerts, sorted.alerts)
		}
		if !bytes.Equal(merged.incidents, sorted.incidents) {
			t.Errorf("runs of %d: incidents differ:\n%.1500s\nsorted\n%.1500s", run, merged.incidents, sorted.incidents)
		}
		if merged.stats.Events != sorted.stats.Events || merged.stats.Late != 0 || !merged.stats.From.Equal(sorted.stats.From) || !merged.stats.To.Equal(sorted.stats.To) {
			t.Errorf("runs of %d: stats %+v, sorted %+v", run, merged.stats, sorted.stats)
		}
	}
}

// Inputs out of order are refused by RunOrdered, never processed out of
// order: newest first (a Purview export), shuffled, or one file's lines
// moved by more than the reordering window.
func TestMergedRefusesDisorder(t *testing.T) {
	dir, _ := scenario(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		name string
		perm func([][]byte)
	}{
		{"reversed", slices.Reverse[[][]byte]},
		{"shuffled", func(l [][]byte) { rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] }) }},
		{"last line first", func(l [][]byte) { last := l[len(l)-1]; copy(l[1:], l[:len(l)-1]); l[0] = last }},
	} {
		_, err := huntFiles(t, dir, rewrite(t, dir, t.TempDir(), c.perm), false, 0)
		if !errors.Is(err, ErrNotOrdered) {
			t.Errorf("%s: %v, want %v", c.name, err, ErrNotOrdered)
		}
	}
}

// builtinRules compiles the Sigma rules vigil ships, as hunt does.
func builtinRules(t *testing.T) *sigma.Ruleset {
	t.Helper()
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err != nil {
		t.Fatal(err)
	}
	rs, _ := c.Compile()
	return rs
}
