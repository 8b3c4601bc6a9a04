package collect_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/o365"
)

// ualWorld is what a fake Management API publishes over some days.
type ualWorld struct {
	want    map[string]bool // record ids that must end up stored
	expired map[string]bool // blob ids that expire before they are fetched
	where   map[string][]*fake.Blob
}

// publishUAL publishes, for each content type, one blob per hour for
// days, each with 3 records: availability 60–90 min after the events, out
// of order; 5% of blobs up to 5 days late with old CreationTime; 5% of
// records delivered again in a later blob; some blobs expired.
func publishUAL(srv *fake.Server, rnd *rand.Rand, cts []string, days int) ualWorld {
	w := ualWorld{want: map[string]bool{}, expired: map[string]bool{}, where: map[string][]*fake.Blob{}}
	end := t0.Add(time.Duration(days) * 24 * time.Hour)
	n := 0
	for _, ct := range cts {
		var prev [][]byte
		for h := 0; h < days*24-6; h++ {
			evt := t0.Add(time.Duration(h)*time.Hour + time.Duration(rnd.IntN(3600))*time.Second)
			avail := evt.Add(60*time.Minute + time.Duration(rnd.IntN(1800))*time.Second)
			if rnd.IntN(20) == 0 {
				avail = evt.Add(time.Duration(24+rnd.IntN(96)) * time.Hour)
			}
			if avail.After(end.Add(-2 * time.Hour)) {
				avail = end.Add(-2 * time.Hour)
			}
			// Listed up to 40 minutes after its contentCreated.
			vis := avail.Add(time.Duration(rnd.IntN(2400)) * time.Second)
			b := &fake.Blob{ID: fmt.Sprintf("%s-%04d", strings.ToLower(ct), h), ContentType: ct, Available: avail, Visible: vis}
			for k := 0; k < 3; k++ {
				n++
				id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
				b.Records = append(b.Records, fake.UAL(id, evt.Add(-time.Duration(k)*time.Minute), "alice@contoso.com"))
				w.want[id] = true
			}
			if len(prev) > 0 && rnd.IntN(20) == 0 {
				b.Records = append(b.Records, prev[rnd.IntN(len(prev))]) // a duplicate across blobs
			}
			prev = b.Records
			rnd.Shuffle(len(b.Records), func(i, j int) { b.Records[i], b.Records[j] = b.Records[j], b.Records[i] })
			if h%97 == 50 {
				srv.ExpireBlob(b.ID)
				w.expired[b.ID] = true
			}
			for _, r := range b.Records {
				id := ualKey(r)
				w.where[id] = append(w.where[id], b)
			}
			srv.AddBlob(b)
		}
	}
	return w
}

// ualKey reads Id.
var ualKey = field("Id")

func newO365(t *testing.T, e *env, cts []string, fault func(string) error) []*collect.Collector {
	t.Helper()
	ent := e.entra()
	tokens := ent.Source(e.srv.URL + "/.default")
	lim := collect.NewLimiter(e.local, time.Minute/1500, 25)
	var out []*collect.Collector
	for _, ct := range cts {
		cl := e.client(lim, tokens)
		src, err := o365.New(ct, e.srv.URL, tenantID, "", cl)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.collector(src, fault, cl))
	}
	return out
}

