package behavior

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/incident"
)

var users = []string{"alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "dave@contoso.com", "erin@contoso.com", "frank@contoso.com"}

func newEngine(t testing.TB) *Engine {
	return New(DefaultConfig(), Options{Networks: nets(t)})
}

func TestD1OrphanToken(t *testing.T) {
	cases := []struct {
		name    string
		feed    func(t *testing.T, e *Engine, at time.Time)
		want    int
		wantLvl string
	}{
		{"forged token and session from a hosting range", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", msgs: []string{"<m1@x>"}, id: "f1"}.event(t))
		}, 1, "high"},
		{"forged token claiming the user's usual client, from a network new to the user", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.1.7", token: "forged", session: "forged-s", id: "f1"}.event(t))
		}, 1, "high"},
		// Refresh-token redemptions and aggregated non-interactive
		// sign-ins leave reads with no sign-in record: from the user's own
		// network, client and volume, that is context, not an intrusion.
		{"unlinked token, everything else familiar", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.0.10", token: "refreshed", session: "unlinked-s", id: "f1"}.event(t))
		}, 1, "low"},
		// A user moved to a cloud PC: a hosting network nobody used, but
		// the user signed in there with MFA this morning.
		{"unlinked token from the user's new cloud PC", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(signin{at: at.Add(-3 * time.Hour), user: users[0], ip: "198.18.11.7", asn: 14061, token: "t-cpc", session: "s-cpc"}.event(t))
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.11.7", token: "refreshed", session: "unlinked-s", id: "f1"}.event(t))
		}, 1, "low"},
		// The VPN egress just moved: two colleagues signed in from the new
		// network already; the user's refreshed token shows up there first.
		{"unlinked token from the tenant's new egress", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(signin{at: at.Add(-2 * time.Hour), user: users[2], ip: "198.18.10.40", asn: 64500, token: "t-c", session: "s-c"}.event(t))
			e.Process(signin{at: at.Add(-time.Hour), user: users[3], ip: "198.18.10.41", asn: 64500, token: "t-d", session: "s-d"}.event(t))
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.10.42", token: "refreshed", session: "unlinked-s", id: "f1"}.event(t))
		}, 1, "low"},
		{"unlinked token, familiar network, new client", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "python-requests/2.31", ip: "198.18.0.10", token: "refreshed", session: "x", id: "f1"}.event(t))
		}, 1, "high"},
		{"unlinked token, familiar network, bulk read", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.0.10", token: "refreshed", session: "x", opCount: 400, id: "f1"}.event(t))
		}, 1, "high"},
		{"token issued by a sign-in", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(signin{at: at.Add(-30 * time.Minute), user: users[0], ip: "198.18.0.10", asn: 7922, token: "ok", session: "s-ok"}.event(t))
			e.Process(access{at: at, user: users[0], ip: "198.18.0.10", token: "ok", session: "s-ok", id: "f1"}.event(t))
		}, 0, ""},
		{"late sign-in within grace", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], ip: "198.18.0.10", token: "late", session: "late-s", id: "f1"}.event(t))
			// Other traffic moves event time on, but not past the grace.
			e.Process(access{at: at.Add(20 * time.Minute), user: users[1], ip: "198.18.0.11", token: fmt.Sprintf("tok-%s-%d", users[1], 9), session: "ses-" + users[1], id: "o1"}.event(t))
			e.Process(signin{at: at.Add(-5 * time.Minute), user: users[0], ip: "198.18.0.10", asn: 7922, token: "late", session: "late-s"}.event(t))
		}, 0, ""},
		// The sign-in log itself moved past the grace before the sign-in
		// showed up: late within its own log, it is not waited for.
		{"sign-in only after the grace", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], ip: "198.18.9.20", token: "late", session: "late-s", id: "f1"}.event(t))
			e.Process(signin{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", asn: 7922, token: "t-b", session: "s-b"}.event(t))
			e.Process(signin{at: at.Add(-5 * time.Minute), user: users[0], ip: "198.18.0.10", asn: 7922, token: "late", session: "late-s"}.event(t))
		}, 1, "high"},
		// The sign-in log lags the mail log by hours (its collector is
		// slow): the access waits for it, and its sign-in is found.
		{"sign-in log hours behind the mail log", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], ip: "198.18.9.20", token: "late", session: "late-s", id: "f1"}.event(t))
			e.Process(access{at: at.Add(90 * time.Minute), user: users[1], ip: "198.18.0.11", token: fmt.Sprintf("tok-%s-%d", users[1], 9), session: "ses-" + users[1], id: "o1"}.event(t))
			e.Process(signin{at: at.Add(-5 * time.Minute), user: users[0], ip: "198.18.9.20", asn: 16276, token: "late", session: "late-s"}.event(t))
			e.Process(signin{at: at.Add(2 * time.Hour), user: users[1], ip: "198.18.0.11", asn: 7922, token: "t-b", session: "s-b"}.event(t))
		}, 0, ""},
		{"session from another network", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(signin{at: at.Add(-time.Hour), user: users[0], ip: "198.18.0.10", asn: 7922, token: "t-home", session: "stolen"}.event(t))
			e.Process(access{at: at, user: users[0], ip: "198.18.1.7", token: "t-other", session: "stolen", id: "f1"}.event(t))
		}, 1, "medium"},
		{"session roaming to the user's own office network", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(signin{at: at.Add(-72 * time.Hour), user: users[0], ip: "198.18.10.5", asn: 64500, token: "t-office", session: "s-office"}.event(t))
			e.Process(signin{at: at.Add(-2 * time.Hour), user: users[0], ip: "198.18.10.5", asn: 64500, token: "t-office2", session: "s-office2"}.event(t))
			e.Process(signin{at: at.Add(-time.Hour), user: users[0], ip: "198.18.0.10", asn: 7922, token: "t-home", session: "roam"}.event(t))
			e.Process(access{at: at, user: users[0], client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ua: "Client=MSExchangeRPC", ip: "198.18.10.5", token: "t-other", session: "roam", id: "f1"}.event(t))
		}, 1, "low"},
		{"no ids to join", func(t *testing.T, e *Engine, at time.Time) {
			e.Process(access{at: at, user: users[0], ip: "198.18.0.10", id: "f1"}.event(t))
		}, 0, ""},
		{"allow-listed app", func(t *testing.T, e *Engine, at time.Time) {
			e.cfg.allowD1["aaaaaaaa-0000-0000-0000-000000000001"] = true
			e.Process(access{at: at, user: users[0], client: "aaaaaaaa-0000-0000-0000-000000000001", ip: "198.18.0.10", token: "daemon", id: "f1"}.event(t))
		}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(DefaultConfig(), Options{Networks: nets(t)})
			at := baseline(t, e, users[:2], 10).Add(time.Hour)
			e.Alerts()
			c.feed(t, e, at)
			e.Flush()
			got := only(e.Alerts(), "D1")
			if len(got) != c.want {
				t.Fatalf("got %d D1 alerts, want %d: %+v", len(got), c.want, got)
			}
			if c.want > 0 && got[0].Level.String() != c.wantLvl {
				t.Errorf("level %s, want %s", got[0].Level, c.wantLvl)
			}
		})
	}
}

