package main

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

// expire, which vigil serve and vigil collect run at start and hourly,
// drops the raw bytes of sealed segments older than the journal's
// retention and keeps the rest readable.
func TestExpireAppliesRetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	quiet := slog.New(slog.DiscardHandler)
	yearAgo := time.Now().Add(-365 * 24 * time.Hour)
	j, err := journal.Open(t.Context(), dir, journal.Options{Logger: quiet, CheckpointInterval: -1,
		SegmentSize: 4 << 10, Now: func() time.Time { return yearAgo }})
	if err != nil {
		t.Fatal(err)
	}
	var old []journal.Entry
	for i := range 200 {
		old = append(old, journal.Entry{Source: "test", RecordID: "old-" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Raw: []byte(`{"n":"` + string(rune('a'+i%26)) + `","pad":"0123456789012345678901234567890123456789"}`)})
	}
	for b := 0; b < len(old); b += 10 { // segments rotate between commits
		if _, err := j.AppendBatch(t.Context(), old[b:b+10]); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = journal.Open(t.Context(), dir, journal.Options{Logger: quiet, CheckpointInterval: -1, Retention: 180 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.AppendBatch(t.Context(), []journal.Entry{{Source: "test", RecordID: "new", Raw: []byte(`{"n":"new"}`)}}); err != nil {
		t.Fatal(err)
	}
	expire(t.Context(), j, quiet)
	bound := j.Expired()
	if bound == 0 || bound > uint64(len(old)) {
		t.Fatalf("expired below %d of %d year-old entries", bound, len(old))
	}
	var read []string
	if err := j.Read(t.Context(), bound, func(_ uint64, e *journal.Entry) error {
		read = append(read, e.RecordID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(read) == 0 || read[len(read)-1] != "new" {
		t.Fatalf("after expiry the journal reads %v from %d", read, bound)
	}
}
