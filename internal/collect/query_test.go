package collect_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/graph"
)

// TestAuditLogQueryBackfill: thirty days back, the audit log query reads
// what the Management API no longer keeps, in 6-hour queries; a query
// over its record limit is split in halves, and a burst too dense even
// for a 15-minute query is recorded as a truncated gap, never as complete.
func TestAuditLogQueryBackfill(t *testing.T) {
	e := newEnv(t, 11, false)
	e.srv.QueryLimit = 20
	e.srv.Faults = fake.Faults{PageSize: 6, Throttle: 0.05}
	want := map[string]time.Time{}
	n := 0
	add := func(at time.Time) {
		n++
		id := fmt.Sprintf("00000000-0000-4000-9000-%012d", n)
		e.srv.AddQueryRecord(fmt.Sprintf("q-%d", n), at, fake.UAL(id, at, "alice@contoso.com"))
		want[id] = at
	}
	for at := t0.Add(time.Minute); at.Before(t0.Add(30 * 24 * time.Hour)); at = at.Add(47 * time.Minute) {
		add(at)
	}
	burst := t0.Add(10*24*time.Hour + 3*time.Hour + 2*time.Minute)
	for i := range 30 { // 30 records in one minute: over the limit of 20 at any window size
		add(burst.Add(time.Duration(i) * time.Second))
	}
	dense := t0.Add(12*24*time.Hour + 7*time.Minute)
	for i := range 35 { // 35 records in 35 minutes: fits once split to 15 minutes
		add(dense.Add(time.Duration(i) * time.Minute))
	}
	e.clock.Advance(30 * 24 * time.Hour)
	tokens := e.entra().Source(e.srv.URL + "/.default")
	cl := e.client(collect.NewLimiter(e.local, 2500*time.Millisecond, 1), tokens)
	src, err := graph.NewQuery(e.srv.URL, cl)
	if err != nil {
		t.Fatal(err)
	}
	c, err := collect.New(collect.Options{Tenant: "contoso", Source: src, Journal: e.log, State: e.store, Clock: e.local,
		Skew: e.skew, Since: 30 * 24 * time.Hour, Clients: []*collect.Client{cl}})
	if err != nil {
		t.Fatal(err)
	}
	// Polling the queries advances the fake clock; the window's end is fixed at the start.
	edge := e.clock.Now().Add(-graph.QueryPolicy.Settle).Truncate(time.Second)
	if err := c.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := e.readJournal(func(raw []byte) string { k, _ := src.Key(raw); return k })
	if len(st.gaps) != 1 || st.gaps[0].Reason != collect.GapTruncated {
		t.Fatalf("gaps %+v; want one truncated gap", st.gaps)
	}
	for id, at := range want {
		switch {
		case !at.Before(edge):
			if st.count[id] != 0 {
				t.Errorf("record %s at %s is the Management API's to read, not the backfill's", id, at)
			}
		case st.gaps[0].covers(at):
		case st.count[id] != 1:
			t.Errorf("record %s at %s stored %d times", id, at, st.count[id])
		}
	}
	if !st.gaps[0].covers(burst) {
		t.Errorf("the truncated gap %+v does not cover the burst at %s", st.gaps[0], burst)
	}
	days := int(edge.Sub(t0).Hours()/6) + 1
	if q := e.srv.QueriesCreated(); q < days || q > days+20 {
		t.Errorf("%d queries for %d six-hour windows", q, days)
	}
	t.Logf("%d queries, %+v", e.srv.QueriesCreated(), c.Status())
}
