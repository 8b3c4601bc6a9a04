package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// scenario simulates a tenant with every campaign and confounder once per
// test binary.
func scenario(t *testing.T) (string, *simulate.Truth) {
	t.Helper()
	dir := t.TempDir()
	truth, err := simulate.Run(t.Context(), simulate.Config{Users: 25, Days: 12, Seed: 5,
		Campaigns:   simulate.CampaignNames,
		Confounders: simulate.ConfounderNames}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, truth
}

var logFiles = []string{"ual.jsonl", "signins.jsonl", "gws.jsonl"}

// rewrite writes the scenario's records into out, each file's lines
// reordered by perm.
func rewrite(t *testing.T, dir, out string, perm func([][]byte)) []string {
	t.Helper()
	var paths []string
	for _, f := range logFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		perm(lines)
		p := filepath.Join(out, f)
		if err := os.WriteFile(p, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

type outcome struct {
	Incidents json.RawMessage
	Alerts    int
}

// detectFiles runs what hunt --report runs and returns the incidents
// (with their impact) as JSON.
func detectFiles(t *testing.T, dir string, paths []string, runEvents int) (outcome, *Result) {
	t.Helper()
	ctx := t.Context()
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := behavior.DefaultConfig()
	ic := cfg.IncidentConfig()
	pl := New(Config{Behaviours: behavior.New(cfg, behavior.Options{Networks: nets}), Incidents: &ic, TempDir: t.TempDir()}, nil)
	sorter := NewSorter(t.TempDir(), func() Decoder { return source.NewDecoder(nil, nil) })
	sorter.RunEvents = runEvents
	res, err := RunOffline(ctx, pl, sorter, func(emit func(*event.Event) error) error {
		_, err := source.ReadPaths(ctx, paths, source.Options{}, emit)
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res.Incidents)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{Incidents: b, Alerts: res.Alerts.Len()}, res
}

// The same records in any order give the same incidents and impact:
// shuffled, reversed (Purview exports are newest first), whether the
// sort holds them in memory or spills and merges runs.
func TestOrderDoesNotMatter(t *testing.T) {
	dir, truth := scenario(t)
	asIs, res := detectFiles(t, dir, rewrite(t, dir, t.TempDir(), func([][]byte) {}), DefaultRunEvents)
	if len(res.Incidents) < len(truth.Campaigns) {
		t.Fatalf("%d incidents for %d campaigns: too little to compare", len(res.Incidents), len(truth.Campaigns))
	}
	msgs := 0
	for _, inc := range res.Incidents {
		msgs += inc.Impact.MessageCount
	}
	if msgs == 0 {
		t.Fatal("no impact measured: nothing to compare")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		perm func([][]byte)
		run  int
	}{
		{"reversed", slices.Reverse[[][]byte], DefaultRunEvents},
		{"shuffled", func(l [][]byte) { rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] }) }, DefaultRunEvents},
		{"shuffled, spilled in runs of 997", func(l [][]byte) { rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] }) }, 997},
		{"reversed, spilled in runs of 5000", slices.Reverse[[][]byte], 5000},
		{"shuffled, spilled in runs of 211 (merged in rounds)", func(l [][]byte) { rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] }) }, 211},
	}
	for _, c := range cases {
		got, _ := detectFiles(t, dir, rewrite(t, dir, t.TempDir(), c.perm), c.run)
		if got.Alerts != asIs.Alerts {
			t.Errorf("%s: %d alerts, in file order %d", c.name, got.Alerts, asIs.Alerts)
		}
		if !bytes.Equal(got.Incidents, asIs.Incidents) {
			t.Errorf("%s: incidents differ from file order:\n%.2000s\nwant\n%.2000s", c.name, got.Incidents, asIs.Incidents)
		}
	}
}

