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
