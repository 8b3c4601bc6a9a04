package source

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// ReadMerged reads inputs each in time order at once and gives their
// events merged by time, counting and quarantining as ReadPaths does.
func TestReadMergedMergesByTime(t *testing.T) {
	dir := t.TempDir()
	rec := func(min int, id string) string {
		return fmt.Sprintf(`{"CreationTime":"2026-03-02T06:%02d:00","Id":"%s","Operation":"MailboxLogin","RecordType":2,"UserId":"a@contoso.com","Workload":"Exchange"}`, min, id)
	}
	// a: minutes 0, 3, 6, ...; b: 1, 4, 7, ... with a bad line; c: 2, 5, 8, ...
	var files [3][]string
	for m := range 30 {
		files[m%3] = append(files[m%3], rec(m, fmt.Sprintf("r%02d", m)))
	}
	files[1] = append(files[1][:4], append([]string{`{"CreationTime":"2026-03-02T06:13:30","Id":"bad",`}, files[1][4:]...)...)
	var paths []string
	for i, lines := range files {
		paths = append(paths, writeFile(t, dir, fmt.Sprintf("%c.jsonl", 'a'+i), []byte(strings.Join(lines, "\n")+"\n")))
	}
	var q bytes.Buffer
	var got []string
	var last time.Time
	st, err := ReadMerged(t.Context(), paths, Options{Quarantine: &q, Workers: 2}, func(e *event.Event) error {
		if e.Time.Before(last) {
			t.Errorf("%s at %s after %s", e.RecordID, e.Time, last)
		}
		last = e.Time
		got = append(got, e.RecordID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range got {
		if want := fmt.Sprintf("r%02d", i); id != want {
			t.Fatalf("event %d is %s, want %s (all: %v)", i, id, want, got)
		}
	}
	if len(got) != 30 {
		t.Fatalf("%d events, want 30", len(got))
	}
	want, err := ReadPaths(t.Context(), paths, Options{}, func(*event.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || st.Records != want.Records || st.Decoded != want.Decoded || st.Events != want.Events || st.Quarantined != 1 || st.Bytes != want.Bytes {
		t.Errorf("stats %+v, ReadPaths %+v", st, want)
	}
	var r Reject
	if err := json.Unmarshal(q.Bytes(), &r); err != nil || filepath.Base(r.File) != "b.jsonl" || r.Line != 5 {
		t.Errorf("quarantine: %v %+v", err, r)
	}
}

// Stdin is read once, so it cannot be merged (a caller that must start
// again with a sort could not read it again).
func TestReadMergedRefusesStdin(t *testing.T) {
	if _, err := ReadMerged(t.Context(), []string{"-"}, Options{Stdin: strings.NewReader("")}, func(*event.Event) error { return nil }); err == nil {
		t.Error("stdin merged")
	}
}
