package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hdr builds a header for key k with extra members.
func hdr(k *testKey, extra ...any) map[string]any {
	h := map[string]any{"typ": "JWT", "kid": k.kid}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(h, extra[i].(string))
			continue
		}
		h[extra[i].(string)] = extra[i+1]
	}
	return h
}

// with returns claims c with overrides (nil deletes).
func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

type conformanceCase struct {
	name string
	// v names the validator: "" the main configuration, "common" the
	// 2023-style shared JWKS, "entra/<config>" one of fixture.entraV.
	v     string
	token func(t testing.TB, f *fixture) string
	want  Reason
	// check is the check that must fail; empty means the one that alone
	// can give want (checkFor). A reason several checks can give must
	// name its check, so a case never passes because an earlier check
	// happened to reject with the same code.
	check string
}

// checkFor maps each reason only one check gives to that check.
var checkFor = map[Reason]string{
	ReasonOversize: CheckSize, ReasonMalformed: CheckStructure, ReasonBadEncoding: CheckStructure,
	ReasonNested: CheckHeader, ReasonAlgNone: CheckHeader, ReasonAlgHMAC: CheckHeader,
	ReasonEmbeddedKey: CheckHeader, ReasonCrit: CheckHeader, ReasonBadClaims: CheckClaims,
	ReasonUnknownIssuer: CheckIssuer, ReasonTenant: CheckTenant, ReasonUnknownKey: CheckKey,
	ReasonKeyScope: CheckKey, ReasonKeyAmbiguous: CheckKey, ReasonKeyRevoked: CheckKey,
	ReasonKeyRetired: CheckKey, ReasonWeakKey: CheckKey, ReasonKeysUnavailable: CheckKey,
	ReasonCertExpired: CheckCertificate, ReasonCertNotYetValid: CheckCertificate,
	ReasonBadSignature: CheckSignature, ReasonExpired: CheckExpiry, ReasonNotYetValid: CheckNotBefore,
	ReasonIssuedInFuture: CheckIssuedAt, ReasonLifetime: CheckLifetime, ReasonAudience: CheckAudience,
}

