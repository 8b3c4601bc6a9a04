package detect

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// journalRun feeds evs to a pipeline in the order given, as vigil serve
// and vigil reindex read the journal (only the reordering window sorts
// them), and returns the result.
func journalRun(t *testing.T, evs []*event.Event, nets behavior.Networks, cfg *behavior.Config) *Result {
	t.Helper()
	ic := cfg.IncidentConfig()
	return processAll(t, New(Config{Behaviours: behavior.New(cfg, behavior.Options{Networks: nets, TempDir: t.TempDir()}), Incidents: &ic, TempDir: t.TempDir()}, nil), evs)
}

// processAll feeds evs to p in order and closes it.
func processAll(t *testing.T, p *Pipeline, evs []*event.Event) *Result {
	t.Helper()
	for _, e := range evs {
		if err := p.Process(e); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// incidentsJSON is the incidents with their impact, without the event
// time at which they were raised: a sign-in log that arrives late moves
// when a verdict can be taken, not what it is.
func incidentsJSON(t *testing.T, res *Result) string {
	t.Helper()
	var out []string
	for _, inc := range res.Incidents {
		cp := *inc
		cp.Raised = time.Time{}
		b, err := json.Marshal(&cp)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "\n")
}

func alertsOf(t testing.TB, res *Result, signal string) []string {
	var out []string
	for _, a := range allAlerts(t, res) {
		if signal == "" || a.Signal == signal {
			out = append(out, a.Key()+"|"+a.Level.String())
		}
	}
	return out
}

// arrival orders evs by when they reach the journal: at delay(ev) after
// their event time, ties in event-time order.
func arrival(evs []*event.Event, delay func(*event.Event) time.Duration) []*event.Event {
	out := slices.Clone(evs)
	slices.SortStableFunc(out, func(a, b *event.Event) int { return a.Time.Add(delay(a)).Compare(b.Time.Add(delay(b))) })
	return out
}

// fileByFile orders evs as a collector that exports per period writes
// them: period by period, each period's mail log, then its Workspace log,
// then its sign-in log.
func fileByFile(evs []*event.Event, period time.Duration) []*event.Event {
	rank := map[string]int{"m365.ual": 0, "gws": 1, "entra.signin": 2}
	out := slices.Clone(evs)
	slices.SortStableFunc(out, func(a, b *event.Event) int {
		if c := a.Time.Truncate(period).Compare(b.Time.Truncate(period)); c != 0 {
			return c
		}
		return rank[a.Source] - rank[b.Source]
	})
	return out
}

// A tenant's sign-in log that reaches the journal hours after its mail
// log (a slower collector, or sign-ins exported file by file after the
// mail) gives the same incidents, impact and alerts as the logs in event
// time, with no D1 alert that event-time order does not raise; the
// forged-token intrusion is caught in every order. Without waiting for
// the sign-in log (max_source_lag 0) the same journal raises D1 on
// ordinary reads: the test exercises the problem it guards against.
func TestSignInLogLagsTheMailLog(t *testing.T) {
	evs, nets, forged := scenarioInOrder(t)
	caught := func(res *Result) bool {
		for _, inc := range res.Incidents {
			for _, a := range inc.Alerts {
				if a.Signal == "D1" && slices.ContainsFunc(a.RecordIDs, func(id string) bool { return forged[id] }) {
					return true
				}
			}
		}
		return false
	}

	want := journalRun(t, evs, nets, behavior.DefaultConfig())
	if !caught(want) {
		t.Fatal("in event-time order the forged-token intrusion makes no incident: nothing to compare")
	}
	wantInc, wantD1, wantAll := incidentsJSON(t, want), alertsOf(t, want, "D1"), alertsOf(t, want, "")

	signInDelay := func(d time.Duration) func(*event.Event) time.Duration {
		return func(e *event.Event) time.Duration {
			if e.Source == "entra.signin" {
				return d
			}
			return 0
		}
	}
	delayed := arrival(evs, signInDelay(3*time.Hour))
	cases := []struct {
		name string
		evs  []*event.Event
	}{
		{"sign-ins arriving 3 h after the mail log", delayed},
		{"sign-ins arriving 5 h after the mail log", arrival(evs, signInDelay(5*time.Hour))},
		{"4-hour files, mail log first", fileByFile(evs, 4*time.Hour)},
		// vigil collect reads the non-interactive sign-ins from a list of
		// their own, which lags the interactive one.
		{"non-interactive sign-ins arriving 2 h after the rest", arrival(evs, func(e *event.Event) time.Duration {
			if e.Source == "entra.signin" && strings.EqualFold(fieldValue(e, "isInteractive"), "false") {
				return 2 * time.Hour
			}
			return 0
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := journalRun(t, c.evs, nets, behavior.DefaultConfig())
			if got.Stats.Late == 0 {
				t.Fatal("no event arrived behind the reordering window: the order does not exercise the lag")
			}
			if !caught(got) {
				t.Error("the forged-token intrusion makes no incident")
			}
			if d1 := alertsOf(t, got, "D1"); !slices.Equal(d1, wantD1) {
				extra, missing := diff(d1, wantD1), diff(wantD1, d1)
				t.Errorf("D1: %d alerts, in event-time order %d; %d extra (first %.300s), %d missing (first %.300s)", len(d1), len(wantD1), len(extra), first(extra), len(missing), first(missing))
			}
			if all := alertsOf(t, got, ""); !slices.Equal(all, wantAll) {
				extra, missing := diff(all, wantAll), diff(wantAll, all)
				t.Errorf("%d alerts, in event-time order %d; extra %.300q, missing %.300q", len(all), len(wantAll), extra, missing)
			}
			if inc := incidentsJSON(t, got); inc != wantInc {
				t.Errorf("incidents differ from event-time order:\n%.3000s\nwant\n%.3000s", inc, wantInc)
			}
			for _, a := range allAlerts(t, got) {
				if a.Fields["signin_lag"] != "" {
					t.Errorf("judged without a sign-in log that lagged within the bound: %s %s: %s", a.Time, a.Title, a.Fields["signin_lag"])
					break
				}
			}
		})
	}

	// The same journal judged without waiting for the sign-in log.
	nowait := behavior.DefaultConfig()
	nowait.D1.MaxSourceLag = 0
	got := journalRun(t, delayed, nets, nowait)
	extra := diff(alertsOf(t, got, "D1"), wantD1)
	if len(extra) < 10 {
		t.Errorf("without waiting, sign-ins 3 h late add %d D1 alerts: the test does not exercise late sign-ins", len(extra))
	}
	t.Logf("sign-ins 3 h late: %d D1 alerts in event-time order, %d more without waiting for the sign-in log, none waiting", len(wantD1), len(extra))
}

func fieldValue(e *event.Event, name string) string {
	if v := e.Values(event.Intern(name)); len(v) > 0 {
		return v[0].Value
	}
	return ""
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

// scenarioInOrder is the scenario's events in event-time order, its
// network table and the record ids of its forged-token campaign.
func scenarioInOrder(t *testing.T) ([]*event.Event, *behavior.NetTable, map[string]bool) {
	t.Helper()
	dir, truth := scenario(t)
	var evs []*event.Event
	paths := []string{filepath.Join(dir, "ual.jsonl"), filepath.Join(dir, "signins.jsonl"), filepath.Join(dir, "gws.jsonl")}
	if _, err := source.ReadPaths(t.Context(), paths, source.Options{}, func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return compareKey(keyOf(a), keyOf(b)) })
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]bool{}
	for _, c := range truth.Campaigns {
		if c.Name == simulate.CampaignForgedToken {
			for _, r := range c.Records {
				forged[r.ID] = true
			}
		}
	}
	if len(forged) == 0 {
		t.Fatal("the scenario has no forged-token campaign")
	}
	return evs, nets, forged
}
