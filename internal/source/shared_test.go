package source

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

// sharedData returns ../shared/data relative to the repository root, or
// skips the test when the shared fixtures are not beside the checkout.
func sharedData(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared real-data fixtures not found at %s (they live beside the repository in CI): %v", dir, err)
	}
	return dir
}

// notLogs are files under shared/data that hold no log records.
var notLogs = map[string]string{
	"sigmahq-sigma/logsource.json": "SigmaHQ's table of logsource field names",
}

func TestSharedDataDecodesWithoutRejects(t *testing.T) {
	dir := sharedData(t)
	files, err := Expand([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		if why, skip := notLogs[rel]; skip {
			t.Logf("skipping %s: %s", rel, why)
			continue
		}
		var q bytes.Buffer
		var evs []*event.Event
		st, err := ReadPaths(context.Background(), []string{f}, Options{Quarantine: &q}, func(e *event.Event) error {
			evs = append(evs, e)
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if st.Quarantined != 0 {
			t.Errorf("%s: %d records quarantined:\n%s", rel, st.Quarantined, firstLines(q.String(), 3))
		}
		if len(evs) == 0 {
			t.Errorf("%s: no events decoded", rel)
		}
		for _, e := range evs {
			if e.Time.IsZero() || e.Source == "" || len(e.Raw) == 0 {
				t.Errorf("%s record %d: time %v source %q raw %d bytes", rel, e.Origin.Index, e.Time, e.Source, len(e.Raw))
			}
		}
		total += len(evs)
		t.Logf("%s: %d events, sources %v", rel, len(evs), st.Sources)
	}
	if total < 700 {
		t.Errorf("decoded %d events from shared data, expected at least 700", total)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	for i, l := range lines {
		var r Reject
		if json.Unmarshal([]byte(l), &r) == nil {
			if len(r.Record) > 200 {
				r.Record = r.Record[:200] + "..."
			}
			b, _ := json.Marshal(r)
			lines[i] = string(b)
		}
	}
	return strings.Join(lines, "\n")
}
