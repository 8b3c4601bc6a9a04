package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/simulate"
)

func TestSearchCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	q := filepath.Join(t.TempDir(), "q.jsonl")
	ual := filepath.Join(decoderFixtures, "ual_mailitemsaccessed.jsonl")

	// Ingest without the index: search says how far behind it is.
	code, _, errs := runVigil(t, "ingest", "--data", dir, "--quiet", "--no-index", "--quarantine", q, ual)
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	code, _, errs = runVigil(t, "search", "--data", dir, "op:MailItemsAccessed")
	if code != 2 || !strings.Contains(errs, "no index (run vigil reindex") {
		t.Fatalf("search without an index: exit %d: %s", code, errs)
	}
	code, out, errs := runVigil(t, "reindex", "--data", dir)
	if code != 0 || !regexp.MustCompile(`reindexed journal entries 0\.\.\d+: [1-9]\d* events`).MatchString(out) {
		t.Fatalf("reindex: exit %d: %s%s", code, out, errs)
	}

	// More records, appended without indexing, then with.
	code, _, errs = runVigil(t, "ingest", "--data", dir, "--quiet", "--no-index", "--quarantine", q, decoderFixtures)
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	code, _, errs = runVigil(t, "search", "--data", dir, "--count")
	if code != 0 || !regexp.MustCompile(`the index is [1-9]\d* journal entries behind`).MatchString(errs) {
		t.Fatalf("behind index: exit %d: %s", code, errs)
	}
	code, out, errs = runVigil(t, "search", "--data", dir, "--wait", "--count")
	if code != 0 || strings.Contains(errs, "behind") || !strings.Contains(errs, "index caught up") {
		t.Fatalf("--wait: exit %d: %s%s", code, out, errs)
	}
	total, _ := strconv.Atoi(strings.TrimSpace(strings.Split(out, "\n")[1]))

	// Each JSON line of a query is a MailItemsAccessed event, and --count agrees.
	code, out, errs = runVigil(t, "search", "--data", dir, "--format", "jsonl", "--limit", "100000", "op:mailitemsaccessed")
	if code != 0 {
		t.Fatalf("search: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["op"] != "MailItemsAccessed" {
			t.Fatalf("line %s: %v", l, err)
		}
	}
	code, out, _ = runVigil(t, "search", "--data", dir, "--count", "op:mailitemsaccessed")
	if code != 0 || !strings.HasSuffix(out, "\n"+strconv.Itoa(len(lines))+"\n") {
		t.Fatalf("--count %q, %d lines", out, len(lines))
	}
	code, out, _ = runVigil(t, "search", "--data", dir, "--count", "NOT op:mailitemsaccessed")
	if n, _ := strconv.Atoi(strings.TrimSpace(strings.Split(out, "\n")[1])); code != 0 || n+len(lines) != total {
		t.Fatalf("NOT: %d + %d != %d", n, len(lines), total)
	}

	// Who read messages: mail_access, grouped.
	code, out, errs = runVigil(t, "search", "--data", dir, "--table", "mail_access", "--group-by", "mailbox", "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "mailbox,count\n") || strings.Count(out, "\n") < 2 {
		t.Fatalf("group-by: exit %d: %s%s", code, out, errs)
	}

	// The table's header is plain column names, aligned.
	code, out, errs = runVigil(t, "search", "--data", dir, "--table", "mail_access", "--group-by", "mailbox")
	if code != 0 || !regexp.MustCompile(`^MAILBOX +COUNT\n`).MatchString(out) {
		t.Fatalf("table header: exit %d: %q %s", code, out, errs)
	}

	// A bad term is named, with its column.
	code, _, errs = runVigil(t, "search", "--data", dir, "user:a", "AND", "ip:10.0.0.0/99")
	if code != 2 || !strings.Contains(errs, `at column 12, "ip:10.0.0.0/99": not an address or CIDR prefix`) {
		t.Fatalf("bad query: exit %d: %s", code, errs)
	}
	// SQL is read-only.
	code, _, errs = runVigil(t, "search", "--data", dir, "--sql", "DELETE FROM events")
	if code != 2 || !strings.Contains(errs, "read-only") {
		t.Fatalf("--sql DELETE: exit %d: %s", code, errs)
	}
	code, out, errs = runVigil(t, "search", "--data", dir, "--sql", "SELECT count(*) AS n FROM unindexed")
	if code != 0 || out != "N\n0\n" {
		// Every record the journal holds here decodes (ingest quarantines the rest).
		t.Fatalf("unindexed: exit %d: %q %s", code, out, errs)
	}

	// An IP's timeline.
	code, out, errs = runVigil(t, "search", "--data", dir, "--format", "csv", "--limit", "1", "kind:mail")
	if code != 0 {
		t.Fatal(errs)
	}
	row := strings.Split(strings.Split(out, "\n")[1], ",")
	ip := row[8]
	code, out, errs = runVigil(t, "timeline", "--data", dir, "--ip", ip, "--format", "jsonl")
	if code != 0 || !strings.Contains(out, `"ip":"`+ip+`"`) {
		t.Fatalf("timeline --ip %s: exit %d: %s%s", ip, code, out, errs)
	}
	code, _, errs = runVigil(t, "timeline", "--data", dir, "--ip", ip, "--user", "x")
	if code != 2 || !strings.Contains(errs, "give one of") {
		t.Fatalf("two entities: exit %d: %s", code, errs)
	}
}

