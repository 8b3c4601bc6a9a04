package detect

import (
	"bytes"
	"encoding/gob"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/simulate"
)

// countSink counts the alerts it hears.
type countSink struct{ alerts int }

func (s *countSink) Alert(*alert.Alert) { s.alerts++ }
func (s *countSink) Incident(Update)    {}

// alertState is the size of what a snapshot keeps of alerts and
// incidents: the alerts held, the settled incidents and the breadth of
// the actors let go, and what the sink was told of incidents. (The
// behaviours' state has its own bounds, tested with the behaviours.)
func alertState(t *testing.T, b []byte) int {
	t.Helper()
	var s snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
		t.Fatal(err)
	}
	var w bytes.Buffer
	if err := gob.NewEncoder(&w).Encode(snapshot{Alerts: s.Alerts, Settled: s.Settled, Tally: s.Tally, Spooled: s.Spooled, Open: s.Open, Impact: s.Impact}); err != nil {
		t.Fatal(err)
	}
	return w.Len()
}

// A pipeline that never ends (vigil serve: a refresh each day, the sink
// keeping the alerts) over weeks of a tenant's benign noise holds the
// alerts of its last days, not of its whole run, and its snapshot stays
// the same size while the alerts raised keep growing.
func TestLiveMemoryBoundedByDays(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 45 days")
	}
	const days = 45
	dir := t.TempDir()
	if _, err := simulate.Run(t.Context(), simulate.Config{Users: 20, Days: days, Seed: 3}, dir); err != nil {
		t.Fatal(err)
	}
	evs, nets := simulatedInOrder(t, dir)
	sink := &countSink{}
	p := fullPipeline(t, nets, t.TempDir(), sink)
	p.cfg.ForgetSettled = true

	type mark struct{ raised, held, snapshot int }
	var marks []mark
	day := simulate.DefaultStart.Add(24 * time.Hour)
	refresh := func() {
		if _, err := p.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		var snap bytes.Buffer
		if err := p.Snapshot(&snap); err != nil {
			t.Fatal(err)
		}
		marks = append(marks, mark{sink.alerts, len(p.alerts), alertState(t, snap.Bytes())})
	}
	for _, e := range evs {
		for !e.Time.Before(day) {
			refresh()
			day = day.Add(24 * time.Hour)
		}
		if err := p.Process(e); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	// After two weeks the settled horizon (about five days) is well
	// behind; compare the end with then.
	then, end := marks[14], marks[len(marks)-1]
	t.Logf("day 15: %+v; day %d: %+v", then, len(marks), end)
	if end.raised < 3*then.raised {
		t.Fatalf("the noise raised %d alerts by day 15 and %d by the end: too few to tell growth", then.raised, end.raised)
	}
	maxHeld := 0
	for _, m := range marks[14:] {
		maxHeld = max(maxHeld, m.held)
	}
	if end.held > end.raised/3 || maxHeld > 2*max(then.held, 50) {
		t.Errorf("alerts held: %d at day 15, %d at most since, %d at the end of %d raised: they grow with the run", then.held, maxHeld, end.held, end.raised)
	}
	if end.snapshot > then.snapshot*2 {
		t.Errorf("the snapshot's alerts and incidents: %d bytes at day 15, %d at the end: they grow with the run", then.snapshot, end.snapshot)
	}
}
