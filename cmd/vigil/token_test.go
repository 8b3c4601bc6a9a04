package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	cliTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	cliTmpl   = "https://login.microsoftonline.com/{tenantid}/v2.0"
	cliIss    = "https://login.microsoftonline.com/" + cliTenant + "/v2.0"
	cliAud    = "api://mail"
)

var cliAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// cliKey is a generated RSA key with a self-signed certificate; only its
// public half is ever written to disk.
type cliKey struct {
	kid  string
	priv *rsa.PrivateKey
	cert *x509.Certificate
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*cliKey{}
)

func testKey(t *testing.T, kid string, notBefore, notAfter time.Time) *cliKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[kid]; ok {
		return k
	}
	p, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: kid},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.PublicKey, p)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	k := &cliKey{kid: kid, priv: p, cert: c}
	keyCache[kid] = k
	return k
}

func writeJWKS(t *testing.T, dir string, keys ...*cliKey) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Use: "sig",
			Certificates: []*x509.Certificate{k.cert}})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func signClaims(t *testing.T, k *cliKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func cliClaims(now time.Time, kv ...any) map[string]any {
	c := map[string]any{"iss": cliIss, "tid": cliTenant, "aud": cliAud, "sub": "alice", "azp": "app-1",
		"uti": "u-1", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTokenCheck(t *testing.T) {
	dir := t.TempDir()
	good := testKey(t, "ent-1", cliAt.AddDate(-1, 0, 0), cliAt.AddDate(1, 0, 0))
	old := testKey(t, "ent-old", cliAt.AddDate(-5, 0, 0), cliAt.AddDate(-2, 0, 0))
	stray := testKey(t, "con-1", cliAt.AddDate(-1, 0, 0), cliAt.AddDate(1, 0, 0))
	keys := writeJWKS(t, dir, good, old)
	at := cliAt.Format(time.RFC3339)
	base := []string{"token", "check", "--keys", keys, "--issuer", cliTmpl, "--tenant", cliTenant,
		"--audience", cliAud, "--at", at}

	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderrs string
	}{
		{"valid", append(base, signClaims(t, good, cliClaims(cliAt))), 0, "decision: VALID", ""},
		{"valid with Bearer prefix, flags after token", []string{"token", "check",
			"Bearer " + signClaims(t, good, cliClaims(cliAt)), "--keys", keys, "--issuer", cliIss, "--at", at}, 0,
			"any audience accepted", ""},
		{"expired", append(base, signClaims(t, good, cliClaims(cliAt, "exp", cliAt.Add(-time.Hour).Unix()))), 1,
			"REJECTED (expired)", "token rejected: expired"},
		{"expired certificate", append(base, signClaims(t, old, cliClaims(cliAt))), 1,
			"REJECTED (cert_expired)", "cert_expired"},
		{"unknown key", append(base, signClaims(t, stray, cliClaims(cliAt))), 1, "skip", "unknown_key"},
		{"wrong audience", append(base, signClaims(t, good, cliClaims(cliAt, "aud", "api://other"))), 1,
			"fail  audience", "audience"},
		{"wrong tenant", append(base, signClaims(t, good, cliClaims(cliAt, "tid", "00000000-0000-0000-0000-000000000001",
			"iss", "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"))), 1, "", "tenant"},
		{"garbage token", append(base, "not-a-token"), 1, "", "malformed"},
		{"no token", base, 2, "", "exactly one TOKEN"},
		{"missing keys", []string{"token", "check", "--issuer", cliIss, "x.y.z"}, 2, "", "--keys and --issuer"},
		{"template without tenant", []string{"token", "check", "--keys", keys, "--issuer", cliTmpl, "x.y.z"}, 2, "", "--tenant"},
		{"bad --at", []string{"token", "check", "--keys", keys, "--issuer", cliIss, "--at", "yesterday", "x.y.z"}, 2, "", "--at"},
		{"unknown subcommand", []string{"token", "verify"}, 2, "", "unknown or missing subcommand"},
		{"http keys URL refused", []string{"token", "check", "--keys", "http://127.0.0.1:1/keys", "--issuer", cliIss, "x.y.z"}, 2, "", "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderrs) {
				t.Fatalf("output lacks %q / %q\nstdout:\n%s\nstderr:\n%s", tc.stdout, tc.stderrs, out, errs)
			}
		})
	}

	t.Run("json from stdin", func(t *testing.T) {
		f, err := os.CreateTemp(dir, "tok")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(signClaims(t, good, cliClaims(cliAt)) + "\n")
		f.Seek(0, 0)
		saved := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = saved; f.Close() }()
		code, out, errs := runCLI(t, append(base, "--json", "-")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var ev struct {
			Source, Operation, Kid, Tid, KeySet string
			Checks                              []struct{ Name, Status string }
		}
		if err := json.Unmarshal([]byte(out), &ev); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if ev.Source != "vigil.token" || ev.Operation != "TokenValidated" || ev.Kid != "ent-1" ||
			ev.Tid != cliTenant || len(ev.Checks) < 10 {
			t.Fatalf("decision JSON: %+v", ev)
		}
	})
}

