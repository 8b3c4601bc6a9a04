package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// reverseExport writes the records of a vigil simulate log, of its
// format, newest first: JSON lines reversed, the elements of a JSON array
// reversed, a CSV's rows reversed under its header. bad records are put
// in its middle.
func reverseExport(t *testing.T, src, dst string, bad []string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	var head, tail []byte
	switch filepath.Ext(src) {
	case ".json":
		head, tail = []byte("[\n"), []byte("\n]\n")
		lines = lines[1 : len(lines)-1]
		for i := range lines {
			lines[i] = bytes.TrimSuffix(lines[i], []byte(","))
		}
	case ".csv":
		head, lines = append(lines[0], '\n'), lines[1:]
	}
	slices.Reverse(lines)
	for i, r := range bad {
		lines = slices.Insert(lines, len(lines)/2+i, []byte(r))
	}
	sep := []byte("\n")
	if filepath.Ext(src) == ".json" {
		sep = []byte(",\n")
	}
	out := append(head, bytes.Join(lines, sep)...)
	if tail == nil {
		tail = []byte("\n")
	}
	if err := os.WriteFile(dst, append(out, tail...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Exports newest first (Purview's CSV, JSON arrays, JSON lines) are read
// back to front: no second attempt, every record decoded once; the report
// is byte for byte the one sorting them gives (its quarantine the same
// records, named the same, last first), and its incidents and impact are
// those of the same logs oldest first.
func TestHuntReadsNewestFirstBackwards(t *testing.T) {
	reportNow = func() time.Time { return time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC) }
	defer func() { reportNow = time.Now }()
	bad := map[string][]string{
		"jsonl": {`{"CreationTime":"2026-03-05T06:00:01","Id":"broken",`, `{"Id":"no-time","Operation":"x"}`},
		"json":  {`{"CreationTime":"2026-03-05T06:00:01","Id":tru}`, `{"Id":"no-time","Operation":"x"}`},
		"csv":   {`2026-03-05T06:00:01,u@x,Broken,"{not json"`, `2026-03-05T06:00:02,u@x,Short`},
	}
	for _, format := range []string{"jsonl", "json", "csv"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			asc := filepath.Join(dir, "asc")
			if code, _, errs := runVigil(t, "simulate", "--out", asc, "--users", "20", "--days", "10", "--seed", "4", "--campaign", "forged-token", "--format", format, "--quiet"); code != 0 {
				t.Fatalf("simulate: exit %d: %s", code, errs)
			}
			desc := filepath.Join(dir, "desc")
			if err := os.Mkdir(desc, 0o755); err != nil {
				t.Fatal(err)
			}
			var ascPaths, descPaths []string
			for _, name := range []string{"ual", "signins", "gws"} {
				m, _ := filepath.Glob(filepath.Join(asc, name+".*"))
				if len(m) != 1 {
					t.Fatalf("simulate wrote %v for %s", m, name)
				}
				var b []string
				if name == "ual" {
					b = bad[format]
				}
				p := filepath.Join(desc, filepath.Base(m[0]))
				reverseExport(t, m[0], p, b)
				ascPaths, descPaths = append(ascPaths, m[0]), append(descPaths, p)
			}
			hunt := func(name string, backwards bool, paths []string) (map[string]string, string) {
				readBackwards = backwards
				defer func() { readBackwards = true }()
				rdir := filepath.Join(dir, "report-"+name)
				args := append([]string{"hunt", "--report", rdir, "--networks", filepath.Join(asc, "networks.csv"),
					"--quarantine", filepath.Join(dir, "q-"+name+".jsonl")}, paths...)
				code, _, errs := runVigil(t, args...)
				if code != 0 {
					t.Fatalf("%s: exit %d: %s", name, code, errs)
				}
				files := map[string]string{}
				ents, err := os.ReadDir(rdir)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					b, err := os.ReadFile(filepath.Join(rdir, e.Name()))
					if err != nil {
						t.Fatal(err)
					}
					files[e.Name()] = strings.ReplaceAll(string(b), "q-"+name+".jsonl", "q.jsonl")
				}
				return files, errs
			}
			back, errs := hunt("backwards", true, descPaths)
			if strings.Contains(errs, "sorting the inputs") || !strings.Contains(errs, "3 input(s) read back to front") {
				t.Errorf("newest first: not read back to front in one attempt:\n%s", errs)
			}
			sorted, errs := hunt("sorted", false, descPaths)
			if !strings.Contains(errs, "sorting the inputs instead") {
				t.Errorf("without reading back to front the inputs were not sorted:\n%s", errs)
			}
			if len(back) != len(sorted) {
				t.Errorf("report files: %d read back to front, %d sorted", len(back), len(sorted))
			}
			for name, want := range sorted {
				got := back[name]
				if name == "quarantine.jsonl" {
					// Rejects come in the order read: last first.
					g, w := strings.Split(strings.TrimSpace(got), "\n"), strings.Split(strings.TrimSpace(want), "\n")
					slices.Sort(g)
					slices.Sort(w)
					if len(w) != len(bad[format]) || !slices.Equal(g, w) {
						t.Errorf("quarantine read back to front:\n%s\nsorted:\n%s", got, want)
					}
					continue
				}
				if got != want {
					t.Errorf("%s differs: read back to front\n%.3000s\nsorted\n%.3000s", name, got, want)
				}
			}
			if !strings.Contains(back["incidents.json"], `"D1"`) {
				t.Fatalf("no incident of the forged-token campaign to compare:\n%.2000s", back["incidents.json"])
			}
			inOrder, _ := hunt("in-order", true, ascPaths)
			for _, name := range []string{"incidents.json", "impact.csv"} {
				if back[name] != inOrder[name] {
					t.Errorf("%s of the logs newest first differs from oldest first:\n%.3000s\nwant\n%.3000s", name, back[name], inOrder[name])
				}
			}
		})
	}
}

// The real Graph exports (PowerShell's pretty-printed JSON arrays, newest
// first) are read back to front, with the timeline sorting them gives.
func TestHuntReadsRealExportsBackwards(t *testing.T) {
	dir, err := filepath.Abs("../../../shared/data/invictus-microsoft-extractor-suite")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared real-data fixtures not found at %s: %v", dir, err)
	}
	inputs := []string{filepath.Join(dir, "20250502131826-AuditLogs.json"), filepath.Join(dir, "20250502132320-servicePrincipal-SignInLogs.json")}
	hunt := func(backwards bool) (string, string) {
		readBackwards = backwards
		defer func() { readBackwards = true }()
		args := append([]string{"hunt", "--behaviours", "--format", "jsonl", "--quarantine", filepath.Join(t.TempDir(), "q.jsonl")}, inputs...)
		code, out, errs := runVigil(t, args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		return out, errs
	}
	back, errs := hunt(true)
	if strings.Contains(errs, "sorting the inputs") || !strings.Contains(errs, "2 input(s) read back to front") {
		t.Errorf("the Graph exports were not read back to front:\n%s", errs)
	}
	sorted, errs := hunt(false)
	if !strings.Contains(errs, "sorting the inputs instead") {
		t.Errorf("without reading back to front the exports were not sorted:\n%s", errs)
	}
	if back == "" || back != sorted {
		t.Errorf("timeline read back to front:\n%.2000s\nsorted:\n%.2000s", back, sorted)
	}
}
