package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Fixed clock for every table test: keys and certificates are generated
// relative to it, so nothing rots.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	entTenant  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	entTenant2 = "0b0b0b0b-1111-2222-3333-444444444444"
	otherTen   = "deadbeef-0000-0000-0000-000000000000"
	msaTenant  = "9188040d-6c67-4c5b-b112-36a304b66dad"
	entTmpl    = "https://login.microsoftonline.com/{tenantid}/v2.0"
	msaIssuer  = "https://login.microsoftonline.com/" + msaTenant + "/v2.0"
	testAud    = "api://vigil-test"
)

func entIssuer(tid string) string { return "https://login.microsoftonline.com/" + tid + "/v2.0" }

// testKey is a generated key pair with an optional self-signed certificate.
type testKey struct {
	kid    string
	priv   crypto.Signer
	cert   *x509.Certificate
	issuer string // per-key "issuer" member in the JWKS
	alg    string // JWK "alg" member
}

func (k *testKey) x5t() string {
	if k.cert == nil {
		return ""
	}
	return x5tOf(k.cert)
}

func x5tOf(c *x509.Certificate) string {
	s := sha1Sum(c.Raw)
	return base64.RawURLEncoding.EncodeToString(s)
}

func newRSA(t testing.TB, kid string, bits int, nb, na time.Time) *testKey {
	t.Helper()
	p, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKey{kid: kid, priv: p}
	if !nb.IsZero() {
		k.cert = selfSign(t, p, kid, nb, na)
	}
	return k
}

func newEC(t testing.TB, kid string, curve elliptic.Curve) *testKey {
	t.Helper()
	p, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, priv: p}
}

// newECCert is newEC with a self-signed certificate valid from nb to na.
func newECCert(t testing.TB, kid string, curve elliptic.Curve, nb, na time.Time) *testKey {
	t.Helper()
	k := newEC(t, kid, curve)
	k.cert = selfSign(t, k.priv, kid, nb, na)
	return k
}

func newEd(t testing.TB, kid string) *testKey {
	t.Helper()
	_, p, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, priv: p}
}

func selfSign(t testing.TB, p crypto.Signer, cn string, nb, na time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject: pkix.Name{CommonName: cn}, NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, p.Public(), p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// jwk returns the public JWK of k as a JSON object.
func (k *testKey) jwk(t testing.TB) map[string]any {
	t.Helper()
	j := jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Use: "sig", Algorithm: k.alg}
	if k.cert != nil {
		j.Certificates = []*x509.Certificate{k.cert}
	}
	b, err := j.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if k.cert != nil {
		m["x5t"] = k.x5t()
	}
	if k.issuer != "" {
		m["issuer"] = k.issuer
	}
	return m
}

