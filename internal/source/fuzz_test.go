package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

// FuzzReadPaths feeds arbitrary input through framing, detection and every
// decoder, with small limits so the fuzzer reaches them. Invariants: no
// panic; no error for any content but a damaged input (bad records are
// quarantined, not fatal); every record read is decoded (into at least one
// event) or quarantined, and the quarantine holds one line per rejected
// record, its reason within the limit.
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
	f.Add([]byte(`{"@odata00000000":"0000","value":[]}`))
	f.Add([]byte("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"))
	f.Add([]byte(`[{},{},{"time":"2024-01-01T00:00:00Z"},1,"x",[]]`))
	lim := Limits{MaxRecordBytes: 256, MaxDepth: 8, MaxFields: 16, MaxElements: 16, MaxReasonBytes: 120}
	f.Fuzz(func(t *testing.T, data []byte) {
		var q bytes.Buffer
		var events int64
		st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(data), Quarantine: &q, Workers: 2, Limits: lim},
			func(e *event.Event) error {
				events++
				if e.Source == "" {
					t.Fatalf("event without source: %q", e.Raw)
				}
				return nil
			})
		var de *DamagedError
		if err != nil && !(errors.As(err, &de) && len(de.Inputs) == 1 && de.Inputs[0].File == "-") {
			t.Fatalf("ReadPaths failed on input: %v", err)
		}
		if st.Events != events {
			t.Fatalf("stats say %d events, emitted %d", st.Events, events)
		}
		if st.Records != st.Decoded+st.Quarantined || st.Events < st.Decoded {
			t.Fatalf("%d records read, %d decoded (%d events), %d quarantined: they do not add up", st.Records, st.Decoded, st.Events, st.Quarantined)
		}
		lines := bytes.Split(bytes.TrimSuffix(q.Bytes(), []byte("\n")), []byte("\n"))
		if q.Len() == 0 {
			lines = nil
		}
		if int64(len(lines)) != st.Quarantined {
			t.Fatalf("quarantine has %d lines, stats say %d rejects", len(lines), st.Quarantined)
		}
		for _, l := range lines {
			var r Reject
			if err := json.Unmarshal(l, &r); err != nil || r.Reason == "" || len(r.Reason) > lim.MaxReasonBytes {
				t.Fatalf("quarantine line %.200q: %v", l, err)
			}
		}
	})
}