func TestD1NeedsSignInCoverage(t *testing.T) {
	e := newEngine(t)
	// Mail logs only: no sign-in data, so nothing can be judged.
	for i := 0; i < 50; i++ {
		e.Process(access{at: t0.Add(time.Duration(i) * time.Hour), user: users[0], ip: "198.18.0.10", token: fmt.Sprint("t", i), id: fmt.Sprint(i)}.event(t))
	}
	e.Flush()
	if n := len(only(e.Alerts(), "D1")); n != 0 {
		t.Fatalf("%d D1 alerts without any sign-in data", n)
	}
}

func TestD1OutOfOrderSignIns(t *testing.T) {
	// The same events in two orders within the grace give the same alerts.
	mk := func(t *testing.T) []func(e *Engine) {
		at := t0.Add(10 * 24 * time.Hour)
		return []func(e *Engine){
			func(e *Engine) {
				e.Process(access{at: at, user: users[0], ip: "198.18.0.10", token: "x1", session: "sx", id: "a1"}.event(t))
			},
			func(e *Engine) {
				e.Process(access{at: at.Add(time.Minute), user: users[0], ip: "198.18.0.10", token: "x2", session: "sy", id: "a2"}.event(t))
			},
			func(e *Engine) {
				e.Process(signin{at: at.Add(-time.Minute), user: users[0], ip: "198.18.0.10", asn: 7922, token: "x1", session: "sx"}.event(t))
			},
		}
	}
	run := func(order []int) []alert.Alert {
		e := newEngine(t)
		baseline(t, e, users[:2], 10)
		e.Alerts()
		steps := mk(t)
		for _, i := range order {
			steps[i](e)
		}
		e.Flush()
		return only(e.Alerts(), "D1")
	}
	a, b := run([]int{2, 0, 1}), run([]int{0, 1, 2})
	if len(a) != 1 || len(b) != 1 || a[0].RecordIDs[0] != "a2" || b[0].RecordIDs[0] != "a2" {
		t.Fatalf("in order %+v, out of order %+v: want one alert on a2 each", a, b)
	}
}

