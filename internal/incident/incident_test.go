package incident

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 16, 1, 0, 0, 0, time.UTC)

func al(at time.Duration, sig, level, mb string, actors ...Actor) Alert {
	return Alert{Time: t0.Add(at), Signal: sig, Level: level, Tenant: "t", Mailbox: mb, User: mb, Actors: actors, RecordIDs: []string{sig + at.String() + mb}}
}

var (
	tokA = Actor{ActorToken, "A"}
	tokB = Actor{ActorToken, "B"}
	ipX  = Actor{ActorIP, "198.18.9.9"}
)

func TestGroupCriterion(t *testing.T) {
	cases := []struct {
		name   string
		alerts []Alert
		want   int
	}{
		{"D1 alone", []Alert{al(0, "D1", "high", "vip@x", tokA)}, 1},
		{"D2 alone", []Alert{al(0, "D2", "high", "vip@x", tokA)}, 0},
		{"D2 and D7 by one actor", []Alert{al(0, "D2", "high", "vip@x", tokA), al(time.Minute, "D7", "medium", "vip@x", tokA)}, 1},
		{"D2 and D7 a day and a half apart", []Alert{al(0, "D2", "high", "vip@x", tokA), al(36*time.Hour, "D7", "medium", "vip@x", tokA)}, 0},
		{"two actors on one mailbox", []Alert{al(0, "D2", "high", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokB)}, 0},
		{"low alerts do not count", []Alert{al(0, "D2", "low", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokA)}, 0},
		{"enrichment does not count", []Alert{al(0, "D8", "medium", "vip@x", tokA), al(time.Minute, "D4", "high", "vip@x", tokA)}, 0},
		{"critical alone", []Alert{al(0, "D4", "critical", "vip@x", ipX)}, 1},
		{"posture never", []Alert{{Time: t0, Signal: "D9", Level: "high", Mailbox: "vip@x", Posture: true}}, 0},
	}
	for _, c := range cases {
		if got := Group(DefaultConfig(), c.alerts); len(got) != c.want {
			t.Errorf("%s: %d incidents, want %d", c.name, len(got), c.want)
		}
	}
}

func TestGroupLinks(t *testing.T) {
	anon := Alert{Time: t0.Add(2 * time.Hour), Signal: "D3", Level: "medium", Tenant: "t", Mailbox: "vip@x", Title: "volume"}
	as := []Alert{
		al(0, "D1", "high", "vip@x", tokA, ipX),
		al(time.Hour, "D1", "high", "other@x", tokB, ipX), // linked through the IP
		anon,
		al(3*time.Hour, "D1", "high", "third@x", Actor{ActorToken, "C"}),
	}
	incs := Group(DefaultConfig(), as)
	if len(incs) != 2 {
		t.Fatalf("%d incidents", len(incs))
	}
	first := incs[0]
	if first.AlertCount != 3 || len(first.Mailboxes) != 2 || first.Severity != "high" {
		t.Fatalf("first incident %+v", first)
	}
	if got := Group(DefaultConfig(), as); got[0].ID != first.ID {
		t.Fatal("incident id not stable")
	}
}

func TestImpact(t *testing.T) {
	as := []Alert{al(0, "D1", "medium", "vip@x", Actor{ActorSession, "S"}, ipX)}
	incs := Group(DefaultConfig(), as)
	acc := []Access{
		// the intruder: the stolen session from its own address
		{Time: t0, Tenant: "t", Mailbox: "vip@x", SessionIDs: []string{"S"}, IP: "198.18.9.9", RecordID: "1",
			Folders: []FolderRead{{Path: `\Inbox`, Messages: []string{"<1>", "<2>"}}}},
		// the owner on the same session from home: not the intruder's
		{Time: t0.Add(time.Minute), Tenant: "t", Mailbox: "vip@x", SessionIDs: []string{"S"}, IP: "198.18.0.1", RecordID: "2",
			Folders: []FolderRead{{Path: `\Inbox`, Messages: []string{"<3>"}}}},
		{Time: t0.Add(2 * time.Minute), Tenant: "t", Mailbox: "vip@x", IP: "198.18.9.9", RecordID: "3",
			Folders: []FolderRead{{Path: `\Inbox`, Messages: []string{"<1>"}}}},
	}
	Assess(incs, acc)
	imp := incs[0].Impact
	if imp.MessageCount != 2 || imp.Accesses != 2 || !imp.EvidenceComplete || len(imp.Reads) != 2 || imp.Reads[0].Count != 2 {
		t.Fatalf("impact %+v", imp)
	}
	// Someone else's throttling during the activity makes it incomplete.
	acc = append(acc, Access{Time: t0.Add(-time.Hour), Tenant: "t", Mailbox: "vip@x", Throttled: true, IP: "198.18.7.7", RecordID: "4"})
	Assess(incs, acc)
	if incs[0].Impact.EvidenceComplete || len(incs[0].Impact.IncompleteReasons) != 1 {
		t.Fatalf("throttle not reported: %+v", incs[0].Impact)
	}
}
