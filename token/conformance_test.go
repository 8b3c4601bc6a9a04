package token

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
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
	name   string
	common bool // validate with the shared-"common"-JWKS configuration
	token  func(t testing.TB, f *fixture) string
	want   Reason
}

func conformanceCases() []conformanceCase {
	ent := func() map[string]any { return claimsFor(entIssuer(entTenant), entTenant) }
	return []conformanceCase{
		// ---- valid tokens ----
		{"valid RS256 enterprise tenant", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
		}, ReasonOK},
		{"valid second allowed tenant", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(entTenant2), entTenant2))
		}, ReasonOK},
		{"valid ES256", false, func(t testing.TB, f *fixture) string {
			return sign(t, "ES256", f.entEC.priv, hdr(f.entEC), ent())
		}, ReasonOK},
		{"valid EdDSA", false, func(t testing.TB, f *fixture) string {
			return sign(t, "EdDSA", f.entEd.priv, hdr(f.entEd), ent())
		}, ReasonOK},
		{"valid PS256 key pinned to PS256", false, func(t testing.TB, f *fixture) string {
			return sign(t, "PS256", f.entPS.priv, hdr(f.entPS), ent())
		}, ReasonOK},
		{"valid RS512", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS512", f.ent.priv, hdr(f.ent), ent())
		}, ReasonOK},
		{"valid consumer token on consumer issuer", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.con.priv, hdr(f.con), claimsFor(msaIssuer, msaTenant))
		}, ReasonOK},
		{"valid x5t only, no kid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", nil, "x5t", f.ent.x5t()), ent())
		}, ReasonOK},
		{"valid kid and matching x5t", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5t", f.ent.x5t()), ent())
		}, ReasonOK},
		{"valid aud array", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", []string{"other", testAud}))
		}, ReasonOK},
		{"valid exp within skew", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", testNow.Add(-time.Minute).Unix()))
		}, ReasonOK},
		{"valid nbf within skew", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "nbf", testNow.Add(time.Minute).Unix()))
		}, ReasonOK},
		{"valid typ at+jwt and fractional exp", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "typ", "at+jwt"),
				with(ent(), "exp", float64(testNow.Add(time.Hour).Unix())+0.5))
		}, ReasonOK},
		{"valid idp-a with kid shared with idp-b", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpA.priv, hdr(f.idpA), claimsFor("https://idp-a.example", ""))
		}, ReasonOK},
		{"valid idp-b with kid shared with idp-a", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpB.priv, hdr(f.idpB), claimsFor("https://idp-b.example", ""))
		}, ReasonOK},
		{"valid enterprise key from shared common JWKS", true, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entCommon.priv, hdr(f.entCommon), ent())
		}, ReasonOK},

		// ---- algorithm attacks ----
		{"alg none", false, func(t testing.TB, f *fixture) string {
			return sign(t, "none", nil, hdr(f.ent, "alg", "none"), ent())
		}, ReasonAlgNone},
		{"alg NoNe mixed case", false, func(t testing.TB, f *fixture) string {
			return sign(t, "none", nil, hdr(f.ent, "alg", "NoNe"), ent())
		}, ReasonAlgNone},
		{"HS256 keyed with the public key PEM", false, func(t testing.TB, f *fixture) string {
			der, _ := x509.MarshalPKIXPublicKey(f.ent.priv.Public())
			pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return sign(t, "HS256", pemKey, hdr(f.ent), ent())
		}, ReasonAlgHMAC},
		{"HS256 keyed with the certificate DER", false, func(t testing.TB, f *fixture) string {
			return sign(t, "HS256", f.ent.cert.Raw, hdr(f.ent), ent())
		}, ReasonAlgHMAC},
		{"RS256 header against an EC key", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.entEC, "alg", "RS256"), ent())
		}, ReasonAlgNotAllowed},
		{"RS256 against a key pinned to PS256", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entPS.priv, hdr(f.entPS), ent())
		}, ReasonAlgNotAllowed},
		{"unknown alg", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "alg", "RS1"), ent())
		}, ReasonAlgNotAllowed},

		// ---- key selection attacks ----
		{"kid injection path traversal", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "../../../../dev/null"), ent())
		}, ReasonUnknownKey},
		{"kid injection SQL with spaces", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "x' UNION SELECT 'secret"), ent())
		}, ReasonBadKeyID},
		{"kid with control characters", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "ent-1\x00\n"), ent())
		}, ReasonBadKeyID},
		{"kid not a string", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", 7), ent())
		}, ReasonBadKeyID},
		{"no kid and no x5t", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "kid", nil), ent())
		}, ReasonBadKeyID},
		{"x5t of another key than kid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5t", f.entPS.x5t()), ent())
		}, ReasonBadKeyID},
		{"jku header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "jku", "https://127.0.0.1/keys"), ent())
		}, ReasonEmbeddedKey},
		{"x5u header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "x5u", "https://127.0.0.1/cert.pem"), ent())
		}, ReasonEmbeddedKey},
		{"embedded jwk header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "jwk", f.attacker.jwk(t)), ent())
		}, ReasonEmbeddedKey},
		{"embedded x5c header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "x5c", []string{b64(f.ent.cert.Raw)}), ent())
		}, ReasonEmbeddedKey},
		{"unknown kid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.ent, "kid", "nope"), ent())
		}, ReasonUnknownKey},
		{"attacker key under a published kid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.attacker.priv, hdr(f.attacker), ent())
		}, ReasonBadSignature},
		{"kid names two keys in one set", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.twiceA.priv, hdr(f.twiceA), ent())
		}, ReasonKeyAmbiguous},
		{"duplicate kid across issuers: idp-a key on idp-b token", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.idpA.priv, hdr(f.idpA), claimsFor("https://idp-b.example", ""))
		}, ReasonBadSignature},
		{"denied Storm-0558 kid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.denied.priv, hdr(f.denied), ent())
		}, ReasonKeyRevoked},
		{"RSA 1024 key", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entWeak.priv, hdr(f.entWeak), ent())
		}, ReasonWeakKey},

		// ---- certificates ----
		{"expired signing certificate", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entExpired.priv, hdr(f.entExpired), ent())
		}, ReasonCertExpired},
		{"not-yet-valid signing certificate", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entFuture.priv, hdr(f.entFuture), ent())
		}, ReasonCertNotYetValid},

		// ---- issuer, tenant, scope ----
		{"wrong issuer", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", "https://evil.example/v2.0"))
		}, ReasonUnknownIssuer},
		{"issuer lookalike with path suffix", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", entIssuer(entTenant)+"/"))
		}, ReasonUnknownIssuer},
		{"missing iss", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iss", nil))
		}, ReasonMissingClaim},
		{"iss tenant differs from tid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "tid", entTenant2))
		}, ReasonTenant},
		{"tenant not allowed", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(entIssuer(otherTen), otherTen))
		}, ReasonTenant},
		{"template issuer without tid", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "tid", nil))
		}, ReasonTenant},
		{"consumer key on enterprise token", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.con.priv, hdr(f.con), ent())
		}, ReasonKeyScope},
		{"enterprise key on consumer token", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), claimsFor(msaIssuer, msaTenant))
		}, ReasonKeyScope},
		{"Storm-0558: 2016 consumer key, expired cert, enterprise token, common JWKS", true,
			func(t testing.TB, f *fixture) string {
				return sign(t, "RS256", f.storm.priv, hdr(f.storm, "x5t", f.storm.x5t()),
					with(ent(), "azp", "00000002-0000-0ff1-ce00-000000000000"))
			}, ReasonKeyScope},
		{"Storm-0558 key on a consumer token: certificate expired", true, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.storm.priv, hdr(f.storm), claimsFor(msaIssuer, msaTenant))
		}, ReasonCertExpired},
		{"enterprise key from common JWKS on consumer token", true, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.entCommon.priv, hdr(f.entCommon), claimsFor(msaIssuer, msaTenant))
		}, ReasonKeyScope},

		// ---- header rules ----
		{"crit header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "crit", []string{"exp"}, "exp", 1), ent())
		}, ReasonCrit},
		{"b64 false header", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "b64", false), ent())
		}, ReasonCrit},
		{"nested JWT (cty)", false, func(t testing.TB, f *fixture) string {
			inner := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "cty", "JWT"), []byte(`"`+inner+`"`))
		}, ReasonNested},
		{"typ JWE-ish", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "typ", "dpop+jwt"), ent())
		}, ReasonBadHeader},
		{"duplicate alg member", false, func(t testing.TB, f *fixture) string {
			h := []byte(`{"alg":"RS256","kid":"ent-1","alg":"none"}`)
			return signRaw(t, "RS256", f.ent.priv, h, mustJSON(t, ent()))
		}, ReasonBadHeader},
		{"trailing data after header JSON", false, func(t testing.TB, f *fixture) string {
			h := []byte(`{"alg":"RS256","kid":"ent-1"}{"alg":"none"}`)
			return signRaw(t, "RS256", f.ent.priv, h, mustJSON(t, ent()))
		}, ReasonBadHeader},
		{"header is an array", false, func(t testing.TB, f *fixture) string {
			return signRaw(t, "RS256", f.ent.priv, []byte(`["RS256"]`), mustJSON(t, ent()))
		}, ReasonBadHeader},

		// ---- structure and encoding ----
		{"oversize", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "pad", strings.Repeat("A", 20000)))
		}, ReasonOversize},
		{"JWE five parts", false, func(t testing.TB, f *fixture) string {
			return b64([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"ent-1"}`)) + ".a.b.c.d"
		}, ReasonJWE},
		{"enc header in three parts", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent, "enc", "A256GCM"), ent())
		}, ReasonJWE},
		{"padded base64", false, func(t testing.TB, f *fixture) string {
			tok := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return tok + "=="
		}, ReasonBadEncoding},
		{"standard base64 alphabet", false, func(t testing.TB, f *fixture) string {
			tok := sign(t, "RS256", f.ent.priv, hdr(f.ent), ent())
			return strings.Replace(tok, ".", "+.", 1)
		}, ReasonBadEncoding},
		{"impossible base64 length", false, func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			for len(p[1])%4 != 1 {
				p[1] += "A"
			}
			return strings.Join(p, ".")
		}, ReasonBadEncoding},
		{"trailing fourth part", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()) + ".extra"
		}, ReasonMalformed},
		{"trailing whitespace and garbage", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()) + " garbage"
		}, ReasonMalformed},
		{"two parts", false, func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			return p[0] + "." + p[1]
		}, ReasonMalformed},
		{"empty token", false, func(testing.TB, *fixture) string { return "" }, ReasonMalformed},
		{"tampered payload", false, func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			p[1] = b64(mustJSON(t, with(ent(), "sub", "admin")))
			return strings.Join(p, ".")
		}, ReasonBadSignature},
		{"signature stripped", false, func(t testing.TB, f *fixture) string {
			p := strings.SplitN(sign(t, "RS256", f.ent.priv, hdr(f.ent), ent()), ".", 3)
			return p[0] + "." + p[1] + "."
		}, ReasonBadSignature},

		// ---- claims ----
		{"claims not an object", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), []byte(`["iss"]`))
		}, ReasonBadClaims},
		{"duplicate iss claim", false, func(t testing.TB, f *fixture) string {
			body := mustJSON(t, ent())
			body = append([]byte(`{"iss":"https://evil.example",`), body[1:]...)
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), body)
		}, ReasonBadClaims},
		{"deeply nested claim", false, func(t testing.TB, f *fixture) string {
			body := mustJSON(t, ent())
			deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
			body = append([]byte(`{"x":`+deep+`,`), body[1:]...)
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), body)
		}, ReasonBadClaims},
		{"exp as string", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", "tomorrow"))
		}, ReasonBadClaims},
		{"exp negative", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", -1))
		}, ReasonBadClaims},
		{"aud of wrong type", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", 5))
		}, ReasonBadClaims},
		{"expired token", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", testNow.Add(-10*time.Minute).Unix()))
		}, ReasonExpired},
		{"missing exp", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "exp", nil))
		}, ReasonMissingClaim},
		{"nbf in the future", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "nbf", testNow.Add(10*time.Minute).Unix()))
		}, ReasonNotYetValid},
		{"iat in the future", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "iat", testNow.Add(time.Hour).Unix()))
		}, ReasonIssuedInFuture},
		{"wrong audience", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", "api://someone-else"))
		}, ReasonAudience},
		{"missing audience", false, func(t testing.TB, f *fixture) string {
			return sign(t, "RS256", f.ent.priv, hdr(f.ent), with(ent(), "aud", nil))
		}, ReasonAudience},
	}
}

func TestConformance(t *testing.T) {
	f := getFixture(t)
	cases := conformanceCases()
	if len(cases) < 40 {
		t.Fatalf("conformance table has %d tokens, want >= 40", len(cases))
	}
	valid, attacks := 0, 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := f.main
			if tc.common {
				v = f.common
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
				return
			}
			if !errors.Is(err, tc.want) || ReasonOf(err) != tc.want {
				t.Fatalf("Validate error %v does not carry %s", err, tc.want)
			}
			// Every check is accounted for, in order, with exactly one failure.
			if len(d.Checks) != len(checkOrder) {
				t.Fatalf("%d checks recorded, want %d", len(d.Checks), len(checkOrder))
			}
			fails := 0
			for _, c := range d.Checks {
				if c.Status == "fail" {
					fails++
				}
			}
			if fails != 1 {
				t.Fatalf("%d failed checks, want 1: %+v", fails, d.Checks)
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
