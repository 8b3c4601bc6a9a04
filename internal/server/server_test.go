package server

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

type fixture struct {
	srv   *httptest.Server
	j     *journal.Journal
	keys  map[auth.Role]string
	dir   string
	lag   uint64
	delay time.Duration
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
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
	s, err := New(cfg, Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, filepath.Join(dir, "quarantine.jsonl")),
		Lag: func() uint64 { return f.lag }, Delay: func() time.Duration { return f.delay }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, key string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, body)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func fixtureBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "source", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthEveryEndpoint(t *testing.T) {
	f := newFixture(t, Config{})
	routes := []struct {
		method, path string
		allowed      []auth.Role
	}{
		{"POST", "/api/v1/ingest", []auth.Role{auth.RoleIngest, auth.RoleAdmin}},
		{"GET", "/api/v1/incidents", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/incidents/x", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/alerts", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/sources", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/checkpoint", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/proof?index=0", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/search?q=x", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/timeline?user=x", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/api/v1/rules", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"POST", "/api/v1/rules/D1/disable", []auth.Role{auth.RoleAdmin}},
		{"POST", "/api/v1/rules/D1/enable", []auth.Role{auth.RoleAdmin}},
		{"GET", "/metrics", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
		{"GET", "/readyz", []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin}},
	}
	for _, rt := range routes {
		for _, key := range []string{"", "vgl_000000000000_nope", "garbage"} {
			resp, _ := f.do(t, rt.method, rt.path, key, strings.NewReader(""))
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with key %q: %d, want 401 with a challenge", rt.method, rt.path, key, resp.StatusCode)
			}
		}
		for role, key := range f.keys {
			resp, _ := f.do(t, rt.method, rt.path, key, strings.NewReader(""))
			allowed := false
			for _, a := range rt.allowed {
				allowed = allowed || a == role
			}
			if denied := resp.StatusCode == http.StatusForbidden; denied == allowed {
				t.Errorf("%s %s as %s: status %d (allowed=%v)", rt.method, rt.path, role, resp.StatusCode, allowed)
			}
		}
	}
	resp, body := f.do(t, "GET", "/healthz", "", nil)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}
}

func TestIngestDurableDeduplicatedQuarantined(t *testing.T) {
	f := newFixture(t, Config{})
	ual := fixtureBytes(t, "ual_mailitemsaccessed.jsonl")
	resp, body := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(ual))
	var res IngestResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Accepted != 2 || res.Duplicates != 0 {
		t.Fatalf("first push: %d %s", resp.StatusCode, body)
	}
	// Acknowledged means durable: the entries are in the journal now.
	if f.j.Size() != 2 {
		t.Fatalf("journal holds %d entries after the ack", f.j.Size())
	}
	// The same records again, gzip-compressed this time: all duplicates.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ual)
	zw.Close()
	resp, body = f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], &gz)
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Accepted != 0 || res.Duplicates != 2 {
		t.Fatalf("second push: %d %s", resp.StatusCode, body)
	}
	// A body with undecodable records: they are kept with their reasons.
	resp, body = f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "mixed_bad.jsonl")))
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Quarantined == 0 || res.Accepted == 0 {
		t.Fatalf("mixed push: %d %s", resp.StatusCode, body)
	}
	q, err := os.ReadFile(filepath.Join(f.dir, "quarantine.jsonl"))
	if err != nil || int64(bytes.Count(q, []byte("\n"))) != res.Quarantined || !bytes.Contains(q, []byte(`"reason"`)) {
		t.Fatalf("quarantine file (%v): %s", err, q)
	}
	// Records without an id of their own are deduplicated by content,
	// whatever their key order and spacing.
	noID := `{"TimeGenerated":"2026-11-02T03:04:05Z","ActionType":"MailItemsAccessed","AccountUpn":"a@contoso.com"}` + "\n"
	reordered := `{ "AccountUpn":"a@contoso.com", "ActionType":"MailItemsAccessed", "TimeGenerated":"2026-11-02T03:04:05Z" }` + "\n"
	for i, body := range []string{noID, reordered} {
		resp, b := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], strings.NewReader(body))
		if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || res.Accepted+res.Duplicates != 1 || (i == 1) != (res.Duplicates == 1) {
			t.Fatalf("id-less push %d: %d %s", i, resp.StatusCode, b)
		}
	}
	// An envelope ({"value": [...]}) from the Graph API.
	resp, body = f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "graph_signins_page.json")))
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Accepted == 0 {
		t.Fatalf("graph page: %d %s", resp.StatusCode, body)
	}
}