func TestD2FirstSeenApp(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users, 8).Add(time.Hour)
	e.Alerts()
	newApp := "77777777-0000-0000-0000-000000000001"
	// During learning nothing alerts (checked by the empty drain above);
	// after it, a new pair is high for the tenant, then medium per mailbox.
	e.Process(access{at: at, user: users[0], client: newApp, ip: "198.18.0.10", token: "tok-" + users[0] + "-7", id: "n1"}.event(t))
	e.Process(access{at: at.Add(time.Minute), user: users[0], client: newApp, ip: "198.18.0.10", token: "tok-" + users[0] + "-7", id: "n2"}.event(t))
	e.Process(access{at: at.Add(2 * time.Minute), user: users[1], client: newApp, ip: "198.18.0.11", token: "tok-" + users[1] + "-7", id: "n3"}.event(t))
	got := only(e.Alerts(), "D2")
	if len(got) != 2 || got[0].Level.String() != "high" || got[1].Level.String() != "medium" {
		t.Fatalf("got %+v", got)
	}
	if got[0].Actors[0] != (alert.Actor{Kind: alert.ActorClientApp, Value: newApp}) {
		t.Errorf("actor %+v", got[0].Actors)
	}
	// A roll-out: every user starts using a new client on their own mailbox.
	roll := "88888888-0000-0000-0000-000000000001"
	for i, u := range users {
		e.Process(access{at: at.Add(time.Hour + time.Duration(i)*time.Minute), user: u, client: roll, ip: fmt.Sprintf("198.18.0.%d", 10+i), id: fmt.Sprint("roll", i)}.event(t))
	}
	if n := len(only(e.Alerts(), "D2")); n != 4 {
		t.Fatalf("roll-out raised %d D2 alerts, want the 4 before it was recognised", n)
	}
	// A user's consent lowers the level where the app reads that user's
	// mailbox, not where it reads anyone else's.
	cons := "99999999-0000-0000-0000-000000000001"
	e.Process(ualOp(t, at.Add(3*time.Hour), "Consent to application.", users[2], map[string]any{"Target": []any{map[string]any{"ID": cons, "Type": 2}}}))
	e.Process(access{at: at.Add(3*time.Hour + time.Minute), user: users[2], client: cons, ip: "198.18.0.12", id: "c1"}.event(t))
	e.Process(access{at: at.Add(3*time.Hour + 2*time.Minute), user: "app@contoso.com", mailbox: users[3], client: cons, ip: "198.18.0.12", id: "c2"}.event(t))
	got = only(e.Alerts(), "D2")
	if len(got) != 2 || got[0].Level.String() != "low" || got[1].Level.String() != "medium" {
		t.Fatalf("consented app: %+v", got)
	}
}

