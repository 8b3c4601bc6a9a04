package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func runVigil(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

const decoderFixtures = "../../internal/source/testdata"

func TestHuntJSONLOnFixtures(t *testing.T) {
	q := filepath.Join(t.TempDir(), "q.jsonl")
	code, out, errs := runVigil(t, "hunt", "--format", "jsonl", "--quarantine", q, decoderFixtures)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rules []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var d map[string]any
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		for _, k := range []string{"time", "rule_id", "title", "level", "tags", "source", "user", "operation", "record_id"} {
			if _, ok := d[k]; !ok {
				t.Errorf("detection lacks %q: %s", k, sc.Text())
			}
		}
		rules = append(rules, d["title"].(string)+"@"+d["record_id"].(string))
	}
	// The Purview fixture holds a forwarding inbox rule and SMTP forwarding.
	got := strings.Join(rules, "\n")
	for _, want := range []string{"Inbox Rule Forwards Or Redirects Mail@aa11", "Mailbox Forwarding To SMTP Address Set@aa12"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing detection %q in:\n%s", want, got)
		}
	}
	// Bad fixture records are quarantined, counted, and named in the summary.
	data, err := os.ReadFile(q)
	if err != nil {
		t.Fatalf("quarantine file not written: %v", err)
	}
	// Six bad records, and the inbox rule of inbox_rules.json without an
	// owner; the other inbox rules give 5 detections.
	if n := strings.Count(string(data), "\n"); n != 7 {
		t.Errorf("quarantine holds %d records, want 7", n)
	}
	for _, want := range []string{"quarantined: 7 records", "inbox rule snapshot 1", "detections:  7", "m365.ual 12", "m365.inboxrule 3", q} {
		if !strings.Contains(errs, want) {
			t.Errorf("summary lacks %q:\n%s", want, errs)
		}
	}
}

func TestHuntMinLevelAndFormats(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"table", "csv", "html"} {
		out := filepath.Join(dir, "out."+f)
		code, _, errs := runVigil(t, "hunt", "--quiet", "--format", f, "--out", out, "--min-level", "high",
			"--quarantine", filepath.Join(dir, "q"), decoderFixtures)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", f, code, errs)
		}
		b, _ := os.ReadFile(out)
		if !strings.Contains(string(b), "Mailbox Forwarding To SMTP Address Set") || strings.Contains(string(b), "Inbox Rule Forwards") {
			t.Errorf("%s output with --min-level high:\n%s", f, b)
		}
	}
}

func TestHuntUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"hunt"},
		{"hunt", "--format", "xml", decoderFixtures},
		{"hunt", "--min-level", "severe", decoderFixtures},
		{"hunt", "/does/not/exist"},
		{"hunt", "--rules", "/does/not/exist", decoderFixtures},
	} {
		if code, _, _ := runVigil(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestHuntStdinAndExtraRules(t *testing.T) {
	rule := `title: Test Mailbox Login
id: 11111111-2222-3333-4444-555555555555
status: test
logsource: {product: m365, service: exchange}
detection:
  sel: {Operation: MailboxLogin, UserId|endswith: '@contoso.com'}
  condition: sel
level: low
`
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yml"), []byte(rule), 0o644)
	input := `{"CreationTime":"2023-06-16T06:00:00","Id":"m1","Operation":"MailboxLogin","RecordType":2,"UserId":"a@contoso.com","Workload":"Exchange"}` + "\n" +
		`{"CreationTime":"2023-06-16T06:00:01","Id":"m2","Operation":"MailboxLogin","RecordType":2,"UserId":"a@fabrikam.com","Workload":"Exchange"}` + "\n"
	old := os.Stdin
	r, w, _ := os.Pipe()
	os.Stdin = r
	defer func() { os.Stdin = old }()
	go func() { w.WriteString(input); w.Close() }()
	code, out, errs := runVigil(t, "hunt", "--no-builtin", "--rules", dir, "--format", "csv", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "Test Mailbox Login") || !strings.Contains(lines[1], ",m1,") {
		t.Errorf("csv output:\n%s", out)
	}
}

func TestHuntSharedData(t *testing.T) {
	shared, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("shared real-data fixtures not found at %s: %v", shared, err)
	}
	q := filepath.Join(t.TempDir(), "q.jsonl")
	var inputs []string
	for _, d := range []string{"graph2otel-live-fixtures", "invictus-microsoft-extractor-suite/20250502131826-AuditLogs.json",
		"invictus-microsoft-extractor-suite/20250502132320-servicePrincipal-SignInLogs.json",
		"invictus-microsoft-extractor-suite/202504220931-RiskyDetections.csv", "otrf-security-datasets", "plaso-test-data"} {
		inputs = append(inputs, filepath.Join(shared, d))
	}
	args := append([]string{"hunt", "--format", "jsonl", "--quarantine", q}, inputs...)
	code, out, errs := runVigil(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(q); err == nil {
		b, _ := os.ReadFile(q)
		t.Errorf("real data was quarantined:\n%.2000s", b)
	}
	// The risky-detections export holds anonymizedIPAddress and
	// unfamiliarFeatures detections that SigmaHQ's riskdetection rules name.
	for _, want := range []string{"Anonymous IP Address", "Unfamiliar Sign-In Properties"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q detection on the shared data; summary:\n%s", want, errs)
		}
	}
	t.Logf("summary:\n%s", errs)
}

func TestHuntFromJournalMatchesFiles(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "journal")
	inputs := []string{decoderFixtures + "/ual_mailitemsaccessed.jsonl", decoderFixtures + "/purview_export.csv", decoderFixtures + "/gws_activities.json"}
	q := filepath.Join(dir, "q.jsonl")
	if code, _, errs := runVigil(t, append([]string{"ingest", "--data", data, "--quarantine", q}, inputs...)...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	code, fromFiles, errs := runVigil(t, append([]string{"hunt", "--format", "csv", "--quarantine", q}, inputs...)...)
	if code != 0 {
		t.Fatalf("hunt files: %s", errs)
	}
	code, fromJournal, errs := runVigil(t, "hunt", "--format", "csv", "--quarantine", q, "--journal", data)
	if code != 0 {
		t.Fatalf("hunt journal: %s", errs)
	}
	// Same detections; only the file/line provenance columns differ.
	strip := func(csv string) []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(csv), "\n") {
			f := strings.Split(l, ",")
			out = append(out, strings.Join(f[:10], ","))
		}
		return out
	}
	a, b := strip(fromFiles), strip(fromJournal)
	if len(a) != 3 || strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("files:\n%s\njournal:\n%s", fromFiles, fromJournal)
	}
	if !strings.Contains(errs, "quarantined: 0") {
		t.Errorf("journal records were quarantined:\n%s", errs)
	}
}

func TestHuntBehavioursOnSimulatedIntrusion(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if code, _, errs := runVigil(t, "simulate", "--out", logs, "--users", "30", "--days", "14", "--seed", "3", "--campaign", "forged-token"); code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, errs)
	}
	truth, err := os.ReadFile(filepath.Join(logs, "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Campaigns []struct {
			Actor struct {
				TokensWithoutSignIn []string `json:"tokens_without_sign_in"`
			} `json:"actor"`
		} `json:"campaigns"`
	}
	if err := json.Unmarshal(truth, &tr); err != nil || len(tr.Campaigns) != 1 || len(tr.Campaigns[0].Actor.TokensWithoutSignIn) == 0 {
		t.Fatalf("truth: %v", err)
	}
	code, out, errs := runVigil(t, "hunt", "--behaviours", "--min-level", "medium", "--format", "jsonl",
		"--networks", filepath.Join(logs, "networks.csv"), "--quarantine", filepath.Join(dir, "q"), logs)
	if code != 0 {
		t.Fatalf("hunt: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "quarantined: 0") {
		t.Errorf("simulated logs were quarantined:\n%s", errs)
	}
	// D1 (mail read with a token no sign-in issued) names the forged tokens.
	forged := map[string]bool{}
	for _, tok := range tr.Campaigns[0].Actor.TokensWithoutSignIn {
		forged[tok] = true
	}
	found := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d struct {
			RuleID string `json:"rule_id"`
			Author string `json:"author"`
			Fields map[string]string
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		if d.RuleID != "D1" {
			continue
		}
		for _, v := range d.Fields {
			if forged[v] {
				found++
			}
		}
	}
	if found == 0 {
		t.Errorf("no D1 detection names a forged token; output:\n%.3000s", out)
	}
}

