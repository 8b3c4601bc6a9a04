package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults and bounds.
const (
	DefaultSkew         = 2 * time.Minute
	MaxSkew             = 10 * time.Minute
	DefaultMaxTokenSize = 16 << 10
)

// DefaultDeniedKeys are kid/x5t values refused whatever key set lists them:
// the 2016 MSA signing key used by Storm-0558 (kid = x5t).
var DefaultDeniedKeys = []string{"1LTMzakihiRla_8z2BEJVXeWMqo"}

// IssuerConfig binds one issuer (or issuer template) to the keys that may
// sign for it and to what its tokens must contain.
type IssuerConfig struct {
	// Name identifies the key set in audit events; defaults to Issuer.
	Name string
	// Issuer is the exact iss, or a template containing {tenantid} that is
	// resolved with the token's tid and then compared exactly.
	Issuer string
	// Tenants lists the accepted tid values. A template issuer needs either
	// Tenants or AnyTenant, so "any tenant of the IdP" is never implied.
	Tenants   []string
	AnyTenant bool
	// Audiences lists accepted aud values; AnyAudience must be set to skip
	// the check.
	Audiences   []string
	AnyAudience bool
	// Algorithms further restricts the algorithms each key allows.
	Algorithms []jose.SignatureAlgorithm
	// RequiredClaims must be present (exp is always required).
	RequiredClaims []string
	// MaxLifetime, when positive, bounds exp-iat (and then requires iat).
	MaxLifetime time.Duration
	// AllowHighS accepts ECDSA (ES256/ES384/ES512) signatures whose S is
	// above half the curve order. By default only the low-S form is
	// accepted, so each token has exactly one valid encoding; set this only
	// for an issuer whose signer does not normalise S (most ECDSA
	// libraries do not), or half of its tokens are refused.
	AllowHighS bool
	Keys       []KeySource
}

// ConsumerTenant is the Entra tenant id of personal Microsoft accounts
// (MSA). Its tokens are accepted only by an issuer configuration that names
// it: its exact issuer, or a tenant list containing it. A template issuer
// with AnyTenant, or an organisation's issuer, never accepts them.
const ConsumerTenant = "9188040d-6c67-4c5b-b112-36a304b66dad"

// namesConsumer reports whether ic explicitly accepts the consumer tenant.
func (ic *IssuerConfig) namesConsumer() bool {
	return slices.Contains(ic.Tenants, ConsumerTenant) ||
		(!isTemplate(ic.Issuer) && strings.Contains(ic.Issuer, ConsumerTenant))
}

// Config configures a Validator.
type Config struct {
	Issuers      []IssuerConfig
	Skew         time.Duration // leeway for exp/nbf/iat; default DefaultSkew, at most MaxSkew
	MaxTokenSize int           // default DefaultMaxTokenSize
	// DeniedKeys are kid or x5t values always refused, in addition to
	// DefaultDeniedKeys.
	DeniedKeys []string
	Now        func() time.Time
	// Audit receives one event per Validate call; nil disables auditing.
	Audit  *AuditLog
	Logger *slog.Logger
}

// Validator validates tokens. It is safe for concurrent use.
type Validator struct {
	cfg    Config
	denied map[string]bool
}

// New checks cfg and returns a Validator.
func New(cfg Config) (*Validator, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("token: no issuers configured")
	}
	if cfg.Skew == 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.Skew < 0 || cfg.Skew > MaxSkew {
		return nil, fmt.Errorf("token: skew %v outside [0, %v]", cfg.Skew, MaxSkew)
	}
	if cfg.MaxTokenSize <= 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Issuers = slices.Clone(cfg.Issuers)
	seen := map[string]bool{}
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		if ic.Issuer == "" {
			return nil, fmt.Errorf("token: issuer %d: empty issuer", i)
		}
		if ic.Name == "" {
			ic.Name = ic.Issuer
		}
		if seen[ic.Name] {
			return nil, fmt.Errorf("token: duplicate issuer name %q", ic.Name)
		}
		seen[ic.Name] = true
		if len(ic.Keys) == 0 {
			return nil, fmt.Errorf("token: issuer %q: no key sources", ic.Name)
		}
		if isTemplate(ic.Issuer) && len(ic.Tenants) == 0 && !ic.AnyTenant {
			return nil, fmt.Errorf("token: issuer %q is a template: list tenants or set any tenant", ic.Name)
		}
		if len(ic.Audiences) == 0 && !ic.AnyAudience {
			return nil, fmt.Errorf("token: issuer %q: no audiences configured", ic.Name)
		}
		for _, a := range ic.Algorithms {
			if !isAsymmetric(a) {
				return nil, fmt.Errorf("token: issuer %q: algorithm %q is not an asymmetric signature algorithm", ic.Name, a)
			}
		}
	}
	v := &Validator{cfg: cfg, denied: map[string]bool{}}
	for _, k := range append(slices.Clone(DefaultDeniedKeys), cfg.DeniedKeys...) {
		v.denied[k] = true
	}
	return v, nil
}