func TestD3Volume(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users[:2], 8).Add(time.Hour)
	e.Alerts()
	e.Process(access{at: at, user: users[0], ip: "198.18.0.10", throttled: true, id: "th"}.event(t))
	e.Process(access{at: at.Add(time.Minute), user: users[0], ip: "198.18.0.10", opCount: 150, id: "big"}.event(t))
	got := only(e.Alerts(), "D3")
	if len(got) != 2 || !strings.Contains(got[0].Title, "throttled") || !strings.Contains(got[1].Title, "150") {
		t.Fatalf("got %+v", got)
	}
	// One app and accessor over many mailboxes in ten minutes.
	app := "66666666-0000-0000-0000-000000000001"
	for i := 0; i < 7; i++ {
		e.Process(access{at: at.Add(2*time.Hour + time.Duration(i)*time.Minute), user: "app@contoso.com", mailbox: fmt.Sprintf("m%d@contoso.com", i), client: app, ip: "198.18.9.5", id: fmt.Sprint("mm", i)}.event(t))
	}
	got = only(e.Alerts(), "D3")
	if len(got) != 1 || !strings.Contains(got[0].Title, "6 mailboxes") {
		t.Fatalf("multi-mailbox: %+v", got)
	}
	// Own-mailbox reads by many users through one client are not it.
	for i, u := range users {
		e.Process(access{at: at.Add(3*time.Hour + time.Duration(i)*time.Minute), user: u, client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ip: "198.18.0.10", id: fmt.Sprint("own", i)}.event(t))
	}
	if got := only(e.Alerts(), "D3"); len(got) != 0 {
		t.Fatalf("own-mailbox reads: %+v", got)
	}
}

func TestD3HourlyAnomaly(t *testing.T) {
	e := newEngine(t)
	at := t0
	for h := 0; h < 24*9; h++ {
		at = t0.Add(time.Duration(h) * time.Hour)
		e.Process(access{at: at, user: users[0], ip: "198.18.0.10", opCount: 5 + h%3, id: fmt.Sprint("h", h)}.event(t))
	}
	if got := only(e.Alerts(), "D3"); len(got) != 0 {
		t.Fatalf("steady reads alerted: %+v", got)
	}
	for i := 0; i < 5; i++ {
		e.Process(access{at: at.Add(time.Hour + time.Duration(i)*time.Minute), user: users[0], ip: "198.18.0.10", opCount: 60, id: fmt.Sprint("burst", i)}.event(t))
	}
	e.Flush()
	got := only(e.Alerts(), "D3")
	if len(got) != 1 || !strings.Contains(got[0].Title, "300 items") {
		t.Fatalf("burst: %+v", got)
	}
}

func TestD4Network(t *testing.T) {
	cases := []struct {
		name, ip string
		nearby   bool
		want     string // level, "" for none
	}{
		{"hosting address without sign-in", "198.18.9.20", false, "high"},
		{"user's own address", "198.18.0.10", false, ""},
		{"new address in the user's ASN", "198.18.0.99", false, ""},
		{"new ISP address with no sign-in", "198.18.1.50", false, "medium"},
		{"new ISP address someone signed in from", "198.18.1.50", true, ""},
		{"hosting address someone signed in from", "198.18.9.20", true, "high"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t)
			at := baseline(t, e, users[:3], 8).Add(time.Hour)
			e.Alerts()
			if c.nearby {
				e.Process(signin{at: at.Add(-time.Hour), user: users[2], ip: c.ip, asn: 1, token: "nb", session: "nbs"}.event(t))
			}
			e.Process(access{at: at, user: users[0], ip: c.ip, token: "tok-" + users[0] + "-7", session: "ses-" + users[0], id: "x"}.event(t))
			e.Flush()
			got := only(e.Alerts(), "D4")
			if c.want == "" {
				if len(got) != 0 {
					t.Fatalf("unexpected %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Level.String() != c.want {
				t.Fatalf("got %+v, want one %s", got, c.want)
			}
		})
	}
}

func TestD7ScriptClient(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users[:2], 8).Add(time.Hour)
	e.Alerts()
	rest := "Client=REST;Client=RESTSystem;;"
	e.Process(access{at: at, user: users[0], ip: "198.18.0.10", ua: rest, id: "s1"}.event(t))
	e.Process(access{at: at.Add(time.Minute), user: users[0], ip: "198.18.0.10", ua: rest, id: "s2"}.event(t))
	e.Process(access{at: at.Add(2 * time.Minute), user: users[0], ip: "198.18.0.10", ua: "Client=OWA;Action=ViaProxy", id: "s3"}.event(t))
	got := only(e.Alerts(), "D7")
	if len(got) != 1 || got[0].RecordIDs[0] != "s1" {
		t.Fatalf("got %+v", got)
	}
}