// A hunt over a directory does not read its own quarantine file (the
// default one lands in the working directory, which is often the one
// hunted): a second run reports what the first did.
func TestHuntDoesNotReadItsQuarantine(t *testing.T) {
	dir := t.TempDir()
	input := `{"CreationTime":"2023-06-16T06:00:00","Id":"m1","Operation":"MailboxLogin","RecordType":2,"UserId":"a@contoso.com","Workload":"Exchange"}` + "\n" +
		`{"CreationTime":"2023-06-16T06:00:01","Id":"m2",` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "ual.jsonl"), []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "vigil-quarantine.jsonl")
	var first []byte
	for run := 1; run <= 2; run++ {
		code, _, errs := runVigil(t, "hunt", "--quarantine", q, dir)
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, errs)
		}
		if !strings.Contains(errs, "1 files, 2 records") || !strings.Contains(errs, "quarantined: 1 records") {
			t.Errorf("run %d summary:\n%s", run, errs)
		}
		data, err := os.ReadFile(q)
		if err != nil {
			t.Fatal(err)
		}
		if run == 1 {
			first = data
		} else if !bytes.Equal(data, first) {
			t.Errorf("quarantine after the second run:\n%s\nafter the first:\n%s", data, first)
		}
	}
	// Named explicitly, it would be truncated while being read.
	if code, _, errs := runVigil(t, "hunt", "--quarantine", q, q); code != 2 || !strings.Contains(errs, "also an output") {
		t.Errorf("hunting the quarantine file itself: exit %d: %s", code, errs)
	}
}

func TestIngestDoesNotReadItsQuarantine(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	os.WriteFile(filepath.Join(logs, "ual.jsonl"), []byte(`{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"MailboxLogin","RecordType":2,"UserId":"a@x"}`+"\n{bad\n"), 0o644)
	q := filepath.Join(logs, "vigil-quarantine.jsonl")
	data := filepath.Join(dir, "journal")
	for run := 1; run <= 2; run++ {
		code, out, errs := runVigil(t, "ingest", "--data", data, "--quarantine", q, logs)
		if code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, errs)
		}
		if !strings.Contains(out, "quarantined 1") {
			t.Errorf("run %d read its own quarantine back: %s", run, out)
		}
	}
}

func TestHuntRemovesStaleQuarantine(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.jsonl")
	os.WriteFile(q, []byte(`{"reason":"from an earlier run"}`+"\n"), 0o644)
	good := filepath.Join(dir, "good.jsonl")
	os.WriteFile(good, []byte(`{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"MailboxLogin","RecordType":2,"UserId":"a@x"}`+"\n"), 0o644)
	if code, _, errs := runVigil(t, "hunt", "--quarantine", q, good); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(q); !os.IsNotExist(err) {
		t.Errorf("stale quarantine file still there after a clean run: %v", err)
	}
}

