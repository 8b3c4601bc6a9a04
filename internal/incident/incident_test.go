package incident

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
)

var t0 = time.Date(2026, 3, 16, 1, 0, 0, 0, time.UTC)

func al(at time.Duration, sig, level, mb string, actors ...alert.Actor) alert.Alert {
	return alert.Alert{Time: t0.Add(at), Signal: sig, Level: alert.MustLevel(level), Tenant: "t", Mailbox: mb, User: mb, Actors: actors, RecordIDs: []string{sig + at.String() + mb}}
}

var (
	tokA = alert.Actor{Kind: alert.ActorToken, Value: "A"}
	tokB = alert.Actor{Kind: alert.ActorToken, Value: "B"}
	ipX  = alert.Actor{Kind: alert.ActorIP, Value: "198.18.9.9"}
)

func TestGroupCriterion(t *testing.T) {
	cases := []struct {
		name   string
		alerts []alert.Alert
		want   int
	}{
		{"D1 alone", []alert.Alert{al(0, "D1", "high", "vip@x", tokA)}, 1},
		{"D2 alone", []alert.Alert{al(0, "D2", "high", "vip@x", tokA)}, 0},
		{"D2 and D7 by one actor", []alert.Alert{al(0, "D2", "high", "vip@x", tokA), al(time.Minute, "D7", "medium", "vip@x", tokA)}, 1},
		{"D2 and D7 a day and a half apart", []alert.Alert{al(0, "D2", "high", "vip@x", tokA), al(36*time.Hour, "D7", "medium", "vip@x", tokA)}, 0},
		{"two actors on one mailbox", []alert.Alert{al(0, "D2", "high", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokB)}, 0},
		{"low alerts do not count", []alert.Alert{al(0, "D2", "low", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokA)}, 0},
		{"enrichment does not count", []alert.Alert{al(0, "D8", "medium", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokA)}, 0},
		{"critical alone", []alert.Alert{al(0, "D4", "critical", "vip@x", ipX)}, 1},
		{"posture never", []alert.Alert{{Time: t0, Signal: "D9", Level: alert.High, Mailbox: "vip@x", Posture: true}}, 0},
	}
	for _, c := range cases {
		if got := Group(DefaultConfig(), c.alerts); len(got) != c.want {
			t.Errorf("%s: %d incidents, want %d", c.name, len(got), c.want)
		}
	}
}

func TestGroupLinks(t *testing.T) {
	anon := alert.Alert{Time: t0.Add(2 * time.Hour), Signal: "D3", Level: alert.MustLevel("medium"), Tenant: "t", Mailbox: "vip@x", Title: "volume"}
	as := []alert.Alert{
		al(0, "D1", "high", "vip@x", tokA, ipX),
		al(time.Hour, "D1", "high", "other@x", tokB, ipX), // linked through the IP
		anon,
		al(3*time.Hour, "D1", "high", "third@x", alert.Actor{Kind: alert.ActorToken, Value: "C"}),
	}
	incs := Group(DefaultConfig(), as)
	if len(incs) != 2 {
		t.Fatalf("%d incidents", len(incs))
	}
	first := incs[0]
	if first.AlertCount != 3 || len(first.Mailboxes) != 2 || first.Severity.String() != "high" {
		t.Fatalf("first incident %+v", first)
	}
	if got := Group(DefaultConfig(), as); got[0].ID != first.ID {
		t.Fatal("incident id not stable")
	}
}