// TestT1ManagementAPI: ten simulated days against a Management API that
// delivers late, out of order, twice, in NextPageUri chains with empty
// pages, throttles with 403 AF429, fails with 5xx and lets content expire.
// Every record is stored exactly once except those lost for a reason the
// journal records, and the watermark is never ahead of now.
func TestT1ManagementAPI(t *testing.T) {
	e := newEnv(t, 1, false)
	e.srv.Faults = fake.Faults{Throttle: 0.1, ServerErr: 0.05, EmptyPage: 0.1, PageSize: 4}
	rnd := rand.New(rand.NewPCG(1, 2))
	names := []string{"audit.exchange", "audit.azureactivedirectory"}
	w := publishUAL(e.srv, rnd, []string{"Audit.Exchange", "Audit.AzureActiveDirectory"}, 10)
	// An administrator turns Exchange auditing off on day 4 for 3 hours.
	off := t0.Add(4 * 24 * time.Hour)
	e.srv.Disable("Audit.Exchange", off, off.Add(3*time.Hour))
	cs := newO365(t, e, names, nil)
	runDays(t, e, cs, 10, time.Hour)
	checkUAL(t, e, w, cs)
	st := e.srv.Stats()
	if st.Throttled == 0 || st.ServerErrors == 0 {
		t.Errorf("faults were not exercised: %+v", st)
	}
	s := cs[0].Status()
	if s.GapReasons[collect.GapSubscription] != 1 {
		t.Errorf("disabled subscription gaps = %d, want 1 (%+v)", s.GapReasons[collect.GapSubscription], s)
	}
	if s.Duplicates == 0 {
		t.Errorf("no duplicates counted, though blobs repeat records: %+v", s)
	}
}

// runDays polls every collector every step until days have passed,
// checking after each poll that the watermark is not ahead of the
// server's now − settle.
func runDays(t *testing.T, e *env, cs []*collect.Collector, days int, step time.Duration) {
	t.Helper()
	stop := t0.Add(time.Duration(days) * 24 * time.Hour)
	for e.clock.Now().Before(stop) {
		for _, c := range cs {
			err := c.Once(t.Context())
			if err != nil && collect.IsPermanent(err) {
				t.Fatalf("permanent error: %v", err)
			}
			serverNow := e.clock.Now().Add(e.srv.Skew)
			if wm := c.Status().Watermark; wm.After(serverNow) {
				t.Fatalf("%s: watermark %s ahead of now %s", c.Name(), wm, serverNow)
			}
		}
		e.clock.Advance(step)
	}
	// Drain: polls with no faults until everything settled is read.
	e.srv.Faults.Throttle, e.srv.Faults.ServerErr = 0, 0
	for _, c := range cs {
		if err := c.Once(t.Context()); err != nil {
			t.Fatalf("final poll: %v", err)
		}
	}
}

func checkUAL(t *testing.T, e *env, w ualWorld, cs []*collect.Collector) {
	t.Helper()
	st := e.readJournal(ualKey)
	var missing []string
	for id := range w.want {
		if st.count[id] == 0 {
			missing = append(missing, id)
		}
	}
	// Records missing must be in an expired blob or published while the
	// subscription was off, and each such loss must be covered by a gap.
	expiredGaps := map[string]bool{}
	for _, g := range st.gaps {
		if g.Reason == collect.GapExpired {
			for id := range w.expired {
				if strings.Contains(g.Detail, id) {
					expiredGaps[id] = true
				}
			}
		}
	}
	for id := range w.expired {
		if !expiredGaps[id] {
			t.Errorf("expired blob %s has no gap record", id)
		}
	}
	unexplained := 0
	for _, id := range missing {
		if !explained(id, st.gaps, w) {
			unexplained++
			if unexplained < 5 {
				t.Errorf("record %s lost without a gap record", id)
			}
		}
	}
	if unexplained > 0 {
		t.Errorf("%d of %d records lost without a gap record", unexplained, len(w.want))
	}
	for id, n := range st.count {
		if n != 1 && id != "" { // "": another source's records
			t.Errorf("record %s stored %d times", id, n)
		}
	}
	if e.log.dupAcks != 0 {
		t.Errorf("the collector sent %d records the journal already had", e.log.dupAcks)
	}
	if v := e.srv.Stats().Violations; len(v) > 0 {
		t.Errorf("API contract violations: %q", v[:min(5, len(v))])
	}
	delete(st.count, "")
	t.Logf("stored %d of %d records, %d gaps, missing %d (explained); %v", len(st.count), len(w.want), len(st.gaps), len(missing), statuses(cs))
}

