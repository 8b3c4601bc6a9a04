package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
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
