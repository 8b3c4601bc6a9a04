package behavior

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
)

const outlook = "d3590ed6-52b3-4102-aeff-aad2292ab01c"

// hourly feeds a dense routine for user 0 of tenant ten: a sign-in every
// hour and a read in its session a minute later, the sign-ins delivered
// delay hours after the reads (a slower collector); the last delay hours
// of sign-ins never come. It returns the time of the last sign-in
// delivered.
func hourly(t *testing.T, e *Engine, ten string, from time.Time, hours, delay int) time.Time {
	t.Helper()
	var last time.Time
	for h := range hours {
		at := from.Add(time.Duration(h) * time.Hour)
		e.Process(inTenant(access{at: at.Add(time.Minute), user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
			token: fmt.Sprintf("tok-%s-%d", ten, h), session: "s0", id: fmt.Sprintf("r-%s-%d", ten, h)}.event(t), ten))
		if h >= delay {
			last = from.Add(time.Duration(h-delay) * time.Hour)
			e.Process(inTenant(signin{at: last, user: users[0], ip: "198.18.0.10", asn: 7922, token: fmt.Sprintf("tok-%s-%d", ten, h-delay), session: "s0"}.event(t), ten))
		}
	}
	return last
}

func inTenant(ev *event.Event, ten string) *event.Event {
	if ten != "" {
		ev.Tenant = ten
	}
	return ev
}

// A sign-in log that arrives late is waited for as long as it is usually
// late, never longer than max_source_lag. Once it has had nothing for
// longer than that (a stopped collector, or one fallen further behind),
// a forged-token read is judged without it: its alert says so, and D9
// says once that the sign-in log went silent.
func TestSignInLogStops(t *testing.T) {
	cfg := DefaultConfig()
	grace, bound := cfg.D1.Grace.D(), cfg.D1.MaxSourceLag.D()
	cases := []struct {
		name  string
		delay int           // hours the sign-ins arrive after the reads
		after time.Duration // the forged read, after the last sign-in delivered
		wait  time.Duration // how long past its grace it waits for sign-ins
	}{
		{"collector two hours behind stops", 2, 6 * time.Hour, 2*time.Hour + time.Minute},
		{"collector further behind than max_source_lag", 8, 4 * time.Hour, bound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(cfg, Options{Networks: nets(t)})
			stop := hourly(t, e, "", t0, 8*24, c.delay)
			before := e.Alerts()
			for _, a := range before {
				if a.Fields["signin_lag"] != "" {
					t.Fatalf("a routine read was judged without the sign-in log: %s", a.Title)
				}
			}
			forged := stop.Add(c.after)
			due := forged.Add(grace + c.wait)
			e.Process(access{at: forged, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "f1"}.event(t))
			var d1 []alert.Alert
			d9 := only(before, "D9")
			for h := c.delay + 1; h <= c.delay+16; h++ {
				at := stop.Add(time.Duration(h)*time.Hour + time.Minute)
				e.Process(access{at: at, user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
					token: "tok-routine", session: "s0", id: fmt.Sprint("after-", h)}.event(t))
				got := e.Alerts()
				d1, d9 = append(d1, only(got, "D1")...), append(d9, only(got, "D9")...)
				// Until then the read waits for the sign-in log.
				if at.Before(due) && len(d1) > 0 {
					t.Fatalf("at %s the read was judged, before %s: %s", at, due, d1[0].Title)
				}
			}
			if len(d1) != 1 {
				t.Fatalf("%d D1 alerts before the end of the input, want the forged read judged once: %+v", len(d1), d1)
			}
			a := d1[0]
			if a.RecordID() != "f1" || a.Level != alert.High {
				t.Errorf("D1 on %s at %s, want f1 at high", a.RecordID(), a.Level)
			}
			if a.Raised.After(due.Add(time.Hour)) {
				t.Errorf("judged at %s, more than an hour after %s", a.Raised, due)
			}
			if lag := a.Fields["signin_lag"]; !strings.Contains(lag, "entra.signin (interactive) ") || !strings.Contains(lag, "nothing after "+stop.Format(time.RFC3339)) {
				t.Errorf("signin_lag %q, want it to name entra.signin and its last record", lag)
			}
			if !strings.Contains(a.Title, "judged without the sign-in log") {
				t.Errorf("title %q does not say the verdict was taken without the sign-in log", a.Title)
			}
			silent := 0
			for _, a := range d9 {
				if a.Fields["source"] == "entra.signin" && strings.Contains(a.Title, "mail accesses are judged without it") {
					silent++
				}
			}
			if silent != 1 {
				t.Errorf("D9 alerts %+v, want one saying entra.signin went silent", d9)
			}
			// The collector comes back and catches up: the episode is over.
			hourly(t, e, "", stop.Add(time.Duration(c.delay+17)*time.Hour), 14, 0)
			e.Alerts()
			if s := e.st.Tenants[strings.ToLower(tenantID)].SignIns["entra.signin (interactive)"]; s.Lagging {
				t.Error("a sign-in log that caught up is still marked silent")
			}
		})
	}
}

