package detect

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/event"
)

// mailDelay delays a tenant's unified audit log (mail accesses, searches,
// directory audit) by d: the UAL's documented latency is 30 minutes to a
// day, the sign-in log's minutes.
func mailDelay(d time.Duration) func(*event.Event) time.Duration {
	return func(e *event.Event) time.Duration {
		if e.Source == "m365.ual" {
			return d
		}
		return 0
	}
}

// A tenant's mail log that reaches the journal hours after its sign-in
// log (the UAL's usual latency) gives the same incidents, impact and
// alerts as the logs in event time, up to max_mail_lag: the sign-in
// evidence its reads are judged against is kept until the mail log has
// passed it. Beyond the bound the reads are judged without sign-in
// evidence, which D9 says once, and D1 stays quiet rather than flag
// every read "no sign-in issued".
func TestMailLogLagsTheSignInLog(t *testing.T) {
	evs, nets, forged := scenarioInOrder(t)
	// forgedIncidents counts the incidents holding a D1 alert on a
	// forged-token read.
	forgedIncidents := func(res *Result) int {
		n := 0
		for _, inc := range res.Incidents {
			if slices.ContainsFunc(inc.Alerts, func(a alert.Alert) bool {
				return a.Signal == "D1" && slices.ContainsFunc(a.RecordIDs, func(id string) bool { return forged[id] })
			}) {
				n++
			}
		}
		return n
	}

	want := journalRun(t, evs, nets, behavior.DefaultConfig())
	if forgedIncidents(want) != 1 {
		t.Fatalf("in event-time order the forged-token intrusion makes %d incidents, want 1: nothing to compare", forgedIncidents(want))
	}
	wantInc, wantAll := incidentsJSON(t, want), alertsOf(t, want, "")

	cases := []struct {
		name  string
		delay func(*event.Event) time.Duration
		// only compares these signals' alerts: the mail log's own
		// detections (D2 first reads, D3 hours and windows, D4's daily
		// de-duplication and app networks, D8 a search before a read)
		// follow its own order, which a latency varying record by record
		// changes.
		only []string
	}{
		{"mail log 3 h after the sign-ins", mailDelay(3 * time.Hour), nil},
		{"mail log 12 h after the sign-ins", mailDelay(12 * time.Hour), nil},
		{"mail log 30 h after the sign-ins", mailDelay(30 * time.Hour), nil},
		// The UAL's latency varies from record to record: a read may
		// arrive a day after later ones.
		{"mail log 30 min to 24 h after the sign-ins, varying by record", func(e *event.Event) time.Duration {
			if e.Source != "m365.ual" {
				return 0
			}
			h := fnv.New32a()
			h.Write([]byte(e.RecordID))
			return 30*time.Minute + time.Duration(h.Sum32()%(47*30))*time.Minute
		}, []string{"D1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := journalRun(t, arrival(evs, c.delay), nets, behavior.DefaultConfig())
			if got.Stats.Late == 0 {
				t.Fatal("no event arrived behind the reordering window: the order does not exercise the lag")
			}
			if c.only != nil {
				for _, sig := range c.only {
					if a, w := alertsOf(t, got, sig), alertsOf(t, want, sig); !slices.Equal(a, w) {
						extra, missing := diff(a, w), diff(w, a)
						t.Errorf("%s: %d alerts, in event-time order %d; %d extra (first %.300q), %d missing (first %.300q)", sig, len(a), len(w), len(extra), first(extra), len(missing), first(missing))
					}
				}
				if forgedIncidents(got) == 0 {
					t.Error("the forged-token intrusion makes no incident")
				}
				return
			}
			if n := forgedIncidents(got); n != 1 {
				t.Errorf("the forged-token intrusion makes %d incidents, want 1", n)
			}
			if all := alertsOf(t, got, ""); !slices.Equal(all, wantAll) {
				extra, missing := diff(all, wantAll), diff(wantAll, all)
				t.Errorf("%d alerts, in event-time order %d; %d extra (first %.300q), %d missing (%.900q)", len(all), len(wantAll), len(extra), first(extra), len(missing), missing)
			}
			if inc := incidentsJSON(t, got); inc != wantInc {
				t.Errorf("incidents differ from event-time order:\n%.3000s\nwant\n%.3000s", inc, wantInc)
			}
		})
	}

	notices := func(res *Result) []alert.Alert {
		var out []alert.Alert
		for _, a := range allAlerts(t, res) {
			if a.Signal == "D9" && strings.Contains(a.Title, "judged without sign-in evidence") {
				out = append(out, a)
			}
		}
		return out
	}
	if n := notices(want); len(n) != 0 {
		t.Fatalf("in event-time order D9 says reads were judged without sign-in evidence: %s", n[0].Title)
	}

	// The extreme order: the mail export ingested after every sign-in
	// (days beyond max_mail_lag). Its reads are judged as a tenant's
	// first mail export before any sign-ins: no D1 flood, said once.
	appended := slices.Clone(evs)
	slices.SortStableFunc(appended, func(a, b *event.Event) int {
		return boolCmp(a.Source == "m365.ual", b.Source == "m365.ual")
	})
	ext := journalRun(t, appended, nets, behavior.DefaultConfig())
	if extra := diff(alertsOf(t, ext, "D1"), alertsOf(t, want, "D1")); len(extra) > 0 {
		t.Errorf("mail export after the sign-ins: %d D1 alerts event-time order does not raise (first %s)", len(extra), extra[0])
	}
	if n := notices(ext); len(n) != 1 {
		t.Errorf("mail export after the sign-ins: %d D9 notices that reads were judged without sign-in evidence, want 1", len(n))
	}
	t.Logf("mail export after the sign-ins: %d alerts in %d incidents (event-time order %d in %d)", len(allAlerts(t, ext)), len(ext.Incidents), len(allAlerts(t, want)), len(want.Incidents))

	// Beyond max_mail_lag: judged without the sign-ins, and said so.
	cfg := behavior.DefaultConfig()
	cfg.D1.MaxMailLag = behavior.Duration(12 * time.Hour)
	got := journalRun(t, arrival(evs, mailDelay(30*time.Hour)), nets, cfg)
	if extra := diff(alertsOf(t, got, "D1"), alertsOf(t, want, "D1")); len(extra) > 0 {
		t.Errorf("mail 30 h late with max_mail_lag 12h: %d D1 alerts event-time order does not raise (first %s)", len(extra), extra[0])
	}
	notices30 := notices(got)
	if len(notices30) != 1 {
		t.Fatalf("%d D9 notices that mail reads were judged without sign-in evidence, want 1: %+v", len(notices30), notices30)
	}
	// Said in whole hours of the sign-in log's newest record, which may
	// be an hour or so older than the read's arrival (a quiet night).
	n := notices30[0]
	if lag, err := time.ParseDuration(n.Fields["mail_lag"]); err != nil || lag < 28*time.Hour || lag > 30*time.Hour || !strings.Contains(n.Title, fmt.Sprintf("Mail log arrives %d h after the sign-in log", lag.Round(time.Hour)/time.Hour)) {
		t.Errorf("notice %q (mail_lag %q) does not say the mail log arrives about 30 h late", n.Title, n.Fields["mail_lag"])
	}
	t.Logf("mail 30 h late, max_mail_lag 12h: %d D1 alerts (event-time order %d), forged-token intrusion in %d incidents", len(alertsOf(t, got, "D1")), len(alertsOf(t, want, "D1")), forgedIncidents(got))
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