func conformanceCases() []conformanceCase {
	ent := func() map[string]any { return claimsFor(entIssuer(entTenant), entTenant) }
	return []conformanceCase{
		// ---- valid tokens ----
		{"valid RS256 enterprise tenant", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
		}, ReasonOK, ""},
		{"valid second allowed tenant", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(entTenant2), entTenant2))
		}, ReasonOK, ""},
		{"valid ES256", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES256", f.entEC.priv, hdr(f.entEC), ent())
		}, ReasonOK, ""},
		{"valid EdDSA", "", func(t testing.TB, f *fixture) string {
			return sign(t, "EdDSA", f.entEd.priv, hdr(f.entEd), ent())
		}, ReasonOK, ""},
		{"valid PS256 key pinned to PS256", "", func(t testing.TB, f *fixture) string {
			return sign(t, "PS256", f.entPS.priv, hdr(f.entPS), ent())
		}, ReasonOK, ""},
		{"valid RS512", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS512", f.ent.priv, hdr(f.ent), ent())
		}, ReasonOK, ""},
		{"valid consumer token on consumer issuer", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.con.priv, hdr(f.con), claimsFor(msaIssuer, msaTenant))
		}, ReasonOK, ""},
		{"valid x5t only, no kid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", nil, "x5t", f.ent.x5t()), ent())
		}, ReasonOK, ""},
		{"valid kid and matching x5t", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5t", f.ent.x5t()), ent())
		}, ReasonOK, ""},
		{"valid aud array", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", []string{"other", testAud}))
		}, ReasonOK, ""},
		{"valid exp within skew", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", testNow.Add(-time.Minute).Unix()))
		}, ReasonOK, ""},
		{"valid nbf within skew", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "nbf", testNow.Add(time.Minute).Unix()))
		}, ReasonOK, ""},
		{"valid typ at+jwt and fractional exp", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "typ", "at+jwt"),
				with(ent(), "exp", float64(testNow.Add(time.Hour).Unix())+0.5))
		}, ReasonOK, ""},
		{"valid idp-a with kid shared with idp-b", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpA.priv, hdr(f.idpA), claimsFor("https://idp-a.example", ""))
		}, ReasonOK, ""},
		{"valid idp-b with kid shared with idp-a", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpB.priv, hdr(f.idpB), claimsFor("https://idp-b.example", ""))
		}, ReasonOK, ""},
		{"valid enterprise key from shared common JWKS", "common", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entCommon.priv, hdr(f.entCommon), ent())
		}, ReasonOK, ""},

		// ---- algorithm attacks ----
		{"alg none", "", func(t testing.TB, f *fixture) string {
			return sign(t, "none", nil, hdr(f.ent, "alg", "none"), ent())
		}, ReasonAlgNone, ""},
		{"alg NoNe mixed case", "", func(t testing.TB, f *fixture) string {
			return sign(t, "none", nil, hdr(f.ent, "alg", "NoNe"), ent())
		}, ReasonAlgNone, ""},
		{"HS256 keyed with the public key PEM", "", func(t testing.TB, f *fixture) string {
			der, _ := x509.MarshalPKIXPublicKey(f.ent.priv.Public())
			pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return sign(t, "HS256", pemKey, hdr(f.ent), ent())
		}, ReasonAlgHMAC, ""},
		{"HS256 keyed with the certificate DER", "", func(t testing.TB, f *fixture) string {
			return sign(t, "HS256", f.ent.cert.Raw, hdr(f.ent), ent())
		}, ReasonAlgHMAC, ""},
		{"RS256 header against an EC key", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.entEC, "alg", "RS256"), ent())
		}, ReasonAlgNotAllowed, CheckAlgorithm},
		{"RS256 against a key pinned to PS256", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entPS.priv, hdr(f.entPS), ent())
		}, ReasonAlgNotAllowed, CheckAlgorithm},
		{"unknown alg", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "alg", "RS1"), ent())
		}, ReasonAlgNotAllowed, CheckHeader},

		// ---- key selection attacks ----
		{"kid injection path traversal", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "../../../../dev/null"), ent())
		}, ReasonUnknownKey, ""},
		{"kid injection SQL with spaces", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "x' UNION SELECT 'secret"), ent())
		}, ReasonBadKeyID, CheckHeader},
		{"kid with control characters", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "ent-1\x00\n"), ent())
		}, ReasonBadKeyID, CheckHeader},
		{"kid not a string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", 7), ent())
		}, ReasonBadKeyID, CheckHeader},
		{"no kid and no x5t", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", nil), ent())
		}, ReasonBadKeyID, CheckHeader},
		{"x5t of another key than kid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5t", f.entPS.x5t()), ent())
		}, ReasonBadKeyID, CheckKey},
		{"jku header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "jku", "https://127.0.0.1/keys"), ent())
		}, ReasonEmbeddedKey, ""},
		{"x5u header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "x5u", "https://127.0.0.1/cert.pem"), ent())
		}, ReasonEmbeddedKey, ""},
		{"embedded jwk header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "jwk", f.attacker.jwk(t)), ent())
		}, ReasonEmbeddedKey, ""},
		{"embedded x5c header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5c", []string{b64(f.ent.cert.Raw)}), ent())
		}, ReasonEmbeddedKey, ""},
		{"unknown kid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "nope"), ent())
		}, ReasonUnknownKey, ""},
		{"attacker key under a published kid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.attacker), ent())
		}, ReasonBadSignature, ""},
		{"kid names two keys in one set", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.twiceA.priv, hdr(f.twiceA), ent())
		}, ReasonKeyAmbiguous, ""},
		{"duplicate kid across issuers: idp-a key on idp-b token", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpA.priv, hdr(f.idpA), claimsFor("https://idp-b.example", ""))
		}, ReasonBadSignature, ""},
		{"denied Storm-0558 kid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.denied.priv, hdr(f.denied), ent())
		}, ReasonKeyRevoked, ""},
		{"RSA 1024 key", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entWeak.priv, hdr(f.entWeak), ent())
		}, ReasonWeakKey, ""},

		// ---- certificates ----
		{"expired signing certificate", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entExpired.priv, hdr(f.entExpired), ent())
		}, ReasonCertExpired, ""},
		{"not-yet-valid signing certificate", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entFuture.priv, hdr(f.entFuture), ent())
		}, ReasonCertNotYetValid, ""},

		// ---- issuer, tenant, scope ----
		{"wrong issuer", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", "https://evil.example/v2.0"))
		}, ReasonUnknownIssuer, ""},
		{"issuer lookalike with path suffix", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", entIssuer(entTenant)+"/"))
		}, ReasonUnknownIssuer, ""},
		{"missing iss", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", nil))
		}, ReasonMissingClaim, CheckIssuer},
		{"iss tenant differs from tid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "tid", entTenant2))
		}, ReasonTenant, ""},
		{"tenant not allowed", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(otherTen), otherTen))
		}, ReasonTenant, ""},
		{"template issuer without tid", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "tid", nil))
		}, ReasonTenant, ""},
		{"consumer key on enterprise token", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.con.priv, hdr(f.con), ent())
		}, ReasonKeyScope, ""},
		{"enterprise key on consumer token", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(msaIssuer, msaTenant))
		}, ReasonKeyScope, ""},
		{"Storm-0558: 2016 consumer key, expired cert, enterprise token, common JWKS", "common",
			func(t testing.TB, f *fixture) string {
				return sign(t, "RS256", f.storm.priv, hdr(f.storm, "x5t", f.storm.x5t()),
					with(ent(), "azp", "00000002-0000-0ff1-ce00-000000000000"))
			}, ReasonKeyScope, ""},
		{"Storm-0558 key on a consumer token: certificate expired", "common", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.storm.priv, hdr(f.storm), claimsFor(msaIssuer, msaTenant))
		}, ReasonCertExpired, ""},
		{"enterprise key from common JWKS on consumer token", "common", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entCommon.priv, hdr(f.entCommon), claimsFor(msaIssuer, msaTenant))
		}, ReasonKeyScope, ""},

		// ---- header rules ----
		{"crit header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "crit", []string{"exp"}, "exp", 1), ent())
		}, ReasonCrit, ""},
		{"b64 false header", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "b64", false), ent())
		}, ReasonCrit, ""},
		{"nested JWT (cty)", "", func(t testing.TB, f *fixture) string {
			inner := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "cty", "JWT"), []byte(`"`+inner+`"`))
		}, ReasonNested, ""},
		{"typ JWE-ish", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "typ", "dpop+jwt"), ent())
		}, ReasonBadHeader, CheckHeader},
		{"duplicate alg member", "", func(t testing.TB, f *fixture) string {
			h := []byte(`{"alg":"RS256","kid":"ent-1","alg":"none"}`)
			return signRaw(t, "RS256", f.ent.priv, h, mustJSON(t, ent()))
		}, ReasonBadHeader, CheckHeader},
		{"trailing data after header JSON", "", func(t testing.TB, f *fixture) string {
			h := []byte(`{"alg":"RS256","kid":"ent-1"}{"alg":"none"}`)
			return signRaw(t, "RS256", f.ent.priv, h, mustJSON(t, ent()))
		}, ReasonBadHeader, CheckHeader},
		{"header is an array", "", func(t testing.TB, f *fixture) string {
			return signRaw(t, "RS256", f.ent.priv, []byte(`["RS256"]`), mustJSON(t, ent()))
		}, ReasonBadHeader, CheckHeader},

		// ---- structure and encoding ----
		{"oversize", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "pad", strings.Repeat("A", 20000)))
		}, ReasonOversize, ""},
		{"JWE five parts", "", func(t testing.TB, f *fixture) string {
			return b64([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"ent-1"}`)) + ".a.b.c.d"
		}, ReasonJWE, CheckStructure},
		{"enc header in three parts", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "enc", "A256GCM"), ent())
		}, ReasonJWE, CheckHeader},
		{"padded base64", "", func(t testing.TB, f *fixture) string {
			tok := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return tok + "=="
		}, ReasonBadEncoding, ""},
		{"standard base64 alphabet", "", func(t testing.TB, f *fixture) string {
			tok := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return strings.Replace(tok, ".", "+.", 1)
		}, ReasonBadEncoding, ""},
		{"impossible base64 length", "", func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			for len(p[1])%4 != 1 {
				p[1] += "A"
			}
			return strings.Join(p, ".")
		}, ReasonBadEncoding, ""},
		{"trailing fourth part", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()) + ".extra"
		}, ReasonMalformed, ""},
		{"trailing whitespace and garbage", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()) + " garbage"
		}, ReasonMalformed, ""},
		{"two parts", "", func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			return p[0] + "." + p[1]
		}, ReasonMalformed, ""},
		{"empty token", "", func(testing.TB, *fixture) string { return "" }, ReasonMalformed, ""},
		{"tampered payload", "", func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			p[1] = b64(mustJSON(t, with(ent(), "sub", "admin")))
			return strings.Join(p, ".")
		}, ReasonBadSignature, ""},
		{"signature stripped", "", func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			return p[0] + "." + p[1] + "."
		}, ReasonBadSignature, ""},

		// ---- claims ----
		{"claims not an object", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), []byte(`["iss"]`))
		}, ReasonBadClaims, ""},
		{"duplicate iss claim", "", func(t testing.TB, f *fixture) string {
			body := mustJSON(t, ent())
			body = append([]byte(`{"iss":"https://evil.example",`), body[1:]...)
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), body)
		}, ReasonBadClaims, ""},
		{"deeply nested claim", "", func(t testing.TB, f *fixture) string {
			body := mustJSON(t, ent())
			deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
			body = append([]byte(`{"x":`+deep+`,`), body[1:]...)
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), body)
		}, ReasonBadClaims, ""},
		{"exp as string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", "tomorrow"))
		}, ReasonBadClaims, ""},
		{"exp negative", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", -1))
		}, ReasonBadClaims, ""},
		{"aud of wrong type", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", 5))
		}, ReasonBadClaims, ""},
		{"expired token", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", testNow.Add(-10*time.Minute).Unix()))
		}, ReasonExpired, ""},
		{"missing exp", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", nil))
		}, ReasonMissingClaim, CheckExpiry},
		{"nbf in the future", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "nbf", testNow.Add(10*time.Minute).Unix()))
		}, ReasonNotYetValid, ""},
		{"iat in the future", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iat", testNow.Add(time.Hour).Unix()))
		}, ReasonIssuedInFuture, ""},
		{"wrong audience", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", "api://someone-else"))
		}, ReasonAudience, ""},
		{"missing audience", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", nil))
		}, ReasonAudience, ""},

		// ---- NumericDate claims are JSON numbers (RFC 7519 §2) ----
		{"exp as a numeric string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10)))
		}, ReasonBadClaims, ""},
		{"nbf as a numeric string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "nbf", strconv.FormatInt(testNow.Add(-time.Hour).Unix(), 10)))
		}, ReasonBadClaims, ""},
		{"iat as a numeric string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iat", strconv.FormatInt(testNow.Add(-time.Hour).Unix(), 10)))
		}, ReasonBadClaims, ""},
		{"exp as a fractional numeric string", "", func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", "1796162482.5"))
		}, ReasonBadClaims, ""},

		// ---- ECDSA: exactly one valid encoding per signature ----
		{"ES256 high-S form of a valid signature", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES256-highS", f.entEC.priv, hdr(f.entEC), ent())
		}, ReasonBadSignature, ""},
		{"valid ES384", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES384", f.entEC384.priv, hdr(f.entEC384), ent())
		}, ReasonOK, ""},
		{"ES384 high-S form of a valid signature", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES384-highS", f.entEC384.priv, hdr(f.entEC384), ent())
		}, ReasonBadSignature, ""},
		{"valid ES512", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES512", f.entEC521.priv, hdr(f.entEC521), ent())
		}, ReasonOK, ""},
		{"ES512 high-S form of a valid signature", "", func(t testing.TB, f *fixture) string {
			return sign(t, "ES512-highS", f.entEC521.priv, hdr(f.entEC521), ent())
		}, ReasonBadSignature, ""},
	}
}

// entraCases validates tokens against an Entra-shaped common JWKS (per-key
// "issuer" members, templated and exact) under each way a caller
// configures Entra, with an RSA and an EC key of every kind.
func entraCases() []conformanceCase {
	var out []conformanceCase
	for _, kind := range entraKinds {
		key := func(f *fixture, role string) *testKey { return f.entra[role+"-"+kind.name] }
		tok := func(role string, claims func() map[string]any) func(t testing.TB, f *fixture) string {
			return func(t testing.TB, f *fixture) string {
				k := key(f, role)
				return sign(t, kind.alg, k.priv, hdr(k, "x5t", k.x5t()), claims())
			}
		}
		org := func() map[string]any { return claimsFor(entIssuer(entTenant), entTenant) }
		add := func(name, v string, token func(testing.TB, *fixture) string, want Reason) {
			out = append(out, conformanceCase{name: "entra " + kind.name + ": " + name, v: "entra/" + v, token: token, want: want})
		}
		// Templated key: serves the token when iss is configured and equals
		// the key's template resolved with tid.
		add("exact issuer, templated key", "exact", tok("org", org), ReasonOK)
		add("template issuer with tenant, templated key", "template", tok("org", org), ReasonOK)
		add("exact issuer with tenant, templated key", "exact+tenant", tok("org", org), ReasonOK)
		add("template issuer any tenant, templated key", "any-tenant", tok("org", org), ReasonOK)
		add("template issuer any tenant, key of that exact tenant", "any-tenant",
			tok("other", func() map[string]any { return claimsFor(entIssuer(otherTen), otherTen) }), ReasonOK)
		add("consumer issuer, consumer key", "consumer",
			tok("consumer", func() map[string]any { return claimsFor(msaIssuer, msaTenant) }), ReasonOK)

		// A templated key resolved with tid must reproduce iss exactly.
		add("exact issuer, templated key, tid of another tenant", "exact",
			tok("org", func() map[string]any { return with(org(), "tid", entTenant2) }), ReasonKeyScope)
		add("exact issuer, templated key, no tid", "exact",
			tok("org", func() map[string]any { return with(org(), "tid", nil) }), ReasonKeyScope)
		add("exact issuer, templated key, tid with a path", "exact",
			tok("org", func() map[string]any { return with(org(), "tid", entTenant+"/v2.0") }), ReasonKeyScope)
		add("exact issuer, templated key, token of another tenant", "exact",
			tok("org", func() map[string]any { return claimsFor(entIssuer(entTenant2), entTenant2) }), ReasonUnknownIssuer)
		add("template issuer, templated key, tenant not listed", "template",
			tok("org", func() map[string]any { return claimsFor(entIssuer(entTenant2), entTenant2) }), ReasonTenant)
		add("exact issuer with tenant, templated key, tid of another tenant", "exact+tenant",
			tok("org", func() map[string]any { return with(org(), "tid", entTenant2) }), ReasonTenant)

		// A consumer tid never passes against an organisation's issuer.
		consumerTid := func() map[string]any { return with(org(), "tid", msaTenant) }
		add("exact issuer, consumer tid", "exact", tok("org", consumerTid), ReasonTenant)
		add("exact issuer with tenant, consumer tid", "exact+tenant", tok("org", consumerTid), ReasonTenant)
		add("template issuer, consumer tid", "template", tok("org", consumerTid), ReasonTenant)
		add("template issuer any tenant, consumer token", "any-tenant",
			tok("consumer", func() map[string]any { return claimsFor(msaIssuer, msaTenant) }), ReasonTenant)
		add("template issuer any tenant, consumer token, templated key", "any-tenant",
			tok("org", func() map[string]any { return claimsFor(msaIssuer, msaTenant) }), ReasonTenant)
		add("exact issuer, consumer token", "exact",
			tok("consumer", func() map[string]any { return claimsFor(msaIssuer, msaTenant) }), ReasonUnknownIssuer)

		// A key with an exact per-key issuer serves that issuer only
		// (Storm-0558: the consumer key signing organisation tokens).
		add("exact issuer, consumer key", "exact", tok("consumer", org), ReasonKeyScope)
		add("template issuer, consumer key", "template", tok("consumer", org), ReasonKeyScope)
		add("exact issuer with tenant, consumer key", "exact+tenant", tok("consumer", org), ReasonKeyScope)
		add("template issuer any tenant, consumer key", "any-tenant", tok("consumer", org), ReasonKeyScope)
		add("exact issuer, key of another exact tenant", "exact", tok("other", org), ReasonKeyScope)
		add("template issuer, key of another exact tenant", "template", tok("other", org), ReasonKeyScope)
		add("template issuer any tenant, key of another exact tenant", "any-tenant", tok("other", org), ReasonKeyScope)
		// ... and a templated (organisation) key never signs for the consumer tenant.
		add("consumer issuer, templated key", "consumer",
			tok("org", func() map[string]any { return claimsFor(msaIssuer, msaTenant) }), ReasonKeyScope)
		// A key set loaded for one issuer never serves another's.
		add("key set loaded for the consumer issuer, organisation issuer", "misbound", tok("org", org), ReasonKeyScope)

		// Rejections for their own reason once the key is in scope.
		add("exact issuer, templated key, expired certificate", "exact", tok("org-expired", org), ReasonCertExpired)
		add("template issuer, templated key, expired certificate", "template", tok("org-expired", org), ReasonCertExpired)
		add("exact issuer, templated key, certificate not yet valid", "exact", tok("org-future", org), ReasonCertNotYetValid)
		add("exact issuer, templated key, expired token", "exact",
			tok("org", func() map[string]any { return with(org(), "exp", testNow.Add(-time.Hour).Unix()) }), ReasonExpired)
		add("exact issuer, templated key, wrong audience", "exact",
			tok("org", func() map[string]any { return with(org(), "aud", "api://other") }), ReasonAudience)
		add("exact issuer, templated key, tampered payload", "exact", func(t testing.TB, f *fixture) string {
			p := strings.SplitN(tok("org", org)(t, f), ".", 3)
			p[1] = b64(mustJSON(t, with(org(), "sub", "admin")))
			return strings.Join(p, ".")
		}, ReasonBadSignature)
	}
	return out
}

func (tc conformanceCase) validator(t testing.TB, f *fixture) *Validator {
	switch {
	case tc.v == "":
		return f.main
	case tc.v == "common":
		return f.common
	case strings.HasPrefix(tc.v, "entra/"):
		if v := f.entraV[strings.TrimPrefix(tc.v, "entra/")]; v != nil {
			return v
		}
	}
	t.Fatalf("case %q: no validator %q", tc.name, tc.v)
	return nil
}

func TestConformance(t *testing.T) {
	f := getFixture(t)
	cases := append(conformanceCases(), entraCases()...)
	if len(cases) < 40 {
		t.Fatalf("conformance table has %d tokens, want >= 40", len(cases))
	}
	names := map[string]bool{}
	valid, attacks := 0, 0
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			v := tc.validator(t, f)
			wantCheck := tc.check
			if tc.want != ReasonOK && wantCheck == "" {
				if wantCheck = checkFor[tc.want]; wantCheck == "" {
					t.Fatalf("reason %s comes from several checks: the case must name its check", tc.want)
				}
			}
			tok := tc.token(t, f)
			d := v.Check(context.Background(), tok)
			if d.Reason != tc.want {
				t.Fatalf("reason = %s (%s), want %s", d.Reason, d.Detail, tc.want)
			}
			if d.Valid != (tc.want == ReasonOK) {
				t.Fatalf("valid = %v with reason %s", d.Valid, d.Reason)
			}
			claims, err := v.Validate(context.Background(), tok)
			if tc.want == ReasonOK {
				if err != nil || claims == nil || claims.Issuer == "" {
					t.Fatalf("Validate: claims=%v err=%v", claims, err)
				}
				for _, c := range d.Checks {
					if c.Status != "pass" {
						t.Fatalf("valid token with check %s %s", c.Name, c.Status)
					}
				}
				return
			}
			if !errors.Is(err, tc.want) || ReasonOf(err) != tc.want {
				t.Fatalf("Validate error %v does not carry %s", err, tc.want)
			}
			// Every check is accounted for, in order: the expected one
			// fails, every earlier one passed, every later one is skipped.
			if len(d.Checks) != len(checkOrder) {
				t.Fatalf("%d checks recorded, want %d", len(d.Checks), len(checkOrder))
			}
			failed := false
			for i, c := range d.Checks {
				if c.Name != checkOrder[i] {
					t.Fatalf("check %d is %s, want %s", i, c.Name, checkOrder[i])
				}
				want := "pass"
				switch {
				case c.Name == wantCheck:
					want, failed = "fail", true
				case failed:
					want = "skip"
				}
				if c.Status != want {
					t.Fatalf("check %s is %s, want %s (the %s check must be the one that rejects): %+v",
						c.Name, c.Status, want, wantCheck, d.Checks)
				}
			}
		})
		if tc.want == ReasonOK {
			valid++
		} else {
			attacks++
		}
	}
	t.Logf("conformance: %d tokens (%d valid, %d attacks)", len(cases), valid, attacks)
}

// An issuer whose signer does not normalise S can be allowed the high-S
// form explicitly; the decision says so. Other issuers still refuse it.
func TestAllowHighS(t *testing.T) {
	f := getFixture(t)
	ent := func() map[string]any { return claimsFor(entIssuer(entTenant), entTenant) }
	v, err := New(Config{Now: func() time.Time { return testNow }, Issuers: []IssuerConfig{
		{Name: "entra", Issuer: entTmpl, Tenants: []string{entTenant}, Audiences: []string{testAud}, AllowHighS: true,
			Keys: []KeySource{staticSet(t, "entra", entTmpl, f.entEC, f.entEC384)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg string
		k   *testKey
	}{{"ES256", f.entEC}, {"ES384", f.entEC384}} {
		high := sign(t, tc.alg+"-highS", tc.k.priv, hdr(tc.k), ent())
		d := v.Check(context.Background(), high)
		if !d.Valid || !strings.Contains(d.Checks[slices.Index(checkOrder, CheckSignature)].Detail, "high-S") {
			t.Fatalf("%s high-S with AllowHighS: %s %s %+v", tc.alg, d.Reason, d.Detail, d.Checks)
		}
		if d := f.main.Check(context.Background(), high); d.Reason != ReasonBadSignature || !strings.Contains(d.Detail, "high S") {
			t.Fatalf("%s high-S without AllowHighS: %s %s", tc.alg, d.Reason, d.Detail)
		}
		// The low-S encoding of a signature is accepted by both.
		low := sign(t, tc.alg, tc.k.priv, hdr(tc.k), ent())
		if d := f.main.Check(context.Background(), low); !d.Valid {
			t.Fatalf("%s low-S: %s %s", tc.alg, d.Reason, d.Detail)
		}
	}
}

func TestTemplateGives(t *testing.T) {
	for _, tc := range []struct {
		tmpl, tid, iss string
	}{
		{entTmpl, entTenant, entIssuer(entTenant)},
		{entTmpl, entTenant, entIssuer(entTenant2)},
		{entTmpl, entTenant, entIssuer(entTenant) + "/"},
		{entTmpl, "", "https://login.microsoftonline.com//v2.0"},
		{"https://sts.windows.net/{tenantid}/", entTenant, "https://sts.windows.net/" + entTenant + "/"},
		{"https://x/{tenant}/y", "a", "https://x/a/y"},
		{"https://x/{tenant}/{tenantid}", "a", "https://x/a/a"},
		{"https://x/{tenant}/{tenantid}", "a", "https://x/a/{tenantid}"},
		{"https://x/{other}/{tenant}", "a", "https://x/{other}/a"},
		{"https://x/{tenantid", "a", "https://x/{tenantid"},
	} {
		if got, want := templateGives(tc.tmpl, tc.tid, tc.iss), resolveIssuer(tc.tmpl, tc.tid) == tc.iss; got != want {
			t.Errorf("templateGives(%q, %q, %q) = %v, want %v", tc.tmpl, tc.tid, tc.iss, got, want)
		}
	}
}

// s = n/2 is the largest low S; n/2+1 is the smallest high S.
func TestHighSBoundary(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		n := c.Params().N
		size := (n.BitLen() + 7) / 8
		pk := &ecdsa.PublicKey{Curve: c}
		sig := func(s *big.Int) []byte {
			b := make([]byte, 2*size)
			b[size-1] = 1 // r
			s.FillBytes(b[size:])
			return b
		}
		half := new(big.Int).Rsh(n, 1)
		if highS(pk, sig(half)) || !highS(pk, sig(new(big.Int).Add(half, big.NewInt(1)))) ||
			highS(pk, sig(big.NewInt(1))) || !highS(pk, sig(new(big.Int).Sub(n, big.NewInt(1)))) {
			t.Errorf("%s: wrong boundary", c.Params().Name)
		}
	}
}
