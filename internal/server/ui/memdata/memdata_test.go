package memdata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func ev(h int, src, user, ip string) *event.Event {
	return &event.Event{Time: t0.Add(time.Duration(h) * time.Hour), Source: src, Operation: "MailItemsAccessed", User: user, IP: ip, Mailbox: user}
}

func TestSearch(t *testing.T) {
	s := New(Options{Events: []*event.Event{ev(1, "m365.ual", "a@x", "192.0.2.1"), ev(2, "m365.ual", "b@x", "192.0.2.1"), ev(3, "entra.signin", "a@x", "192.0.2.9")}})
	for _, tc := range []struct {
		q    string
		want int
		err  string
	}{
		{"ip:192.0.2.1", 2, ""},
		{"ip:192.0.2.1 and user:A@X", 1, ""},
		{"ip:192.0.2.*", 3, ""},
		{"source:entra.signin", 1, ""},
		{"mailitems", 3, ""},
		{"ip:192.0.2.1 or user:b@x", 0, `"or": this server's in-memory search joins terms with and only`},
		{"colour:red", 0, `unknown field "colour"`},
		{"ip:", 0, "ip: needs a value"},
	} {
		res, err := s.Search(context.Background(), tc.q, 1) // counts cover more than the rows
		if tc.err != "" {
			if err == nil || !errors.Is(err, ui.ErrQuery) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want ErrQuery with %q", tc.q, err, tc.err)
			}
			continue
		}
		if err != nil || res.Total != tc.want {
			t.Errorf("%q: %d matches (%v), want %d", tc.q, res.Total, err, tc.want)
		}
		sum := 0
		for _, c := range res.Counts {
			sum += c
		}
		if sum != res.Total {
			t.Errorf("%q: counts over time sum to %d, total %d", tc.q, sum, res.Total)
		}
	}
}

func TestOverviewHealthAndGaps(t *testing.T) {
	var evs []*event.Event
	for h := 0; h < 24*6; h += 2 {
		if h < 48 || h >= 96 { // two silent days in the middle
			evs = append(evs, ev(h, "m365.ual", "a@x", "192.0.2.1"))
		}
	}
	evs = append(evs, ev(10, "gws.login", "a@x", "192.0.2.1"))
	s := New(Options{Events: evs})
	o, err := s.Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Sources) != 2 {
		t.Fatalf("sources %+v", o.Sources)
	}
	gws, ual := o.Sources[0], o.Sources[1]
	if gws.Status != "silent" || ual.Status != "ok" {
		t.Errorf("status gws %s (last record %s), ual %s", gws.Status, gws.LastRecord, ual.Status)
	}
	if len(ual.Gaps) != 1 || ual.Gaps[0].To.Sub(ual.Gaps[0].From) < 48*time.Hour {
		t.Errorf("gaps %+v, want one of about two days", ual.Gaps)
	}
	sum := 0
	for _, c := range o.Ingest[1].Counts {
		sum += c
	}
	if sum != int(ual.Records) {
		t.Errorf("ingest series sums to %d, records %d", sum, ual.Records)
	}
}