func TestD8SensitiveSearch(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users[:2], 8).Add(time.Hour)
	e.Alerts()
	search := func(at time.Time, q string) {
		e.Process(ualOp(t, at, "SearchQueryInitiatedExchange", users[0], map[string]any{"QueryText": q, "ClientIP": "198.18.0.10", "MailboxOwnerUPN": users[0]}))
	}
	search(at, "VPN password reset")
	e.Process(access{at: at.Add(5 * time.Minute), user: users[0], ip: "198.18.0.10", id: "r1"}.event(t))
	search(at.Add(2*time.Hour), "lunch menu")
	e.Process(access{at: at.Add(2*time.Hour + time.Minute), user: users[0], ip: "198.18.0.10", id: "r2"}.event(t))
	search(at.Add(4*time.Hour), "tokenization roadmap") // word boundary: not "token"
	e.Process(access{at: at.Add(4*time.Hour + time.Minute), user: users[0], ip: "198.18.0.10", id: "r3"}.event(t))
	search(at.Add(6*time.Hour), "confidential")
	e.Process(access{at: at.Add(8 * time.Hour), user: users[0], ip: "198.18.0.10", id: "r4"}.event(t)) // too late
	got := only(e.Alerts(), "D8")
	if len(got) != 1 || got[0].RecordIDs[1] != "r1" {
		t.Fatalf("got %+v", got)
	}
}

func TestD9Coverage(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users[:2], 8).Add(time.Hour)
	e.Alerts()
	e.Process(ualOp(t, at, "Set-Mailbox", "admin@contoso.com", map[string]any{"Parameters": []any{
		map[string]any{"Name": "Identity", "Value": users[1]}, map[string]any{"Name": "AuditEnabled", "Value": "False"}}}))
	e.Process(ualOp(t, at, "Set-Mailbox", "admin@contoso.com", map[string]any{"Parameters": []any{
		map[string]any{"Name": "Identity", "Value": users[1]}, map[string]any{"Name": "ProhibitSendQuota", "Value": "5GB"}}}))
	got := only(e.Alerts(), "D9")
	if len(got) != 1 || got[0].Mailbox != users[1] || !got[0].Posture {
		t.Fatalf("audit disabled: %+v", got)
	}
	// Sign-ins keep coming for four days, mail logs stop.
	for h := 1; h <= 96; h++ {
		e.Process(signin{at: at.Add(time.Duration(h) * time.Hour), user: users[0], ip: "198.18.0.10", asn: 7922, token: fmt.Sprint("late", h)}.event(t))
	}
	got = only(e.Alerts(), "D9")
	var src, mbx int
	for _, a := range got {
		if a.Fields["source"] == "m365.ual" {
			src++
		}
		if a.Mailbox != "" {
			mbx++
		}
	}
	if src != 1 || mbx != 0 {
		t.Fatalf("want one source gap and no mailbox silence (the whole source stopped): %+v", got)
	}
}

func TestD9MailboxSilence(t *testing.T) {
	e := newEngine(t)
	at := baseline(t, e, users[:3], 8)
	e.Alerts()
	// users[0] and [1] go on reading, users[2] stops.
	for d := 1; d <= 4; d++ {
		for i := 0; i < 2; i++ {
			e.Process(access{at: at.Add(time.Duration(d) * 24 * time.Hour).Add(time.Duration(i) * time.Minute), user: users[i], ip: "198.18.0.10", id: fmt.Sprint(d, i)}.event(t))
		}
	}
	var got []alert.Alert
	for _, a := range only(e.Alerts(), "D9") {
		if a.Mailbox != "" {
			got = append(got, a)
		}
	}
	if len(got) != 1 || got[0].Mailbox != users[2] {
		t.Fatalf("got %+v", got)
	}
}

