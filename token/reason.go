package token

import (
	"errors"
	"fmt"
)

// Reason is a stable, machine-readable code for a validation outcome. It is
// written into audit events, so values must never be renamed.
type Reason string

// Reasons. ReasonOK is the only accepting one.
const (
	ReasonOK              Reason = "ok"
	ReasonOversize        Reason = "oversize"        // token longer than MaxTokenSize
	ReasonMalformed       Reason = "malformed"       // not three dot-separated parts, stray characters, trailing data
	ReasonBadEncoding     Reason = "bad_encoding"    // a part is not unpadded base64url
	ReasonJWE             Reason = "jwe"             // an encrypted token (five parts or "enc" header)
	ReasonNested          Reason = "nested"          // "cty" present: nested or non-JWT content
	ReasonBadHeader       Reason = "bad_header"      // header is not a well-formed JSON object or has bad member types
	ReasonAlgNone         Reason = "alg_none"        // "alg":"none" (unsigned)
	ReasonAlgHMAC         Reason = "alg_hmac"        // symmetric alg presented against a public key
	ReasonAlgNotAllowed   Reason = "alg_not_allowed" // alg not in the key's allow-list
	ReasonEmbeddedKey     Reason = "embedded_key"    // jku, x5u, jwk or x5c header: key material chosen by the sender
	ReasonCrit            Reason = "crit"            // "crit" header naming extensions we do not implement
	ReasonBadKeyID        Reason = "bad_kid"         // kid/x5t missing, too long, or not printable
	ReasonBadClaims       Reason = "bad_claims"      // payload is not a JSON object or a claim has the wrong type
	ReasonUnknownIssuer   Reason = "unknown_issuer"  // iss matches no configured issuer
	ReasonTenant          Reason = "tenant"          // tid missing, not allowed, or not the tenant in iss
	ReasonUnknownKey      Reason = "unknown_key"     // no key with this kid/x5t anywhere
	ReasonKeyScope        Reason = "key_scope"       // key exists but belongs to another issuer/tenant (Storm-0558)
	ReasonKeyAmbiguous    Reason = "key_ambiguous"   // kid names more than one key in the issuer's set
	ReasonKeyRevoked      Reason = "key_revoked"     // key is on the deny list
	ReasonKeyRetired      Reason = "key_retired"     // key was removed from the JWKS and its overlap window has passed
	ReasonWeakKey         Reason = "weak_key"        // RSA < 2048 bits or otherwise unusable key
	ReasonCertExpired     Reason = "cert_expired"    // key's x5c leaf certificate has expired
	ReasonCertNotYetValid Reason = "cert_not_yet_valid"
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"          // exp in the past (beyond skew)
	ReasonNotYetValid     Reason = "not_yet_valid"    // nbf in the future (beyond skew)
	ReasonIssuedInFuture  Reason = "iat_future"       // iat in the future (beyond skew)
	ReasonLifetime        Reason = "lifetime"         // exp - iat exceeds the configured maximum
	ReasonAudience        Reason = "audience"         // aud does not name an accepted audience
	ReasonMissingClaim    Reason = "missing_claim"    // a required claim is absent
	ReasonKeysUnavailable Reason = "keys_unavailable" // the key source could not be read
)

// Error is the error returned for a rejected token. Compare with
// errors.Is(err, token.ReasonExpired) or read Reason directly.
type Error struct {
	Reason Reason
	Detail string
	Err    error // underlying cause, if any
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return "token rejected: " + string(e.Reason)
	}
	return fmt.Sprintf("token rejected: %s: %s", e.Reason, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is match an *Error against a Reason.
func (e *Error) Is(target error) bool {
	if r, ok := target.(Reason); ok {
		return e.Reason == r
	}
	return false
}

// Error makes Reason usable as an errors.Is target.
func (r Reason) Error() string { return string(r) }

// ReasonOf returns the Reason carried by err, ReasonOK for nil, and
// ReasonMalformed for errors that did not come from this package.
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonOK
	}
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return ReasonMalformed
}
