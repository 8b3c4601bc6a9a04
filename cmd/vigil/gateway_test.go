package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenRE = regexp.MustCompile(`listening on (https?://[0-9.:]+)`)

// startGateway runs "vigil gateway" in-process and returns its base URL and
// a stop function that returns the exit code.
func startGateway(t *testing.T, args ...string) (string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"gateway"}, args...), &out, &errb) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(errb.String()); m != nil {
			return m[1], func() int {
				cancel()
				select {
				case c := <-done:
					return c
				case <-time.After(15 * time.Second):
					t.Fatal("gateway did not stop")
					return -1
				}
			}
		}
		select {
		case c := <-done:
			cancel()
			t.Fatalf("gateway exited %d: %s", c, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("gateway did not start: %s", errb.String())
	return "", nil
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGatewayEndToEnd(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	good := testKey(t, "gw-1", now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	stray := testKey(t, "gw-stray", now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	keys := writeJWKS(t, dir, good)

	var reached atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		fmt.Fprintf(w, "%s %s sub=%s tid=%s app=%s auth=%t", r.Method, r.URL.Path,
			r.Header.Get("X-Vigil-Subject"), r.Header.Get("X-Vigil-Tenant"), r.Header.Get("X-Vigil-App-Id"),
			r.Header.Get("Authorization") != "")
	}))
	defer upstream.Close()

	cfg := writeFile(t, dir, "gateway.yaml", fmt.Sprintf(`
listen: 127.0.0.1:0
realm: mail
skew: 1m
strip_authorization: true
issuers:
  - name: entra
    issuer: %s
    tenants: [%s]
    audiences: [%s]
    algorithms: [RS256]
    required_claims: [sub]
    max_lifetime: 2h
    keys: [%s]
    min_refresh: 1m
`, cliTmpl, cliTenant, cliAud, keys))
	auditPath := filepath.Join(dir, "audit.jsonl")
	jdir := filepath.Join(dir, "journal")
	base, stop := startGateway(t, "--upstream", upstream.URL, "--config", cfg, "--audit", auditPath, "--journal", jdir)

	valid := signClaims(t, good, cliClaims(now))
	tests := []struct {
		name   string
		auth   string
		spoof  bool
		status int
		body   string
	}{
		{"valid token proxied with identity headers", "Bearer " + valid, true, 200,
			"GET /owa/service.svc sub=alice tid=" + cliTenant + " app=app-1 auth=false"},
		{"no token", "", false, 401, ""},
		{"key not in the issuer's set", "Bearer " + signClaims(t, stray, cliClaims(now)), false, 401, ""},
		{"expired", "Bearer " + signClaims(t, good, cliClaims(now, "exp", now.Add(-time.Hour).Unix())), false, 401, ""},
		{"lifetime too long", "Bearer " + signClaims(t, good, cliClaims(now, "exp", now.Add(5*time.Hour).Unix())), false, 401, ""},
		{"missing required sub", "Bearer " + signClaims(t, good, cliClaims(now, "sub", nil)), false, 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/owa/service.svc", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.spoof {
				req.Header.Set("X-Vigil-Subject", "admin")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 200 && string(b) != tc.body {
				t.Fatalf("upstream saw %q, want %q", b, tc.body)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="mail"`) {
				t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if code := stop(); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}
	if reached.Load() != 1 {
		t.Fatalf("upstream reached %d times, want 1", reached.Load())
	}
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var reasons []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Source, Operation, Reason, Time, ID, KeySet string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Source != "vigil.token" || e.ID == "" || e.Time == "" {
			t.Fatalf("bad event %s", sc.Text())
		}
		reasons = append(reasons, e.Operation+":"+e.Reason)
	}
	want := []string{"TokenValidated:ok", "TokenRejected:missing_token", "TokenRejected:unknown_key",
		"TokenRejected:expired", "TokenRejected:lifetime", "TokenRejected:missing_claim"}
	if strings.Join(reasons, " ") != strings.Join(want, " ") {
		t.Fatalf("audit reasons %v, want %v", reasons, want)
	}

	// The same events are in the journal, which verifies, and decode as
	// vigil.token events.
	if code, out, errs := runVigil(t, "verify", "--data", jdir); code != 0 || !strings.Contains(out, "verified 6 entries") {
		t.Fatalf("verify: exit %d: %s %s", code, out, errs)
	}
	code, out, errs := runVigil(t, "hunt", "--journal", jdir, "--quarantine", filepath.Join(dir, "q"))
	if code != 0 || !strings.Contains(errs, "decoded:     6 events (vigil.token 6)") {
		t.Fatalf("hunt over the gateway's journal: exit %d: %s %s", code, out, errs)
	}
}

func TestGatewayTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	good := testKey(t, "gw-1", now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	keys := writeJWKS(t, dir, good)
	// Server certificate for 127.0.0.1, generated for this test only.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	kder, _ := x509.MarshalECPrivateKey(priv)
	certPath := writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyPath := writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer upstream.Close()
	cfg := writeFile(t, dir, "gw.yaml", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [%s]\n    keys: [%s]\n",
		cliIss, cliAud, keys))
	base, stop := startGateway(t, "--upstream", upstream.URL, "--config", cfg, "--listen", "127.0.0.1:0",
		"--tls-cert", certPath, "--tls-key", keyPath, "--audit", filepath.Join(dir, "a.jsonl"))
	defer stop()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Header.Set("Authorization", "Bearer "+signClaims(t, good, cliClaims(now)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestGatewayUsage(t *testing.T) {
	dir := t.TempDir()
	keys := writeJWKS(t, dir, testKey(t, "gw-1", time.Now().AddDate(-1, 0, 0), time.Now().AddDate(1, 0, 0)))
	good := fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [a]\n    keys: [%s]\n", cliIss, keys)
	tests := []struct {
		name string
		cfg  string
		args []string
		want string
	}{
		{"unknown YAML field", good + "strict_mode: false\n", nil, "not found"},
		{"misspelt issuer field", fmt.Sprintf("issuers:\n  - issuer: %s\n    audience: [a]\n    keys: [%s]\n", cliIss, keys), nil, "audience"},
		{"template without tenants", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [a]\n    keys: [%s]\n", cliTmpl, keys), nil, "tenants"},
		{"no audiences", fmt.Sprintf("issuers:\n  - issuer: %s\n    keys: [%s]\n", cliIss, keys), nil, "audiences"},
		{"HMAC algorithm", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [a]\n    algorithms: [HS256]\n    keys: [%s]\n", cliIss, keys), nil, "HS256"},
		{"plain http keys", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [a]\n    keys: [http://127.0.0.1:1/k]\n", cliIss), nil, "https"},
		{"public listen without TLS", good, []string{"--listen", "0.0.0.0:0"}, "without TLS"},
		{"missing upstream", good, []string{"--upstream", ""}, "--upstream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, dir, "c.yaml", tc.cfg)
			args := append([]string{"gateway", "--upstream", "http://127.0.0.1:1", "--config", cfg}, tc.args...)
			code, _, errs := runCLI(t, args...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
}

// The upstream trusts the gateway's identity and address headers, so no
// client-sent copy may reach it under any spelling an upstream might fold
// into the same name, and a token in the query string never passes.
func TestGatewayHeaderHygiene(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	good := testKey(t, "gw-1", now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	keys := writeJWKS(t, dir, good)
	type seen struct {
		Header http.Header
		Query  string
	}
	var last atomic.Pointer[seen]
	var reached atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		last.Store(&seen{r.Header.Clone(), r.URL.RawQuery})
	}))
	defer upstream.Close()
	cfg := writeFile(t, dir, "gw.yaml", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [%s]\n    keys: [%s]\n",
		cliIss, cliAud, keys))
	auditPath := filepath.Join(dir, "audit.jsonl")
	base, stop := startGateway(t, "--upstream", upstream.URL, "--config", cfg, "--listen", "127.0.0.1:0", "--audit", auditPath)
	bearer := "Bearer " + signClaims(t, good, cliClaims(now))
	get := func(t *testing.T, path string, h map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearer)
		for k, v := range h {
			req.Header[k] = []string{v} // sent exactly as spelt
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("identity headers under any spelling", func(t *testing.T) {
		spoof := map[string]string{}
		for _, name := range []string{"X-Vigil-Subject", "X_Vigil_Subject", "X-Vigil_Subject", "x_vigil_tenant",
			"X-VIGIL-ISSUER", "X-Vigil-App_Id", "X_vIgIl-Admin", "X-Vigil--Subject"} {
			spoof[name] = "spoofed"
		}
		if resp := get(t, "/", spoof); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		s := last.Load()
		for name, vals := range s.Header {
			norm := strings.ReplaceAll(strings.ToLower(name), "_", "-")
			if strings.HasPrefix(norm, "x-vigil") && slices.Contains(vals, "spoofed") {
				t.Errorf("client header %s: %v reached the upstream", name, vals)
			}
		}
		if s.Header.Get("X-Vigil-Subject") != "alice" || s.Header.Get("X-Vigil-Tenant") != cliTenant {
			t.Errorf("gateway identity headers: %v", s.Header)
		}
	})

	t.Run("client address headers replaced or removed", func(t *testing.T) {
		spoof := map[string]string{}
		for _, name := range []string{"X-Forwarded-For", "X_Forwarded_For", "X-Real-IP", "X_Real_IP", "True-Client-IP",
			"CF-Connecting-IP", "Forwarded", "X-Client-IP", "X-Cluster-Client-IP", "Fastly-Client-IP", "Client-IP",
			"X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "X-Original-Forwarded-For", "Forwarded-For",
			"X-Forwarded", "X-Forwarded-Host", "X_Forwarded_Proto", "X-Envoy-External-Address", "X-Azure-ClientIP",
			"X-Forwarded-Client-Cert"} {
			spoof[name] = "203.0.113.66"
		}
		if resp := get(t, "/", spoof); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		s := last.Load()
		for name, vals := range s.Header {
			for _, v := range vals {
				if strings.Contains(v, "203.0.113.66") {
					t.Errorf("client-supplied %s: %s reached the upstream", name, v)
				}
			}
		}
		if s.Header.Get("X-Forwarded-For") != "127.0.0.1" || s.Header.Get("X-Real-Ip") != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, X-Real-IP %q: want the client's address 127.0.0.1",
				s.Header.Get("X-Forwarded-For"), s.Header.Get("X-Real-Ip"))
		}
	})

	t.Run("token in the query string refused", func(t *testing.T) {
		before := reached.Load()
		for _, q := range []string{"?access_token=x", "?a=1&access_token=x", "?ACCESS_TOKEN=x", "?access-token=x",
			"?access%5Ftoken=x", "?a=1;access_token=x", "?access_token"} {
			resp := get(t, "/mail"+q, nil)
			if resp.StatusCode != http.StatusBadRequest ||
				!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
				t.Errorf("%s: status %d, challenge %q; want 400 invalid_request", q, resp.StatusCode,
					resp.Header.Get("WWW-Authenticate"))
			}
		}
		if n := reached.Load() - before; n != 0 {
			t.Errorf("upstream reached %d times by requests with a query token", n)
		}
		// Other parameters pass untouched.
		if resp := get(t, "/mail?folder=inbox&token_hint=1", nil); resp.StatusCode != 200 ||
			last.Load().Query != "folder=inbox&token_hint=1" {
			t.Errorf("plain query: status %d, upstream saw %q", resp.StatusCode, last.Load().Query)
		}
	})

	if code := stop(); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"reason":"query_token"`); n != 7 {
		t.Errorf("%d query_token rejections audited, want 7", n)
	}
}

// ES256 signatures are accepted in their low-S form only, unless the
// issuer's configuration sets allow_high_s.
func TestGatewayHighS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "ec-1", Use: "sig"}}})
	keys := writeFile(t, dir, "ec.json", string(set))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: "ec-1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(cliClaims(now))
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	// The two encodings of one signature: (r, s) and (r, n-s).
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	other := new(big.Int).Sub(n, s)
	low, high := s, other
	if s.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		low, high = other, s
	}
	enc := func(sv *big.Int) string {
		b := slices.Clone(sig)
		sv.FillBytes(b[32:])
		return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(b)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	for _, allow := range []bool{false, true} {
		cfg := writeFile(t, dir, "gw.yaml", fmt.Sprintf("issuers:\n  - issuer: %s\n    audiences: [%s]\n    allow_high_s: %t\n    keys: [%s]\n",
			cliIss, cliAud, allow, keys))
		base, stop := startGateway(t, "--upstream", upstream.URL, "--config", cfg, "--listen", "127.0.0.1:0",
			"--audit", filepath.Join(dir, "audit.jsonl"))
		for _, tc := range []struct {
			name string
			tok  string
			want int
		}{{"low-S", enc(low), 200}, {"high-S", enc(high), map[bool]int{false: 401, true: 200}[allow]}} {
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.Header.Set("Authorization", "Bearer "+tc.tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("allow_high_s=%t %s: status %d, want %d (%s)", allow, tc.name, resp.StatusCode, tc.want,
					resp.Header.Get("WWW-Authenticate"))
			}
		}
		if code := stop(); code != 0 {
			t.Fatalf("gateway exit %d", code)
		}
	}
}