func isAsymmetric(a jose.SignatureAlgorithm) bool {
	switch a {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
		return true
	}
	return false
}

// Check names, in the order they run.
const (
	CheckSize        = "size"
	CheckStructure   = "structure"
	CheckHeader      = "header"
	CheckClaims      = "claims"
	CheckIssuer      = "issuer"
	CheckTenant      = "tenant"
	CheckKey         = "key"
	CheckAlgorithm   = "algorithm"
	CheckCertificate = "certificate"
	CheckSignature   = "signature"
	CheckExpiry      = "exp"
	CheckNotBefore   = "nbf"
	CheckIssuedAt    = "iat"
	CheckLifetime    = "lifetime"
	CheckAudience    = "audience"
	CheckRequired    = "required_claims"
)

var checkOrder = []string{CheckSize, CheckStructure, CheckHeader, CheckClaims, CheckIssuer, CheckTenant,
	CheckKey, CheckAlgorithm, CheckCertificate, CheckSignature, CheckExpiry, CheckNotBefore, CheckIssuedAt,
	CheckLifetime, CheckAudience, CheckRequired}

// CheckResult is the outcome of one check.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"` // pass, fail, skip
	Detail string `json:"detail,omitempty"`
}

// Header holds the header parameters worth recording.
type Header struct {
	Alg string
	Kid string
	X5t string
	Typ string
}

// Decision is the full outcome of validating one token.
type Decision struct {
	Valid  bool
	Reason Reason
	Detail string
	At     time.Time
	Checks []CheckResult
	Header Header
	Claims *Claims // parsed claims; not trustworthy unless Valid
	KeySet string  // name of the issuer/key set the token was matched to
	Key    *Key    // key used (or found in another scope), if any
}

// Err returns nil for a valid decision and an *Error otherwise.
func (d *Decision) Err() error {
	if d.Valid {
		return nil
	}
	return &Error{Reason: d.Reason, Detail: d.Detail}
}

func (d *Decision) pass(name, detail string) {
	d.Checks = append(d.Checks, CheckResult{Name: name, Status: "pass", Detail: detail})
}

// fail records the failing check, marks the rest skipped and returns d.
func (d *Decision) fail(name string, r Reason, format string, a ...any) *Decision {
	d.Valid, d.Reason, d.Detail = false, r, fmt.Sprintf(format, a...)
	d.Checks = append(d.Checks, CheckResult{Name: name, Status: "fail", Detail: string(r) + ": " + d.Detail})
	for _, n := range checkOrder[slices.Index(checkOrder, name)+1:] {
		d.Checks = append(d.Checks, CheckResult{Name: n, Status: "skip"})
	}
	return d
}

// Validate checks raw and returns its claims, writing an audit event.
func (v *Validator) Validate(ctx context.Context, raw string) (*Claims, error) {
	d := v.Check(ctx, raw)
	v.record(ctx, d)
	if !d.Valid {
		return nil, d.Err()
	}
	return d.Claims, nil
}

