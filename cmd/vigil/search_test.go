package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
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
