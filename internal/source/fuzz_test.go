package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

// FuzzReadPaths feeds arbitrary input through framing, detection and every
// decoder. Invariants: no panic, no error for any content (bad records are
// quarantined, not fatal), and every framed record is either an event
// source or a reject.
func FuzzReadPaths(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json*")
	csvs, _ := filepath.Glob("testdata/*.csv")
	for _, p := range append(seeds, csvs...) {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"records":[{"time":"2024-01-01T00:00:00Z","category":"SignInLogs","properties":{"createdDateTime":"x"}}]}`))
	f.Add([]byte("a,b\n\"1,2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var q bytes.Buffer
		var events int64
		st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(data), Quarantine: &q, Workers: 2},
			func(e *event.Event) error {
				events++
				if e.Source == "" {
					t.Fatalf("event without source: %q", e.Raw)
				}
				return nil
			})
		if err != nil {
			t.Fatalf("ReadPaths failed on input: %v", err)
		}
		if st.Events != events {
			t.Fatalf("stats say %d events, emitted %d", st.Events, events)
		}
		if st.Records > 0 && st.Events == 0 && st.Quarantined == 0 {
			t.Fatalf("%d records vanished: neither decoded nor quarantined", st.Records)
		}
	})
}