// Disorder inside the reordering window needs no sort: events that
// arrive up to a few minutes late are processed in order.
func TestReorderWindow(t *testing.T) {
	dir, _ := scenario(t)
	var evs []*event.Event
	if _, err := source.ReadPaths(t.Context(), []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl")}, source.Options{},
		func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return compareKey(keyOf(a), keyOf(b)) })
	run := func(evs []*event.Event) []string {
		cfg := behavior.DefaultConfig()
		res := processAll(t, New(Config{Behaviours: behavior.New(cfg, behavior.Options{})}, nil), evs)
		if res.Stats.Late != 0 {
			t.Errorf("%d events late", res.Stats.Late)
		}
		var out []string
		for _, a := range allAlerts(t, res) {
			out = append(out, a.Key())
		}
		return out
	}
	want := run(evs)
	if len(want) == 0 {
		t.Fatal("no alerts: nothing to compare")
	}
	// Jitter: each event swapped with a neighbour less than 5 min away.
	jit := slices.Clone(evs)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 1; i < len(jit); i++ {
		if rng.IntN(2) == 0 && jit[i].Time.Sub(jit[i-1].Time) < 5*time.Minute {
			jit[i], jit[i-1] = jit[i-1], jit[i]
		}
	}
	if got := run(jit); !slices.Equal(got, want) {
		t.Errorf("jittered input: %d alerts, in order %d", len(got), len(want))
	}
}

// Cutting the stream (SaveState after the first part, LoadState before
// the second) gives the same alerts as one sequential run over both, also
// with the behaviours on a goroutine of their own (SaveState waits for the
// events in flight).
func TestCutTheStream(t *testing.T) {
	dir, _ := scenario(t)
	var evs []*event.Event
	if _, err := source.ReadPaths(t.Context(), []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl")}, source.Options{},
		func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return compareKey(keyOf(a), keyOf(b)) })
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	newP := func() *Pipeline {
		return New(Config{Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets})}, nil)
	}
	keys := func(as []alert.Alert) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.Key()+"|"+a.Level.String())
		}
		return out
	}
	one := newP()
	for _, e := range evs {
		one.Process(e)
	}
	whole, err := one.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, split := range []bool{false, true} {
		var alerts []alert.Alert
		sink := sinkFunc(func(a *alert.Alert) { alerts = append(alerts, *a) })
		cut := len(evs) / 2
		if split {
			// Cut where a batch is part filled, with earlier ones in flight.
			cut += splitBatchLen / 2
		}
		first := newP()
		first.sink = sink
		if split {
			first.startSplit()
		}
		for _, e := range evs[:cut] {
			first.Process(e)
		}
		var state bytes.Buffer
		if err := first.SaveState(&state); err != nil {
			t.Fatal(err)
		}
		first.stopSplit()
		second := newP()
		second.sink = sink
		if err := second.LoadState(&state); err != nil {
			t.Fatal(err)
		}
		if split {
			second.startSplit()
		}
		for _, e := range evs[cut:] {
			second.Process(e)
		}
		if _, err := second.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		second.stopSplit()
		if split && (first.splitBatches == 0 || second.splitBatches == 0) {
			t.Fatalf("batches to the behaviours' goroutine: %d, %d", first.splitBatches, second.splitBatches)
		}
		alert.Sort(alerts)
		if got, want := keys(alerts), keys(allAlerts(t, whole)); len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("cut stream (behaviours on a goroutine of their own: %v): %d alerts, one sequential run %d", split, len(got), len(want))
		}
	}
}

type sinkFunc func(*alert.Alert)

func (f sinkFunc) Alert(a *alert.Alert) { f(a) }
func (sinkFunc) Incident(Update)        {}

type updateSink struct {
	alerts  int
	updates map[string][]UpdateKind
}

func (s *updateSink) Alert(*alert.Alert) { s.alerts++ }
func (s *updateSink) Incident(u Update) {
	s.updates[u.Incident.ID] = append(s.updates[u.Incident.ID], u.Kind)
}

// The sink hears of every alert as it is raised and of every incident as
// it opens, grows and gets its impact.
func TestSinkHearsIncidentUpdates(t *testing.T) {
	dir, _ := scenario(t)
	sink, res := runWithSink(t, dir, false)
	if sink.alerts != len(allAlerts(t, res)) || sink.alerts == 0 {
		t.Errorf("sink heard %d alerts, result has %d", sink.alerts, len(allAlerts(t, res)))
	}
	if len(res.Incidents) == 0 {
		t.Fatal("no incidents")
	}
	grew := 0
	for _, inc := range res.Incidents {
		u := sink.updates[inc.ID]
		if len(u) == 0 || u[0] != Opened {
			t.Errorf("%s: updates %v, want opened first", inc.ID, u)
		}
		if inc.Impact.Accesses > 0 && u[len(u)-1] != ImpactChanged {
			t.Errorf("%s: updates %v, want impact changed last", inc.ID, u)
		}
		if slices.Contains(u, Grew) || slices.Contains(u, SeverityChanged) {
			grew++
		}
	}
	if grew == 0 {
		t.Error("no incident was reported growing while the stream ran")
	}
}

