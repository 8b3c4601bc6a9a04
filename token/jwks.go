package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on key documents; they come from the network, so bound them.
const (
	MaxJWKSSize    = 1 << 20 // bytes of one JWKS or discovery document
	MaxKeysPerSet  = 256
	MinRSABits     = 2048
	maxKidLength   = 256
	maxCertsPerKey = 10
)

// Scope says what a key may sign for. A key is only ever used for tokens
// whose iss (and tid, when Tenant is set) match its scope; that is the check
// whose absence let a consumer key sign enterprise tokens in 2023.
type Scope struct {
	KeySet string `json:"key_set"`          // name of the configured key set
	Issuer string `json:"issuer,omitempty"` // exact issuer or template with {tenantid}
	Tenant string `json:"tenant,omitempty"` // tenant id the key is restricted to, if any
	Source string `json:"source,omitempty"` // file or URL the key came from
}

// Key is one public verification key with everything known about it.
type Key struct {
	ID         string           // kid
	X5t        string           // base64url SHA-1 of the leaf certificate (as published or computed)
	Thumbprint string           // RFC 7638 SHA-256 JWK thumbprint, base64url
	Public     crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	Type       string           // "RSA", "EC", "OKP"
	Bits       int              // RSA modulus or curve size
	Curve      string           // EC/OKP curve name
	Algs       []jose.SignatureAlgorithm
	Use        string
	// Certificates is the x5c chain, leaf first; NotBefore/NotAfter are the
	// leaf's validity and zero when no certificate was published.
	Certificates []*x509.Certificate
	NotBefore    time.Time
	NotAfter     time.Time
	// Issuer is the per-key "issuer" member some IdPs (Entra) publish; when
	// set, the key is restricted to that issuer even inside a shared JWKS.
	Issuer string
	Scope  Scope
	// RetiredAt is set when a refresh no longer lists the key; the key stays
	// usable for the source's overlap window after that.
	RetiredAt time.Time
	// RetiredUntil ends the overlap window of a retired key.
	RetiredUntil time.Time
}

// Weak reports why the key must not be used, or "" when it is acceptable.
func (k *Key) Weak() string {
	switch pk := k.Public.(type) {
	case *rsa.PublicKey:
		if pk.N.BitLen() < MinRSABits {
			return fmt.Sprintf("RSA key of %d bits (minimum %d)", pk.N.BitLen(), MinRSABits)
		}
		if pk.E < 3 || pk.E%2 == 0 {
			return fmt.Sprintf("RSA public exponent %d", pk.E)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Sprintf("unsupported key type %T", pk)
	}
	return ""
}

// RejectedKey is a JWKS entry that could not be loaded, kept so key audits
// can report it.
type RejectedKey struct {
	Index  int    `json:"index"`
	KeyID  string `json:"kid,omitempty"`
	Type   string `json:"kty,omitempty"`
	Curve  string `json:"crv,omitempty"`
	Reason string `json:"reason"`
	// Private is true when the entry carried private key parameters.
	Private bool `json:"private,omitempty"`
}

// KeySet is an immutable snapshot of the keys of one source.
type KeySet struct {
	Scope     Scope
	Keys      []*Key
	Rejected  []RejectedKey
	FetchedAt time.Time
	byKid     map[string][]*Key
	byX5t     map[string][]*Key
	retired   map[string]*Key // kids removed from the document, past overlap
}

func newKeySet(scope Scope, keys []*Key, rejected []RejectedKey, at time.Time) *KeySet {
	ks := &KeySet{Scope: scope, Keys: keys, Rejected: rejected, FetchedAt: at,
		byKid: make(map[string][]*Key, len(keys)), byX5t: make(map[string][]*Key, len(keys))}
	for _, k := range keys {
		if k.ID != "" {
			ks.byKid[k.ID] = append(ks.byKid[k.ID], k)
		}
		if k.X5t != "" {
			ks.byX5t[k.X5t] = append(ks.byX5t[k.X5t], k)
		}
	}
	return ks
}

// ByKid returns the keys published under kid.
func (ks *KeySet) ByKid(kid string) []*Key {
	if ks == nil {
		return nil
	}
	return ks.byKid[kid]
}

// RetiredKey returns the key that was published under kid and has since
// been removed (past its overlap window), or nil.
func (ks *KeySet) RetiredKey(kid string) *Key {
	if ks == nil {
		return nil
	}
	return ks.retired[kid]
}

// ByX5t returns the keys whose certificate thumbprint is x5t.
func (ks *KeySet) ByX5t(x5t string) []*Key {
	if ks == nil {
		return nil
	}
	return ks.byX5t[x5t]
}

// privateMembers are JWK members that only private or symmetric keys carry.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k", "priv", "oth"}

// ParseJWKS parses a JWK Set. Entries that cannot be used (private material,
// symmetric keys, unsupported types or curves, x5c that does not match the
// key) are listed in Rejected rather than failing the whole set, as RFC 7517
// §5 asks; a document that is not a JWK Set at all is an error.
func ParseJWKS(data []byte, scope Scope) (*KeySet, error) {
	if len(data) > MaxJWKSSize {
		return nil, fmt.Errorf("jwks: document of %d bytes exceeds %d", len(data), MaxJWKSSize)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`jwks: no "keys" array`)
	}
	if len(doc.Keys) > MaxKeysPerSet {
		return nil, fmt.Errorf("jwks: %d keys exceeds %d", len(doc.Keys), MaxKeysPerSet)
	}
	var keys []*Key
	var rejected []RejectedKey
	for i, raw := range doc.Keys {
		k, rk := parseJWK(i, raw, scope)
		if rk != nil {
			rejected = append(rejected, *rk)
			continue
		}
		keys = append(keys, k)
	}
	return newKeySet(scope, keys, rejected, time.Time{}), nil
}

