package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// ingestCounts runs vigil ingest and returns its appended and duplicate
// counts and the journal's entry count.
func ingestCounts(t *testing.T, dir, q string, inputs ...string) (appended, dups, entries int) {
	t.Helper()
	args := append([]string{"ingest", "--data", dir, "--quiet", "--quarantine", q}, inputs...)
	code, out, errs := runVigil(t, args...)
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s%s", code, out, errs)
	}
	m := regexp.MustCompile(`appended (\d+), duplicate (\d+)`).FindStringSubmatch(out)
	j := regexp.MustCompile(`journal: (\d+) entries`).FindStringSubmatch(out)
	if m == nil || j == nil {
		t.Fatalf("ingest output: %s", out)
	}
	a, _ := strconv.Atoi(m[1])
	d, _ := strconv.Atoi(m[2])
	n, _ := strconv.Atoi(j[1])
	return a, d, n
}

// Ingesting the same inputs twice adds nothing the second time, whether
// or not their records carry an id of their own: records without one
// (Defender advanced-hunting rows, generic JSON, CSV rows without an id
// column, flattened Workspace events, inbox-rule snapshots) are
// deduplicated by the hash of their canonical form.
func TestReingestAddsNothing(t *testing.T) {
	inputs := []string{decoderFixtures, "../../bench/sigmago/testdata/events.jsonl"}
	shared, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(shared); err == nil {
		inputs = append(inputs, shared)
	} else {
		t.Logf("shared real-data fixtures not found at %s (they live beside the repository in CI): only the repository's fixtures are re-ingested", shared)
	}
	dir := filepath.Join(t.TempDir(), "journal")
	q := filepath.Join(t.TempDir(), "q.jsonl")
	a1, d1, n1 := ingestCounts(t, dir, q, inputs...)
	if a1 == 0 || n1 != a1 {
		t.Fatalf("first ingest appended %d, journal holds %d", a1, n1)
	}
	a2, d2, n2 := ingestCounts(t, dir, q, inputs...)
	t.Logf("first ingest: appended %d, duplicate %d; second: appended %d, duplicate %d", a1, d1, a2, d2)
	if a2 != 0 || n2 != n1 {
		t.Errorf("second ingest of the same inputs appended %d entries (journal %d -> %d)", a2, n1, n2)
	}
	if d2 != a1+d1 {
		t.Errorf("second ingest acknowledged %d duplicates, want every record of the first (%d appended + %d duplicate)", d2, a1, d1)
	}
}

// Export writes valid JSON (and so valid UTF-8) whatever bytes a record
// holds: a record that is not valid UTF-8 is exported in raw_base64, byte
// for byte, never spliced into the line.
func TestExportInvalidUTF8(t *testing.T) {
	in := filepath.Join(t.TempDir(), "bad\xffname.jsonl")
	rec := []byte("{\"time\":\"2024-03-04T08:15:30Z\",\"user\":\"a@x\",\"subject\":\"caf\xe9 \xff\xfe\",\"id\":\"r\xc3\"}")
	ok := []byte(`{"time":"2024-03-04T08:15:31Z","user":"b@x","subject":"café"}`)
	if err := os.WriteFile(in, append(append(append(rec, '\n'), ok...), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "journal")
	if a, _, _ := ingestCounts(t, dir, filepath.Join(t.TempDir(), "q.jsonl"), in); a != 2 {
		t.Fatalf("appended %d records, want 2", a)
	}
	code, out, errs := runVigil(t, "export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("export wrote %d lines: %q", len(lines), out)
	}
	var got [][]byte
	for _, l := range lines {
		if !utf8.ValidString(l) || !json.Valid([]byte(l)) {
			t.Fatalf("export line is not valid UTF-8 JSON: %q", l)
		}
		var r struct {
			Origin    string          `json:"origin"`
			Raw       json.RawMessage `json:"raw"`
			RawBase64 []byte          `json:"raw_base64"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.Origin, "bad\uFFFDname.jsonl") {
			t.Errorf("origin %q: invalid UTF-8 in metadata should read as U+FFFD", r.Origin)
		}
		if r.Raw != nil {
			got = append(got, r.Raw)
		} else {
			got = append(got, r.RawBase64)
		}
	}
	if !bytes.Equal(got[0], rec) || !bytes.Equal(got[1], ok) {
		t.Errorf("exported records are not the ingested bytes:\n%q\n%q", got[0], got[1])
	}
	if !strings.Contains(lines[1], `"raw":`+string(ok)) {
		t.Errorf("a valid UTF-8 record should stay verbatim in raw: %s", lines[1])
	}
}

// The journal keeps records: an activity's several events make one entry,
// and the records of an activity flattened one event per record (which
// share its unique qualifier) make one entry each.
func TestIngestOneEntryPerRecord(t *testing.T) {
	for _, c := range []struct {
		file string
		want int
	}{
		{"gws_activities.json", 2}, // 2 activities, 3 events
		{"gws_flattened.jsonl", 3}, // the same 3 events, one per record
		{"inbox_rules.json", 3},    // 3 rules (a 4th is quarantined)
	} {
		dir := filepath.Join(t.TempDir(), "journal")
		a, d, n := ingestCounts(t, dir, filepath.Join(t.TempDir(), "q.jsonl"), filepath.Join(decoderFixtures, c.file))
		if a != c.want || d != 0 || n != c.want {
			t.Errorf("%s: appended %d, duplicate %d, journal %d; want %d entries and no duplicate", c.file, a, d, n, c.want)
		}
	}
}
