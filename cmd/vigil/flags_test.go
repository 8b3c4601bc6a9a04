package main

import (
	"os"
	"path/filepath"

	"strings"
	"testing"
)

func hasDoubledPrefix(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		parts := strings.Split(line, ": ")
		for i := 1; i < len(parts); i++ {
			prev := parts[i-1]
			if j := strings.LastIndexByte(prev, ' '); j >= 0 {
				prev = prev[j+1:]
			}
			if prev != "" && parts[i] == prev {
				return true
			}
		}
	}
	return false
}

func TestHasDoubledPrefix(t *testing.T) {
	if !hasDoubledPrefix("vigil hunt: report: report: mkdir x: denied") || !hasDoubledPrefix("vigil simulate: simulate: users 3") {
		t.Error("doubled prefixes not found")
	}
	if hasDoubledPrefix("vigil hunt: report: mkdir x: denied") {
		t.Error("a clean message judged doubled")
	}
}

func TestErrorPrefixesNotDoubled(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"hunt", "--quiet", "--quarantine", filepath.Join(dir, "q"), "--report", filepath.Join(blocker, "sub"), decoderFixtures},
		{"simulate", "--out", filepath.Join(dir, "sim"), "--users", "3", "--days", "1"},
		{"simulate", "--out", filepath.Join(blocker, "sim"), "--users", "10", "--days", "1"},
	} {
		code, _, errs := runVigil(t, args...)
		if code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
		if hasDoubledPrefix(errs) {
			t.Errorf("%v: doubled prefix in %q", args, errs)
		}
	}
}

// --users 0 used to print "0 users" and simulate the default 200.
func TestDemoRejectsNonPositiveSizes(t *testing.T) {
	for _, args := range [][]string{{"--users", "0"}, {"--users", "-5"}, {"--days", "0"}} {
		out := filepath.Join(t.TempDir(), "demo")
		code, stdout, errs := runVigil(t, append([]string{"demo", "--out", out}, args...)...)
		if code != 2 || !strings.Contains(errs, args[0]) || !strings.Contains(errs, "at least") {
			t.Errorf("demo %v: exit %d, stderr %q", args, code, errs)
		}
		if strings.Contains(stdout, "Simulating") {
			t.Errorf("demo %v started simulating: %q", args, stdout)
		}
	}
	code, _, errs := runVigil(t, "simulate", "--out", t.TempDir(), "--users", "0")
	if code != 2 || !strings.Contains(errs, "--users") {
		t.Errorf("simulate --users 0: exit %d, %q", code, errs)
	}
}

// --iocs, --networks, --config and --state only feed the behaviours: they
// turn them on rather than being ignored.
func TestBehaviourFlagsImplyBehaviours(t *testing.T) {
	dir := t.TempDir()
	iocs := filepath.Join(dir, "iocs.yaml")
	if err := os.WriteFile(iocs, []byte("name: test\nindicators:\n  - {type: ip, value: 203.0.113.7}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runVigil(t, "hunt", "--quiet", "--format", "jsonl", "--quarantine", filepath.Join(dir, "q"), "--iocs", iocs, decoderFixtures)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"rule_id":"D11"`) {
		t.Errorf("--iocs without --behaviours raised no D11:\n%s", out)
	}
}

// --quiet leaves stderr to warnings and errors: no progress, no summary,
// no informational log line ("journal: created signing key" used to
// print). What a command writes to stdout is its output and stays.
func TestQuietStderrIsSilent(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runVigil(t, "ingest", "--quiet", "--data", filepath.Join(dir, "j"), "--quarantine", filepath.Join(dir, "q"), decoderFixtures)
	if code != 0 || errs != "" || !strings.Contains(out, "checkpoint:") {
		t.Errorf("ingest --quiet: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runVigil(t, "hunt", "--quiet", "--out", filepath.Join(dir, "t.csv"), "--format", "csv", "--quarantine", filepath.Join(dir, "q2"),
		"--report", filepath.Join(dir, "r"), decoderFixtures)
	if code != 0 || out != "" || errs != "" {
		t.Errorf("hunt --quiet: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = runVigil(t, "simulate", "--quiet", "--out", filepath.Join(dir, "sim"), "--users", "10", "--days", "1")
	if code != 0 || errs != "" {
		t.Errorf("simulate --quiet: exit %d, stderr %q", code, errs)
	}
}
