package token

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Entra-shaped sample in testdata/entra: a "common" JWKS as
// login.microsoftonline.com publishes it (generated keys) and one access
// token signed by its first organisation key. The README runs it.
const (
	sampleTenant   = "4646f807-a04c-40c1-a4c3-acb4ac91c72e" // fictitious
	sampleAudience = "api://vigil-demo"
	sampleKeys     = "testdata/entra/common-keys.json"
	sampleToken    = "testdata/entra/access-token.jwt"
)

// The sample token is deliberately long-lived so the README example keeps
// working: issued 2026-12-01, it expires 2100-01-01T00:00:00Z, and so do
// the certificates of the keys. Real Entra access tokens live 60-90 minutes.
var (
	sampleIssued  = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	sampleExpires = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// entraJWK is one entry of Entra's JWKS, members in the order Entra
// publishes them.
type entraJWK struct {
	Kty               string   `json:"kty"`
	Use               string   `json:"use"`
	Kid               string   `json:"kid"`
	X5t               string   `json:"x5t"`
	N                 string   `json:"n"`
	E                 string   `json:"e"`
	X5c               []string `json:"x5c"`
	CloudInstanceName string   `json:"cloud_instance_name"`
	Issuer            string   `json:"issuer"`
}

// TestGenerateEntraSample rewrites testdata/entra. Private keys exist only
// in memory during the run. Run with VIGIL_GEN_TESTDATA=1.
func TestGenerateEntraSample(t *testing.T) {
	if os.Getenv("VIGIL_GEN_TESTDATA") == "" {
		t.Skip("set VIGIL_GEN_TESTDATA=1 to regenerate testdata/entra")
	}
	var doc struct {
		Keys []entraJWK `json:"keys"`
	}
	var signer *testKey
	for i, issuer := range []string{entTmpl, entTmpl, msaIssuer} {
		k := newRSA(t, "vigil sample signing key", 2048, sampleIssued, sampleExpires)
		k.kid = k.x5t() // Entra's kid is the certificate thumbprint
		pub := k.priv.Public().(*rsa.PublicKey)
		doc.Keys = append(doc.Keys, entraJWK{Kty: "RSA", Use: "sig", Kid: k.kid, X5t: k.x5t(),
			N: b64(pub.N.Bytes()), E: b64(big.NewInt(int64(pub.E)).Bytes()),
			X5c:               []string{base64.StdEncoding.EncodeToString(k.cert.Raw)},
			CloudInstanceName: "microsoftonline.com", Issuer: issuer})
		if i == 0 {
			signer = k
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(sampleKeys), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sampleKeys, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	// A v2.0 access token for an API, with the claims Entra issues.
	claims := map[string]any{
		"aud": sampleAudience, "iss": entIssuer(sampleTenant), "tid": sampleTenant, "ver": "2.0",
		"iat": sampleIssued.Unix(), "nbf": sampleIssued.Unix(), "exp": sampleExpires.Unix(),
		"azp": "9da228c6-e4d7-43fd-8852-5fe4ba28aa43", "azpacr": "0",
		"oid": "d163716a-86e4-4e5d-b14c-0cfdd7d9cec2", "sub": "c2FtcGxlLXN1YmplY3QtZm9yLXZpZ2lsLWRlbW8",
		"name": "Adele Vance", "preferred_username": "adele.vance@contoso.example",
		"scp": "Mail.Read", "uti": "dGhpcy1pcy1hLXNhbXBsZQ", "rh": "0.sample.",
	}
	tok := sign(t, "RS256", signer.priv, map[string]any{"typ": "JWT", "kid": signer.kid}, claims)
	if err := os.WriteFile(sampleToken, []byte(tok+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The shipped sample has Entra's shape and validates under every way a
// caller configures Entra, and is refused where it must be.
func TestEntraSample(t *testing.T) {
	raw, err := os.ReadFile(sampleKeys)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Keys) != 3 {
		t.Fatalf("%s: %v, %d keys", sampleKeys, err, len(doc.Keys))
	}
	for i, k := range doc.Keys {
		for _, m := range []string{"kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"} {
			if _, ok := k[m]; !ok {
				t.Errorf("key %d lacks %q", i, m)
			}
		}
	}
	if doc.Keys[0]["issuer"] != entTmpl || doc.Keys[2]["issuer"] != msaIssuer {
		t.Errorf("per-key issuers %v, %v", doc.Keys[0]["issuer"], doc.Keys[2]["issuer"])
	}
	b, err := os.ReadFile(sampleToken)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(b))
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		issuer  string
		tenants []string
		at      time.Time
		want    Reason
	}{
		{"exact issuer", entIssuer(sampleTenant), nil, time.Now(), ReasonOK},
		{"template and tenant", entTmpl, []string{sampleTenant}, time.Now(), ReasonOK},
		{"exact issuer and tenant", entIssuer(sampleTenant), []string{sampleTenant}, time.Now(), ReasonOK},
		{"just before expiry", entIssuer(sampleTenant), nil, sampleExpires.Add(-time.Second), ReasonOK},
		{"after expiry", entIssuer(sampleTenant), nil, sampleExpires.Add(time.Hour), ReasonCertExpired},
		{"before issue", entIssuer(sampleTenant), nil, sampleIssued.Add(-time.Hour), ReasonCertNotYetValid},
		{"another tenant's issuer", entIssuer(entTenant), nil, time.Now(), ReasonUnknownIssuer},
		{"template and another tenant", entTmpl, []string{entTenant}, time.Now(), ReasonTenant},
		{"consumer issuer", msaIssuer, nil, time.Now(), ReasonUnknownIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSource(sampleKeys, SourceOptions{Scope: Scope{KeySet: "sample", Issuer: tc.issuer}})
			if err != nil {
				t.Fatal(err)
			}
			at := tc.at
			v, err := New(Config{Now: func() time.Time { return at }, Issuers: []IssuerConfig{{Issuer: tc.issuer,
				Tenants: tc.tenants, Audiences: []string{sampleAudience}, Keys: []KeySource{src}}}})
			if err != nil {
				t.Fatal(err)
			}
			if d := v.Check(ctx, tok); d.Reason != tc.want {
				t.Fatalf("reason %s (%s), want %s", d.Reason, d.Detail, tc.want)
			}
		})
	}
}