// Check validates raw and returns the full decision without auditing it.
func (v *Validator) Check(ctx context.Context, raw string) *Decision {
	now := v.cfg.Now()
	d := &Decision{At: now, Reason: ReasonOK}
	skew := v.cfg.Skew

	if len(raw) > v.cfg.MaxTokenSize {
		return d.fail(CheckSize, ReasonOversize, "%d bytes exceeds %d", len(raw), v.cfg.MaxTokenSize)
	}
	d.pass(CheckSize, fmt.Sprintf("%d bytes", len(raw)))

	// Structure: exactly three base64url parts. Five parts is JWE.
	parts := strings.Split(raw, ".")
	if len(parts) == 5 {
		return d.fail(CheckStructure, ReasonJWE, "five-part compact serialization (JWE) is not accepted")
	}
	if len(parts) != 3 {
		return d.fail(CheckStructure, ReasonMalformed, "%d parts, want 3", len(parts))
	}
	var dec [3][]byte
	for i, p := range parts {
		if r, bad := badChar(p); bad {
			if r == '=' || r == '+' || r == '/' {
				return d.fail(CheckStructure, ReasonBadEncoding, "part %d: %q is not unpadded base64url", i+1, r)
			}
			return d.fail(CheckStructure, ReasonMalformed, "part %d: unexpected character %q", i+1, r)
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil {
			return d.fail(CheckStructure, ReasonBadEncoding, "part %d: %v", i+1, err)
		}
		dec[i] = b
	}
	d.pass(CheckStructure, "3 parts")

	// Header.
	h, err := decodeObject(dec[0])
	if err != nil {
		return d.fail(CheckHeader, ReasonBadHeader, "%v", err)
	}
	if r, detail := v.checkHeader(h, &d.Header); r != ReasonOK {
		return d.fail(CheckHeader, r, "%s", detail)
	}
	d.pass(CheckHeader, fmt.Sprintf("alg=%s kid=%s", d.Header.Alg, d.Header.Kid))

	// Claims (parsed now to pick the key set; trusted only after the signature).
	c, err := parseClaims(dec[1])
	if err != nil {
		return d.fail(CheckClaims, ReasonBadClaims, "%v", err)
	}
	d.Claims = c
	d.pass(CheckClaims, fmt.Sprintf("%d claims", len(c.Raw)))

	// Issuer and tenant.
	if c.Issuer == "" {
		return d.fail(CheckIssuer, ReasonMissingClaim, "no iss claim")
	}
	ic, r, detail := v.matchIssuer(c)
	if ic == nil {
		name := CheckIssuer
		if r == ReasonTenant {
			d.pass(CheckIssuer, "matches a template")
			name = CheckTenant
		}
		return d.fail(name, r, "%s", detail)
	}
	d.KeySet = ic.Name
	d.pass(CheckIssuer, fmt.Sprintf("%s (key set %s)", c.Issuer, ic.Name))
	if len(ic.Tenants) > 0 && !slices.Contains(ic.Tenants, c.Tenant) {
		if c.Tenant == "" {
			return d.fail(CheckTenant, ReasonTenant, "no tid claim; issuer %s accepts only listed tenants", ic.Name)
		}
		return d.fail(CheckTenant, ReasonTenant, "tenant %q is not accepted for %s", c.Tenant, ic.Name)
	}
	if c.Tenant == ConsumerTenant && !ic.namesConsumer() {
		return d.fail(CheckTenant, ReasonTenant,
			"tid is the consumer (personal Microsoft account) tenant, which %s does not name", ic.Name)
	}
	d.pass(CheckTenant, c.Tenant)

	// Key.
	key, r, detail := v.findKey(ctx, ic, c, &d.Header)
	d.Key = key
	if r != ReasonOK {
		return d.fail(CheckKey, r, "%s", detail)
	}
	d.pass(CheckKey, keyDesc(key))

	// Algorithm allowed for this key (and issuer).
	alg := jose.SignatureAlgorithm(d.Header.Alg)
	if !containsAlg(key.Algs, alg) || (len(ic.Algorithms) > 0 && !containsAlg(ic.Algorithms, alg)) {
		return d.fail(CheckAlgorithm, ReasonAlgNotAllowed, "%s is not allowed for %s key %s", alg, key.Type, key.ID)
	}
	d.pass(CheckAlgorithm, string(alg))

	// The signing certificate must be valid now: an expired certificate
	// means the key should have been retired (the 2016 MSA key's had
	// expired in 2021).
	for i, cert := range key.Certificates {
		if now.After(cert.NotAfter) {
			return d.fail(CheckCertificate, ReasonCertExpired, "certificate %d (%s) expired %s",
				i, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(cert.NotBefore) {
			return d.fail(CheckCertificate, ReasonCertNotYetValid, "certificate %d (%s) valid from %s",
				i, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if len(key.Certificates) == 0 {
		d.pass(CheckCertificate, "no x5c published")
	} else {
		d.pass(CheckCertificate, "valid until "+key.NotAfter.UTC().Format(time.RFC3339))
	}

	// Signature, by go-jose, with the single algorithm we resolved.
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return d.fail(CheckSignature, ReasonBadHeader, "%v", err)
	}
	if _, err := jws.Verify(key.Public); err != nil {
		return d.fail(CheckSignature, ReasonBadSignature, "signature does not verify with key %s", key.ID)
	}
	if pk, ok := key.Public.(*ecdsa.PublicKey); ok && highS(pk, dec[2]) {
		if !ic.AllowHighS {
			return d.fail(CheckSignature, ReasonBadSignature,
				"ECDSA signature with a high S value (s > n/2) from key %s: only the low-S encoding is accepted", key.ID)
		}
		d.pass(CheckSignature, "verified (high-S ECDSA encoding, allowed for "+ic.Name+")")
	} else {
		d.pass(CheckSignature, "verified")
	}

	// Time claims.
	if c.Expiry.IsZero() {
		return d.fail(CheckExpiry, ReasonMissingClaim, "no exp claim")
	}
	if now.After(c.Expiry.Add(skew)) {
		return d.fail(CheckExpiry, ReasonExpired, "expired %s", c.Expiry.Format(time.RFC3339))
	}
	d.pass(CheckExpiry, c.Expiry.Format(time.RFC3339))
	if !c.NotBefore.IsZero() && now.Add(skew).Before(c.NotBefore) {
		return d.fail(CheckNotBefore, ReasonNotYetValid, "not valid before %s", c.NotBefore.Format(time.RFC3339))
	}
	d.pass(CheckNotBefore, fmtOptTime(c.NotBefore))
	if !c.IssuedAt.IsZero() && now.Add(skew).Before(c.IssuedAt) {
		return d.fail(CheckIssuedAt, ReasonIssuedInFuture, "issued in the future at %s", c.IssuedAt.Format(time.RFC3339))
	}
	d.pass(CheckIssuedAt, fmtOptTime(c.IssuedAt))
	if ic.MaxLifetime > 0 {
		if c.IssuedAt.IsZero() {
			return d.fail(CheckLifetime, ReasonMissingClaim, "no iat claim; needed to bound lifetime")
		}
		if lt := c.Expiry.Sub(c.IssuedAt); lt > ic.MaxLifetime {
			return d.fail(CheckLifetime, ReasonLifetime, "lifetime %v exceeds %v", lt, ic.MaxLifetime)
		}
	}
	d.pass(CheckLifetime, "")

	// Audience.
	if !ic.AnyAudience {
		if len(c.Audience) == 0 {
			return d.fail(CheckAudience, ReasonAudience, "no aud claim")
		}
		ok := false
		for _, a := range c.Audience {
			if slices.Contains(ic.Audiences, a) {
				ok = true
				break
			}
		}
		if !ok {
			return d.fail(CheckAudience, ReasonAudience, "aud %q not accepted", c.Audience)
		}
		d.pass(CheckAudience, strings.Join(c.Audience, ","))
	} else {
		d.pass(CheckAudience, "any audience accepted (not checked)")
	}

	for _, name := range ic.RequiredClaims {
		if raw, ok := c.Raw[name]; !ok || string(raw) == "null" {
			return d.fail(CheckRequired, ReasonMissingClaim, "required claim %q absent", name)
		}
	}
	d.pass(CheckRequired, strings.Join(ic.RequiredClaims, ","))
	d.Valid = true
	return d
}

func fmtOptTime(t time.Time) string {
	if t.IsZero() {
		return "absent"
	}
	return t.Format(time.RFC3339)
}

func keyDesc(k *Key) string {
	s := fmt.Sprintf("kid=%s %s/%d set=%s", k.ID, k.Type, k.Bits, k.Scope.KeySet)
	if k.Issuer != "" {
		s += " key-issuer=" + k.Issuer
	}
	if !k.RetiredAt.IsZero() {
		s += " (retired " + k.RetiredAt.UTC().Format(time.RFC3339) + ", within overlap)"
	}
	return s
}

// highS reports whether sig, a JWS ECDSA signature (r||s, each the size
// of the curve order), carries s > n/2. ECDSA is malleable: if (r, s)
// verifies, so does (r, n-s), giving every signed token a second valid
// encoding; accepting only s <= n/2 leaves exactly one.
func highS(pk *ecdsa.PublicKey, sig []byte) bool {
	half := halfOrder(pk.Curve)
	if len(sig) != 2*len(half) {
		return false // go-jose has already refused other lengths
	}
	// Both are big-endian of the same length, so bytes compare as numbers.
	return bytes.Compare(sig[len(half):], half) > 0
}

// halfOrders holds n/2 of each curve a key may use (ParseJWKS admits only
// these three), big-endian in the curve's signature field size.
var halfOrders = map[elliptic.Curve][]byte{
	elliptic.P256(): halfOrderBytes(elliptic.P256()),
	elliptic.P384(): halfOrderBytes(elliptic.P384()),
	elliptic.P521(): halfOrderBytes(elliptic.P521()),
}

func halfOrder(c elliptic.Curve) []byte {
	if h, ok := halfOrders[c]; ok {
		return h
	}
	return halfOrderBytes(c)
}

func halfOrderBytes(c elliptic.Curve) []byte {
	n := c.Params().N
	return new(big.Int).Rsh(n, 1).FillBytes(make([]byte, (n.BitLen()+7)/8))
}

// badChar returns the first byte outside the base64url alphabet.
func badChar(s string) (rune, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return rune(c), true
		}
	}
	return 0, false
}

var acceptedTyp = []string{"jwt", "at+jwt", "application/jwt", "application/at+jwt"}

// checkHeader applies the header rules and fills h.
func (v *Validator) checkHeader(m map[string]json.RawMessage, h *Header) (Reason, string) {
	if _, ok := m["enc"]; ok {
		return ReasonJWE, `"enc" header: encrypted tokens are not accepted`
	}
	alg, present, err := memberString(m, "alg")
	if err != nil || !present || alg == "" {
		return ReasonBadHeader, "alg missing or not a string"
	}
	h.Alg = alg
	if strings.EqualFold(alg, "none") {
		return ReasonAlgNone, "unsigned token (alg none)"
	}
	if strings.HasPrefix(strings.ToUpper(alg), "HS") {
		return ReasonAlgHMAC, alg + " is a symmetric algorithm; only public keys are configured"
	}
	if !isAsymmetric(jose.SignatureAlgorithm(alg)) {
		return ReasonAlgNotAllowed, "unsupported alg " + alg
	}
	// Header parameters that let the sender choose the verification key.
	for _, p := range []string{"jku", "x5u", "jwk", "x5c"} {
		if _, ok := m[p]; ok {
			return ReasonEmbeddedKey, fmt.Sprintf("%q header: keys are only taken from configured key sets", p)
		}
	}
	if _, ok := m["crit"]; ok {
		return ReasonCrit, "crit header: no extensions are understood"
	}
	if _, ok := m["b64"]; ok {
		return ReasonCrit, "b64 header (RFC 7797) is not supported"
	}
	if _, ok := m["cty"]; ok {
		return ReasonNested, "cty header: nested or non-JWT content is not accepted"
	}
	typ, _, err := memberString(m, "typ")
	if err != nil {
		return ReasonBadHeader, err.Error()
	}
	if typ != "" && !slices.Contains(acceptedTyp, strings.ToLower(typ)) {
		return ReasonBadHeader, fmt.Sprintf("typ %q is not a JWT type", typ)
	}
	h.Typ = typ
	kid, kidSet, err := memberString(m, "kid")
	if err != nil {
		return ReasonBadKeyID, err.Error()
	}
	if kidSet && (kid == "" || len(kid) > maxKidLength || !printable(kid)) {
		return ReasonBadKeyID, fmt.Sprintf("kid of %d bytes is empty, too long or not printable ASCII", len(kid))
	}
	h.Kid = kid
	x5t, x5tSet, err := memberString(m, "x5t")
	if err != nil {
		return ReasonBadKeyID, err.Error()
	}
	if x5tSet {
		b, err := base64.RawURLEncoding.DecodeString(x5t)
		if err != nil || len(b) != 20 {
			return ReasonBadKeyID, "x5t is not a base64url SHA-1 thumbprint"
		}
		h.X5t = x5t
	}
	if kid == "" && h.X5t == "" {
		return ReasonBadKeyID, "neither kid nor x5t: the signing key cannot be identified"
	}
	return ReasonOK, ""
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// matchIssuer finds the issuer configuration for the token. Exact issuers
// win over templates; a template matches only when substituting the token's
// tid reproduces iss exactly.
func (v *Validator) matchIssuer(c *Claims) (*IssuerConfig, Reason, string) {
	for i := range v.cfg.Issuers {
		if ic := &v.cfg.Issuers[i]; !isTemplate(ic.Issuer) && ic.Issuer == c.Issuer {
			return ic, ReasonOK, ""
		}
	}
	for i := range v.cfg.Issuers {
		ic := &v.cfg.Issuers[i]
		if !isTemplate(ic.Issuer) || !matchesTemplateShape(ic.Issuer, c.Issuer) {
			continue
		}
		if c.Tenant == "" {
			return nil, ReasonTenant, fmt.Sprintf("issuer %s is a tenant template and the token has no tid", ic.Name)
		}
		if !safeTenant(c.Tenant) {
			return nil, ReasonTenant, "tid contains characters not allowed in a tenant id"
		}
		if resolveIssuer(ic.Issuer, c.Tenant) != c.Issuer {
			return nil, ReasonTenant, fmt.Sprintf("iss %q does not name the token's tenant %q", c.Issuer, c.Tenant)
		}
		return ic, ReasonOK, ""
	}
	return nil, ReasonUnknownIssuer, fmt.Sprintf("issuer %q is not configured", c.Issuer)
}

func safeTenant(t string) bool {
	if len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// findKey looks the key up in the issuer's own key sets only; a key found
// elsewhere is reported as a scope violation, never used.
func (v *Validator) findKey(ctx context.Context, ic *IssuerConfig, c *Claims, h *Header) (*Key, Reason, string) {
	sets := make([]*KeySet, 0, len(ic.Keys))
	for _, src := range ic.Keys {
		ks, err := src.Keys(ctx)
		if err != nil {
			return nil, ReasonKeysUnavailable, err.Error()
		}
		sets = append(sets, ks)
	}
	cands := lookup(sets, h)
	if len(cands) == 0 {
		// An unknown kid may be a fresh rollover: refresh (rate limited).
		sets = sets[:0]
		for _, src := range ic.Keys {
			ks, err := src.Refresh(ctx)
			if err != nil {
				return nil, ReasonKeysUnavailable, err.Error()
			}
			sets = append(sets, ks)
		}
		cands = lookup(sets, h)
	}
	if len(cands) == 0 {
		for _, ks := range sets {
			if k := ks.RetiredKey(h.Kid); k != nil {
				return k, ReasonKeyRetired, fmt.Sprintf("kid %s was removed from %s at %s",
					h.Kid, k.Scope.Source, k.RetiredAt.UTC().Format(time.RFC3339))
			}
		}
		if k, other := v.findElsewhere(ctx, ic, h); k != nil {
			return k, ReasonKeyScope, fmt.Sprintf("kid %s belongs to key set %s (issuer %s), not to %s",
				h.Kid, other.Name, other.Issuer, ic.Name)
		}
		return nil, ReasonUnknownKey, fmt.Sprintf("no key kid=%q x5t=%q in key set %s", h.Kid, h.X5t, ic.Name)
	}
	if len(cands) > 1 {
		return nil, ReasonKeyAmbiguous, fmt.Sprintf("kid %q names %d different keys in key set %s", h.Kid, len(cands), ic.Name)
	}
	k := cands[0]
	if !k.RetiredAt.IsZero() && !v.cfg.Now().Before(k.RetiredUntil) {
		return k, ReasonKeyRetired, fmt.Sprintf("kid %s was removed from %s at %s; overlap ended %s", k.ID,
			k.Scope.Source, k.RetiredAt.UTC().Format(time.RFC3339), k.RetiredUntil.UTC().Format(time.RFC3339))
	}
	if v.denied[k.ID] || v.denied[k.X5t] || v.denied[h.Kid] || v.denied[h.X5t] {
		return k, ReasonKeyRevoked, fmt.Sprintf("key %s is on the deny list", k.ID)
	}
	if h.X5t != "" && k.X5t != "" && h.X5t != k.X5t {
		return k, ReasonBadKeyID, "x5t does not match the key named by kid"
	}
	if detail := keyScopeViolation(k, c); detail != "" {
		return k, ReasonKeyScope, detail
	}
	if w := k.Weak(); w != "" {
		return k, ReasonWeakKey, w
	}
	return k, ReasonOK, ""
}

// keyScopeViolation applies the key's own scope to the token and says why
// the key may not sign it, or returns "". matchIssuer has already made sure
// iss is an issuer the caller configured; here the key must also be
// published for that iss:
//   - the key set it came from was loaded for an issuer (Scope.Issuer) that
//     is iss, or a template that resolves to iss with the token's tid;
//   - its per-key "issuer" member (Entra publishes one on every key) is iss
//     exactly, or a {tenantid} template that reproduces iss exactly when tid
//     is substituted. A templated key never serves the consumer tenant:
//     Entra publishes the consumer keys with that tenant's exact issuer,
//     and a key serving both scopes is the overlap behind Storm-0558;
//   - a key bound to one tenant serves only tokens of that tenant.
func keyScopeViolation(k *Key, c *Claims) string {
	if k.Scope.Issuer != "" && !issuerCovers(k.Scope.Issuer, c) {
		return fmt.Sprintf("key %s was loaded from key set %s for issuer %s, token iss is %s (tid %q)",
			k.ID, k.Scope.KeySet, k.Scope.Issuer, c.Issuer, c.Tenant)
	}
	switch {
	case k.Issuer == "":
	case !isTemplate(k.Issuer):
		if k.Issuer != c.Issuer {
			return fmt.Sprintf("key %s is published for issuer %s only, token iss is %s", k.ID, k.Issuer, c.Issuer)
		}
	case c.Tenant == "":
		return fmt.Sprintf("key %s is published for the tenant template %s and the token has no tid", k.ID, k.Issuer)
	case !issuerCovers(k.Issuer, c):
		return fmt.Sprintf("key %s is published for %s: with the token's tid %q that is not its iss %s",
			k.ID, k.Issuer, c.Tenant, c.Issuer)
	case c.Tenant == ConsumerTenant:
		return fmt.Sprintf("key %s is published for organisation tenants (%s), token tid is the consumer tenant",
			k.ID, k.Issuer)
	}
	if k.Scope.Tenant != "" && k.Scope.Tenant != c.Tenant {
		return fmt.Sprintf("key %s is bound to tenant %s, token tid is %q", k.ID, k.Scope.Tenant, c.Tenant)
	}
	return ""
}

// issuerCovers reports whether iss (exact, or a {tenantid} template) names
// the token's issuer: exactly, or once the token's tid is substituted.
func issuerCovers(iss string, c *Claims) bool {
	if !isTemplate(iss) {
		return iss == c.Issuer
	}
	return c.Tenant != "" && safeTenant(c.Tenant) && templateGives(iss, c.Tenant, c.Issuer)
}

// templateGives reports whether resolveIssuer(template, tid) == iss without
// building the string, for the usual template with one placeholder.
func templateGives(template, tid, iss string) bool {
	i := strings.IndexByte(template, '{')
	for _, ph := range []string{"{tenantid}", "{tenant}"} {
		if i >= 0 && strings.HasPrefix(template[i:], ph) {
			pre, suf := template[:i], template[i+len(ph):]
			if strings.IndexByte(suf, '{') >= 0 {
				break // several placeholders: build it
			}
			return len(iss) == len(pre)+len(tid)+len(suf) && strings.HasPrefix(iss, pre) &&
				strings.HasSuffix(iss, suf) && iss[len(pre):len(pre)+len(tid)] == tid
		}
	}
	return resolveIssuer(template, tid) == iss
}

// lookup returns the distinct keys (by thumbprint) matching kid, or x5t
// when the header has no kid.
func lookup(sets []*KeySet, h *Header) []*Key {
	var out []*Key
	for _, ks := range sets {
		var ks2 []*Key
		if h.Kid != "" {
			ks2 = ks.ByKid(h.Kid)
		} else {
			ks2 = ks.ByX5t(h.X5t)
		}
		for _, k := range ks2 {
			if !slices.ContainsFunc(out, func(o *Key) bool { return o.Thumbprint == k.Thumbprint }) {
				out = append(out, k)
			}
		}
	}
	return out
}

// findElsewhere searches the other issuers' cached key sets, only to name
// the scope a stray key belongs to in the rejection.
func (v *Validator) findElsewhere(ctx context.Context, self *IssuerConfig, h *Header) (*Key, *IssuerConfig) {
	for i := range v.cfg.Issuers {
		ic := &v.cfg.Issuers[i]
		if ic == self {
			continue
		}
		for _, src := range ic.Keys {
			ks, err := src.Keys(ctx)
			if err != nil {
				continue
			}
			if ks := lookup([]*KeySet{ks}, h); len(ks) > 0 {
				return ks[0], ic
			}
		}
	}
	return nil, nil
}
