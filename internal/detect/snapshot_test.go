package detect

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// scenarioStream is the simulated scenario's events from all three logs
// in time order, and its network table.
func scenarioStream(t *testing.T) ([]*event.Event, *behavior.NetTable) {
	t.Helper()
	dir, _ := scenario(t)
	return simulatedInOrder(t, dir)
}

// simulatedInOrder is a vigil simulate tenant's events from all three
// logs in time order, and its network table.
func simulatedInOrder(t *testing.T, dir string) ([]*event.Event, *behavior.NetTable) {
	t.Helper()
	var evs []*event.Event
	if _, err := source.ReadPaths(t.Context(), []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl"), filepath.Join(dir, "gws.jsonl")}, source.Options{},
		func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return a.Time.Compare(b.Time) })
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	return evs, nets
}

// fullPipeline is what vigil serve runs: the built-in rules, the
// behaviours (with nets, which may be nil) and incidents.
func fullPipeline(t *testing.T, nets behavior.Networks, tmp string, s Sink) *Pipeline {
	t.Helper()
	rs, _, err := sigma.Load(rules.FS, sigma.Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	ic := behavior.DefaultConfig().IncidentConfig()
	return New(Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets}),
		Incidents: &ic, TempDir: tmp}, s)
}

// incidentLines sums incidents up: id, severity, alerts, accesses, messages read.
func incidentLines(incs []*incident.Incident) []string {
	var out []string
	for _, inc := range incs {
		out = append(out, fmt.Sprintf("%s %s %d %d %d", inc.ID, inc.Severity, inc.AlertCount, inc.Impact.Accesses, inc.Impact.MessageCount))
	}
	slices.Sort(out)
	return out
}

// finish feeds rest to p (restored from a snapshot), closes it and
// requires the incidents of want (an uninterrupted run, which must have
// some); it returns p's result for further checks.
func finish(t *testing.T, p *Pipeline, rest []*event.Event, want *Result, what string) *Result {
	t.Helper()
	for _, e := range rest {
		p.Process(e)
	}
	got, err := p.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Incidents) == 0 {
		t.Fatal("the scenario made no incident")
	}
	if g, w := incidentLines(got.Incidents), incidentLines(want.Incidents); !slices.Equal(g, w) {
		t.Errorf("incidents %s:\n%v\nuninterrupted:\n%v", what, g, w)
	}
	return got
}

type recordingSink struct{ log []string }

func (s *recordingSink) Alert(a *alert.Alert) {
	s.log = append(s.log, "alert "+a.Key()+"|"+a.Level.String())
}
func (s *recordingSink) Incident(u Update) {
	s.log = append(s.log, fmt.Sprintf("incident %s %s %d %s %d", u.Incident.ID, u.Kind, u.Incident.AlertCount, u.Incident.Severity, u.Incident.Impact.Accesses))
}

// A pipeline restored from a snapshot and fed the rest of the stream tells
// its sink exactly what an uninterrupted pipeline would have, and finds the
// same incidents with the same impact: built-in Sigma rules (with their
// correlations), behaviours and the access log all carry over.
func TestSnapshotRestore(t *testing.T) {
	evs, nets := scenarioStream(t)
	tmp := t.TempDir()
	newP := func(s Sink) *Pipeline { return fullPipeline(t, nets, tmp, s) }
	cuts := []int{len(evs) / 3, 2 * len(evs) / 3}

	// Uninterrupted, with the same snapshot points (a snapshot drains the
	// reordering buffer, as a refresh does).
	whole := &recordingSink{}
	one := newP(whole)
	prev := 0
	for _, c := range cuts {
		for _, e := range evs[prev:c] {
			one.Process(e)
		}
		if _, err := one.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := one.Snapshot(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	for _, e := range evs[prev:] {
		one.Process(e)
	}
	want, err := one.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// Stopped and restored at each cut; the first run's access log has
	// grown past its snapshot, as after a crash, and is cut back.
	cut := &recordingSink{}
	p := newP(cut)
	prev = 0
	for _, c := range cuts {
		for _, e := range evs[prev:c] {
			p.Process(e)
		}
		if _, err := p.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		var snap bytes.Buffer
		if err := p.Snapshot(&snap); err != nil {
			t.Fatal(err)
		}
		mark := len(cut.log)
		for _, e := range evs[c:min(c+3000, len(evs))] {
			p.Process(e) // work the crash loses
		}
		if _, err := p.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		// What the sink heard after the snapshot is heard again on replay
		// (an outbox drops it by id); keep one copy.
		cut.log = cut.log[:mark]
		p = newP(cut)
		if err := p.Restore(&snap); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	got := finish(t, p, evs[prev:], want, "after restores")
	if len(allAlerts(t, got)) != len(allAlerts(t, want)) {
		t.Errorf("%d alerts after restores, %d uninterrupted", len(allAlerts(t, got)), len(allAlerts(t, want)))
	}
	if !slices.Equal(cut.log, whole.log) {
		t.Errorf("the sink heard %d things across restores, %d uninterrupted", len(cut.log), len(whole.log))
		for i := range min(len(cut.log), len(whole.log)) {
			if cut.log[i] != whole.log[i] {
				t.Fatalf("first difference at %d: %q, uninterrupted %q", i, cut.log[i], whole.log[i])
			}
		}
	}
}