func TestIngestLimits(t *testing.T) {
	f := newFixture(t, Config{MaxBodyBytes: 1000})
	ual := fixtureBytes(t, "ual_mailitemsaccessed.jsonl")
	big := bytes.Repeat(ual, 4)
	resp, _ := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(big))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d, want 413", resp.StatusCode)
	}
	if f.j.Size() != 0 {
		t.Fatalf("a refused body left %d entries in the journal", f.j.Size())
	}
	// Detection a few entries behind but long: the delay alone refuses.
	f.lag, f.delay = 10, 4*time.Second
	resp, body := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], strings.NewReader("{}"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "4 s behind the journal (limit 1 s)") {
		t.Fatalf("detection 4 s behind: %d %s, want 429 with Retry-After naming the delay and the limit", resp.StatusCode, body)
	}
	f.delay = 800 * time.Millisecond
	if resp, body := f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], strings.NewReader("{}")); resp.StatusCode == http.StatusTooManyRequests {
		t.Fatalf("detection 0.8 s behind (under the 1 s default): %d %s, not refused", resp.StatusCode, body)
	}
	f.lag, f.delay = 2_000_000, 0
	resp, _ = f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], strings.NewReader("{}"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("lagging detection: %d, want 429 with Retry-After", resp.StatusCode)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	f := newFixture(t, Config{RatePerKey: 1, Burst: 3})
	codes := map[int]int{}
	for range 6 {
		resp, _ := f.do(t, "GET", "/api/v1/checkpoint", f.keys[auth.RoleViewer], nil)
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] < 2 {
		t.Fatalf("no rate limit: %v", codes)
	}
	// Another key has its own budget.
	if resp, _ := f.do(t, "GET", "/api/v1/checkpoint", f.keys[auth.RoleAdmin], nil); resp.StatusCode != 200 {
		t.Fatalf("admin limited by the viewer's budget: %d", resp.StatusCode)
	}
}

func TestCheckpointAndProof(t *testing.T) {
	f := newFixture(t, Config{})
	f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "purview_export.csv")))
	if f.j.Size() < 2 {
		t.Fatalf("journal holds %d", f.j.Size())
	}
	resp, body := f.do(t, "GET", "/api/v1/proof?index=1", f.keys[auth.RoleViewer], nil)
	if resp.StatusCode != 200 {
		t.Fatalf("proof: %d %s", resp.StatusCode, body)
	}
	var p struct {
		Index      uint64
		TreeSize   uint64 `json:"tree_size"`
		LeafHash   string `json:"leaf_hash"`
		Root       string
		Proof      []string
		Checkpoint string
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	var hashes [][]byte
	for _, h := range p.Proof {
		hashes = append(hashes, dec(h))
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 1, p.TreeSize, dec(p.LeafHash), hashes, dec(p.Root)); err != nil {
		t.Fatalf("the served proof does not verify: %v", err)
	}
	if !strings.Contains(p.Checkpoint, "\n\n— ") {
		t.Fatalf("checkpoint is not a signed note: %q", p.Checkpoint)
	}
	if resp, _ := f.do(t, "GET", "/api/v1/proof?index=99999", f.keys[auth.RoleViewer], nil); resp.StatusCode != 404 {
		t.Fatalf("proof past the end: %d", resp.StatusCode)
	}
}

