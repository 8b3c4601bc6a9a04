// Package auth obtains OAuth 2.0 access tokens for the collectors: Entra
// ID client credentials with a certificate (a JWT client assertion signed
// with the private key, RFC 7523) or a client secret, and Google service
// accounts with domain-wide delegation (JWT-bearer grant with sub).
// Tokens are cached and refreshed at 80% of their lifetime. Secrets,
// assertions and tokens are never logged nor put in errors.
//
// It must not know which API a token is for beyond its scope.
package auth
