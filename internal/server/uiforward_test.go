package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// A node whose pages ask the journal node shows the same search rows,
// timeline records and checkpoint, checks the checkpoint's signature
// itself (a changed one does not verify), links the incidents it knows
// itself, and says so when no journal node answers.
func TestUIForwardedJournalPages(t *testing.T) {
	jn := newUIFixtureWith(t, true)
	jn.ingest(t, ualRecords(t, 25, "eve", "eve@contoso.example", "198.51.100.9", t0))
	jn.ingest(t, ualRecords(t, 5, "alice", "alice@contoso.example", "203.0.113.7", t0.Add(30*time.Minute)))

	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(t.Context(), t.TempDir(), journal.Options{Logger: quiet, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var tamper func([]byte) []byte
	down := false
	var asked []JournalQuery
	d := NewUIData(UIOptions{Journal: j, Logger: quiet, Forward: func(ctx context.Context, q JournalQuery) (JournalAnswer, error) {
		asked = append(asked, q)
		if down {
			return JournalAnswer{}, ErrNoJournalNode
		}
		a, ok := jn.d.AnswerJournalQuery(ctx, q)
		if !ok {
			t.Fatalf("the journal node's pages do not answer %s", q.Path)
		}
		if tamper != nil {
			a.Body = tamper(a.Body)
		}
		return a, nil
	}})
	w := NewWatcher(j, WatcherOptions{Logger: quiet})
	d.Watch(w)
	w.Incident(detect.Update{Kind: detect.Opened, Incident: &incident.Incident{ID: "INC-eve", Mailboxes: []string{"eve@contoso.example"},
		Actors: incident.Actors{Users: []string{"eve@contoso.example"}}, FirstSeen: t0, LastSeen: t0}})

	same := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Fatalf("%s asked of the journal node:\n%s\nthere:\n%s", what, g, w)
		}
	}
	// The index may still be catching up: the journal node's own page
	// waits for it as the forwarded one does.
	want, err := jn.d.Search(t.Context(), "ip:198.51.100.9", 10)
	if err != nil || want.Total != 25 {
		t.Fatalf("search on the journal node: %d (%v)", want.Total, err)
	}
	got, err := d.Search(t.Context(), "ip:198.51.100.9", 10)
	if err != nil {
		t.Fatal(err)
	}
	same("search", got, want)

	q := ui.TimelineQuery{Entity: ui.Entity{Kind: "user", Value: "eve@contoso.example"}, Limit: 50}
	wantTL, err := jn.d.timelineRecords(t.Context(), q)
	if err != nil || len(wantTL.Rows) == 0 {
		t.Fatalf("timeline on the journal node: %d rows (%v)", len(wantTL.Rows), err)
	}
	gotTL, err := d.Timeline(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotTL.Cases) != 1 || gotTL.Cases[0] != "INC-eve" {
		t.Fatalf("the timeline links %v; this node knows INC-eve", gotTL.Cases)
	}
	gotTL.Cases = nil
	same("timeline", gotTL, wantTL)

	wantIn, err := jn.d.Integrity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gotIn, err := d.Integrity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !gotIn.Verified || gotIn.Checkpoint != wantIn.Checkpoint || gotIn.VerifierKey != wantIn.VerifierKey || gotIn.Size != 30 {
		t.Fatalf("integrity asked of the journal node: %+v", gotIn)
	}
	// A checkpoint changed on the way does not verify here.
	tamper = func(b []byte) []byte {
		return bytes.Replace(b, []byte(`\n30\n`), []byte(`\n31\n`), 1)
	}
	if in, err := d.Integrity(t.Context()); err != nil || in.Verified || !strings.Contains(in.Checkpoint, "\n31\n") {
		t.Fatalf("a changed checkpoint: verified %v (%s), %v", in.Verified, in.VerifyDetail, err)
	}
	tamper = nil

	down = true
	if _, err := d.Search(t.Context(), "ip:198.51.100.9", 10); !errors.Is(err, ErrNoJournalNode) {
		t.Fatalf("search with no journal node: %v", err)
	}
	for _, q := range asked {
		if strings.Contains(q.Query, "key") || !strings.HasPrefix(q.Path, "/ui/") {
			t.Fatalf("forwarded %+v", q)
		}
	}
	// Anything else is not the pages' to answer; a malformed query is refused.
	if _, ok := jn.d.AnswerJournalQuery(t.Context(), JournalQuery{Path: "/ui/admin"}); ok {
		t.Fatal("the pages answered /ui/admin")
	}
	if a, _ := jn.d.AnswerJournalQuery(t.Context(), JournalQuery{Path: "/ui/timeline", Query: "q=nope"}); a.Status != http.StatusBadRequest {
		t.Fatalf("a malformed timeline query: %d %s", a.Status, a.Body)
	}
}
