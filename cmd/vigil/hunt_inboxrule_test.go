package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// huntDetections runs hunt --format jsonl and returns "level user" for
// each detection of the given rule titles' prefix.
func huntDetections(t *testing.T, input, titlePrefix string) []string {
	t.Helper()
	q := filepath.Join(t.TempDir(), "q.jsonl")
	code, out, errs := runVigil(t, "hunt", "--format", "jsonl", "--quarantine", q, input)
	if code != 0 {
		t.Fatalf("hunt %s: exit %d: %s", input, code, errs)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var d struct {
			Title, Level, User, Source string
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if strings.HasPrefix(d.Title, titlePrefix) {
			if d.Source != "m365.inboxrule" {
				t.Errorf("%s detection on source %s", d.Title, d.Source)
			}
			got = append(got, d.Level+" "+d.User)
		}
	}
	sort.Strings(got)
	return got
}

func TestHuntInboxRuleSnapshot(t *testing.T) {
	got := huntDetections(t, filepath.Join(decoderFixtures, "inbox_rules.json"), "Inbox Rule")
	want := []string{
		"high dana@contoso.example",    // forwards to fabrikam.example
		"high grace@contoso.example",   // redirects to a private address
		"low grace@contoso.example",    // soft-deletes newsletters
		"medium frank miller",          // moves to RSS Subscriptions
		"medium grace@contoso.example", // moves to a folder named ".."
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inbox rule detections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// On the real export of a lab tenant: the rules that send mail outside
// (one to protonmail that also deletes invoice mail, a redirect of pay slips
// to gmail), hide security alerts, or delete mail.
func TestHuntInboxRuleSnapshotReal(t *testing.T) {
	csv, err := filepath.Abs("../../../shared/data/invictus-microsoft-extractor-suite/MailboxRules.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(csv); err != nil {
		t.Skipf("shared real-data fixtures not found at %s: %v", csv, err)
	}
	got := huntDetections(t, csv, "Inbox Rule")
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	want := map[string]int{
		"high jacksone@bonacu.onmicrosoft.com":   1, // forward to protonmail
		"high davism@bonacu.onmicrosoft.com":     2, // redirects to gmail
		"high richardd16@bonacu.onmicrosoft.com": 1, // forward to bauscn.com
		"high sarahr27@bonacu.onmicrosoft.com":   1, // forward to gmail
		"medium jacksone@bonacu.onmicrosoft.com": 1, // deletes mail about invoices and payments
		"medium garciad@bonacu.onmicrosoft.com":  1, // deletes mail from security@alerts.com
	}
	lows := 0
	for k, n := range count {
		if strings.HasPrefix(k, "low ") {
			lows += n
			continue
		}
		if want[k] != n {
			t.Errorf("%s: %d detections, want %d", k, n, want[k])
		}
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d detections, want %d", k, count[k], n)
		}
	}
	// 11 rules delete mail; the two above are medium, the rest low.
	if lows != 9 {
		t.Errorf("%d low detections (rules deleting mail), want 9: %v", lows, got)
	}
}