// explained reports whether a missing record sits in an expired blob
// (with its gap) or in a blob published inside a subscription gap.
func explained(id string, gaps []gapRec, w ualWorld) bool {
	for _, b := range w.where[id] {
		if w.expired[b.ID] {
			return true
		}
		for _, g := range gaps {
			if g.Reason == collect.GapSubscription && g.covers(b.Available) {
				return true
			}
		}
	}
	return false
}

func statuses(cs []*collect.Collector) []string {
	var out []string
	for _, c := range cs {
		s := c.Status()
		out = append(out, fmt.Sprintf("%s: %d windows %d pages %d records %d dups %d gaps %d requests %d throttled %d retries", s.Source, s.Windows, s.Pages, s.Records, s.Duplicates, s.Gaps, s.Requests, s.Throttled, s.Retries))
	}
	slices.Sort(out)
	return out
}

// TestClampedWhenOffTooLong: vigil stops polling for nine days; content
// older than the API's seven days is gone. The next poll reads what is
// left and writes a "clamped" gap covering exactly what could not be
// read, instead of asking for it again and again (B4).
func TestClampedWhenOffTooLong(t *testing.T) {
	e := newEnv(t, 9, false)
	e.srv.Faults = fake.Faults{PageSize: 5}
	w := publishUAL(e.srv, rand.New(rand.NewPCG(9, 9)), []string{"Audit.Exchange"}, 10)
	cs := newO365(t, e, []string{"audit.exchange"}, nil)
	runDays(t, e, cs, 1, time.Hour)
	e.clock.Advance(9 * 24 * time.Hour)
	if err := cs[0].Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := e.readJournal(ualKey)
	var clamped []gapRec
	for _, g := range st.gaps {
		if g.Reason == collect.GapClamped {
			clamped = append(clamped, g)
		}
	}
	if len(clamped) != 1 {
		t.Fatalf("clamped gaps: %+v; want one", st.gaps)
	}
	lost := 0
	for id := range w.want {
		if st.count[id] > 0 {
			continue
		}
		lost++
		if !explained(id, st.gaps, w) && !clamped[0].covers(w.where[id][0].Available) {
			t.Errorf("record %s (available %s) lost outside the clamped gap %+v", id, w.where[id][0].Available, clamped[0])
		}
	}
	if lost == 0 {
		t.Error("nothing was lost; the test did not reach past the API's retention")
	}
	if s := e.srv.Stats(); len(s.Violations) > 0 {
		t.Errorf("violations: %v", s.Violations)
	}
}

// TestRefusedWindowClamped: with its clock half an hour behind and no
// skew correction, the collector's first window starts past the API's 7
// days and is refused with AF20055. It is clamped forward and the cut
// recorded as a gap, instead of being asked for again forever (B4).
func TestRefusedWindowClamped(t *testing.T) {
	e := newEnv(t, 12, false)
	e.local = fake.Offset{Clock: e.clock, By: -30 * time.Minute}
	e.skew = nil // no correction
	e.srv.Faults = fake.Faults{PageSize: 5}
	w := publishUAL(e.srv, rand.New(rand.NewPCG(12, 12)), []string{"Audit.Exchange"}, 1)
	cs := newO365(t, e, []string{"audit.exchange"}, nil)
	runDays(t, e, cs, 1, time.Hour)
	st := e.readJournal(ualKey)
	if len(st.gaps) != 1 || st.gaps[0].Reason != collect.GapClamped || !strings.Contains(st.gaps[0].Detail, "AF20055") {
		t.Fatalf("gaps %+v; want one clamped gap citing AF20055", st.gaps)
	}
	for id := range w.want {
		if st.count[id] != 1 && !explained(id, st.gaps, w) {
			t.Errorf("record %s stored %d times", id, st.count[id])
		}
	}
}
