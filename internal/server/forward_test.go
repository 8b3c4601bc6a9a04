package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

// A node that forwards the journal's routes answers them as the journal
// node does (status, body, the answer's headers), after checking the
// caller's key and role itself; the forwarded query carries the route and
// its query string only. With no journal node it answers 503 and when to
// retry; the journal node answers only the journal's routes.
func TestForwardJournalRoutes(t *testing.T) {
	jf := newFixture(t, Config{})
	jf.do(t, "POST", "/api/v1/ingest", jf.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "purview_export.csv")))
	if jf.j.Size() < 2 {
		t.Fatalf("journal holds %d", jf.j.Size())
	}
	ks, err := auth.Open(jf.dir)
	if err != nil {
		t.Fatal(err)
	}
	journalNode, err := New(Config{}, Deps{Journal: jf.j, Keys: ks, Ingest: NewIngester(jf.j, filepath.Join(jf.dir, "q.jsonl")), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}

	// The forwarding node: its own (empty) journal and the same keys.
	j, err := journal.Open(t.Context(), t.TempDir(), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var asked []JournalQuery
	down := false
	fwd, err := New(Config{}, Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, filepath.Join(t.TempDir(), "q.jsonl")), Logger: slog.New(slog.DiscardHandler),
		Forward: func(ctx context.Context, q JournalQuery) (JournalAnswer, error) {
			asked = append(asked, q)
			if down {
				return JournalAnswer{}, ErrNoJournalNode
			}
			return journalNode.AnswerJournalQuery(ctx, q), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(fwd.Handler())
	defer fs.Close()
	get := func(base, path, key string) (*http.Response, []byte) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		req.Header.Set("X-Forwarded-For", "198.51.100.1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.Bytes()
	}
	viewer := jf.keys[auth.RoleViewer]
	for _, path := range []string{"/api/v1/checkpoint", "/api/v1/proof?index=1", "/api/v1/proof?index=99999", "/api/v1/proof?index=x",
		"/api/v1/search?q=x", "/api/v1/timeline?user=x"} {
		wr, wb := get(jf.srv.URL, path, viewer)
		gr, gb := get(fs.URL, path, viewer)
		if gr.StatusCode != wr.StatusCode || !bytes.Equal(gb, wb) || gr.Header.Get("Content-Type") != wr.Header.Get("Content-Type") {
			t.Errorf("%s forwarded: %d %s; from the journal node: %d %s", path, gr.StatusCode, gb, wr.StatusCode, wb)
		}
	}
	if len(asked) != 6 {
		t.Fatalf("%d queries forwarded, want 6", len(asked))
	}
	if q := asked[1]; q != (JournalQuery{Path: "/api/v1/proof", Query: "index=1"}) {
		t.Fatalf("forwarded %+v", q)
	}
	// The key and role are checked where asked: nothing forwarded.
	n := len(asked)
	if r, _ := get(fs.URL, "/api/v1/checkpoint", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d", r.StatusCode)
	}
	if r, _ := get(fs.URL, "/api/v1/checkpoint", "vgl_not-a-key"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %d", r.StatusCode)
	}
	if r, _ := get(fs.URL, "/api/v1/checkpoint", jf.keys[auth.RoleIngest]); r.StatusCode != http.StatusForbidden {
		t.Fatalf("an ingest key: %d", r.StatusCode)
	}
	if len(asked) != n {
		t.Fatalf("refused requests were forwarded: %+v", asked[n:])
	}
	// No journal node.
	down = true
	if r, b := get(fs.URL, "/api/v1/checkpoint", viewer); r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(b), "journal node") {
		t.Fatalf("no journal node: %d (Retry-After %q) %s", r.StatusCode, r.Header.Get("Retry-After"), b)
	}
	// The journal node answers nothing but the journal's routes.
	for _, path := range []string{"/api/v1/ingest", "/api/v1/incidents", "/metrics", "/api/v1/rules"} {
		if a := journalNode.AnswerJournalQuery(t.Context(), JournalQuery{Path: path}); a.Status != http.StatusNotFound {
			t.Fatalf("journal query %s: %d %s", path, a.Status, a.Body)
		}
	}
	if a := journalNode.AnswerJournalQuery(t.Context(), JournalQuery{Path: "/api/v1/proof", Query: "index=%zz"}); a.Status != http.StatusBadRequest {
		t.Fatalf("a malformed query string: %d %s", a.Status, a.Body)
	}
}
