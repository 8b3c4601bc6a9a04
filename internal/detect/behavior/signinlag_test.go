package behavior

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
)

const outlook = "d3590ed6-52b3-4102-aeff-aad2292ab01c"

// hourly feeds a dense routine for user 0 of tenant ten: a sign-in every
// hour and a read with its token a minute later. It returns the time of
// the last sign-in.
func hourly(t *testing.T, e *Engine, ten string, from time.Time, hours int) time.Time {
	t.Helper()
	var at time.Time
	for h := range hours {
		at = from.Add(time.Duration(h) * time.Hour)
		tok := fmt.Sprintf("tok-%s-%d", ten, h)
		e.Process(inTenant(signin{at: at, user: users[0], ip: "198.18.0.10", asn: 7922, token: tok, session: "s0"}.event(t), ten))
		e.Process(inTenant(access{at: at.Add(time.Minute), user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
			token: tok, session: "s0", id: fmt.Sprintf("r-%s-%d", ten, h)}.event(t), ten))
	}
	return at
}

func inTenant(ev *event.Event, ten string) *event.Event {
	if ten != "" {
		ev.Tenant = ten
	}
	return ev
}

// A sign-in log that stops (a broken collector) holds the tenant's mail
// accesses no longer than max_source_lag (it stops counting once it is
// that far behind the newest event): a forged-token read is judged while
// the mail keeps coming, its alert says which sign-in log it was
// judged without, and D9 reports the lag once.
func TestSignInLogStops(t *testing.T) {
	cfg := DefaultConfig()
	grace, bound := cfg.D1.Grace.D(), cfg.D1.MaxSourceLag.D()
	e := New(cfg, Options{Networks: nets(t)})
	stop := hourly(t, e, "", t0, 8*24)
	for _, a := range e.Alerts() {
		if a.Fields["signin_lag"] != "" {
			t.Fatalf("a sign-in log in step with the mail log was reported lagging: %s", a.Title)
		}
	}
	forged := stop.Add(30 * time.Minute)
	e.Process(access{at: forged, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "f1"}.event(t))
	var d1, d9 []alert.Alert
	for h := 1; h <= 12; h++ {
		at := stop.Add(time.Duration(h)*time.Hour + time.Minute)
		e.Process(access{at: at, user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
			token: fmt.Sprintf("tok--%d", 8*24-1), session: "s0", id: fmt.Sprint("after-", h)}.event(t))
		got := e.Alerts()
		d1, d9 = append(d1, only(got, "D1")...), append(d9, only(got, "D9")...)
		// While the sign-in log is within the bound the read waits for it.
		if at.Sub(stop) <= bound && len(d1) > 0 {
			t.Fatalf("at %s (sign-in log %s behind) the read was judged without waiting: %s", at, at.Sub(stop), d1[0].Title)
		}
	}
	if len(d1) != 1 {
		t.Fatalf("%d D1 alerts before the end of the input, want the forged read judged once the bound passed: %+v", len(d1), d1)
	}
	a := d1[0]
	if a.RecordID() != "f1" || a.Level != alert.High {
		t.Errorf("D1 on %s at %s, want f1 at high", a.RecordID(), a.Level)
	}
	if a.Raised.After(forged.Add(grace + bound + time.Hour)) {
		t.Errorf("judged at %s, more than an hour after the bound (%s)", a.Raised, forged.Add(grace+bound))
	}
	if lag := a.Fields["signin_lag"]; !strings.Contains(lag, "entra.signin reached only "+stop.Format(time.RFC3339)) {
		t.Errorf("signin_lag %q, want it to name entra.signin and where it stopped", lag)
	}
	if !strings.Contains(a.Title, "judged without the sign-in log") {
		t.Errorf("title %q does not say the verdict was taken without the sign-in log", a.Title)
	}
	if len(d9) != 1 || d9[0].Fields["source"] != "entra.signin" || !strings.Contains(d9[0].Title, "behind the newest event") {
		t.Errorf("D9 alerts %+v, want one saying entra.signin lags", d9)
	}
	// The collector comes back and catches up: the lag is over, and a
	// later lag is reported again.
	hourly(t, e, "", stop.Add(time.Hour), 14)
	e.Alerts()
	for _, s := range e.st.Tenants[strings.ToLower(tenantID)].Sources {
		if s.Lagging {
			t.Error("a sign-in log that caught up is still marked lagging")
		}
	}
}

// A tenant with no sign-in log waits for nothing but the grace period,
// as before sign-in watermarks; a tenant whose sign-in log lags does not
// hold another tenant's accesses.
func TestSignInWatermarkPerTenant(t *testing.T) {
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	const slow, none = "slow-tenant", "mail-only-tenant"
	hourly(t, e, "", t0, 48)
	last := hourly(t, e, slow, t0, 48)
	// The slow tenant's sign-in log stops here; both tenants' mail goes on.
	at := last.Add(30 * time.Minute)
	e.Process(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "f-default"}.event(t))
	e.Process(inTenant(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged2", session: "forged-s2", id: "f-slow"}.event(t), slow))
	e.Process(inTenant(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged3", session: "forged-s3", id: "f-none"}.event(t), none))
	// Two hours on, the default tenant's sign-in log is past the grace.
	e.Process(signin{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", asn: 7922, token: "t-b", session: "s-b"}.event(t))
	if n := e.queue(strings.ToLower(tenantID)).Len(); n != 0 {
		t.Errorf("%d accesses held for the tenant whose sign-in log is past their grace", n)
	}
	if n := e.queue(none).Len(); n != 0 {
		t.Errorf("%d accesses held for the tenant without a sign-in log, past the grace", n)
	}
	// Held: the forged read and the routine reads of the last two hours,
	// whose grace the slow tenant's sign-in log has not passed.
	if n := e.queue(slow).Len(); n != 3 {
		t.Errorf("%d accesses held for the tenant whose sign-in log lags, want 3", n)
	}
}
