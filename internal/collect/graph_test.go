package collect_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/graph"
)

type itemWorld struct{ want map[string]bool }

// publishGraph adds records to each Graph list every ~10 min for days:
// most show up 2–10 min after their time, 10% 25 min late and 2% 45 min
// late (later than settle, inside settle + overlap).
func publishGraph(srv *fake.Server, rnd *rand.Rand, days int) itemWorld {
	w := itemWorld{want: map[string]bool{}}
	end := t0.Add(time.Duration(days)*24*time.Hour - time.Hour)
	n := 0
	type list struct {
		path, eventType string
		make            func(id string, t time.Time) []byte
	}
	lists := []list{
		{"auditLogs/signIns", "interactiveUser", func(id string, t time.Time) []byte { return fake.SignIn(id, t, "alice@contoso.com", "interactiveUser") }},
		{"auditLogs/signIns", "nonInteractiveUser", func(id string, t time.Time) []byte {
			return fake.SignIn(id, t, "bob@contoso.com", "nonInteractiveUser")
		}},
		{"auditLogs/directoryAudits", "", func(id string, t time.Time) []byte { return fake.DirectoryAudit(id, t, "admin@contoso.com") }},
		{"identityProtection/riskDetections", "", func(id string, t time.Time) []byte { return fake.RiskDetection(id, t, "alice@contoso.com") }},
	}
	for _, l := range lists {
		for t := t0.Add(time.Duration(rnd.IntN(600)) * time.Second); t.Before(end); t = t.Add(time.Duration(900+rnd.IntN(1800)) * time.Second) {
			n++
			id := fmt.Sprintf("%08x-1111-4000-8000-%012d", n, n)
			lag := time.Duration(120+rnd.IntN(480)) * time.Second
			switch x := rnd.IntN(100); {
			case x < 2:
				lag = 45 * time.Minute
			case x < 12:
				lag = 25 * time.Minute
			}
			srv.AddGraph(l.path, &fake.Item{Raw: l.make(id, t), Time: t, Available: t.Add(lag), EventType: l.eventType})
			w.want[id] = true
		}
	}
	return w
}

func newGraph(t *testing.T, e *env, names []string) []*collect.Collector {
	t.Helper()
	tokens := e.entra().Source(e.srv.URL + "/.default")
	// Five requests per 10 s per app and tenant: Burst 1 + one per 2.5 s.
	lim := collect.NewLimiter(e.local, 2500*time.Millisecond, 1)
	var out []*collect.Collector
	for _, n := range names {
		cl := e.client(lim, tokens)
		src, err := graph.New(n, e.srv.URL, cl)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.collector(src, nil, cl))
	}
	return out
}

func checkItems(t *testing.T, e *env, w itemWorld, key func([]byte) string, cs []*collect.Collector) stored {
	t.Helper()
	st := e.readJournal(key)
	missing := 0
	for id := range w.want {
		if st.count[id] == 0 {
			missing++
			if missing < 5 {
				t.Errorf("record %s never stored", id)
			}
		}
	}
	for id, n := range st.count {
		if n != 1 {
			t.Errorf("record %s stored %d times", id, n)
		}
		if !w.want[id] {
			t.Errorf("stored %q, which the API never served", id)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d records lost", missing, len(w.want))
	}
	if e.log.dupAcks != 0 {
		t.Errorf("the collector sent %d records the journal already had", e.log.dupAcks)
	}
	if v := e.srv.Stats().Violations; len(v) > 0 {
		t.Errorf("API contract violations: %q", v[:min(5, len(v))])
	}
	t.Logf("stored %d of %d, %d gaps; %v", len(st.count), len(w.want), len(st.gaps), statuses(cs))
	return st
}

// TestT2Graph: ten days of Graph lists with random short and empty pages,
// 429 with Retry-After and records up to 45 minutes late: each record
// exactly once, no gaps, and never more than five requests in ten
// seconds.
func TestT2Graph(t *testing.T) {
	e := newEnv(t, 2, false)
	e.srv.Faults = fake.Faults{Throttle: 0.08, RetryAfter: 3 * time.Second, ServerErr: 0.03, EmptyPage: 0.05, PageSize: 7}
	w := publishGraph(e.srv, rand.New(rand.NewPCG(3, 4)), 10)
	cs := newGraph(t, e, []string{"signins", "signins.noninteractive", "directory_audits", "risk_detections"})
	runDays(t, e, cs, 10, time.Hour)
	st := checkItems(t, e, w, field("id"), cs)
	// The only gaps allowed: sources going quiet once publishing stops.
	checkOnlySilentAfter(t, st.gaps, t0.Add(10*24*time.Hour-time.Hour-4*time.Hour))
	s := e.srv.Stats()
	if s.GraphMaxPer10s > 5 {
		t.Errorf("%d Graph requests in 10 s; the limit is 5", s.GraphMaxPer10s)
	}
	if s.Throttled == 0 {
		t.Error("throttling was not exercised")
	}
}

// TestSilentSource: a list that brought records every poll and then goes
// quiet for more than max(2 h, 3 × its usual interval) gets one "silent"
// gap (B9: a 200 with nothing in it is not proof that nothing happened).
func TestSilentSource(t *testing.T) {
	e := newEnv(t, 10, false)
	for at := t0; at.Before(t0.Add(24 * time.Hour)); at = at.Add(15 * time.Minute) {
		id := fmt.Sprintf("s-%d", at.Unix())
		e.srv.AddGraph("auditLogs/directoryAudits", &fake.Item{Raw: fake.DirectoryAudit(id, at, "admin@contoso.com"), Time: at, Available: at.Add(time.Minute)})
	}
	cs := newGraph(t, e, []string{"directory_audits"})
	runDays(t, e, cs, 2, time.Hour)
	st := e.readJournal(field("id"))
	if len(st.count) != 96 {
		t.Errorf("stored %d of 96", len(st.count))
	}
	if len(st.gaps) != 1 || st.gaps[0].Reason != collect.GapSilent {
		t.Fatalf("gaps %+v; want one silent gap", st.gaps)
	}
	if start, _ := time.Parse(time.RFC3339, st.gaps[0].Start); start.After(t0.Add(25*time.Hour)) || start.Before(t0.Add(23*time.Hour)) {
		t.Errorf("silent gap starts %s; the records stopped at %s", start, t0.Add(24*time.Hour))
	}
}
