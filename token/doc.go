// Package token validates JWS compact bearer tokens strictly, manages the
// JWKS/OIDC key sets they are checked against, audits published signing keys,
// and provides net/http middleware that applies the validation.
//
// It owns: parsing and validating tokens (algorithm allow-lists per key, key
// sets bound to issuers and tenants, x5c validity, time claims, audiences,
// forbidden headers), fetching and caching key sets, the audit event written
// for every decision, key-hygiene findings (AuditKeys) and the middleware.
// It must not touch vigil's journal, detection or CLI code: callers hand it an
// io.Writer for audit events and a configuration, and it knows nothing else.
//
// The design follows the Storm-0558 lessons: a key is trusted only for the
// issuer (and tenant) it was loaded for, an expired signing certificate is a
// rejection, and every decision records which key set signed the token.
// Cryptography is delegated to github.com/go-jose/go-jose/v4.
package token
