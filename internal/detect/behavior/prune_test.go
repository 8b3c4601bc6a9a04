package behavior

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

// Pruning skips users whose every address is recent, yet forgets an
// address as soon as its history has passed, also one a late sign-in
// added with a time older than any the user had.
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