func TestImpact(t *testing.T) {
	as := []alert.Alert{al(0, "D1", "medium", "vip@x", alert.Actor{Kind: alert.ActorSession, Value: "S"}, ipX)}
	incs := Group(DefaultConfig(), as)
	acc := []event.MailAccess{
		// the intruder: the stolen session from its own address
		{Time: t0, Tenant: "t", Mailbox: "vip@x", SessionIDs: []string{"S"}, IP: "198.18.9.9", RecordID: "1",
			Folders: []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<1>", "<2>"}}}},
		// the owner on the same session from home: not the intruder's
		{Time: t0.Add(time.Minute), Tenant: "t", Mailbox: "vip@x", SessionIDs: []string{"S"}, IP: "198.18.0.1", RecordID: "2",
			Folders: []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<3>"}}}},
		{Time: t0.Add(2 * time.Minute), Tenant: "t", Mailbox: "vip@x", IP: "198.18.9.9", RecordID: "3",
			Folders: []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<1>"}}}},
	}
	Assess(incs, acc)
	imp := incs[0].Impact
	if imp.MessageCount != 2 || imp.Accesses != 2 || !imp.EvidenceComplete || len(imp.Reads) != 2 || imp.Reads[0].Count != 2 {
		t.Fatalf("impact %+v", imp)
	}
	// Someone else's throttling during the activity makes it incomplete.
	acc = append(acc, event.MailAccess{Time: t0.Add(-time.Hour), Tenant: "t", Mailbox: "vip@x", Throttled: true, IP: "198.18.7.7", RecordID: "4"})
	Assess(incs, acc)
	if incs[0].Impact.EvidenceComplete || len(incs[0].Impact.IncompleteReasons) != 1 {
		t.Fatalf("throttle not reported: %+v", incs[0].Impact)
	}
}

// An incident says in words why it is one: each signal's meaning and
// innocent explanation, and a score that grows with corroboration.
func TestIncidentExplainsItself(t *testing.T) {
	one := Group(DefaultConfig(), []alert.Alert{al(0, "D1", "high", "vip@x", tokA)})
	two := Group(DefaultConfig(), []alert.Alert{al(0, "D1", "high", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokA)})
	if len(one) != 1 || len(two) != 1 {
		t.Fatalf("%d and %d incidents", len(one), len(two))
	}
	if two[0].Score <= one[0].Score {
		t.Errorf("corroborated score %d, single %d", two[0].Score, one[0].Score)
	}
	if len(two[0].Reasons) != 2 || two[0].Reasons[0].Signal != "D1" || two[0].Reasons[0].Means == "" || two[0].Reasons[1].Benign == "" {
		t.Errorf("reasons %+v", two[0].Reasons)
	}
	if !strings.Contains(two[0].Confidence, "2 independent signals") || !strings.Contains(two[0].Confidence, "(1 token)") || !strings.Contains(one[0].Confidence, "One high-fidelity signal") {
		t.Errorf("confidence %q / %q", two[0].Confidence, one[0].Confidence)
	}
}

// An attacker who rotates addresses and tokens every day but claims the
// same client and client string stays one incident; another actor on the
// same mailbox with another client stays another.
func TestRotatingAttackerIsOneIncident(t *testing.T) {
	fp := func(a alert.Alert, app, ua string) alert.Alert {
		a.Fields = map[string]string{"client_app_id": app, "user_agent": ua}
		return a
	}
	const outlook, rpc = "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Client=MSExchangeRPC"
	var as []alert.Alert
	for d := range 4 {
		tok := alert.Actor{Kind: alert.ActorToken, Value: fmt.Sprintf("forged-%d", d)}
		ip := alert.Actor{Kind: alert.ActorIP, Value: fmt.Sprintf("198.18.9.%d", d)}
		as = append(as, fp(al(time.Duration(d)*20*time.Hour, "D1", "high", "vip@x", tok, ip), outlook, rpc))
	}
	if got := Group(DefaultConfig(), as); len(got) != 1 {
		t.Fatalf("rotating attacker: %d incidents, want 1", len(got))
	}
	other := fp(al(30*time.Hour, "D1", "high", "vip@x", alert.Actor{Kind: alert.ActorToken, Value: "B"}), outlook, "python-requests/2.31")
	if got := Group(DefaultConfig(), append(as, other)); len(got) != 2 {
		t.Fatalf("two actors on one mailbox: %d incidents, want 2", len(got))
	}
}

// A client fingerprint seen in the counting alerts of more than
// BroadActorUsers mailboxes is what everyone runs: it must not chain one
// mailbox's alerts from unrelated actors into one incident.
func TestBroadFingerprintLinksNothing(t *testing.T) {
	fp := func(a alert.Alert) alert.Alert {
		a.Fields = map[string]string{"client_app_id": "d3590ed6-52b3-4102-aeff-aad2292ab01c", "user_agent": "Client=MSExchangeRPC"}
		return a
	}
	tok := func(v string) alert.Actor { return alert.Actor{Kind: alert.ActorToken, Value: v} }
	vip := []alert.Alert{
		fp(al(0, "D1", "high", "vip@x", tok("A"))),
		fp(al(20*time.Hour, "D1", "high", "vip@x", tok("B"))),
	}
	cfg := DefaultConfig()
	for _, c := range []struct {
		others int // other mailboxes whose alerts carry the same fingerprint
		want   int // incidents holding vip@x's alerts
	}{
		{cfg.BroadActorUsers - 1, 1}, // vip@x plus 9: narrow, links
		{cfg.BroadActorUsers, 2},     // vip@x plus 10: broad, links nothing
	} {
		as := append([]alert.Alert(nil), vip...)
		for u := range c.others {
			as = append(as, fp(al(time.Duration(u)*time.Minute, "D1", "high", fmt.Sprintf("u%d@x", u), tok(fmt.Sprintf("u%d", u)))))
		}
		n := 0
		for _, inc := range Group(cfg, as) {
			for _, m := range inc.Mailboxes {
				if m == "vip@x" {
					n++
				}
			}
		}
		if n != c.want {
			t.Errorf("fingerprint on %d mailboxes: vip@x's alerts in %d incidents, want %d", c.others+1, n, c.want)
		}
	}
}

// A high Sigma detection by the same actor as a behavioural alert pairs
// with it (an intruder who reads mail from a VPN range and sets
// forwarding to an outside address); two Sigma detections never pair,
// nor does a medium one, nor any with SigmaPairLevel "".
func TestSigmaPairsWithBehaviour(t *testing.T) {
	d4 := al(0, "D4", "high", "vip@x", ipX)
	sig := func(rule, level string) alert.Alert {
		a := al(30*time.Minute, rule, level, "", ipX)
		a.User = "vip@x" // Set-Mailbox names who changed it, not a mailbox
		return a
	}
	none := DefaultConfig()
	none.SigmaPairLevel = ""
	for _, c := range []struct {
		name   string
		cfg    Config
		alerts []alert.Alert
		want   int
	}{
		{"D4 high alone", DefaultConfig(), []alert.Alert{d4}, 0},
		{"D4 and a high Sigma rule by one actor", DefaultConfig(), []alert.Alert{d4, sig("forwarding-rule", "high")}, 1},
		{"D4 and a medium Sigma rule", DefaultConfig(), []alert.Alert{d4, sig("forwarding-rule", "medium")}, 0},
		{"two high Sigma rules", DefaultConfig(), []alert.Alert{sig("forwarding-rule", "high"), sig("spray-rule", "high")}, 0},
		{"pairing off", none, []alert.Alert{d4, sig("forwarding-rule", "high")}, 0},
	} {
		if got := Group(c.cfg, c.alerts); len(got) != c.want {
			t.Errorf("%s: %d incidents, want %d", c.name, len(got), c.want)
		}
	}
}
