package behavior

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// Pruning skips users whose every address is recent, yet forgets an
// address as soon as its history has passed (against the tenant's mail
// log, read daily here), also one a late sign-in added with a time
// older than any the user had.
func TestPruneForgetsOldAddresses(t *testing.T) {
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	const user = "ada@contoso.example"
	day := func(d int, h time.Duration) time.Time {
		return t0.Truncate(24 * time.Hour).Add(time.Duration(d)*24*time.Hour + h)
	}
	home, once, late := "198.18.0.10", "198.18.0.99", "198.18.1.5"
	e.Process(signin{at: day(0, 7*time.Hour), user: user, ip: once, asn: 7922, token: "t-once"}.event(t))
	ips := func() []string {
		u := e.st.Tenants[tenantID].Users[user]
		return slices.Sorted(maps.Keys(u.IPs))
	}
	for d := 0; d <= 62; d++ {
		e.Process(signin{at: day(d, 8*time.Hour), user: user, ip: home, asn: 7922, token: fmt.Sprintf("t-%d", d)}.event(t))
		e.Process(access{at: day(d, 8*time.Hour+time.Minute), user: user, ip: home, token: fmt.Sprintf("t-%d", d), id: fmt.Sprint("r-", d)}.event(t))
		switch d {
		case 31:
			// History is 30 days (plus grace and source lag): the
			// address used once on day 0 is gone, the daily one stays.
			e.Process(signin{at: day(d, 16*time.Hour), user: user, ip: home, asn: 7922, token: "t-31b"}.event(t))
			if got := ips(); !slices.Equal(got, []string{home}) {
				t.Fatalf("day 31: addresses %v, want only %s", got, home)
			}
		case 32:
			// A sign-in a day and a half late, older than every address
			// the user has.
			e.Process(signin{at: day(30, 20*time.Hour), user: user, ip: late, asn: 3320, token: "t-late"}.event(t))
		case 61:
			e.Process(signin{at: day(d, 10*time.Hour), user: user, ip: home, asn: 7922, token: "t-61b"}.event(t))
			if got := ips(); !slices.Equal(got, []string{home}) {
				t.Fatalf("day 61, 10:00: addresses %v, want only %s (the late one was last seen on day 30 at 20:00)", got, home)
			}
		}
	}
}

// Sign-in evidence is kept until the tenant's mail log has passed it, so
// a mail log a day behind is judged with its tokens; but a mail log that
// stops (or never came) holds it at most max_mail_lag longer.
func TestPruneKeepsTokensForTheMailLog(t *testing.T) {
	cfg := DefaultConfig()
	e := New(cfg, Options{Networks: nets(t)})
	const user = "ada@contoso.example"
	e.Process(access{at: t0, user: user, ip: "198.18.0.10", token: "t-first", id: "r-first"}.event(t))
	keep := cfg.D1.TokenLifetime.D() + e.evidenceMargin()
	var last time.Time
	for h := range 24 * 6 {
		last = t0.Add(time.Duration(h) * time.Hour)
		e.Process(signin{at: last, user: user, ip: "198.18.0.10", asn: 7922, token: fmt.Sprint("t-", h)}.event(t))
		if h == 48 {
			// The mail log, last seen at t0, has not passed the first
			// token: two days on (beyond the token's lifetime and the
			// margins, within max_mail_lag more) it is still there.
			if _, ok := e.st.Tokens["t-0"]; !ok {
				t.Fatal("a token the mail log has not passed yet was forgotten after 2 days")
			}
		}
	}
	// Six days on, with nothing from the mail log: kept no longer than
	// max_mail_lag beyond the usual keep.
	oldest := last
	for _, si := range e.st.Tokens {
		if si.Time.Before(oldest) {
			oldest = si.Time
		}
	}
	bound := cfg.D1.MaxMailLag.D() + keep + time.Hour
	if held := last.Sub(oldest); held > bound || held < cfg.D1.MaxMailLag.D() {
		t.Errorf("tokens held %s with a stopped mail log, want between max_mail_lag (%s) and %s", held, cfg.D1.MaxMailLag.D(), bound)
	}
}