func TestD11IOC(t *testing.T) {
	iocs, err := ParseIOCs([]byte(`name: test
indicators:
  - {type: ip, value: "195.26.87[.]219", first_seen: 2026-03-01, last_seen: 2026-03-12}
  - {type: user_agent, value: "Mozilla/5.0 evil"}
  - {type: kid, value: 1LTMzakihiRla_8z2BEJVXeWMqo}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := New(DefaultConfig(), Options{Networks: nets(t), IOCs: iocs})
	e.Process(access{at: t0.Add(24 * time.Hour), user: users[0], ip: "195.26.87.219", id: "in"}.event(t))
	e.Process(access{at: t0.Add(20 * 24 * time.Hour), user: users[0], ip: "195.26.87.219", id: "out"}.event(t))
	e.Process(access{at: t0.Add(21 * 24 * time.Hour), user: users[0], ip: "198.18.0.10", ua: "Mozilla/5.0 evil", id: "ua"}.event(t))
	e.Process(build(t, map[string]any{"kid": "1LTMzakihiRla_8z2BEJVXeWMqo"}))
	e.Process(access{at: t0.Add(22 * 24 * time.Hour), user: users[0], ip: "198.18.0.10", id: "clean"}.event(t))
	got := only(e.Alerts(), "D11")
	if len(got) != 3 {
		t.Fatalf("got %d: %+v", len(got), got)
	}
	if got[0].Level.String() != "high" || got[1].Level.String() != "low" || got[2].Fields["ioc_type"] != "user_agent" {
		t.Fatalf("levels/types: %+v", got)
	}
	// Titles say where the match lies in the indicator's window, and an
	// indicator without one is not said to have one.
	for i, want := range []string{"inside its published window", "outside its published window", "the indicator has no published window"} {
		if !strings.Contains(got[i].Title, want) {
			t.Errorf("alert %d title %q: want %q", i, got[i].Title, want)
		}
	}
	// The event without a time is ignored, not matched at time zero.
}

// stream is a deterministic mixed workload for the replay tests.
func stream(t testing.TB) []func(*Engine) {
	var steps []func(*Engine)
	add := func(f func(*Engine)) { steps = append(steps, f) }
	for d := 0; d < 12; d++ {
		for i, u := range users {
			day := t0.Add(time.Duration(d) * 24 * time.Hour)
			ip := fmt.Sprintf("198.18.0.%d", 10+i)
			tok := fmt.Sprintf("tok-%s-%d", u, d)
			add(func(e *Engine) {
				e.Process(signin{at: day.Add(time.Duration(i) * time.Minute), user: u, ip: ip, asn: 7922, token: tok, session: "s" + u}.event(t))
			})
			for k := 0; k < 4; k++ {
				at := day.Add(time.Duration(i)*time.Minute + time.Duration(k+1)*time.Hour)
				id := fmt.Sprintf("r-%d-%d-%d", d, i, k)
				add(func(e *Engine) {
					e.Process(access{at: at, user: u, client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ip: ip, token: tok, session: "s" + u, msgs: []string{"<" + id + ">"}, id: id}.event(t))
				})
			}
			if d >= 9 && i == 0 {
				at := day.Add(3 * time.Hour)
				add(func(e *Engine) {
					e.Process(access{at: at, user: u, client: "77777777-0000-0000-0000-000000000001", ip: "198.18.9.9", ua: "Client=REST;Client=RESTSystem;;",
						token: fmt.Sprint("forged", d), msgs: []string{fmt.Sprint("<vip", d, ">")}, id: fmt.Sprint("evil", d)}.event(t))
				})
			}
		}
	}
	return steps
}

func TestPersistenceAcrossRestart(t *testing.T) {
	steps := stream(t)
	whole := newEngine(t)
	for _, s := range steps {
		s(whole)
	}
	whole.Flush()
	want := whole.Alerts()
	if len(want) == 0 {
		t.Fatal("the workload raised nothing; the test would prove nothing")
	}
	for _, cut := range []int{1, len(steps) / 3, len(steps) / 2, len(steps) - 1} {
		first := newEngine(t)
		for _, s := range steps[:cut] {
			s(first)
		}
		got := first.Alerts()
		var buf bytes.Buffer
		if err := first.Save(&buf); err != nil {
			t.Fatal(err)
		}
		second := newEngine(t)
		if err := second.Load(&buf); err != nil {
			t.Fatal(err)
		}
		for _, s := range steps[cut:] {
			s(second)
		}
		second.Flush()
		got = append(got, second.Alerts()...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("cut at %d: %d alerts after restart, %d uninterrupted", cut, len(got), len(want))
		}
	}
	if sig := signals(want); sig["D1"] == 0 || sig["D2"] == 0 || sig["D4"] == 0 || sig["D7"] == 0 {
		t.Fatalf("workload signals %v", sig)
	}
}

func TestLoadRejectsOtherVersions(t *testing.T) {
	e := newEngine(t)
	if err := e.Load(strings.NewReader("garbage")); err == nil {
		t.Fatal("loaded garbage")
	}
}

func TestReplayIsDeterministic(t *testing.T) {
	run := func() []alert.Alert {
		e := newEngine(t)
		for _, s := range stream(t) {
			s(e)
		}
		e.Flush()
		return e.Alerts()
	}
	if a, b := run(), run(); !reflect.DeepEqual(a, b) {
		t.Fatal("two replays differ")
	}
}

// An admin grants a backup product tenant-wide mail permissions from
// their usual network: its later reads from its own network are notices,
// not incidents; the same app from another network, or with tokens no
// sign-in issued, still raises medium or high alerts.
func TestSanctionedApp(t *testing.T) {
	const backup = "7a0f9c1e-4b2d-4e6a-9c3b-2f1e0d9c8b7a"
	grant := func(e *Engine, at time.Time) {
		e.Process(ualOp(t, at, "Add app role assignment to service principal.", users[0], map[string]any{
			"ModifiedProperties": []map[string]any{
				{"Name": "AppRole.Value", "NewValue": "full_access_as_app", "OldValue": ""},
				{"Name": "ServicePrincipal.AppId", "NewValue": backup, "OldValue": ""},
				{"Name": "TargetId.ServicePrincipalNames", "NewValue": "00000002-0000-0ff1-ce00-000000000000", "OldValue": ""},
			}}))
	}
	read := func(e *Engine, at time.Time, ip string, n int, linked bool) {
		tok := fmt.Sprintf("bk-%d", n)
		if linked {
			e.Process(signin{at: at.Add(-time.Minute), ip: ip, asn: 16276, token: tok}.event(t))
		}
		for i, mb := range users[:3] {
			e.Process(access{at: at.Add(time.Duration(i) * time.Second), user: backup, mailbox: mb, client: backup, ip: ip, ua: "Client=REST;;",
				token: tok, msgs: []string{fmt.Sprintf("<%s-%d@x>", mb, n)}, id: fmt.Sprintf("bk-%d-%d", n, i)}.event(t))
		}
	}
	runAfter := func(t *testing.T, before func(e *Engine, grant time.Time), last func(e *Engine, at time.Time)) []alert.Alert {
		e := New(DefaultConfig(), Options{Networks: nets(t)})
		at := baseline(t, e, users[:3], 10)
		e.Alerts()
		before(e, at.Add(time.Hour))
		grant(e, at.Add(time.Hour))
		for d := 1; d <= 3; d++ {
			read(e, at.Add(time.Duration(d)*24*time.Hour), "198.18.9.50", d, true)
		}
		last(e, at.Add(5*24*time.Hour))
		e.Flush()
		return e.Alerts()
	}
	run := func(t *testing.T, last func(e *Engine, at time.Time)) []alert.Alert {
		return runAfter(t, func(*Engine, time.Time) {}, last)
	}
	incidents := func(as []alert.Alert) int {
		return len(incident.Group(DefaultConfig().IncidentConfig(), as))
	}
	sanctioned := func(as []alert.Alert) int {
		n := 0
		for _, a := range as {
			if strings.Contains(a.Title, "sanctioned app") {
				n++
			}
		}
		return n
	}
	ownReads := func(e *Engine, at time.Time) { read(e, at, "198.18.9.50", 9, true) }
	// The admin's phone signs in a minute before the grant from an
	// address new to them in their usual carrier's range: still their
	// network.
	phone := runAfter(t, func(e *Engine, g time.Time) {
		e.Process(signin{at: g.Add(-time.Minute), user: users[0], ip: "198.18.0.99", asn: 7922, token: "phone"}.event(t))
	}, ownReads)
	if sanctioned(phone) == 0 || incidents(phone) != 0 {
		t.Errorf("grant after a sign-in from a new address in the admin's network: %d notices, %d incidents", sanctioned(phone), incidents(phone))
	}
	// The admin joins the organisation's VPN (an egress many colleagues
	// have signed in from for days) just before the grant: at work. The
	// same VPN provider used by one colleague only is not the
	// organisation's, and sanctions nothing.
	viaVPN := func(colleagues int) []alert.Alert {
		return runAfter(t, func(e *Engine, g time.Time) {
			for i := range colleagues {
				e.Process(signin{at: g.Add(-48 * time.Hour), user: fmt.Sprintf("staff%d@contoso.com", i), ip: fmt.Sprintf("198.18.12.%d", 1+i%2), asn: 53813, token: fmt.Sprint("vpn", i)}.event(t))
			}
			e.Process(signin{at: g.Add(-time.Minute), user: users[0], ip: "198.18.12.1", asn: 53813, token: "admin-vpn"}.event(t))
		}, ownReads)
	}
	prevalent := DefaultConfig().D4.PrevalentUsers
	if vpn := viaVPN(prevalent); sanctioned(vpn) == 0 || incidents(vpn) != 0 {
		t.Errorf("grant from the organisation's VPN egress: %d notices, %d incidents", sanctioned(vpn), incidents(vpn))
	}
	if rare := viaVPN(1); sanctioned(rare) != 0 {
		t.Errorf("grant from a VPN one colleague uses: %d notices", sanctioned(rare))
	}
	// An intruder's session from a data centre in the hour before the
	// grant sanctions nothing, even when the admin's own device signed
	// in last.
	intruder := runAfter(t, func(e *Engine, g time.Time) {
		e.Process(signin{at: g.Add(-20 * time.Minute), user: users[0], ip: "198.18.11.7", asn: 14061, token: "aitm"}.event(t))
		e.Process(signin{at: g.Add(-time.Minute), user: users[0], ip: "198.18.0.10", asn: 7922, token: "own"}.event(t))
	}, ownReads)
	if n := sanctioned(intruder); n != 0 {
		t.Errorf("grant beside an intruder's session: %d notices", n)
	}
	own := run(t, func(e *Engine, at time.Time) { read(e, at, "198.18.9.50", 9, true) })
	notices := 0
	for _, a := range own {
		if strings.Contains(a.Title, "sanctioned app") {
			notices++
			if a.Level != alert.Low {
				t.Errorf("notice at level %s: %s", a.Level, a.Title)
			}
		}
	}
	if notices == 0 || incidents(own) != 0 {
		t.Errorf("sanctioned app from its own network: %d notices, %d incidents; alerts %+v", notices, incidents(own), own)
	}
	other := run(t, func(e *Engine, at time.Time) { read(e, at, "198.18.11.50", 9, true) })
	if n := len(only(other, "D4")); n == 0 || only(other, "D4")[n-1].Level < alert.High {
		t.Errorf("sanctioned app from another network: D4 %+v", only(other, "D4"))
	}
	// A phished admin's consent is not a sanction.
	consentOnly := func(e *Engine, at time.Time) {
		e.Process(ualOp(t, at, "Consent to application.", users[0], map[string]any{
			"ModifiedProperties": []map[string]any{{"Name": "ConsentContext.IsAdminConsent", "NewValue": "True", "OldValue": ""}},
			"Target":             []map[string]any{{"ID": backup, "Type": 2}}}))
	}
	e := New(DefaultConfig(), Options{Networks: nets(t)})
	at := baseline(t, e, users[:3], 10)
	consentOnly(e, at.Add(time.Hour))
	read(e, at.Add(24*time.Hour), "198.18.9.50", 1, true)
	e.Flush()
	for _, a := range e.Alerts() {
		if strings.Contains(a.Title, "sanctioned") {
			t.Errorf("admin consent alone sanctioned the app: %s", a.Title)
		}
	}
	unlinked := run(t, func(e *Engine, at time.Time) { read(e, at, "198.18.9.50", 9, false) })
	if d1 := only(unlinked, "D1"); len(d1) == 0 || d1[0].Level != alert.High || incidents(unlinked) == 0 {
		t.Errorf("sanctioned app with unlinked tokens: D1 %+v, %d incidents", d1, incidents(unlinked))
	}
}