func jwksJSON(t testing.TB, keys ...*testKey) []byte {
	t.Helper()
	var ks []map[string]any
	for _, k := range keys {
		ks = append(ks, k.jwk(t))
	}
	b, err := json.Marshal(map[string]any{"keys": ks})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func staticSet(t testing.TB, name, issuer string, keys ...*testKey) KeySource {
	t.Helper()
	ks, err := ParseJWKS(jwksJSON(t, keys...), Scope{KeySet: name, Issuer: issuer, Source: name + ".json"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Rejected) > 0 {
		t.Fatalf("key set %s rejected keys: %+v", name, ks.Rejected)
	}
	return NewStaticSource(ks)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign builds a compact JWS over the given header and claims. key may be a
// crypto.Signer or []byte (HMAC). The header is used as given, so tests
// can forge any header an attacker could.
func sign(t testing.TB, alg string, key any, header map[string]any, claims any) string {
	t.Helper()
	if _, ok := header["alg"]; !ok {
		header["alg"] = strings.TrimSuffix(alg, "-highS")
	}
	var payload []byte
	switch c := claims.(type) {
	case []byte:
		payload = c
	default:
		payload = mustJSON(t, c)
	}
	return signRaw(t, alg, key, mustJSON(t, header), payload)
}

func signRaw(t testing.TB, alg string, key any, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	var sig []byte
	var err error
	switch alg {
	case "none":
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "RS256":
		h := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case "PS256":
		h := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:], nil)
	case "RS512":
		h := sha512.Sum512([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA512, h[:])
	case "ES256", "ES384", "ES512", "ES256-highS", "ES384-highS", "ES512-highS":
		sig, err = signECDSA(alg, key.(*ecdsa.PrivateKey), []byte(input))
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	default:
		t.Fatalf("sign: unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// signECDSA signs input in the JWS r||s form. crypto/ecdsa returns a
// high S about half the time; the validator accepts only low S, so the
// signature is normalised to s <= n/2 unless alg ends in "-highS", which
// produces the other (malleated) encoding of the same signature.
func signECDSA(alg string, key *ecdsa.PrivateKey, input []byte) ([]byte, error) {
	base, high := strings.CutSuffix(alg, "-highS")
	var digest []byte
	switch base {
	case "ES256":
		h := sha256.Sum256(input)
		digest = h[:]
	case "ES384":
		h := sha512.Sum384(input)
		digest = h[:]
	case "ES512":
		h := sha512.Sum512(input)
		digest = h[:]
	}
	r, s, err := ecdsa.Sign(rand.Reader, key, digest)
	if err != nil {
		return nil, err
	}
	n := key.Curve.Params().N
	halfN := new(big.Int).Rsh(n, 1)
	if (s.Cmp(halfN) > 0) != high {
		s.Sub(n, s)
	}
	size := (key.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*size)
	r.FillBytes(sig[:size])
	s.FillBytes(sig[size:])
	return sig, nil
}

// claimsFor returns a fresh set of valid claims for an enterprise tenant.
func claimsFor(iss, tid string) map[string]any {
	c := map[string]any{
		"iss": iss, "aud": testAud, "sub": "user-1", "azp": "11111111-aaaa-bbbb-cccc-000000000001",
		"uti": "uti-abc", "iat": testNow.Add(-5 * time.Minute).Unix(),
		"nbf": testNow.Add(-5 * time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}
	if tid != "" {
		c["tid"] = tid
	}
	return c
}

// fixture holds the generated keys shared by the conformance, fuzz and
// benchmark tests; RSA generation is slow, so it is built once.
type fixture struct {
	ent, entPS, entExpired, entFuture, entWeak, twiceA, twiceB, denied *testKey
	entEC, entEC384, entEC521, entEd                                   *testKey
	con, storm, attacker, idpA, idpB                                   *testKey
	entCommon                                                          *testKey
	main, common                                                       *Validator
	// An Entra-shaped "common" JWKS: organisation keys with the templated
	// per-key issuer, consumer keys with the consumer tenant's exact
	// issuer, keys bound to one other tenant's exact issuer, and templated
	// keys whose certificates are expired or not yet valid. One RSA and
	// one EC key of each kind.
	entra map[string]*testKey
	// Validators over that JWKS, one per way a caller configures Entra,
	// by conformance-case name (see entraValidators).
	entraV map[string]*Validator
}

// Entra key kinds in the shared JWKS, and the algorithm each key type signs with.
var entraKinds = []struct{ name, alg string }{{"rsa", "RS256"}, {"ec", "ES256"}}

var (
	fixOnce sync.Once
	fix     *fixture
)

func getFixture(t testing.TB) *fixture {
	fixOnce.Do(func() { fix = buildFixture(t) })
	if fix == nil {
		t.Fatal("fixture failed")
	}
	return fix
}

func buildFixture(t testing.TB) *fixture {
	y := func(n int) time.Time { return testNow.AddDate(n, 0, 0) }
	f := &fixture{
		ent:        newRSA(t, "ent-1", 2048, y(-1), y(1)),
		entPS:      newRSA(t, "ent-ps", 2048, y(-1), y(1)),
		entExpired: newRSA(t, "ent-expired", 2048, y(-3), y(-1)),
		entFuture:  newRSA(t, "ent-future", 2048, y(1), y(2)),
		entWeak:    newRSA(t, "ent-weak", 1024, time.Time{}, time.Time{}),
		twiceA:     newRSA(t, "twice", 2048, time.Time{}, time.Time{}),
		twiceB:     newRSA(t, "twice", 2048, time.Time{}, time.Time{}),
		denied:     newRSA(t, DefaultDeniedKeys[0], 2048, time.Time{}, time.Time{}),
		entEC:      newEC(t, "ent-ec", elliptic.P256()),
		entEC384:   newEC(t, "ent-ec384", elliptic.P384()),
		entEC521:   newEC(t, "ent-ec521", elliptic.P521()),
		entEd:      newEd(t, "ent-ed"),
		con:        newRSA(t, "con-1", 2048, y(-1), y(1)),
		// The Storm-0558 key, rebuilt: a consumer key whose certificate ran
		// 2016-04-05 to 2021-04-04.
		storm: newRSA(t, "msa-2016", 2048, time.Date(2016, 4, 5, 14, 43, 35, 0, time.UTC),
			time.Date(2021, 4, 4, 14, 43, 35, 0, time.UTC)),
		attacker:  newRSA(t, "ent-1", 2048, time.Time{}, time.Time{}),
		idpA:      newRSA(t, "dup", 2048, time.Time{}, time.Time{}),
		idpB:      newRSA(t, "dup", 2048, time.Time{}, time.Time{}),
		entCommon: newRSA(t, "ent-common", 2048, y(-1), y(1)),
	}
	f.entPS.alg = "PS256"
	now := func() time.Time { return testNow }
	var err error
	f.main, err = New(Config{Now: now, Issuers: []IssuerConfig{
		{Name: "entra", Issuer: entTmpl, Tenants: []string{entTenant, entTenant2}, Audiences: []string{testAud},
			Keys: []KeySource{staticSet(t, "entra", entTmpl, f.ent, f.entPS, f.entExpired, f.entFuture, f.entWeak,
				f.twiceA, f.twiceB, f.denied, f.entEC, f.entEC384, f.entEC521, f.entEd)}},
		{Name: "msa", Issuer: msaIssuer, Tenants: []string{msaTenant}, Audiences: []string{testAud},
			Keys: []KeySource{staticSet(t, "msa", msaIssuer, f.con)}},
		{Name: "idp-a", Issuer: "https://idp-a.example", Audiences: []string{testAud},
			Keys: []KeySource{staticSet(t, "idp-a", "https://idp-a.example", f.idpA)}},
		{Name: "idp-b", Issuer: "https://idp-b.example", Audiences: []string{testAud},
			Keys: []KeySource{staticSet(t, "idp-b", "https://idp-b.example", f.idpB)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The 2023 configuration: one "common" JWKS publishing consumer and
	// enterprise keys side by side, each with its own "issuer" member, and
	// both issuers reading it.
	storm := *f.storm
	storm.issuer = msaIssuer
	entC := *f.entCommon
	entC.issuer = entTmpl
	common := staticSet(t, "common", "", &entC, &storm)
	f.common, err = New(Config{Now: now, Issuers: []IssuerConfig{
		{Name: "entra-common", Issuer: entTmpl, Tenants: []string{entTenant}, Audiences: []string{testAud},
			Keys: []KeySource{common}},
		{Name: "msa-common", Issuer: msaIssuer, Tenants: []string{msaTenant}, Audiences: []string{testAud},
			Keys: []KeySource{common}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.buildEntra(t)
	return f
}

// buildEntra generates the Entra-shaped common JWKS and the validators
// that read it.
func (f *fixture) buildEntra(t testing.TB) {
	y := func(n int) time.Time { return testNow.AddDate(n, 0, 0) }
	f.entra = map[string]*testKey{}
	var all []*testKey
	for _, kind := range entraKinds {
		mk := func(role, issuer string, nb, na time.Time) {
			kid := role + "-" + kind.name
			var k *testKey
			if kind.name == "rsa" {
				k = newRSA(t, kid, 2048, nb, na)
			} else {
				k = newECCert(t, kid, elliptic.P256(), nb, na)
			}
			k.issuer = issuer
			f.entra[kid] = k
			all = append(all, k)
		}
		mk("org", entTmpl, y(-1), y(1))
		mk("consumer", msaIssuer, y(-1), y(1))
		mk("other", entIssuer(otherTen), y(-1), y(1))
		mk("org-expired", entTmpl, y(-3), y(-1))
		mk("org-future", entTmpl, y(1), y(2))
	}
	doc := jwksJSON(t, all...)
	// Each configuration loads the document the way its caller would: the
	// key source is scoped to the configured issuer (token check and the
	// gateway do exactly this).
	src := func(name, issuer string) KeySource {
		ks, err := ParseJWKS(doc, Scope{KeySet: name, Issuer: issuer, Source: "common-keys.json"})
		if err != nil || len(ks.Rejected) > 0 {
			t.Fatalf("entra JWKS: %v %+v", err, ks.Rejected)
		}
		return NewStaticSource(ks)
	}
	now := func() time.Time { return testNow }
	cfgs := map[string]IssuerConfig{
		// --issuer https://login.microsoftonline.com/<tid>/v2.0
		"exact": {Issuer: entIssuer(entTenant)},
		// --issuer https://login.microsoftonline.com/{tenantid}/v2.0 --tenant <tid>
		"template": {Issuer: entTmpl, Tenants: []string{entTenant}},
		// --issuer https://login.microsoftonline.com/<tid>/v2.0 --tenant <tid>
		"exact+tenant": {Issuer: entIssuer(entTenant), Tenants: []string{entTenant}},
		// a multi-tenant application: the template for any tenant
		"any-tenant": {Issuer: entTmpl, AnyTenant: true},
		// personal Microsoft accounts only
		"consumer": {Issuer: msaIssuer, Tenants: []string{msaTenant}},
	}
	f.entraV = map[string]*Validator{}
	for name, ic := range cfgs {
		ic.Name, ic.Audiences = "entra-"+name, []string{testAud}
		ic.Keys = []KeySource{src(ic.Name, ic.Issuer)}
		v, err := New(Config{Now: now, Issuers: []IssuerConfig{ic}})
		if err != nil {
			t.Fatal(err)
		}
		f.entraV[name] = v
	}
	// A key set loaded for the consumer issuer (without per-key issuer
	// members, as a consumer-only JWKS would be), wrongly handed to an
	// organisation's issuer configuration: its keys keep their scope.
	var bare []*testKey
	for _, k := range all {
		c := *k
		c.issuer = ""
		bare = append(bare, &c)
	}
	consumerOnly, err := ParseJWKS(jwksJSON(t, bare...), Scope{KeySet: "consumer-set", Issuer: msaIssuer, Source: "consumers.json"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(Config{Now: now, Issuers: []IssuerConfig{{Name: "entra-misbound", Issuer: entIssuer(entTenant),
		Audiences: []string{testAud}, Keys: []KeySource{NewStaticSource(consumerOnly)}}}})
	if err != nil {
		t.Fatal(err)
	}
	f.entraV["misbound"] = v
}
