package detect

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// futureRecords are a mail read and a forwarding change dated 2099, as a
// source with a broken clock (or a forged record) would give them.
func futureRecords(t *testing.T) []*event.Event {
	t.Helper()
	raw := `{"CreationTime":"2099-01-01T00:00:00","Id":"future-read","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"1","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.77","UserId":"someone@contoso.example","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"9199bf20-a13f-4107-85dc-02114787ef48","MailboxOwnerUPN":"someone@contoso.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"}],"Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<future@contoso.example>"}]}]}
{"CreationTime":"2099-01-01T00:00:00","Id":"future-forward","Operation":"Set-Mailbox","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":1,"ResultStatus":"True","UserKey":"1","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.77","ObjectId":"someone@contoso.example","UserId":"someone@contoso.example","Parameters":[{"Name":"Identity","Value":"someone@contoso.example"},{"Name":"ForwardingSmtpAddress","Value":"smtp:drop@exfil.example"}]}
`
	var evs []*event.Event
	if _, err := source.ReadPaths(t.Context(), []string{"-"}, source.Options{Stdin: strings.NewReader(raw)},
		func(e *event.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Time.Year() != 2099 {
		t.Fatalf("decoded %d future records", len(evs))
	}
	return evs
}

// An event dated after the wall clock must not move detection's clocks:
// fed early in the forged-token scenario, the incidents, their impact and
// every alert are those of the scenario alone, and the record's own
// single-event rule still fires. Without the check, the same record makes
// the rest of the stream late and changes the alerts.
func TestFutureDatedEventsDoNotMoveTheClocks(t *testing.T) {
	evs, nets := scenarioStream(t)
	future := futureRecords(t)
	run := func(in []*event.Event, maxFuture time.Duration) (*Result, []string) {
		var fired []string
		s := &funcSink{alert: func(a *alert.Alert) { fired = append(fired, a.Title) }}
		p := fullPipeline(t, nets, t.TempDir(), s)
		if maxFuture != 0 {
			p.cfg.MaxFuture = maxFuture
		}
		// Refreshed as vigil serve refreshes, which drains the reordering
		// window into the behaviours.
		for i, e := range in {
			if err := p.Process(e); err != nil {
				t.Fatal(err)
			}
			if i%2000 == 1999 {
				if _, err := p.Refresh(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
		res, err := p.Close(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return res, fired
	}
	want, _ := run(evs, 0)
	if len(want.Incidents) == 0 {
		t.Fatal("the scenario made no incident")
	}
	// The future records arrive a tenth of the way into the stream.
	at := len(evs) / 10
	with := slices.Concat(evs[:at], future, evs[at:])
	got, fired := run(with, 0)
	if g, w := incidentLines(got.Incidents), incidentLines(want.Incidents); !slices.Equal(g, w) {
		t.Fatalf("a future-dated record changed the incidents:\n%s\nwithout it:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
	if got.Stats.Future != 2 || got.Stats.Events != want.Stats.Events+2 {
		t.Fatalf("future-dated events counted %d, events %d (without them %d)", got.Stats.Future, got.Stats.Events, want.Stats.Events)
	}
	if !slices.Contains(fired, "Mailbox Forwarding To SMTP Address Set") {
		t.Fatalf("the future-dated forwarding change raised no alert of its rule: %v", fired)
	}
	// Every other alert is the scenario's own, and nothing was judged out
	// of order.
	keys := func(as []alert.Alert) []string {
		var out []string
		for i := range as {
			if as[i].Title != "Mailbox Forwarding To SMTP Address Set" || as[i].Time.Year() != 2099 {
				out = append(out, as[i].Key())
			}
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(keys(allAlerts(t, got)), keys(allAlerts(t, want))) || got.Stats.Late != want.Stats.Late {
		t.Fatalf("with the future-dated records: %d alerts, %d late events; without them %d, %d",
			len(allAlerts(t, got)), got.Stats.Late, len(allAlerts(t, want)), want.Stats.Late)
	}
	// Without the check, the record's date becomes the pipeline's clock:
	// everything after it is judged as late, out of order, and the
	// verdicts change.
	unguarded, _ := run(with, -1)
	if unguarded.Stats.Late < int64(len(evs)-at)/2 || slices.Equal(keys(allAlerts(t, unguarded)), keys(allAlerts(t, want))) {
		t.Fatalf("without the check: %d late events, alerts the same: %v; the test does not exercise it",
			unguarded.Stats.Late, slices.Equal(keys(allAlerts(t, unguarded)), keys(allAlerts(t, want))))
	}
}

type funcSink struct{ alert func(*alert.Alert) }

func (s *funcSink) Alert(a *alert.Alert) { s.alert(a) }
func (s *funcSink) Incident(Update)      {}