func TestHuntSaysWhenRulesRepeatBuiltins(t *testing.T) {
	dir := t.TempDir()
	// A copy of a built-in rule under another directory: same id.
	b, err := os.ReadFile("../../rules/vigil/m365_inbox_rule_forwarding.yml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "copy.yml"), b, 0o644)
	code, _, errs := runVigil(t, "hunt", "--rules", dir, "--quarantine", filepath.Join(dir, "q"), decoderFixtures+"/ual_mailitemsaccessed.jsonl")
	if code != 0 || !strings.Contains(errs, "1 rules skipped: their id is already loaded") || strings.Contains(errs, "refused") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}

// Logs each in time order are merged as they are read, and so are logs
// newest first (a Purview export), read back to front; logs in neither
// order, or newest first in gzip, are not, and the hunt starts again and
// sorts them. All give the same timeline, and the quarantine holds a bad
// record once (the first attempt's quarantine is dropped).
func TestHuntMergesOrderedLogsAndSortsOthers(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if code, _, errs := runVigil(t, "simulate", "--out", logs, "--users", "20", "--days", "10", "--seed", "4", "--campaign", "forged-token"); code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, errs)
	}
	const bad = `{"CreationTime":"2026-03-05T06:00:01","Id":"broken",`
	hunt := func(name string, perm func([][]byte), gz bool) (timeline, errs, quarantine string) {
		in := filepath.Join(dir, name)
		if err := os.Mkdir(in, 0o755); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range []string{"ual.jsonl", "signins.jsonl", "gws.jsonl"} {
			b, err := os.ReadFile(filepath.Join(logs, f))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
			if f == "signins.jsonl" {
				lines = slices.Insert(lines, len(lines)/2, []byte(bad))
			}
			perm(lines)
			p := filepath.Join(in, f)
			data := append(bytes.Join(lines, []byte("\n")), '\n')
			if gz {
				var b bytes.Buffer
				w := gzip.NewWriter(&b)
				w.Write(data)
				w.Close()
				p, data = p+".gz", b.Bytes()
			}
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		q := filepath.Join(dir, name+".quarantine")
		args := append([]string{"hunt", "--behaviours", "--format", "jsonl", "--networks", filepath.Join(logs, "networks.csv"), "--quarantine", q}, paths...)
		code, out, errs := runVigil(t, args...)
		if code != 0 {
			t.Fatalf("%s: hunt: exit %d: %s", name, code, errs)
		}
		qb, err := os.ReadFile(q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out, errs, string(qb)
	}
	inOrder, errs, q := hunt("in-order", func([][]byte) {}, false)
	if strings.Contains(errs, "sorting the inputs") {
		t.Errorf("logs in time order were sorted:\n%s", errs)
	}
	if n := strings.Count(q, `\"Id\":\"broken\"`); n != 1 || strings.Count(q, "\n") != 1 {
		t.Errorf("in order: quarantine holds the bad record %d times:\n%s", n, q)
	}
	if !strings.Contains(inOrder, `"rule_id":"D1"`) {
		t.Fatalf("no D1 alert to compare:\n%.2000s", inOrder)
	}
	reversed, errs, q := hunt("newest-first", slices.Reverse[[][]byte], false)
	if strings.Contains(errs, "sorting the inputs") || !strings.Contains(errs, "3 input(s) read back to front") {
		t.Errorf("newest first: the hunt does not say it read the inputs back to front:\n%s", errs)
	}
	if n := strings.Count(q, `\"Id\":\"broken\"`); n != 1 || strings.Count(q, "\n") != 1 {
		t.Errorf("newest first: quarantine holds the bad record %d times:\n%s", n, q)
	}
	// Newest first but its two halves swapped: its first record is newer
	// than its last, and still it is in no order.
	rotated, errs, q := hunt("rotated", func(l [][]byte) { slices.Reverse(l); slices.Reverse(l[:len(l)/2]); slices.Reverse(l[len(l)/2:]) }, false)
	if !strings.Contains(errs, "not in event-time order") || !strings.Contains(errs, "sorting the inputs instead") {
		t.Errorf("in no order: the hunt does not say it sorted:\n%s", errs)
	}
	if n := strings.Count(q, `\"Id\":\"broken\"`); n != 1 || strings.Count(q, "\n") != 1 {
		t.Errorf("in no order: quarantine holds the bad record %d times:\n%s", n, q)
	}
	gzipped, errs, _ := hunt("newest-first-gzip", slices.Reverse[[][]byte], true)
	if strings.Contains(errs, "read back to front") || !strings.Contains(errs, "sorting the inputs instead") {
		t.Errorf("newest first in gzip: the hunt does not say it sorted:\n%s", errs)
	}
	// Alerts name their record's file and line, which differ.
	where := regexp.MustCompile(`"file":"[^"]*","line":[0-9]+,`)
	inOrder = where.ReplaceAllString(inOrder, "")
	for name, got := range map[string]string{"newest first": reversed, "in no order": rotated, "newest first in gzip": gzipped} {
		if got = where.ReplaceAllString(got, ""); got != inOrder {
			t.Errorf("%s: timeline differs from the one in order:\n%.2000s\nwant\n%.2000s", name, got, inOrder)
		}
	}
}
