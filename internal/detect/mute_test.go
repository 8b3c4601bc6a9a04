package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/source"
)

const (
	muteRuleHigh = "aaaaaaaa-0000-4000-8000-000000000001" // makes an incident on its own
	muteRuleLow  = "aaaaaaaa-0000-4000-8000-000000000002" // only enriches
)

// muteRules are two rules on every mail read: one whose alerts make an
// incident, one whose alerts only enrich.
func muteRules(t *testing.T) *sigma.Ruleset {
	t.Helper()
	rule := func(id, level string) *fstest.MapFile {
		return &fstest.MapFile{Data: fmt.Appendf(nil, `title: mail read %s
id: %s
level: %s
logsource: {product: m365, service: exchange}
detection:
  sel: {Operation: MailItemsAccessed}
  condition: sel
`, level, id, level)}
	}
	rs, refused, err := sigma.Load(fstest.MapFS{"high.yml": rule(muteRuleHigh, "high"), "low.yml": rule(muteRuleLow, "low")}, sigma.Options{}, ".")
	if err != nil || len(refused) > 0 || rs.Len() != 2 {
		t.Fatalf("rules: %v %v", err, refused)
	}
	return rs
}

// mailReads are n decoded MailItemsAccessed records, a minute apart.
func mailReads(t *testing.T, n int) []*event.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "source", "testdata", "ual_mailitemsaccessed.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	dec := source.NewDecoder(nil, nil)
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var out []*event.Event
	for i := range n {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		rec["Id"] = fmt.Sprintf("read-%d", i)
		rec["CreationTime"] = start.Add(time.Duration(i) * time.Minute).Format("2006-01-02T15:04:05")
		raw, _ := json.Marshal(rec)
		evs, err := dec.Decode(raw, event.Origin{File: "test", Line: i + 1})
		if err != nil || len(evs) != 1 {
			t.Fatalf("record %d: %d events (%v)", i, len(evs), err)
		}
		out = append(out, evs[0])
	}
	return out
}

type recSink struct{ alerts []alert.Alert }

func (s *recSink) Alert(a *alert.Alert) { s.alerts = append(s.alerts, *a) }
func (s *recSink) Incident(Update)      {}

func countSignal(as []alert.Alert, sig string) int {
	n := 0
	for _, a := range as {
		if a.Signal == sig {
			n++
		}
	}
	return n
}

// A muted alert is dropped where it is raised: the sink does not hear of
// it, the result does not hold it, and it makes no incident; alerts Mute
// lets through are untouched. Muting from the middle of a stream (after
// draining, as vigil serve does at a rule switch in the journal) drops
// exactly the alerts raised after it.
func TestMute(t *testing.T) {
	evs := mailReads(t, 10)
	ic := incident.Config{Window: 24 * time.Hour, SingleSignals: []string{muteRuleHigh}, MinLevel: "medium"}
	for _, tc := range []struct {
		name     string
		muteFrom int // events processed before the high rule is muted; -1 never
		high     int // its alerts the sink and result hold
		incs     int
	}{
		{"never muted", -1, 10, 1},
		{"muted from the start", 0, 0, 0},
		{"muted after 4 events", 4, 4, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			muted := false
			asked := 0
			sink := &recSink{}
			p := New(Config{Rules: muteRules(t), Incidents: &ic, TempDir: t.TempDir(), Mute: func(a *alert.Alert) bool {
				asked++
				return muted && a.Signal == muteRuleHigh
			}}, sink)
			for i, e := range evs {
				if i == tc.muteFrom {
					p.Drain()
					muted = true
				}
				if err := p.Process(e); err != nil {
					t.Fatal(err)
				}
			}
			res, err := p.Close(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if asked != 20 {
				t.Errorf("Mute asked %d times, want once per alert raised (20)", asked)
			}
			if got := countSignal(sink.alerts, muteRuleHigh); got != tc.high {
				t.Errorf("the sink heard %d alerts of the muted rule, want %d", got, tc.high)
			}
			if got := countSignal(allAlerts(t, res), muteRuleHigh); got != tc.high {
				t.Errorf("the result holds %d alerts of the muted rule, want %d", got, tc.high)
			}
			if got := countSignal(allAlerts(t, res), muteRuleLow); got != 10 || countSignal(sink.alerts, muteRuleLow) != 10 {
				t.Errorf("the rule not muted raised %d alerts, want 10", got)
			}
			if len(res.Incidents) != tc.incs {
				t.Fatalf("%d incidents, want %d", len(res.Incidents), tc.incs)
			}
			if tc.incs > 0 {
				inc := res.Incidents[0]
				if n := countSignal(inc.Alerts, muteRuleHigh); n != tc.high {
					t.Errorf("the incident holds %d alerts of the muted rule, want %d", n, tc.high)
				}
			}
		})
	}
}