// vigil reindex runs vigil serve's detection over the journal: the
// forged-token intrusion's alerts (high: the incident they make is
// critical) are found with level:high and by their rule, over the alerts table and over the events they were
// raised on; a second reindex writes the same alerts and incidents.
func TestReindexFillsAlertsAndIncidents(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	// The records in time order, as a live feed appends them (detection
	// reads the journal in its order).
	_, recs := simulatedFeed(t, simulate.Config{Users: 15, Days: 14, Seed: 3,
		Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs)
	var feed bytes.Buffer
	for _, r := range recs {
		feed.Write(r)
		feed.WriteByte('\n')
	}
	feedFile := filepath.Join(dir, "feed.jsonl")
	if err := os.WriteFile(feedFile, feed.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "journal")
	if code, _, errs := runVigil(t, "ingest", "--data", data, "--quiet", "--no-index", "--quarantine", filepath.Join(dir, "q.jsonl"), feedFile); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	nets := filepath.Join(logs, simulate.NetworksFile)
	dump := func() string {
		t.Helper()
		code, out, errs := runVigil(t, "search", "--data", data, "--format", "csv", "--limit", "100000", "--sql",
			"SELECT * EXCLUDE (raised) FROM alerts ORDER BY id")
		if code != 0 {
			t.Fatalf("sql: exit %d: %s", code, errs)
		}
		code, incs, errs := runVigil(t, "search", "--data", data, "--format", "csv", "--sql", "SELECT * FROM incidents ORDER BY id")
		if code != 0 {
			t.Fatalf("sql: exit %d: %s", code, errs)
		}
		return out + incs
	}
	code, out, errs := runVigil(t, "reindex", "--data", data, "--networks", nets, "--index-memory", "256MiB")
	m := regexp.MustCompile(`detection read \d+ journal entries \(\d+ events\) in \S+: ([1-9]\d*) alerts \((\d+) linked to their event\), ([1-9]\d*) incidents`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("reindex: exit %d: %s%s", code, out, errs)
	}
	if linked, _ := strconv.Atoi(m[2]); linked == 0 {
		t.Errorf("no alert linked to its event: %s", out)
	}
	first := dump()

	code, out, errs = runVigil(t, "search", "--data", data, "--table", "alerts", "--format", "jsonl", "--limit", "100000", "level:high")
	if code != 0 || out == "" {
		t.Fatalf("level:high: exit %d: %q %s", code, out, errs)
	}
	rules := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var a map[string]any
		if err := json.Unmarshal([]byte(l), &a); err != nil || a["level"] != "high" {
			t.Fatalf("level:high row %s: %v", l, err)
		}
		rules[a["rule"].(string)] = true
	}
	if !rules["D1"] {
		t.Errorf("no high D1 (mail read with a token no sign-in issued) alert: rules %v", rules)
	}
	code, out, errs = runVigil(t, "search", "--data", data, "--table", "alerts", "--count", `rule:"mail read with a token and session no sign-in issued" AND level:high`)
	if code != 0 || strings.TrimSpace(out) == "COUNT\n0" {
		t.Fatalf("rule by title: exit %d: %q %s", code, out, errs)
	}
	code, out, errs = runVigil(t, "search", "--data", data, "--sql", "SELECT count(*) AS n FROM incidents WHERE severity = 'critical' AND messages_read > 0")
	if code != 0 || strings.TrimSpace(out) != "N\n1" {
		t.Fatalf("no critical incident with its impact: exit %d: %q %s", code, out, errs)
	}
	// The events the D1 alerts were raised on are the intruder's mail reads.
	code, out, errs = runVigil(t, "search", "--data", data, "--format", "jsonl", "--limit", "100000", "level:high AND rule:D1")
	if code != 0 || out == "" {
		t.Fatalf("events of critical alerts: exit %d: %q %s", code, out, errs)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil || e["kind"] != "mail" {
			t.Fatalf("event of a D1 alert %s: %v", l, err)
		}
	}
	code, _, errs = runVigil(t, "search", "--data", data, "--table", "alerts", "level:severe")
	if code != 2 || !strings.Contains(errs, `"level:severe": level is one of`) {
		t.Fatalf("level:severe: exit %d: %s", code, errs)
	}
	code, _, errs = runVigil(t, "search", "--data", data, "--index-memory", "1MiB", "--count")
	if code != 2 || !strings.Contains(errs, `index memory "1MiB" (--index-memory, server: index_memory): at least 64MiB`) {
		t.Fatalf("--index-memory 1MiB: exit %d: %s", code, errs)
	}

	if code, out, errs = runVigil(t, "reindex", "--data", data, "--networks", nets); code != 0 {
		t.Fatalf("second reindex: exit %d: %s%s", code, out, errs)
	}
	if again := dump(); again != first {
		t.Errorf("a second reindex wrote other alerts or incidents:\n%s\nfirst:\n%s", again, first)
	}
	if code, out, errs = runVigil(t, "reindex", "--data", data, "--no-detect"); code != 0 || strings.Contains(out, "detection read") {
		t.Fatalf("reindex --no-detect: exit %d: %s%s", code, out, errs)
	}
	if code, out, _ = runVigil(t, "search", "--data", data, "--table", "alerts", "--count"); code != 0 || strings.TrimSpace(out) != "COUNT\n0" {
		t.Errorf("alerts after reindex --no-detect: exit %d: %q", code, out)
	}
}

