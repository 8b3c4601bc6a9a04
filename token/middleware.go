package token

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// ReasonMissingToken is recorded when a request carries no bearer token.
const ReasonMissingToken Reason = "missing_token"

type claimsKey struct{}

// ClaimsFromContext returns the claims the middleware validated.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// ContextWithClaims returns ctx carrying c.
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// MiddlewareOptions tunes Middleware.
type MiddlewareOptions struct {
	Realm string // WWW-Authenticate realm; default "vigil"
}

// Middleware returns net/http middleware that requires a valid bearer token
// (RFC 6750 Authorization header only; query and form tokens are refused
// because they leak into logs), puts its claims in the request context and
// answers 401 with a WWW-Authenticate challenge otherwise. Every request,
// including one without a token, produces an audit event.
func Middleware(v *Validator, opts MiddlewareOptions) func(http.Handler) http.Handler {
	realm := opts.Realm
	if realm == "" {
		realm = "vigil"
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := WithRequest(r.Context(), r)
			raw, ok := bearer(r)
			if !ok {
				d := &Decision{At: v.cfg.Now(), Reason: ReasonMissingToken,
					Detail: "no single Authorization: Bearer header"}
				v.record(ctx, d)
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				writeError(w, http.StatusUnauthorized, "invalid_request", ReasonMissingToken)
				return
			}
			d := v.Check(ctx, raw)
			v.record(ctx, d)
			if !d.Valid {
				if d.Reason == ReasonKeysUnavailable {
					writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", d.Reason)
					return
				}
				// The description is the reason code only: details may echo
				// attacker-chosen claim values into a header.
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+
					`", error="invalid_token", error_description="`+string(d.Reason)+`"`)
				writeError(w, http.StatusUnauthorized, "invalid_token", d.Reason)
				return
			}
			next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), d.Claims)))
		})
	}
}

func (v *Validator) record(ctx context.Context, d *Decision) {
	if v.cfg.Audit != nil {
		v.cfg.Audit.Record(ctx, d)
	}
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func writeError(w http.ResponseWriter, status int, code string, r Reason) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "reason": string(r)})
}