func parseJWK(i int, raw json.RawMessage, scope Scope) (*Key, *RejectedKey) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, &RejectedKey{Index: i, Reason: "not a JSON object: " + err.Error()}
	}
	str := func(name string) string {
		var s string
		if v, ok := members[name]; ok {
			_ = json.Unmarshal(v, &s)
		}
		return s
	}
	rk := &RejectedKey{Index: i, KeyID: str("kid"), Type: str("kty"), Curve: str("crv")}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			rk.Private = true
			rk.Reason = fmt.Sprintf("private or symmetric key material (%q) published", m)
			return nil, rk
		}
	}
	if len(rk.KeyID) > maxKidLength {
		rk.KeyID = rk.KeyID[:maxKidLength]
		rk.Reason = "kid too long"
		return nil, rk
	}
	var x5c []string
	if v, ok := members["x5c"]; ok {
		if err := json.Unmarshal(v, &x5c); err != nil || len(x5c) > maxCertsPerKey {
			rk.Reason = "x5c is not a short array of strings"
			return nil, rk
		}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		rk.Reason = err.Error()
		return nil, rk
	}
	k := &Key{ID: jwk.KeyID, Public: jwk.Key, Use: jwk.Use, Certificates: jwk.Certificates,
		Issuer: str("issuer"), Scope: scope}
	if k.Use != "" && k.Use != "sig" {
		rk.Reason = fmt.Sprintf("use %q is not sig", k.Use)
		return nil, rk
	}
	switch pk := jwk.Key.(type) {
	case *rsa.PublicKey:
		k.Type, k.Bits = "RSA", pk.N.BitLen()
		k.Algs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}
	case *ecdsa.PublicKey:
		k.Type, k.Bits, k.Curve = "EC", pk.Curve.Params().BitSize, pk.Curve.Params().Name
		switch pk.Curve {
		case elliptic.P256():
			k.Algs = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			k.Algs = []jose.SignatureAlgorithm{jose.ES384}
		case elliptic.P521():
			k.Algs = []jose.SignatureAlgorithm{jose.ES512}
		default:
			rk.Reason = "unsupported curve " + k.Curve
			return nil, rk
		}
	case ed25519.PublicKey:
		k.Type, k.Bits, k.Curve = "OKP", 256, "Ed25519"
		k.Algs = []jose.SignatureAlgorithm{jose.EdDSA}
	default:
		rk.Reason = fmt.Sprintf("unsupported key type %T", jwk.Key)
		return nil, rk
	}
	// A key that names its algorithm is restricted to it (RFC 7517 §4.4).
	if jwk.Algorithm != "" {
		alg := jose.SignatureAlgorithm(jwk.Algorithm)
		if !containsAlg(k.Algs, alg) {
			rk.Reason = fmt.Sprintf("alg %q does not fit a %s key", jwk.Algorithm, k.Type)
			return nil, rk
		}
		k.Algs = []jose.SignatureAlgorithm{alg}
	}
	if tp, err := jwk.Thumbprint(crypto.SHA256); err == nil {
		k.Thumbprint = base64.RawURLEncoding.EncodeToString(tp)
	}
	if len(k.Certificates) > 0 {
		leaf := k.Certificates[0]
		k.NotBefore, k.NotAfter = leaf.NotBefore, leaf.NotAfter
		sum := sha1.Sum(leaf.Raw)
		k.X5t = base64.RawURLEncoding.EncodeToString(sum[:])
	} else if len(jwk.CertificateThumbprintSHA1) > 0 {
		k.X5t = base64.RawURLEncoding.EncodeToString(jwk.CertificateThumbprintSHA1)
	}
	return k, nil
}