// Entra-shaped sample shipped in token/testdata/entra (see its generator in
// token/entra_sample_test.go).
const (
	sampleKeys   = "../../token/testdata/entra/common-keys.json"
	sampleToken  = "../../token/testdata/entra/access-token.jwt"
	sampleTenant = "4646f807-a04c-40c1-a4c3-acb4ac91c72e"
	sampleIss    = "https://login.microsoftonline.com/" + sampleTenant + "/v2.0"
	msaTid       = "9188040d-6c67-4c5b-b112-36a304b66dad"
	msaIss       = "https://login.microsoftonline.com/" + msaTid + "/v2.0"
)

// writeEntraJWKS writes keys as Entra's common JWKS does: every key with a
// per-key "issuer" member.
func writeEntraJWKS(t *testing.T, dir string, keys map[*cliKey]string) string {
	t.Helper()
	var set []map[string]any
	for k, issuer := range keys {
		b, err := json.Marshal(jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Use: "sig",
			Certificates: []*x509.Certificate{k.cert}})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		m["issuer"] = issuer
		set = append(set, m)
	}
	b, _ := json.Marshal(map[string]any{"keys": set})
	p := filepath.Join(dir, "common-keys.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenCheckEntra(t *testing.T) {
	b, err := os.ReadFile(sampleToken)
	if err != nil {
		t.Fatal(err)
	}
	sample := strings.TrimSpace(string(b))
	dir := t.TempDir()
	org := testKey(t, "org-1", cliAt.AddDate(-1, 0, 0), cliAt.AddDate(1, 0, 0))
	con := testKey(t, "con-1", cliAt.AddDate(-1, 0, 0), cliAt.AddDate(1, 0, 0))
	other := testKey(t, "other-1", cliAt.AddDate(-1, 0, 0), cliAt.AddDate(1, 0, 0))
	otherTid := "00000000-0000-0000-0000-000000000001"
	common := writeEntraJWKS(t, dir, map[*cliKey]string{org: cliTmpl, con: msaIss,
		other: "https://login.microsoftonline.com/" + otherTid + "/v2.0"})
	at := cliAt.Format(time.RFC3339)
	check := func(keys string, flags ...string) []string {
		return append([]string{"token", "check", "--keys", keys}, flags...)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		// The shipped sample, as now.
		{"sample: exact issuer", check(sampleKeys, "--issuer", sampleIss, "--audience", "api://vigil-demo", sample),
			0, "decision: VALID"},
		{"sample: template issuer and --tenant", check(sampleKeys, "--issuer", cliTmpl, "--tenant", sampleTenant, sample),
			0, "decision: VALID"},
		{"sample: exact issuer and --tenant", check(sampleKeys, "--issuer", sampleIss, "--tenant", sampleTenant, sample),
			0, "issuer=" + cliTmpl},
		{"sample: another tenant's exact issuer", check(sampleKeys, "--issuer", cliIss, sample), 1, "REJECTED (unknown_issuer)"},
		{"sample: --tenant of another tenant", check(sampleKeys, "--issuer", cliTmpl, "--tenant", cliTenant, sample),
			1, "REJECTED (tenant)"},
		{"sample: exact issuer, --tenant of another tenant", check(sampleKeys, "--issuer", sampleIss, "--tenant", cliTenant, sample),
			1, "REJECTED (tenant)"},
		{"sample: consumer issuer", check(sampleKeys, "--issuer", msaIss, sample), 1, "REJECTED (unknown_issuer)"},
		{"sample: wrong audience", check(sampleKeys, "--issuer", sampleIss, "--audience", "api://mail", sample),
			1, "REJECTED (audience)"},

		// Generated keys in a common JWKS (Storm-0558 shapes).
		{"templated key, exact issuer", check(common, "--issuer", cliIss, "--at", at, signClaims(t, org, cliClaims(cliAt))),
			0, "decision: VALID"},
		{"templated key, template and --tenant", check(common, "--issuer", cliTmpl, "--tenant", cliTenant, "--at", at,
			signClaims(t, org, cliClaims(cliAt))), 0, "decision: VALID"},
		{"consumer key on an organisation token, exact issuer", check(common, "--issuer", cliIss, "--at", at,
			signClaims(t, con, cliClaims(cliAt))), 1, "REJECTED (key_scope)"},
		{"consumer key on an organisation token, --tenant", check(common, "--issuer", cliTmpl, "--tenant", cliTenant,
			"--at", at, signClaims(t, con, cliClaims(cliAt))), 1, "REJECTED (key_scope)"},
		{"another tenant's key, exact issuer", check(common, "--issuer", cliIss, "--at", at,
			signClaims(t, other, cliClaims(cliAt))), 1, "REJECTED (key_scope)"},
		{"consumer tid on an organisation issuer", check(common, "--issuer", cliIss, "--at", at,
			signClaims(t, org, cliClaims(cliAt, "tid", msaTid))), 1, "REJECTED (tenant)"},
		{"templated key, tid does not give iss", check(common, "--issuer", cliIss, "--at", at,
			signClaims(t, org, cliClaims(cliAt, "tid", otherTid))), 1, "REJECTED (key_scope)"},
		{"exp as a numeric string", check(common, "--issuer", cliIss, "--at", at,
			signClaims(t, org, cliClaims(cliAt, "exp", "1796162482"))), 1, "REJECTED (bad_claims)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) {
				t.Fatalf("exit %d (want %d), output lacks %q\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.stdout, out, errs)
			}
		})
	}
}

// The README's token example runs as written (from the repository root,
// with its stdin redirect) and accepts the shipped token.
func TestREADMETokenExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(readme)) {
		if strings.HasPrefix(l, "go run ./cmd/vigil token check ") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatal("README has no `go run ./cmd/vigil token check` example")
	}
	cmd, stdin, redirected := strings.Cut(line, " < ")
	args := strings.Fields(strings.TrimPrefix(cmd, "go run ./cmd/vigil "))
	for _, a := range args {
		if strings.ContainsAny(a, `"'$\`+"`") {
			t.Fatalf("README example uses shell quoting this test does not interpret: %s", a)
		}
	}
	t.Chdir("../..")
	if redirected {
		f, err := os.Open(strings.TrimSpace(stdin))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		saved := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = saved }()
	}
	code, out, errs := runCLI(t, args...)
	if code != 0 || !strings.Contains(out, "decision: VALID") {
		t.Fatalf("README example: exit %d\n%s\n%s", code, out, errs)
	}
}
