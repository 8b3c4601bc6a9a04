package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// orderSink records everything a sink hears, in the order it hears it.
type orderSink struct{ heard []string }

func (s *orderSink) Alert(a *alert.Alert) {
	b, _ := json.Marshal(a)
	s.heard = append(s.heard, "alert "+string(b))
}

func (s *orderSink) Incident(u Update) {
	s.heard = append(s.heard, fmt.Sprintf("%s %s alerts=%d severity=%s accesses=%d", u.Kind, u.Incident.ID, u.Incident.AlertCount, u.Incident.Severity, u.Incident.Impact.Accesses))
}

// splitRun is what one run gave: the sink's hearing and the result.
type splitRun struct {
	heard             []string
	alerts, incidents []byte
	stats             Stats
	batches           int // sent to the behaviours' goroutine
}

// twoTenants simulates two tenants (and their Workspace tenants) with every
// campaign and confounder: the behaviours keep state per tenant and
// across them (tokens, sessions, failed sign-ins by address).
func twoTenants(t *testing.T) (nets string, paths []string) {
	t.Helper()
	for i, seed := range []uint64{5, 6} {
		dir := t.TempDir()
		if _, err := simulate.Run(t.Context(), simulate.Config{Users: 20, Days: 10, Seed: seed,
			Campaigns: simulate.CampaignNames, Confounders: simulate.ConfounderNames}, dir); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			nets = filepath.Join(dir, simulate.NetworksFile)
		}
		for _, f := range logFiles {
			paths = append(paths, filepath.Join(dir, f))
		}
	}
	return nets, paths
}

// runSplit runs the built-in rules, the behaviours and incidents over
// paths, the behaviours on their own goroutine unless sequential.
// Merged inputs go through RunOrdered, others through a Sorter; now is
// the wall clock the pipeline sees.
func runSplit(t *testing.T, nets string, paths []string, merged, sequential bool, now time.Time) splitRun {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	table, err := behavior.LoadNetTableFile(nets)
	if err != nil {
		t.Fatal(err)
	}
	rs := builtinRules(t)
	cfg := behavior.DefaultConfig()
	ic := cfg.IncidentConfig()
	sink := &orderSink{}
	pl := New(Config{Rules: rs, Behaviours: behavior.New(cfg, behavior.Options{Networks: table, TempDir: t.TempDir()}),
		Incidents: &ic, TempDir: t.TempDir(), Sequential: sequential, Now: func() time.Time { return now }}, sink)
	opts := source.Options{Hot: append(rs.FieldSyms(), event.HotFields...)}
	var res *Result
	if merged {
		res, err = RunOrdered(t.Context(), pl, func(emit func(*event.Event) error) error {
			_, err := source.ReadMerged(t.Context(), paths, opts, emit)
			return err
		}, nil)
	} else {
		sorter := NewSorter(t.TempDir(), func() Decoder { return source.NewDecoder(nil, opts.Hot) })
		res, err = RunOffline(t.Context(), pl, sorter, func(emit func(*event.Event) error) error {
			_, err := source.ReadPaths(t.Context(), paths, opts, emit)
			return err
		}, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := splitRun{heard: sink.heard, stats: res.Stats, batches: pl.splitBatches}
	if out.alerts, err = json.Marshal(allAlerts(t, res)); err != nil {
		t.Fatal(err)
	}
	if out.incidents, err = json.Marshal(res.Incidents); err != nil {
		t.Fatal(err)
	}
	return out
}

// The behaviours on a goroutine of their own give exactly what the
// sequential ordered stage gives: the same alerts and incident updates
// reach the sink in the same order, and the result's alerts, incidents
// and impact are the same byte for byte. Over two tenants, merged as read
// or sorted, and with a wall clock inside the scenario (its later events
// future-dated, matched by the single-event rules alone, in line with the
// others).
func TestSplitEqualsSequential(t *testing.T) {
	nets, paths := twoTenants(t)
	cases := []struct {
		name   string
		merged bool
		now    time.Time
	}{
		{"merged as read", true, time.Now()},
		{"sorted", false, time.Now()},
		{"sorted, the last days future-dated", false, simulate.DefaultStart.Add(8*24*time.Hour - DefaultMaxFuture)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := runSplit(t, nets, paths, c.merged, true, c.now)
			par := runSplit(t, nets, paths, c.merged, false, c.now)
			if seq.batches != 0 || par.batches == 0 {
				t.Fatalf("batches to the behaviours' goroutine: %d sequential, %d split", seq.batches, par.batches)
			}
			incidents, alerts := 0, 0
			for _, h := range seq.heard {
				if bytes.HasPrefix([]byte(h), []byte("opened ")) {
					incidents++
				}
				if bytes.HasPrefix([]byte(h), []byte("alert ")) {
					alerts++
				}
			}
			if incidents < 4 || alerts < 100 {
				t.Fatalf("%d incidents opened and %d alerts: too little to compare", incidents, alerts)
			}
			if c.now.Before(simulate.DefaultStart.Add(10*24*time.Hour)) && seq.stats.Future == 0 {
				t.Fatal("no future-dated event")
			}
			if !slices.Equal(par.heard, seq.heard) {
				i := 0
				for i < min(len(par.heard), len(seq.heard)) && par.heard[i] == seq.heard[i] {
					i++
				}
				t.Errorf("the sink heard %d things, sequentially %d; first difference at %d:\n%.500s\nwant\n%.500s",
					len(par.heard), len(seq.heard), i, at(par.heard, i), at(seq.heard, i))
			}
			if !bytes.Equal(par.alerts, seq.alerts) {
				t.Errorf("alerts differ:\n%.1500s\nsequential\n%.1500s", par.alerts, seq.alerts)
			}
			if !bytes.Equal(par.incidents, seq.incidents) {
				t.Errorf("incidents differ:\n%.1500s\nsequential\n%.1500s", par.incidents, seq.incidents)
			}
			if par.stats.Events != seq.stats.Events || par.stats.Future != seq.stats.Future || par.stats.Late != seq.stats.Late {
				t.Errorf("stats %+v, sequential %+v", par.stats, seq.stats)
			}
		})
	}
}

func at(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return "(nothing)"
}