func containsAlg(algs []jose.SignatureAlgorithm, a jose.SignatureAlgorithm) bool {
	for _, x := range algs {
		if x == a {
			return true
		}
	}
	return false
}

// Discovery is the part of an OpenID Provider configuration document we use.
type Discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// ParseDiscovery parses an OIDC discovery document. It requires both issuer
// and jwks_uri, and jwks_uri must be https.
func ParseDiscovery(data []byte) (*Discovery, error) {
	if len(data) > MaxJWKSSize {
		return nil, fmt.Errorf("discovery: document of %d bytes exceeds %d", len(data), MaxJWKSSize)
	}
	var d Discovery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if d.Issuer == "" || d.JWKSURI == "" {
		return nil, errors.New("discovery: issuer and jwks_uri are required")
	}
	return &d, nil
}

// isDiscovery tells a discovery document from a JWKS without a full parse.
func isDiscovery(data []byte) bool {
	return bytes.Contains(data, []byte(`"jwks_uri"`)) && !bytes.Contains(data, []byte(`"keys"`))
}

// resolveIssuer substitutes tid into an issuer template. Both Entra spellings
// of the placeholder are accepted.
func resolveIssuer(template, tid string) string {
	if !isTemplate(template) {
		return template
	}
	r := strings.ReplaceAll(template, "{tenantid}", tid)
	return strings.ReplaceAll(r, "{tenant}", tid)
}

func isTemplate(iss string) bool {
	return strings.Contains(iss, "{tenantid}") || strings.Contains(iss, "{tenant}")
}

// matchesTemplateShape reports whether iss has the template's fixed prefix
// and suffix, i.e. it was meant for this template whatever tenant it names.
func matchesTemplateShape(template, iss string) bool {
	ph := "{tenantid}"
	i := strings.Index(template, ph)
	if i < 0 {
		ph = "{tenant}"
		i = strings.Index(template, ph)
		if i < 0 {
			return false
		}
	}
	pre, suf := template[:i], template[i+len(ph):]
	return len(iss) > len(pre)+len(suf) && strings.HasPrefix(iss, pre) && strings.HasSuffix(iss, suf)
}

// instanceOf reports whether the exact issuer iss is template with one
// well-formed tenant id substituted.
func instanceOf(template, iss string) bool {
	if !isTemplate(template) || isTemplate(iss) || !matchesTemplateShape(template, iss) {
		return false
	}
	ph := "{tenantid}"
	i := strings.Index(template, ph)
	if i < 0 {
		ph = "{tenant}"
		i = strings.Index(template, ph)
	}
	tid := iss[i : len(iss)-(len(template)-i-len(ph))]
	return safeTenant(tid) && resolveIssuer(template, tid) == iss
}