func TestTriageJournaledFirst(t *testing.T) {
	inc := &incident.Incident{ID: "INC-1", Severity: alert.High}
	fail := true
	var got []ui.Change
	s := New(Options{Incidents: []*incident.Incident{inc}, Record: func(_ context.Context, c ui.Change) error {
		if fail {
			return errors.New("journal full")
		}
		got = append(got, c)
		return nil
	}})
	ctx := context.Background()
	if err := s.Triage(ctx, ui.Change{Incident: "INC-1", Status: "resolved", Actor: "a"}); err == nil || !strings.Contains(err.Error(), "journal full") {
		t.Fatalf("refused journal: %v", err)
	}
	if c, _, _ := s.Case(ctx, "INC-1"); c.Status != "open" || len(c.History) != 0 {
		t.Errorf("a change the journal refused was applied: %+v", c)
	}
	fail = false
	if err := s.Triage(ctx, ui.Change{Incident: "INC-1", Status: "acknowledged", Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := s.Case(ctx, "INC-1"); c.Status != "acknowledged" || c.Owner != "a" || len(got) != 1 {
		t.Errorf("after the change: %+v, journaled %v", c, got)
	}
	if err := s.Triage(ctx, ui.Change{Incident: "INC-2", Status: "resolved"}); !errors.Is(err, ui.ErrNotFound) {
		t.Errorf("unknown incident: %v", err)
	}
}

func TestTimelineAround(t *testing.T) {
	var evs []*event.Event
	for h := range 10 {
		evs = append(evs, ev(h, "m365.ual", "a@x", "192.0.2.1"))
	}
	evs = append(evs, ev(5, "m365.ual", "b@x", "192.0.2.2"))
	s := New(Options{Events: evs})
	ctx := context.Background()
	en := ui.Entity{Kind: "ip", Value: "192.0.2.1"}
	all, _ := s.Timeline(ctx, ui.TimelineQuery{Entity: en, Limit: 100})
	if all.Total != 10 || len(all.Rows) != 10 {
		t.Fatalf("whole history: %d rows of %d", len(all.Rows), all.Total)
	}
	tl, _ := s.Timeline(ctx, ui.TimelineQuery{Entity: en, Around: t0.Add(5 * time.Hour), Window: time.Hour, Context: 2, Limit: 100})
	var at []string
	for _, r := range tl.Rows {
		at = append(at, fmt.Sprintf("%d%s", r.Time.Sub(t0)/time.Hour, r.At))
	}
	if got := strings.Join(at, " "); got != "2before 3before 4 5 6 7after 8after" || tl.Total != 3 {
		t.Errorf("around 5h ±1h with 2 of context: %s (total %d)", got, tl.Total)
	}
	lim, _ := s.Timeline(ctx, ui.TimelineQuery{Entity: en, Limit: 4})
	if lim.Total != 10 || len(lim.Rows) != 4 {
		t.Errorf("limit 4: %d rows of %d", len(lim.Rows), lim.Total)
	}
}

func TestReasons(t *testing.T) {
	inc := &incident.Incident{ID: "INC-1", Severity: alert.High, Score: 70, Confidence: "two signals",
		Reasons: []incident.Reason{{Signal: "D1", Level: alert.Critical, Evidence: "token no sign-in issued", Count: 3, Counts: true, Points: 60, Means: "forged", Benign: "export gap"},
			{Signal: "D9", Level: alert.Medium, Evidence: "new inbox rule", Count: 4, Points: 10}},
		Timeline: []incident.TimelineEntry{
			{First: t0, Last: t0.Add(time.Hour), Count: 2, Signal: "D1", Level: alert.High},
			{First: t0.Add(-time.Hour), Last: t0, Count: 1, Signal: "D1", Level: alert.Critical},
			{First: t0, Last: t0, Count: 4, Signal: "D9", Level: alert.Medium}}}
	c, _, _ := New(Options{Incidents: []*incident.Incident{inc}}).Case(context.Background(), "INC-1")
	if len(c.Reasons) != 2 || c.Score != 70 || c.Confidence != "two signals" {
		t.Fatalf("case %+v", c)
	}
	d1, d9 := c.Reasons[0], c.Reasons[1]
	if d1.Count != 3 || d1.Level != "critical" || d1.Means != "forged" || d1.Benign != "export gap" || d1.Points != 60 || !d1.Counts ||
		!d1.First.Equal(t0.Add(-time.Hour)) || !d1.Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("D1 %+v", d1)
	}
	if d9.Count != 4 || d9.Counts || !d9.First.Equal(t0) {
		t.Errorf("D9 %+v", d9)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"ip:192.0.2.1 and user:a@x", "or", "(x)", "colour:red", "ip:", `user:"a b"`, "a:b:c", "x/y:z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ts, err := parse(q)
		if err != nil {
			if !errors.Is(err, ui.ErrQuery) {
				t.Fatalf("%q: error %v does not wrap ErrQuery", q, err)
			}
			return
		}
		if len(ts) == 0 {
			t.Fatalf("%q: no terms and no error", q)
		}
		for _, tm := range ts {
			if tm.field != "" && !slices.Contains(searchFields, tm.field) {
				t.Fatalf("%q: unknown field %q accepted", q, tm.field)
			}
		}
	})
}

// A bounded Events lets the oldest records go, keeps the newest in time
// order whatever order they came in, and says what it no longer searches.
func TestEventsBounded(t *testing.T) {
	x := NewEvents(8)
	for _, h := range []int{3, 1, 2, 9, 8, 7, 4, 5, 6, 10, 11} {
		x.Add(ev(h, "m365.ual", "a@x", "192.0.2.1"))
	}
	res, err := x.Search(context.Background(), "ip:192.0.2.1", 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hours []int
	for _, r := range res.Rows {
		hours = append(hours, int(r.Time.Sub(t0)/time.Hour))
	}
	// 9 records passed the limit of 8: the oldest quarter (3) went.
	if want := []int{4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(hours, want) {
		t.Errorf("held hours %v, want %v", hours, want)
	}
	if h := x.QueryHelp(); !strings.Contains(h, "newest 8 records; 3 older ones (up to 2026-03-02T03:00:00Z) are not searched") {
		t.Errorf("help does not say what was let go: %s", h)
	}
	if h := NewEvents(0).QueryHelp(); strings.Contains(h, "not searched") {
		t.Errorf("an unbounded store says it let records go: %s", h)
	}
}