// ResultOnly skips the grouping while the stream runs: the same alerts
// and incidents come out of Close, and the sink hears each incident open
// once, at the end, with nothing reported before it was final.
func TestResultOnly(t *testing.T) {
	dir, _ := scenario(t)
	_, live := runWithSink(t, dir, false)
	sink, res := runWithSink(t, dir, true)
	a, _ := json.Marshal(live.Incidents)
	b, _ := json.Marshal(res.Incidents)
	if !bytes.Equal(a, b) || len(allAlerts(t, live)) != len(allAlerts(t, res)) {
		t.Errorf("result only: %d alerts, incidents\n%.2000s\nwant %d alerts,\n%.2000s", len(allAlerts(t, res)), b, len(allAlerts(t, live)), a)
	}
	if sink.alerts != len(allAlerts(t, res)) {
		t.Errorf("sink heard %d alerts, result has %d", sink.alerts, len(allAlerts(t, res)))
	}
	for _, inc := range res.Incidents {
		u := sink.updates[inc.ID]
		want := []UpdateKind{Opened}
		if inc.Impact.Accesses > 0 {
			want = append(want, ImpactChanged)
		}
		if !slices.Equal(u, want) {
			t.Errorf("%s: updates %v, want %v", inc.ID, u, want)
		}
	}
	if len(sink.updates) != len(res.Incidents) {
		t.Errorf("updates for %d incidents, %d in the result", len(sink.updates), len(res.Incidents))
	}
}

func runWithSink(t *testing.T, dir string, resultOnly bool) (*updateSink, *Result) {
	t.Helper()
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := behavior.DefaultConfig()
	ic := cfg.IncidentConfig()
	sink := &updateSink{updates: map[string][]UpdateKind{}}
	pl := New(Config{Behaviours: behavior.New(cfg, behavior.Options{Networks: nets}), Incidents: &ic, TempDir: t.TempDir(), ResultOnly: resultOnly}, sink)
	sorter := NewSorter(t.TempDir(), func() Decoder { return source.NewDecoder(nil, nil) })
	paths := []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl"), filepath.Join(dir, "gws.jsonl")}
	res, err := RunOffline(t.Context(), pl, sorter, func(emit func(*event.Event) error) error {
		_, err := source.ReadPaths(t.Context(), paths, source.Options{}, emit)
		return err
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sink, res
}

// BenchmarkPipeline measures the pipeline alone (ordering, behaviours,
// incidents, the access log and the impact pass) over a decoded tenant.
func BenchmarkPipeline(b *testing.B) {
	dir := b.TempDir()
	if _, err := simulate.Run(b.Context(), simulate.Config{Users: 50, Days: 21, Seed: 1, Campaigns: simulate.CampaignNames, Confounders: simulate.ConfounderNames}, dir); err != nil {
		b.Fatal(err)
	}
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		b.Fatal(err)
	}
	var evs []*event.Event
	paths := []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl"), filepath.Join(dir, "gws.jsonl")}
	if _, err := source.ReadPaths(b.Context(), paths, source.Options{Hot: event.HotFields}, func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		b.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return compareKey(keyOf(a), keyOf(b)) })
	b.ResetTimer()
	for b.Loop() {
		cfg := behavior.DefaultConfig()
		ic := cfg.IncidentConfig()
		pl := New(Config{Behaviours: behavior.New(cfg, behavior.Options{Networks: nets}), Incidents: &ic, TempDir: b.TempDir()}, nil)
		for _, e := range evs {
			pl.Process(e)
		}
		if _, err := pl.Close(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// allAlerts reads a result's alerts into memory.
func allAlerts(tb testing.TB, r *Result) []alert.Alert {
	tb.Helper()
	as, err := r.Alerts.All()
	if err != nil {
		tb.Fatal(err)
	}
	return as
}
