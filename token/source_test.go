package token

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source shared by sources and validators.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// jwksServer serves a mutable JWKS over TLS on 127.0.0.1.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	header  http.Header
	fetches atomic.Int32
	etagHit atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte, h http.Header) *jwksServer {
	s := &jwksServer{body: body, header: h}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, "https://idp.test", s.URL+"/keys")
			return
		case "/keys":
		default:
			http.NotFound(w, r)
			return
		}
		s.fetches.Add(1)
		etag := fmt.Sprintf(`"%d"`, len(s.body))
		if r.Header.Get("If-None-Match") == etag {
			s.etagHit.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		for k, v := range s.header {
			w.Header()[k] = v
		}
		w.Header().Set("ETag", etag)
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.mu.Lock(); s.body = body; s.mu.Unlock() }

func TestSourceCacheHeaders(t *testing.T) {
	f := getFixture(t)
	srv := newJWKSServer(t, jwksJSON(t, f.ent), http.Header{"Cache-Control": {"public, max-age=600"}})
	clk := &clock{t: testNow}
	src, err := NewSource(srv.URL+"/keys", SourceOptions{HTTPClient: srv.Client(), Now: clk.Now,
		Scope: Scope{KeySet: "entra"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ks, err := src.Keys(ctx)
	if err != nil || len(ks.ByKid("ent-1")) != 1 {
		t.Fatalf("keys: %v %v", ks, err)
	}
	if ks.Keys[0].Scope.KeySet != "entra" || ks.Keys[0].Scope.Source != srv.URL+"/keys" {
		t.Fatalf("scope not recorded: %+v", ks.Keys[0].Scope)
	}
	clk.Add(9 * time.Minute)
	src.Keys(ctx)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times within max-age, want 1", n)
	}
	clk.Add(2 * time.Minute)
	ks2, err := src.Keys(ctx)
	if err != nil || srv.fetches.Load() != 2 || srv.etagHit.Load() != 1 || ks2 != ks {
		t.Fatalf("after max-age: fetches=%d etag hits=%d same=%v err=%v",
			srv.fetches.Load(), srv.etagHit.Load(), ks2 == ks, err)
	}
}

func TestSourceRefreshRateLimitAndRollover(t *testing.T) {
	f := getFixture(t)
	srv := newJWKSServer(t, jwksJSON(t, f.ent), http.Header{"Cache-Control": {"max-age=3600"}})
	clk := &clock{t: testNow}
	src, err := NewSource(srv.URL+"/keys", SourceOptions{HTTPClient: srv.Client(), Now: clk.Now,
		MinRefresh: time.Minute, Overlap: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Now: clk.Now, Issuers: []IssuerConfig{{Name: "entra", Issuer: entTmpl,
		Tenants: []string{entTenant}, Audiences: []string{testAud}, Keys: []KeySource{src}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokFor := func(k *testKey) string {
		c := claimsFor(entIssuer(entTenant), entTenant)
		c["iat"], c["nbf"], c["exp"] = clk.Now().Unix(), clk.Now().Unix(), clk.Now().Add(time.Hour).Unix()
		return sign(t, "RS256", k.priv, hdr(k), c)
	}
	if d := v.Check(ctx, tokFor(f.ent)); !d.Valid {
		t.Fatalf("initial: %s %s", d.Reason, d.Detail)
	}
	// Unknown kids trigger at most one fetch per MinRefresh.
	clk.Add(2 * time.Minute)
	for i := 0; i < 20; i++ {
		if d := v.Check(ctx, tokFor(f.entPS)); d.Reason != ReasonUnknownKey && d.Reason != ReasonAlgNotAllowed {
			t.Fatalf("unknown kid: %s", d.Reason)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a burst of unknown kids, want 2", n)
	}
	// Rollover: the IdP publishes ent-ec and drops ent-1.
	srv.set(jwksJSON(t, f.entEC))
	clk.Add(2 * time.Minute)
	ecTok := sign(t, "ES256", f.entEC.priv, hdr(f.entEC), with(claimsFor(entIssuer(entTenant), entTenant),
		"iat", clk.Now().Unix(), "exp", clk.Now().Add(time.Hour).Unix()))
	if d := v.Check(ctx, ecTok); !d.Valid {
		t.Fatalf("new key after refresh: %s %s", d.Reason, d.Detail)
	}
	// The old key stays usable within the overlap window, flagged as retired.
	d := v.Check(ctx, tokFor(f.ent))
	if !d.Valid || d.Key.RetiredAt.IsZero() {
		t.Fatalf("old key within overlap: %s %s", d.Reason, d.Detail)
	}
	// After the window it is refused as retired, not merely unknown.
	clk.Add(11 * time.Minute)
	if d := v.Check(ctx, tokFor(f.ent)); d.Reason != ReasonKeyRetired {
		t.Fatalf("old key after overlap: %s %s", d.Reason, d.Detail)
	}
}

func TestSourceDiscoveryAndErrors(t *testing.T) {
	f := getFixture(t)
	srv := newJWKSServer(t, jwksJSON(t, f.ent), nil)
	ctx := context.Background()
	disc := srv.URL + "/.well-known/openid-configuration"

	src, _ := NewSource(disc, SourceOptions{HTTPClient: srv.Client(), Scope: Scope{Issuer: "https://idp.test"}})
	ks, err := src.Keys(ctx)
	if err != nil || len(ks.Keys) != 1 || ks.Scope.Issuer != "https://idp.test" {
		t.Fatalf("discovery: %v %+v", err, ks)
	}
	src, _ = NewSource(disc, SourceOptions{HTTPClient: srv.Client(), Scope: Scope{Issuer: "https://other.test"}})
	if _, err := src.Keys(ctx); err == nil || !strings.Contains(err.Error(), "discovery issuer") {
		t.Fatalf("issuer mismatch accepted: %v", err)
	}
	if _, err := NewSource("http://127.0.0.1/keys", SourceOptions{}); err == nil {
		t.Fatal("plain http accepted")
	}
	// An outage after a good fetch keeps serving the cached set.
	clk := &clock{t: testNow}
	src, _ = NewSource(srv.URL+"/keys", SourceOptions{HTTPClient: srv.Client(), Now: clk.Now})
	if _, err := src.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	clk.Add(2 * time.Hour)
	if ks, err := src.Keys(ctx); err != nil || len(ks.Keys) != 1 {
		t.Fatalf("stale-if-error: %v", err)
	}

	// Files, including a discovery document is not needed: a plain JWKS.
	dir := t.TempDir()
	p := filepath.Join(dir, "keys.json")
	os.WriteFile(p, jwksJSON(t, f.ent, f.entEC), 0o644)
	src, _ = NewSource(p, SourceOptions{})
	if ks, err := src.Keys(ctx); err != nil || len(ks.Keys) != 2 {
		t.Fatalf("file: %v", err)
	}
	src, _ = NewSource(filepath.Join(dir, "missing.json"), SourceOptions{})
	if _, err := src.Keys(ctx); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestCacheTTL(t *testing.T) {
	s := &Source{}
	s.opts.defaults()
	s.opts.Now = func() time.Time { return testNow }
	date := testNow.Format(http.TimeFormat)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, time.Hour},
		{http.Header{"Cache-Control": {"max-age=300"}}, 5 * time.Minute},
		{http.Header{"Cache-Control": {"max-age=5"}}, time.Minute},          // clamped up
		{http.Header{"Cache-Control": {"max-age=9999999"}}, 24 * time.Hour}, // clamped down
		{http.Header{"Cache-Control": {"no-cache"}}, time.Minute},
		{http.Header{"Expires": {testNow.Add(2 * time.Hour).Format(http.TimeFormat)}, "Date": {date}}, 2 * time.Hour},
		{http.Header{"Expires": {"0"}}, time.Minute},
	} {
		if got := s.cacheTTL(tc.h); got != tc.want {
			t.Errorf("%v: ttl %v, want %v", tc.h, got, tc.want)
		}
	}
}

// Entra's common and organizations discovery documents name the issuer
// template; a caller that accepts one tenant configures that tenant's exact
// issuer, and the keys must load for it (and validate its tokens).
func TestSourceEntraTemplateDiscovery(t *testing.T) {
	f := getFixture(t)
	org, con := f.entra["org-rsa"], f.entra["consumer-rsa"]
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/common/v2.0/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, entTmpl, srv.URL+"/common/discovery/v2.0/keys")
		case "/common/discovery/v2.0/keys":
			w.Write(jwksJSON(t, org, con))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	disc := srv.URL + "/common/v2.0/.well-known/openid-configuration"
	ctx := context.Background()
	for _, tc := range []struct {
		issuer string
		ok     bool
	}{
		{entIssuer(entTenant), true},
		{entTmpl, true},
		{msaIssuer, true}, // the consumer tenant is one instance of the template; per-key issuers decide
		{"https://login.microsoftonline.com/" + entTenant + "/v2.0/extra", false},
		{"https://login.microsoftonline.com/a/b/v2.0", false},
		{"https://evil.example/" + entTenant + "/v2.0", false},
		{"https://login.microsoftonline.com/{tenant}/v2.0", false},
	} {
		src, _ := NewSource(disc, SourceOptions{HTTPClient: srv.Client(), Scope: Scope{KeySet: "entra", Issuer: tc.issuer}})
		ks, err := src.Keys(ctx)
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), "discovery issuer") {
				t.Errorf("%s: discovery issuer %s accepted: %v", tc.issuer, entTmpl, err)
			}
			continue
		}
		if err != nil || len(ks.Keys) != 2 || ks.Scope.Issuer != tc.issuer {
			t.Errorf("%s: %v %+v", tc.issuer, err, ks)
			continue
		}
		if tc.issuer != entIssuer(entTenant) {
			continue
		}
		v, err := New(Config{Now: func() time.Time { return testNow }, Issuers: []IssuerConfig{{Name: "entra",
			Issuer: tc.issuer, Audiences: []string{testAud}, Keys: []KeySource{src}}}})
		if err != nil {
			t.Fatal(err)
		}
		good := sign(t, "RS256", org.priv, hdr(org), claimsFor(entIssuer(entTenant), entTenant))
		if d := v.Check(ctx, good); !d.Valid {
			t.Errorf("exact issuer from the common discovery document: %s %s", d.Reason, d.Detail)
		}
		storm := sign(t, "RS256", con.priv, hdr(con), claimsFor(entIssuer(entTenant), entTenant))
		if d := v.Check(ctx, storm); d.Reason != ReasonKeyScope {
			t.Errorf("consumer key on an organisation token: %s %s", d.Reason, d.Detail)
		}
	}
}
