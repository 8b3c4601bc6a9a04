package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
)

func TestUIMounted(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, filepath.Join(dir, "q.jsonl")), Logger: slog.New(slog.DiscardHandler)}

	off, err := New(Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.LoginPath(auth.RoleAdmin); err == nil || !strings.Contains(err.Error(), "web interface is off") {
		t.Errorf("LoginPath without a UI: %v", err)
	}
	hs := httptest.NewServer(off.Handler())
	if resp, err := http.Get(hs.URL + "/ui/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/ui/ without a UI: %v %v, want 404", resp.StatusCode, err)
	}
	hs.Close()

	deps.UI = memdata.New(memdata.Options{})
	s, err := New(Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoginPath(auth.RoleIngest); err == nil || !strings.Contains(err.Error(), "cannot log in") {
		t.Errorf("LoginPath for an ingest role: %v", err)
	}
	hs = httptest.NewServer(s.Handler())
	defer hs.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]string{"/": "/ui/", "/ui/": "/ui/login"} {
		resp, err := noFollow.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET %s: %d → %q, want 303 → %s", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	p, err := s.LoginPath(auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimPrefix(p, "/ui/login?token=")
	if tok == p || tok == "" {
		t.Fatalf("login path %q", p)
	}
	resp, err := noFollow.PostForm(hs.URL+"/ui/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("login link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// The API keeps its own, stricter policy.
	resp, err = http.Get(hs.URL + "/api/v1/incidents")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors 'none'" || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API: %d, CSP %q", resp.StatusCode, csp)
	}
}