func TestParseIndexMemory(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"512MiB", 512 << 20, ""},
		{"8GiB", 8 << 30, ""},
		{"2G", 2 << 30, ""},
		{"1.5gb", 3 << 29, ""},
		{"67108864", 64 << 20, ""},
		{"1MiB", 0, "at least 64MiB"},
		{"lots", 0, "want a size"},
		{"-1GiB", 0, "want a size"},
		{"2PiB", 0, "want a size"},
		{"9999TiB", 0, "more than a pebibyte"},
	} {
		got, err := parseIndexMemory(c.in)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("%q: %d, %v; want %d", c.in, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %d, %v; want an error saying %q", c.in, got, err, c.err)
		}
	}
}

// vigil reindex --cpuprofile writes a Go CPU profile (gzipped protobuf
// whose string table names the cpu/nanoseconds sample type, what go tool
// pprof reads), and an unwritable path is refused before any work.
func TestReindexCPUProfile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "journal")
	ual := filepath.Join(decoderFixtures, "ual_mailitemsaccessed.jsonl")
	if code, _, errs := runVigil(t, "ingest", "--data", data, "--quiet", "--no-index", "--quarantine", filepath.Join(dir, "q.jsonl"), ual); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	prof := filepath.Join(dir, "cpu.pprof")
	if code, out, errs := runVigil(t, "reindex", "--data", data, "--no-detect", "--cpuprofile", prof); code != 0 {
		t.Fatalf("reindex: exit %d: %s%s", code, out, errs)
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatalf("no profile: %v", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile is not gzipped: %v", err)
	}
	b, err := io.ReadAll(z)
	if err != nil || !bytes.Contains(b, []byte("nanoseconds")) || !bytes.Contains(b, []byte("cpu")) {
		t.Fatalf("profile holds no CPU sample type (%d bytes, %v)", len(b), err)
	}

	code, out, errs := runVigil(t, "reindex", "--data", data, "--no-detect", "--cpuprofile", filepath.Join(dir, "no", "such", "dir", "p"))
	if code == 0 || !strings.Contains(errs, "--cpuprofile") {
		t.Fatalf("unwritable profile: exit %d: %s%s", code, out, errs)
	}
}
