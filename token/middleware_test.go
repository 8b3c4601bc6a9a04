package token

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func auditedValidator(t *testing.T, f *fixture, w io.Writer) *Validator {
	t.Helper()
	v, err := New(Config{Now: func() time.Time { return testNow }, Audit: NewAuditLog(w, nil),
		Issuers: []IssuerConfig{{Name: "entra", Issuer: entTmpl, Tenants: []string{entTenant},
			Audiences: []string{testAud}, Keys: []KeySource{staticSet(t, "entra", entTmpl, f.ent)}},
			{Name: "msa", Issuer: msaIssuer, Tenants: []string{msaTenant}, Audiences: []string{testAud},
				Keys: []KeySource{staticSet(t, "msa", msaIssuer, f.con)}}}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMiddleware(t *testing.T) {
	f := getFixture(t)
	var audit syncBuffer
	v := auditedValidator(t, f, &audit)
	var reached atomic.Int32
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			http.Error(w, "no claims", 500)
			return
		}
		io.WriteString(w, c.Subject+"|"+c.Tenant)
	})
	srv := httptest.NewServer(Middleware(v, MiddlewareOptions{Realm: "mail"})(upstream))
	defer srv.Close()

	good := sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(entTenant), entTenant))
	expired := sign(t, "RS256", f.ent.priv, hdr(f.ent),
		with(claimsFor(entIssuer(entTenant), entTenant), "exp", testNow.Add(-time.Hour).Unix()))
	scope := sign(t, "RS256", f.con.priv, hdr(f.con), claimsFor(entIssuer(entTenant), entTenant))

	tests := []struct {
		name      string
		auth      []string
		status    int
		body      string
		challenge string
	}{
		{"valid", []string{"Bearer " + good}, 200, "user-1|" + entTenant, ""},
		{"lowercase scheme", []string{"bearer " + good}, 200, "user-1|" + entTenant, ""},
		{"missing", nil, 401, "", `Bearer realm="mail"`},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, 401, "", `Bearer realm="mail"`},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, 401, "", `Bearer realm="mail"`},
		{"expired", []string{"Bearer " + expired}, 401, "",
			`Bearer realm="mail", error="invalid_token", error_description="expired"`},
		{"wrong scope key", []string{"Bearer " + scope}, 401, "",
			`Bearer realm="mail", error="invalid_token", error_description="key_scope"`},
		{"garbage", []string{`Bearer x"y`}, 401, "",
			`Bearer realm="mail", error="invalid_token", error_description="malformed"`},
	}
	wantReached := int32(0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/owa/messages", nil)
			req.Header.Set("User-Agent", "Client=REST;Client=RESTSystem;;")
			for _, a := range tc.auth {
				req.Header.Add("Authorization", a)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if tc.status == 200 {
				wantReached++
				if string(body) != tc.body {
					t.Fatalf("body %q, want %q", body, tc.body)
				}
			}
		})
	}
	if reached.Load() != wantReached {
		t.Fatalf("upstream reached %d times, want %d", reached.Load(), wantReached)
	}

	// One audit line per request, each a self-describing JSON object.
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != len(tests) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(lines), len(tests), audit.String())
	}
	ids := map[string]bool{}
	ops := map[string]int{}
	for i, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e["source"] != AuditSource || e["client_ip"] != "127.0.0.1" || e["path"] != "/owa/messages" {
			t.Fatalf("line %d: bad envelope %v", i, e)
		}
		if _, err := time.Parse(time.RFC3339, e["time"].(string)); err != nil {
			t.Fatalf("line %d: time: %v", i, err)
		}
		id, _ := e["id"].(string)
		if id == "" || ids[id] {
			t.Fatalf("line %d: id %q missing or repeated", i, id)
		}
		ids[id] = true
		ops[e["operation"].(string)]++
		if strings.Contains(l, good) || strings.Contains(l, expired) {
			t.Fatalf("line %d: audit log contains a bearer token", i)
		}
	}
	if ops[OpValidated] != 2 || ops[OpRejected] != 6 {
		t.Fatalf("operations %v", ops)
	}
	// The scope rejection names both the matched issuer and the key's own set.
	var scopeEv Event
	sc := bufio.NewScanner(strings.NewReader(audit.String()))
	for sc.Scan() {
		var e Event
		_ = json.Unmarshal(sc.Bytes(), &e)
		if e.Reason == ReasonKeyScope {
			scopeEv = e
		}
	}
	if scopeEv.KeySet != "entra" || scopeEv.KeyScope != "msa" || scopeEv.Kid != "con-1" ||
		scopeEv.Tid != entTenant || scopeEv.AppIDNorm == "" || scopeEv.UTI != "uti-abc" || scopeEv.Exp == "" {
		t.Fatalf("scope event lacks fields: %+v", scopeEv)
	}
}

// A request with access_token in its query is refused even when its
// Authorization header is valid, so nothing behind the middleware reads a
// second, unvalidated token; the refusal is audited.
func TestMiddlewareQueryToken(t *testing.T) {
	f := getFixture(t)
	var audit syncBuffer
	v := auditedValidator(t, f, &audit)
	var reached atomic.Int32
	srv := httptest.NewServer(Middleware(v, MiddlewareOptions{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		reached.Add(1)
	})))
	defer srv.Close()
	good := sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(entTenant), entTenant))
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"access_token=abc", 400}, {"x=1&Access_Token=abc", 400}, {"x=1;access-token=abc", 400},
		{"access%5ftoken=abc", 400}, {"access_token", 400}, {"x=access_token", 200}, {"access_tokens=1", 200}, {"", 200},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/m?"+tc.query, nil)
		req.Header.Set("Authorization", "Bearer "+good)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%q: status %d, want %d", tc.query, resp.StatusCode, tc.status)
		}
		if tc.status == 400 && (!strings.Contains(string(body), `"reason":"query_token"`) ||
			resp.Header.Get("WWW-Authenticate") != `Bearer realm="vigil", error="invalid_request"`) {
			t.Errorf("%q: body %s, challenge %q", tc.query, body, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := reached.Load(); n != 3 {
		t.Errorf("handler reached %d times, want 3", n)
	}
	if n := strings.Count(audit.String(), `"reason":"query_token"`); n != 5 {
		t.Errorf("%d query_token events audited, want 5:\n%s", n, audit.String())
	}
}
