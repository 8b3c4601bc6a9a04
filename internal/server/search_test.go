package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

// newSearchFixture is a server whose index follows its journal, as vigil
// serve runs it.
func newSearchFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "journal")
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(t.Context(), data, journal.Options{Logger: quiet, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	x, err := index.Open(t.Context(), index.Path(data), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fol, err := index.NewFollower(x, data, j, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fol.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; x.Close(); j.Close() })
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{j: j, keys: map[auth.Role]string{}, dir: dir}
	for _, r := range []auth.Role{auth.RoleIngest, auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin} {
		plain, _, err := ks.Create(string(r)+"-key", r)
		if err != nil {
			t.Fatal(err)
		}
		f.keys[r] = plain
	}
	in := NewIngester(j, filepath.Join(dir, "quarantine.jsonl"))
	in.Notify = fol.Wake
	s, err := New(Config{RatePerKey: 1000, Burst: 1000}, Deps{Journal: j, Keys: ks, Ingest: in, Index: fol, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

type searchAnswer struct {
	Columns    []string         `json:"columns"`
	Rows       []map[string]any `json:"rows"`
	Truncated  bool             `json:"truncated"`
	NextCursor string           `json:"next_cursor"`
	Error      string           `json:"error"`
	Column     int              `json:"column"`
	Term       string           `json:"term"`
}

func (f *fixture) search(t *testing.T, path string, params url.Values) (int, searchAnswer, http.Header) {
	t.Helper()
	resp, body := f.do(t, "GET", path+"?"+params.Encode(), f.keys[auth.RoleViewer], nil)
	var a searchAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%s?%s: %d, not JSON: %s", path, params.Encode(), resp.StatusCode, body)
	}
	return resp.StatusCode, a, resp.Header
}

func TestSearchAPIRoles(t *testing.T) {
	f := newSearchFixture(t)
	for _, path := range []string{"/api/v1/search?q=user:alice@contoso.com", "/api/v1/timeline?user=alice@contoso.com"} {
		resp, _ := f.do(t, "GET", path, "", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a key: %d, want 401", path, resp.StatusCode)
		}
		resp, _ = f.do(t, "GET", path, f.keys[auth.RoleIngest], nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s as ingest: %d, want 403", path, resp.StatusCode)
		}
		for _, r := range []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin} {
			resp, body := f.do(t, "GET", path, f.keys[r], nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s as %s: %d %s, want 200", path, r, resp.StatusCode, body)
			}
		}
	}
}

// TestSearchAPIEndToEnd: records pushed through /api/v1/ingest are found
// by /api/v1/search and /api/v1/timeline, paged without gaps or repeats.
func TestSearchAPIEndToEnd(t *testing.T) {
	f := newSearchFixture(t)
	ual := fixtureBytes(t, "ual_mailitemsaccessed.jsonl")
	signins := fixtureBytes(t, "graph_signins_page.json")
	for _, body := range [][]byte{ual, signins} {
		resp, b := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(body))
		if resp.StatusCode != 200 {
			t.Fatalf("ingest: %d %s", resp.StatusCode, b)
		}
	}
	// wait: the index catches up with everything acknowledged so far.
	code, a, hdr := f.search(t, "/api/v1/search", url.Values{"q": {"user:alice@contoso.com"}, "wait": {"30s"}})
	if code != 200 || len(a.Rows) == 0 {
		t.Fatalf("search: %d %+v", code, a)
	}
	if hdr.Get("X-Vigil-Index-Behind") != "0" {
		t.Errorf("X-Vigil-Index-Behind %q after wait", hdr.Get("X-Vigil-Index-Behind"))
	}
	for _, r := range a.Rows {
		if r["actor"] != "alice@contoso.com" {
			t.Errorf("row of another user: %v", r)
		}
		if _, ok := r["time"].(string); !ok {
			t.Errorf("time is not an RFC 3339 string: %v", r["time"])
		}
	}
	// Who read one message: one mail_access row per message read.
	code, a, _ = f.search(t, "/api/v1/search", url.Values{"q": {`message:"<AM0PR01MB0001@contoso.com>"`}, "table": {"mail_access"}})
	if code != 200 || len(a.Rows) != 1 || a.Rows[0]["mailbox"] != "alice@contoso.com" || a.Rows[0]["access_type"] != "Bind" {
		t.Fatalf("message search: %d %+v", code, a)
	}
	// Counts and groupings answer the same query.
	code, a, _ = f.search(t, "/api/v1/search", url.Values{"q": {""}, "count": {"true"}})
	if code != 200 || len(a.Rows) != 1 {
		t.Fatalf("count: %d %+v", code, a)
	}
	total := int(a.Rows[0]["count"].(float64))
	if total < int(f.j.Size()) {
		t.Fatalf("count %d for %d journal entries", total, f.j.Size())
	}
	// Paging through everything, two rows a page: every event once.
	seen := map[string]bool{}
	params := url.Values{"q": {""}, "limit": {"2"}}
	for pages := 0; ; pages++ {
		if pages > total {
			t.Fatal("paging does not end")
		}
		code, a, _ = f.search(t, "/api/v1/search", params)
		if code != 200 {
			t.Fatalf("page %d: %d %+v", pages, code, a)
		}
		for _, r := range a.Rows {
			k := fmt.Sprint(r["idx"], "/", r["sub"])
			if seen[k] {
				t.Fatalf("page %d repeats %s", pages, k)
			}
			seen[k] = true
		}
		if a.NextCursor == "" {
			break
		}
		params.Set("cursor", a.NextCursor)
	}
	if len(seen) != total {
		t.Fatalf("pages gave %d events, count says %d", len(seen), total)
	}
	// mail_access pages may end inside an event (a Bind of two messages,
	// one row a page): every row once.
	code, a, _ = f.search(t, "/api/v1/search", url.Values{"table": {"mail_access"}, "count": {"true"}})
	if code != 200 || len(a.Rows) != 1 {
		t.Fatalf("mail_access count: %d %+v", code, a)
	}
	mailRows := int(a.Rows[0]["count"].(float64))
	seen = map[string]bool{}
	params = url.Values{"table": {"mail_access"}, "limit": {"1"}}
	for pages := 0; ; pages++ {
		if pages > mailRows {
			t.Fatal("mail_access paging does not end")
		}
		code, a, _ = f.search(t, "/api/v1/search", params)
		if code != 200 {
			t.Fatalf("mail_access page %d: %d %+v", pages, code, a)
		}
		for _, r := range a.Rows {
			k := fmt.Sprint(r["idx"], "/", r["sub"], "/", r["n"])
			if seen[k] {
				t.Fatalf("mail_access page %d repeats %s", pages, k)
			}
			seen[k] = true
		}
		if a.NextCursor == "" {
			break
		}
		params.Set("cursor", a.NextCursor)
	}
	if mailRows < 2 || len(seen) != mailRows {
		t.Fatalf("mail_access pages gave %d rows, count says %d", len(seen), mailRows)
	}
	// A cursor belongs to its query.
	code, a, _ = f.search(t, "/api/v1/search", url.Values{"q": {"op:MailItemsAccessed"}, "cursor": {params.Get("cursor")}})
	if code != 400 || !strings.Contains(a.Error, "another query") {
		t.Fatalf("cursor of another query: %d %+v", code, a)
	}
	// The timeline of the same user.
	code, a, _ = f.search(t, "/api/v1/timeline", url.Values{"user": {"Alice@Contoso.com"}})
	if code != 200 || len(a.Rows) == 0 {
		t.Fatalf("timeline: %d %+v", code, a)
	}
	for _, r := range a.Rows {
		if r["actor"] != "alice@contoso.com" && r["mailbox"] != "alice@contoso.com" {
			t.Errorf("timeline row of someone else: %v", r)
		}
	}
}

func TestSearchAPIRefusals(t *testing.T) {
	f := newSearchFixture(t)
	cases := []struct {
		path   string
		params url.Values
		code   int
		says   string
	}{
		{"/api/v1/search", url.Values{"q": {"user:a AND (ip:10.0.0.1"}}, 400, "query: at column"},
		{"/api/v1/search", url.Values{"q": {"nosuchfield:x"}}, 400, "nosuchfield"},
		{"/api/v1/search", url.Values{"q": {"ip:10.0.0.0/33"}}, 400, "10.0.0.0/33"},
		{"/api/v1/search", url.Values{"limit": {"100000"}}, 400, "limit: want a number from 1 to 10000"},
		{"/api/v1/search", url.Values{"limit": {"0"}}, 400, "limit"},
		{"/api/v1/search", url.Values{"table": {"meta"}}, 400, "table: events, mail_access or alerts"},
		{"/api/v1/search", url.Values{"since": {"yesterdayish"}}, 400, "since"},
		{"/api/v1/search", url.Values{"group_by": {"nosuch"}}, 400, `group_by "nosuch": not a field of events`},
		{"/api/v1/search", url.Values{"cursor": {"!!"}}, 400, "not a cursor this server issued"},
		{"/api/v1/search", url.Values{"timeout": {"1h"}}, 400, "timeout: want a duration up to 30s"},
		{"/api/v1/search", url.Values{"wait": {"1h"}}, 400, "wait: want a duration up to 1m0s"},
		// The deadline holds: a query out of time answers 503 and says so.
		{"/api/v1/search", url.Values{"q": {"user:a"}, "timeout": {"1ns"}}, 503, "the query gave up after 1ns"},
		{"/api/v1/timeline", url.Values{"user": {"a"}, "timeout": {"1ns"}}, 503, "the query gave up after 1ns"},
		{"/api/v1/timeline", url.Values{}, 400, "name one entity"},
		{"/api/v1/timeline", url.Values{"user": {"a"}, "ip": {"10.0.0.1"}}, 400, "name one entity"},
		{"/api/v1/timeline", url.Values{"ip": {"not-an-ip"}}, 400, `ip "not-an-ip"`},
		{"/api/v1/timeline", url.Values{"user": {"a"}, "window": {"1h"}}, 400, "window and context go with around"},
		{"/api/v1/timeline", url.Values{"user": {"a"}, "around": {"2026-13-01"}}, 400, "around"},
	}
	for _, c := range cases {
		code, a, _ := f.search(t, c.path, c.params)
		if code != c.code || !strings.Contains(a.Error, c.says) {
			t.Errorf("%s?%s: %d %q, want %d saying %q", c.path, c.params.Encode(), code, a.Error, c.code, c.says)
		}
	}
	// A query error also points at the term.
	_, a, _ := f.search(t, "/api/v1/search", url.Values{"q": {"user:a nosuchfield:x"}})
	if a.Column != 8 || a.Term != "nosuchfield:x" {
		t.Errorf("query error points at column %d term %q, want 8 nosuchfield:x", a.Column, a.Term)
	}
}

func TestSearchAPIWithoutIndex(t *testing.T) {
	f := newFixture(t, Config{})
	resp, body := f.do(t, "GET", "/api/v1/search?q=x", f.keys[auth.RoleViewer], nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("keeps no investigation index")) {
		t.Fatalf("search without an index: %d %s", resp.StatusCode, body)
	}
}
