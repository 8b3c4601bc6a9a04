package detect

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
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

// The settled alerts come back merged in alert order from runs written
// in any order, through compactions past maxSpoolRuns, with the held
// alerts among them; Each holds one alert per run, and Close removes the
// file.
func TestAlertSpoolMergesRuns(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	t0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	mk := func(i int) alert.Alert {
		a := alert.Alert{Time: t0.Add(time.Duration(rng.IntN(90*24)) * time.Hour), Signal: fmt.Sprint("D", 1+rng.IntN(9)), Level: alert.Medium,
			Mailbox: fmt.Sprintf("u%d@x", rng.IntN(50)), RecordIDs: []string{fmt.Sprint("r", i)}, Title: "t", Fields: map[string]string{"src_ip": "198.18.0.1"}}
		if i%5 == 0 {
			a.Tags = []string{} // an empty list must come back empty, not nil
		}
		return a
	}
	var want []alert.Alert
	s := &alertSpool{dir: dir}
	n := 0
	for run := range 2*maxSpoolRuns + 7 {
		batch := make([]alert.Alert, 1+rng.IntN(40))
		for i := range batch {
			batch[i] = mk(n)
			n++
		}
		want = append(want, batch...)
		if err := s.write(batch); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if len(s.runs) > maxSpoolRuns {
			t.Fatalf("run %d: %d runs kept, at most %d", run, len(s.runs), maxSpoolRuns)
		}
	}
	held := make([]alert.Alert, 25)
	for i := range held {
		held[i] = mk(n)
		n++
	}
	want = append(want, held...)
	alert.Sort(want)
	res := &Alerts{spool: s, held: held}
	if res.Len() != len(want) {
		t.Fatalf("Len %d, want %d", res.Len(), len(want))
	}
	got, err := res.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d alerts back, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("alert %d: %+v\nwant %+v", i, got[i], want[i])
		}
	}
	stop := errors.New("stop")
	if err := res.Each(func(*alert.Alert) error { return stop }); err != stop {
		t.Fatalf("Each did not return fn's error: %v", err)
	}
	name := s.f.Name()
	res.Close()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Fatalf("the spool %s is still there after Close: %v", name, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}