// A tenant with no sign-in log waits for nothing but the grace period,
// as before sign-in watermarks; a tenant whose sign-in log arrives late
// does not hold another tenant's accesses.
func TestSignInWatermarkPerTenant(t *testing.T) {
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	const slow, none = "slow-tenant", "mail-only-tenant"
	hourly(t, e, "", t0, 48, 0)
	last := hourly(t, e, slow, t0, 48, 3)
	at := last.Add(3*time.Hour + 30*time.Minute)
	e.Process(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "f-default"}.event(t))
	e.Process(inTenant(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged2", session: "forged-s2", id: "f-slow"}.event(t), slow))
	e.Process(inTenant(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged3", session: "forged-s3", id: "f-none"}.event(t), none))
	// Two hours on, in every tenant.
	e.Process(signin{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", asn: 7922, token: "t-b", session: "s-b"}.event(t))
	e.Process(inTenant(access{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", id: "o-slow"}.event(t), slow))
	e.Process(inTenant(access{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", id: "o-none"}.event(t), none))
	if n := e.queue(strings.ToLower(tenantID)).Len(); n != 0 {
		t.Errorf("%d accesses held for the tenant whose sign-in log is past their grace", n)
	}
	if n := e.queue(none).Len(); n != 1 {
		t.Errorf("%d accesses held for the tenant without a sign-in log, want only the one within its grace", n)
	}
	judged := map[string]bool{}
	for _, a := range only(e.Alerts(), "D1") {
		judged[a.RecordID()] = true
	}
	if !judged["f-default"] || judged["f-slow"] {
		t.Errorf("judged %v: want f-default judged and f-slow waiting for its tenant's sign-in log", judged)
	}
	if e.queue(slow).Len() == 0 {
		t.Error("nothing held for the tenant whose sign-in log arrives three hours late")
	}
}

// Interactive and non-interactive sign-ins come from two lists with their
// own delays: a non-interactive stream two hours behind is waited for
// even while the interactive one is in step, so the reads its tokens
// made are not taken for unlinked.
func TestSignInStreamsWaitedForSeparately(t *testing.T) {
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	read := func(at time.Time, tok, id string) {
		e.Process(access{at: at, user: users[1], client: outlook, ip: "198.18.0.11", ua: "Client=MSExchangeRPC", token: tok, session: "s-" + tok, id: id}.event(t))
	}
	refresh := func(at time.Time, tok string) {
		e.Process(signin{at: at, user: users[1], ip: "198.18.0.11", asn: 7922, token: tok, session: "s-" + tok, nonInteractive: true}.event(t))
	}
	var at time.Time
	for h := range 9 * 24 {
		at = t0.Add(time.Duration(h) * time.Hour)
		read(at.Add(time.Minute), fmt.Sprint("ni-", h), fmt.Sprint("r-", h))
		e.Process(signin{at: at, user: users[0], ip: "198.18.0.10", asn: 7922, token: fmt.Sprint("i-", h), session: "s-i"}.event(t))
		if h >= 2 {
			refresh(t0.Add(time.Duration(h-2)*time.Hour), fmt.Sprint("ni-", h-2))
		}
	}
	for h := 9*24 - 2; h < 9*24; h++ {
		refresh(t0.Add(time.Duration(h)*time.Hour), fmt.Sprint("ni-", h))
	}
	e.Flush()
	if d1 := only(e.Alerts(), "D1"); len(d1) != 0 {
		t.Fatalf("%d reads judged before the non-interactive sign-ins that issued their tokens arrived, first %s: %s", len(d1), d1[0].RecordID(), d1[0].Title)
	}
	ten := e.st.Tenants[strings.ToLower(tenantID)]
	if len(ten.SignIns) != 2 || ten.SignIns["entra.signin (non-interactive)"] == nil {
		t.Fatalf("sign-in streams %v, want interactive and non-interactive", slices.Collect(maps.Keys(ten.SignIns)))
	}
}

// A sign-in log in step with the mail log that delivers one record days
// late (a straggler) is still in step: in its next quiet spell accesses
// do not wait for another such record, nor are they judged "without" it.
func TestSignInStragglerIgnored(t *testing.T) {
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	step := 3 * time.Minute
	var at time.Time
	for i := range 8 * 24 * 20 {
		at = t0.Add(time.Duration(i) * step)
		tok := fmt.Sprint("tok-", i)
		e.Process(signin{at: at, user: users[0], ip: "198.18.0.10", asn: 7922, token: tok, session: "s-" + tok}.event(t))
		e.Process(access{at: at.Add(time.Minute), user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC", token: tok, session: "s-" + tok, id: fmt.Sprint("r-", i)}.event(t))
		if i == 8*24*20-100 {
			// Two days late, once.
			e.Process(signin{at: at.Add(-48 * time.Hour), user: users[1], ip: "198.18.0.11", asn: 7922, token: "straggler", session: "s-straggler"}.event(t))
		}
	}
	e.Alerts()
	forged := at.Add(2 * time.Minute)
	e.Process(access{at: forged, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "f1"}.event(t))
	// A quiet spell of the sign-in log: only mail, for half an hour past
	// the forged read's grace.
	quiet := DefaultConfig().D1.Grace.D() + 30*time.Minute
	var d1 []alert.Alert
	last := fmt.Sprint("tok-", 8*24*20-1)
	for i := 1; i <= int(quiet/step); i++ {
		e.Process(access{at: at.Add(time.Duration(i) * step), user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
			token: last, session: "s-" + last, id: fmt.Sprint("more-", i)}.event(t))
		d1 = append(d1, only(e.Alerts(), "D1")...)
	}
	if len(d1) != 1 || d1[0].RecordID() != "f1" {
		t.Fatalf("D1 alerts %+v within %s: want the forged read judged after its grace, not held for the straggler", d1, quiet)
	}
	if lag := d1[0].Fields["signin_lag"]; lag != "" {
		t.Errorf("judged %q: a single straggler made the sign-in log count as late", lag)
	}
}
