package detect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// lineDecoder decodes records "UNIXSECONDS ID PADDING" into one event.
type lineDecoder struct{}

func (lineDecoder) Decode(raw []byte, origin event.Origin) ([]*event.Event, error) {
	f := bytes.Fields(raw)
	if len(f) < 2 {
		return nil, fmt.Errorf("bad record %q", raw)
	}
	sec, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return nil, err
	}
	return []*event.Event{{Time: time.Unix(sec, 0).UTC(), Source: "test", RecordID: string(f[1]), Raw: raw, Origin: origin}}, nil
}

func testRecords(n, pad int, rng *rand.Rand) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		// Few distinct times, so ties are broken on the record id.
		raw := fmt.Appendf(nil, "%d r%05d %s", 1_700_000_000+rng.IntN(n/4+1), i, bytes.Repeat([]byte("x"), pad))
		e, _ := lineDecoder{}.Decode(raw, event.Origin{File: "in", Index: i, Line: i + 1})
		evs[i] = e[0]
	}
	return evs
}

// The Sorter gives every event back once, in key order, whether the run
// stays in memory, spills, or spills so many runs that they are merged
// in rounds, and removes its run files.
func TestSorterOrders(t *testing.T) {
	cases := []struct {
		name                string
		n, pad              int
		runEvents, runBytes int
		wantRuns            bool
	}{
		{"in memory", 2000, 10, DefaultRunEvents, DefaultRunBytes, false},
		{"spilled by count", 2000, 10, 300, DefaultRunBytes, true},
		{"spilled by bytes", 2000, 100, DefaultRunEvents, 4096, true},
		{"merged in rounds", 3*maxFanIn + 7, 10, 1, DefaultRunBytes, true},
		{"records larger than the budget", 50, 5000, DefaultRunEvents, 1000, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			evs := testRecords(c.n, c.pad, rand.New(rand.NewPCG(7, uint64(c.n))))
			s := NewSorter(dir, func() Decoder { return lineDecoder{} })
			s.RunEvents, s.RunBytes = c.runEvents, c.runBytes
			for _, e := range evs {
				if err := s.Add(e); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(s.runs) > 0; got != c.wantRuns {
				t.Errorf("%d run files, want spilled %v", len(s.runs), c.wantRuns)
			}
			var got []*event.Event
			if err := s.Replay(t.Context(), func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(evs) {
				t.Fatalf("%d events replayed, %d added", len(got), len(evs))
			}
			seen := map[string]bool{}
			for i, e := range got {
				if i > 0 && compareKey(keyOf(got[i-1]), keyOf(e)) > 0 {
					t.Fatalf("event %d (%s %s) before %d (%s %s)", i-1, got[i-1].Time, got[i-1].RecordID, i, e.Time, e.RecordID)
				}
				if seen[e.RecordID] {
					t.Fatalf("%s replayed twice", e.RecordID)
				}
				seen[e.RecordID] = true
				if want := evs[e.Origin.Index]; !bytes.Equal(e.Raw, want.Raw) {
					t.Fatalf("record %d came back as %q, was %q", e.Origin.Index, e.Raw, want.Raw)
				}
			}
			left, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("%d run files left behind", len(left))
			}
		})
	}
}

// A run file damaged between spill and merge is an error, not a shorter
// stream, whether the final merge or a merge round reads it, and no run
// file is left behind (a 10 M event sort filling the disk left a merge
// round's half-written output).
func TestSorterDamagedRun(t *testing.T) {
	for _, c := range []struct {
		name       string
		n, perRun  int
		wantRounds bool
	}{
		{"final merge", 500, 100, false},
		{"merge round", 3*maxFanIn + 7, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := NewSorter(dir, func() Decoder { return lineDecoder{} })
			s.RunEvents = c.perRun
			for _, e := range testRecords(c.n, 10, rand.New(rand.NewPCG(1, 1))) {
				if err := s.Add(e); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(s.runs) > maxFanIn; got != c.wantRounds {
				t.Fatalf("%d runs: merge rounds %v, want %v", len(s.runs), got, c.wantRounds)
			}
			if err := os.Truncate(s.runs[0], 7); err != nil {
				t.Fatal(err)
			}
			n := 0
			err := s.Replay(t.Context(), func(*event.Event) error { n++; return nil })
			if err == nil {
				t.Fatalf("replayed %d events from a truncated run without an error", n)
			}
			left, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("%d files left behind: %v", len(left), left[0].Name())
			}
		})
	}
}
