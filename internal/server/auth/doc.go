// Package auth owns who may do what on vigil's server: API keys with a
// role each, stored hashed in the data directory, checked in constant time.
//
// # What it guarantees
//
//   - A key is shown once, when created; the store keeps only its SHA-256
//     (a key carries 256 random bits, so a fast hash is enough: there is
//     nothing to brute-force).
//   - Deny by default: a request without a key, with an unknown, malformed
//     or revoked key, or with a role that lacks the permission is refused.
//   - Revocation takes effect on the next request, also in a server that
//     was started before `vigil apikey revoke` ran (the store re-reads its
//     file when it changes).
//   - Keys never appear in errors or logs; a key's id (the part before the
//     secret) names it in logs.
package auth