// /metrics is behind auth and its series move with the work done.
func TestMetrics(t *testing.T) {
	f := newFixture(t, Config{})
	if resp, _ := f.do(t, "GET", "/metrics", "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without a key: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/metrics", f.keys[auth.RoleIngest], nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/metrics with an ingest key: %d", resp.StatusCode)
	}
	scrape := func() string {
		resp, body := f.do(t, "GET", "/metrics", f.keys[auth.RoleViewer], nil)
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d", resp.StatusCode)
		}
		return string(body)
	}
	before := scrape()
	for _, want := range []string{"vigil_journal_entries 0", "vigil_journal_commits_total 0", "vigil_journal_commit_duration_seconds_count 0", "vigil_build_info"} {
		if !strings.Contains(before, want) {
			t.Errorf("metrics before a push lack %q", want)
		}
	}
	f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "ual_mailitemsaccessed.jsonl")))
	f.do(t, "POST", "/api/v1/ingest", f.keys[auth.RoleIngest], bytes.NewReader(fixtureBytes(t, "ual_mailitemsaccessed.jsonl")))
	after := scrape()
	for _, want := range []string{`vigil_ingest_records_total{outcome="accepted"} 2`, `vigil_ingest_records_total{outcome="duplicate"} 2`,
		`vigil_ingest_requests_total{status="200"} 2`, "vigil_journal_entries 2", "vigil_journal_commit_duration_seconds_count 2",
		`vigil_api_denied_total{status="401"} 1`, `vigil_api_denied_total{status="403"} 1`} {
		if !strings.Contains(after, want) {
			t.Errorf("metrics after two pushes lack %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^vigil_journal_commits_total 0$`).MatchString(after) {
		t.Error("no journal commit counted after a push")
	}
	m := regexp.MustCompile(`(?m)^vigil_journal_bytes (\d+)$`).FindStringSubmatch(after)
	if m == nil || m[1] == "0" {
		t.Errorf("journal size on disk after a push: %v", m)
	}
}

func TestListenNeedsTLSOffLoopback(t *testing.T) {
	f := newFixture(t, Config{})
	_ = f
	for listen, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:0": true, "localhost:0": true, "0.0.0.0:8080": false, ":8080": false, "10.0.0.5:8080": false} {
		_, err := New(Config{Listen: listen}, Deps{Journal: f.j, Keys: &auth.Store{}, Ingest: &Ingester{}})
		if (err == nil) != ok {
			t.Errorf("listen %s without TLS: err = %v", listen, err)
		}
	}
}

// ?format= asserts the records' format: records of another format are
// quarantined with that reason, not decoded as something else; an unknown
// format is refused before anything is read.
func TestIngestAssertedFormat(t *testing.T) {
	f := newFixture(t, Config{})
	ual := fixtureBytes(t, "ual_mailitemsaccessed.jsonl")
	signins := fixtureBytes(t, "graph_signins_page.json")

	resp, body := f.do(t, "POST", "/api/v1/ingest?format=m365", f.keys[auth.RoleIngest], bytes.NewReader(ual))
	var res IngestResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Accepted != 2 || res.Quarantined != 0 {
		t.Fatalf("UAL as m365: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "POST", "/api/v1/ingest?format=m365", f.keys[auth.RoleIngest], bytes.NewReader(signins))
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.Accepted != 0 || res.Quarantined == 0 {
		t.Fatalf("sign-ins asserted as m365: %d %s", resp.StatusCode, body)
	}
	q, err := os.ReadFile(filepath.Join(f.dir, "quarantine.jsonl"))
	if err != nil || int64(bytes.Count(q, []byte("\n"))) != res.Quarantined ||
		!bytes.Contains(q, []byte("the record is entra, not the asserted format m365")) {
		t.Fatalf("quarantine of the refused sign-ins (%v): %s", err, q)
	}
	size := f.j.Size()
	resp, body = f.do(t, "POST", "/api/v1/ingest?format=splunk", f.keys[auth.RoleIngest], bytes.NewReader(ual))
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("m365, entra, gws, inboxrule, json")) || f.j.Size() != size {
		t.Fatalf("unknown format: %d %s (journal %d → %d)", resp.StatusCode, body, size, f.j.Size())
	}
}
