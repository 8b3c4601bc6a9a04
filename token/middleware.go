package token

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Reasons only the middleware gives.
const (
	// ReasonMissingToken is recorded when a request carries no bearer token.
	ReasonMissingToken Reason = "missing_token"
	// ReasonQueryToken is recorded when the URL carries an access_token
	// parameter (RFC 6750 §2.3): such requests are refused, never
	// forwarded, even with a valid Authorization header, so an upstream
	// never sees a second, unvalidated token.
	ReasonQueryToken Reason = "query_token"
)

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
			if queryToken(r.URL.RawQuery) {
				d := &Decision{At: v.cfg.Now(), Reason: ReasonQueryToken,
					Detail: "access_token in the URL query: send the token in the Authorization header only"}
				v.record(ctx, d)
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_request"`)
				writeError(w, http.StatusBadRequest, "invalid_request", ReasonQueryToken)
				return
			}
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

// queryToken reports whether the raw query has an access_token parameter.
// Names are compared case-insensitively with "_" and "-" alike, after
// percent-decoding, splitting on "&" and ";": whatever a framework behind
// the proxy would read as access_token counts.
func queryToken(raw string) bool {
	if raw == "" {
		return false
	}
	for _, part := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if strings.ReplaceAll(strings.ToLower(name), "_", "-") == "access-token" {
			return true
		}
	}
	return false
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
