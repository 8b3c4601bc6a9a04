package index

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
)

// alertOn is an alert raised on event e, as a detector would name it.
func alertOn(e *event.Event, rule, title string, lv alert.Level) alert.Alert {
	a := alert.Alert{Time: e.Time, Raised: e.Time, Signal: rule, Title: title, Level: lv, Tenant: e.Tenant,
		Source: e.Source, Operation: e.Operation, User: e.User, Mailbox: e.Mailbox, IP: e.IP, RecordIDs: []string{e.RecordID}}
	a.AddActor(alert.ActorSession, e.SessionID)
	a.AddActor(alert.ActorIP, e.IP)
	return a
}

func searchAll(t *testing.T, x *Index, table Table, q string) *Result {
	t.Helper()
	res, err := x.Search(context.Background(), Request{Query: q, Table: table, Limit: 10_000})
	if err != nil {
		t.Fatalf("%s over %s: %v", q, table, err)
	}
	return res
}

func column(res *Result, name string) []string {
	i := slices.Index(res.Columns, name)
	var out []string
	for _, r := range res.Rows {
		out = append(out, fmt.Sprint(r[i]))
	}
	return out
}

// Alerts written before their events are indexed are linked by the update
// that indexes them; writing them again (a replay) adds no row; level: and
// rule: find them over the alerts table and their events over events;
// incidents are one row per id with their latest state; a timeline holds
// the entity's alerts after their events.
func TestDetectionsWrittenLinkedAndSearched(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	ingest(t, data, tenantFiles(t), 5000, nil)
	mail := brute(t, func(e *event.Event) bool {
		return e.Operation == "MailItemsAccessed" && e.SessionID != "" && e.RecordID != ""
	})
	signin := brute(t, func(e *event.Event) bool { return e.Source == "entra.signin" && e.RecordID != "" })
	if len(mail) < 3 || len(signin) < 1 {
		t.Fatalf("tenant has %d mail reads with a session, %d sign-ins", len(mail), len(signin))
	}
	crit := []alert.Alert{alertOn(mail[0], "D1", "Mail read with a token no sign-in issued", alert.Critical),
		alertOn(mail[1], "D1", "Mail read with a token no sign-in issued", alert.Critical)}
	high := alertOn(signin[0], "3a6c1d2e-sigma", "Sign-in from an anonymising network", alert.High)
	// One alert no indexed record backs (a correlation over records the
	// index lacks): kept, linked to nothing.
	loose := alert.Alert{Time: mail[2].Time, Signal: "D7", Title: "Many mailboxes read", Level: alert.Medium, Source: "m365.ual", RecordIDs: []string{"no-such-record"}, User: "x@y"}
	all := append(slices.Clone(crit), high, loose)
	inc := &incident.Incident{ID: "inc-1", Severity: alert.Critical, Title: "Forged token", FirstSeen: crit[0].Time, LastSeen: crit[1].Time,
		Mailboxes: []string{"b@x", "a@x"}, Signals: []string{"D1"}, AlertCount: 2, Score: 90, Alerts: crit}
	inc.Impact.MessageCount, inc.Impact.Accesses, inc.Impact.Mailboxes = 7, 3, []string{"a@x"}

	x, err := Open(ctx, Path(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := x.PutDetections(ctx, all, []IncidentUpdate{{Status: StatusOpened, Incident: inc}}, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := x.DetectionCounts(ctx); err != nil || d != (Detections{Alerts: 4, Linked: 0, Incidents: 1}) {
		t.Fatalf("before the events are indexed: %+v %v", d, err)
	}
	if _, err := x.Update(ctx, data); err != nil {
		t.Fatal(err)
	}
	if d, err := x.DetectionCounts(ctx); err != nil || d != (Detections{Alerts: 4, Linked: 3, Incidents: 1}) {
		t.Fatalf("after: %+v %v", d, err)
	}
	// A replay writes the same alerts again, and the incident's later
	// state replaces its row.
	inc2 := *inc
	inc2.Impact.MessageCount = 9
	if err := x.PutDetections(ctx, all, []IncidentUpdate{{Status: StatusGrew, Incident: inc}, {Status: StatusImpactChanged, Incident: &inc2}}, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := x.DetectionCounts(ctx); err != nil || d != (Detections{Alerts: 4, Linked: 3, Incidents: 1}) {
		t.Fatalf("after the replay: %+v %v", d, err)
	}
	res, err := x.query(ctx, `SELECT status, severity, score, messages_read, mailboxes, alert_count FROM incidents`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows); got != "[[impact_changed critical 90 9 [a@x b@x] 2]]" {
		t.Fatalf("incident row %s", got)
	}

	// level: is one level exactly; rule: an id or a title.
	if got := column(searchAll(t, x, Alerts, "level:critical"), "record_id"); !slices.Equal(got, []string{mail[0].RecordID, mail[1].RecordID}) {
		t.Errorf("level:critical alerts %v", got)
	}
	if got := column(searchAll(t, x, Alerts, "level:high"), "rule"); !slices.Equal(got, []string{"3a6c1d2e-sigma"}) {
		t.Errorf("level:high alerts %v", got)
	}
	if got := column(searchAll(t, x, Alerts, "level:critical"), "incident"); !slices.Equal(got, []string{"inc-1", "inc-1"}) {
		t.Errorf("critical alerts' incident %v", got)
	}
	if n := len(searchAll(t, x, Alerts, `rule:"sign-in from an anonymising network"`).Rows); n != 1 {
		t.Errorf("rule by title: %d rows", n)
	}
	if n := len(searchAll(t, x, Alerts, "rule:D1 OR rule:D7").Rows); n != 3 {
		t.Errorf("rule:D1 OR rule:D7: %d rows", n)
	}
	if got := column(searchAll(t, x, Events, "level:critical"), "record_id"); !slices.Equal(got, []string{mail[0].RecordID, mail[1].RecordID}) {
		t.Errorf("events with critical alerts %v", got)
	}
	if got := column(searchAll(t, x, Events, "rule:3a6c1d2e-sigma"), "record_id"); !slices.Equal(got, []string{signin[0].RecordID}) {
		t.Errorf("events of the sigma rule %v", got)
	}
	if n := len(searchAll(t, x, MailAccess, "level:critical").Rows); n == 0 {
		t.Error("no mail_access rows of the critical alerts' events")
	}
	if _, err := x.Search(ctx, Request{Query: "level:severe"}); err == nil {
		t.Error("level:severe accepted")
	}
	if _, err := x.Search(ctx, Request{Query: "asn:8075", Table: Alerts}); err == nil {
		t.Error("asn: accepted over alerts")
	}
	// Paging alerts: two pages of two give the four in order.
	p1, err := x.Search(ctx, Request{Table: Alerts, Limit: 2})
	if err != nil || !p1.Truncated || p1.Last == nil {
		t.Fatalf("first page %+v %v", p1, err)
	}
	p2, err := x.Search(ctx, Request{Table: Alerts, Limit: 2, After: p1.Last})
	if err != nil {
		t.Fatal(err)
	}
	if ids := append(column(p1, "id"), column(p2, "id")...); len(ids) != 4 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 4 {
		t.Errorf("pages %v", ids)
	}

	// The session's timeline: its events, and the critical alert right
	// after the event it was raised on.
	tl, err := x.Timeline(ctx, TimelineRequest{Entity: "session", Value: mail[0].SessionID})
	if err != nil {
		t.Fatal(err)
	}
	kinds, recs := column(tl, "kind"), column(tl, "record_id")
	at := slices.Index(kinds, "alert")
	if at < 1 || recs[at] != mail[0].RecordID || recs[at-1] != mail[0].RecordID || kinds[at-1] != "mail" {
		t.Fatalf("timeline kinds %v", kinds)
	}
	if lv := column(tl, "result")[at]; lv != "critical" {
		t.Errorf("the alert's level in the timeline: %s", lv)
	}
	ti := slices.Index(tl.Columns, "time")
	for i := 1; i < len(tl.Rows); i++ {
		if tl.Rows[i][ti].(time.Time).Before(tl.Rows[i-1][ti].(time.Time)) {
			t.Fatal("timeline not in time order")
		}
	}
	// Paged one row at a time, the timeline is the same.
	var paged []string
	var after *Key
	for range len(tl.Rows) + 1 {
		p, err := x.Timeline(ctx, TimelineRequest{Entity: "session", Value: mail[0].SessionID, Limit: 1, After: after})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, column(p, "kind")...)
		if !p.Truncated {
			break
		}
		after = p.Last
	}
	if !slices.Equal(paged, kinds) {
		t.Errorf("paged timeline %v, whole %v", paged, kinds)
	}

	// An incident whose alerts another took over merged into it. The
	// other comes from a detect node: its alerts by id, not carried.
	inc3 := &incident.Incident{ID: "inc-2", Severity: alert.Critical, AlertCount: 2}
	if err := x.PutDetections(ctx, nil, []IncidentUpdate{{Status: StatusOpened, Incident: inc3, AlertIDs: []string{crit[0].ID(), crit[1].ID()}}}, nil); err != nil {
		t.Fatal(err)
	}
	res, err = x.query(ctx, `SELECT id, status FROM incidents ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows); got != "[[inc-1 merged] [inc-2 opened]]" {
		t.Errorf("incidents after the merge %s", got)
	}
	// Retention drops alerts with their events.
	x.retention = time.Nanosecond
	if _, err := x.Expire(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d, err := x.DetectionCounts(ctx); err != nil || d.Alerts != 1 || d.Linked != 0 {
		t.Errorf("after expiry: %+v %v", d, err)
	}
}

// Grouping alerts by level or rule counts them; a field alerts lack is
// refused with the ones they have.
func TestAlertsGroupBy(t *testing.T) {
	ctx := context.Background()
	x, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	as := []alert.Alert{{Time: at, Signal: "D1", Title: "a", Level: alert.High}, {Time: at, Signal: "D1", Title: "b", Level: alert.High},
		{Time: at, Signal: "D4", Title: "c", Level: alert.Medium}}
	if err := x.PutDetections(ctx, as, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ by, want string }{{"level", "[[high 2] [medium 1]]"}, {"rule", "[[D1 2] [D4 1]]"}} {
		res, err := x.Search(ctx, Request{Table: Alerts, GroupBy: c.by})
		if err != nil || fmt.Sprint(res.Rows) != c.want {
			t.Errorf("group by %s: %v %v", c.by, res, err)
		}
	}
	if _, err := x.Search(ctx, Request{Table: Alerts, GroupBy: "country"}); err == nil || !strings.Contains(err.Error(), "level, rule") {
		t.Errorf("group by country over alerts: %v", err)
	}
}

// A grouping marks the incidents it does not name dissolved (not those
// that merged), leaves their alerts naming them, and writes one it names
// again back in its state then, as returned; an incident updated alone
// is not touched by a grouping that lists it.
func TestGroupingDissolvesAndReturns(t *testing.T) {
	ctx := context.Background()
	x, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	as := []alert.Alert{{Time: at, Signal: "D1", Title: "a", Level: alert.High, User: "a@x"}, {Time: at, Signal: "D3", Title: "b", Level: alert.High, User: "b@x"},
		{Time: at, Signal: "D4", Title: "c", Level: alert.High, User: "c@x"}}
	one := &incident.Incident{ID: "inc-1", Severity: alert.High, AlertCount: 1, Alerts: as[:1]}
	two := &incident.Incident{ID: "inc-2", Severity: alert.High, AlertCount: 1, Alerts: as[1:2]}
	three := &incident.Incident{ID: "inc-3", Severity: alert.High, AlertCount: 1, Alerts: as[2:]}
	rows := func() string {
		t.Helper()
		res, err := x.query(ctx, `SELECT i.id, i.status, i.severity, (SELECT string_agg(a.title, ',' ORDER BY a.title) FROM alerts a WHERE a.incident = i.id) FROM incidents i ORDER BY i.id`)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Rows)
	}
	steps := []struct {
		name    string
		updates []IncidentUpdate
		current []*incident.Incident
		want    string
	}{
		{"three open", []IncidentUpdate{{StatusOpened, one, nil}, {StatusOpened, two, nil}, {StatusOpened, three, nil}}, nil,
			"[[inc-1 opened high a] [inc-2 opened high b] [inc-3 opened high c]]"},
		// inc-3 takes inc-2's alert (merged); inc-1 leaves the grouping.
		{"merge and dissolve", []IncidentUpdate{{StatusGrew, &incident.Incident{ID: "inc-3", Severity: alert.Critical, AlertCount: 2, Alerts: as[1:]}, nil}},
			[]*incident.Incident{three},
			"[[inc-1 dissolved high a] [inc-2 merged high <nil>] [inc-3 grew critical b,c]]"},
		{"no grouping: nothing changes", nil, nil,
			"[[inc-1 dissolved high a] [inc-2 merged high <nil>] [inc-3 grew critical b,c]]"},
		// inc-1 is named again, in a later state.
		{"return", nil, []*incident.Incident{{ID: "inc-1", Severity: alert.Critical, AlertCount: 1, Alerts: as[:1]}, three},
			"[[inc-1 returned critical a] [inc-2 merged high <nil>] [inc-3 grew critical b,c]]"},
		{"empty grouping", nil, []*incident.Incident{},
			"[[inc-1 dissolved critical a] [inc-2 merged high <nil>] [inc-3 dissolved critical b,c]]"},
	}
	for i, s := range steps {
		var put []alert.Alert
		if i == 0 {
			put = as
		}
		if err := x.PutDetections(ctx, put, s.updates, s.current); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := rows(); got != s.want {
			t.Fatalf("%s: incidents %s\nwant %s", s.name, got, s.want)
		}
	}
}
