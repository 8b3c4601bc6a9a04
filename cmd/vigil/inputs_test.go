package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func genericJSONL(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"time":"2024-01-01T00:00:%02dZ","n":%d}`+"\n", i%60, i)
	}
	return b.Bytes()
}

// damagedDir holds a good log, a truncated gzip log and a file that is
// not a log.
func damagedDir(t *testing.T) (dir, cut string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), genericJSONL(5), 0o600); err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(genericJSONL(3000))
	zw.Close()
	cut = filepath.Join(dir, "b.jsonl.gz")
	if err := os.WriteFile(cut, z.Bytes()[:z.Len()/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cut
}

// A damaged input does not abort the hunt: every input is read, every
// output written, the damage named with how much was read, then exit 2.
func TestHuntDamagedInputExits2(t *testing.T) {
	dir, cut := damagedDir(t)
	work := t.TempDir()
	q, out := filepath.Join(work, "q.jsonl"), filepath.Join(work, "timeline.csv")
	code, _, errs := runVigil(t, "hunt", "--format", "csv", "--out", out, "--quarantine", q, dir)
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, errs)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("timeline not written: %v", err)
	}
	qd, err := os.ReadFile(q)
	if err != nil || !strings.Contains(string(qd), cut) || !strings.Contains(string(qd), "unexpected EOF") {
		t.Errorf("quarantine does not name the damaged input: %v\n%s", err, qd)
	}
	for _, want := range []string{
		"damaged:     1 input(s) not read to their end", cut + ": gzip: unexpected EOF; records were framed from its first",
		"skipped:     1 entries not read", "notes.txt: not a log file name",
		"not read to their end: " + cut,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("summary lacks %q:\n%s", want, errs)
		}
	}
	// records read = decoded + quarantined, and the summary says so.
	var read, dec, quar int
	for _, l := range strings.Split(errs, "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "records: %d read = %d decoded + %d quarantined", &read, &dec, &quar); err == nil {
			break
		}
	}
	if read == 0 || read != dec+quar || quar != 1 || dec < 5 {
		t.Errorf("records %d = %d decoded + %d quarantined:\n%s", read, dec, quar, errs)
	}
}

func TestIngestDamagedInputExits2(t *testing.T) {
	dir, cut := damagedDir(t)
	data := filepath.Join(t.TempDir(), "journal")
	code, out, errs := runVigil(t, "ingest", "--data", data, "--quarantine", filepath.Join(t.TempDir(), "q.jsonl"), dir)
	if code != 2 || !strings.Contains(errs, cut) || !strings.Contains(out, "damaged:") || !strings.Contains(out, "checkpoint:") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

// The limits are flags of hunt and ingest; an impossible one is a usage
// error.
func TestHuntLimitFlags(t *testing.T) {
	dir := t.TempDir()
	deep := `{"time":"2024-01-01T00:00:00Z","a":[[[[[[]]]]]]}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), append(genericJSONL(2), deep...), 0o600); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(t.TempDir(), "q.jsonl")
	code, _, errs := runVigil(t, "hunt", "--max-depth", "5", "--quarantine", q, dir)
	qd, _ := os.ReadFile(q)
	if code != 0 || !strings.Contains(string(qd), "nesting depth exceeds the limit of 5") || !strings.Contains(errs, "3 read = 2 decoded + 1 quarantined") {
		t.Errorf("exit %d: %s\n%s", code, errs, qd)
	}
	if code, _, errs := runVigil(t, "hunt", "--max-depth", "1", dir); code != 2 || !strings.Contains(errs, "nesting depth") {
		t.Errorf("--max-depth 1: exit %d: %s", code, errs)
	}
	if code, _, errs := runVigil(t, "ingest", "--data", t.TempDir(), "--max-record-size", "10", dir); code != 2 || !strings.Contains(errs, "record size") {
		t.Errorf("ingest --max-record-size 10: exit %d: %s", code, errs)
	}
}

// Paths in the summary are attacker-chosen: control characters in them
// are escaped.
func TestSkippedNamesAreEscaped(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), genericJSONL(1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "evil\x1b[2J.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, errs := runVigil(t, "hunt", "--quarantine", filepath.Join(t.TempDir(), "q.jsonl"), dir)
	if strings.Contains(errs, "\x1b") || !strings.Contains(errs, `evil\x1b[2J.txt: not a log file name`) {
		t.Errorf("summary:\n%q", errs)
	}
}
