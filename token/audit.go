package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// AuditSource is the "source" of every audit event this package writes.
const AuditSource = "vigil.token"

// Audit operations.
const (
	OpValidated = "TokenValidated"
	OpRejected  = "TokenRejected"
)

// Event is one validation decision as written to the audit log: the token
// fields that separate a forged token from a real one (storm0558 §4.3) plus
// the key set that matched. Claims of rejected tokens are recorded as sent,
// because they are the evidence; the token itself and its signature never
// are.
type Event struct {
	ID        string `json:"id"`
	Time      string `json:"time"`
	Source    string `json:"source"`
	Operation string `json:"operation"`
	Result    string `json:"result"` // "success" or "failure"
	Reason    Reason `json:"reason"`
	Detail    string `json:"detail,omitempty"`
	Check     string `json:"failed_check,omitempty"`

	Alg   string   `json:"alg,omitempty"`
	Kid   string   `json:"kid,omitempty"`
	X5t   string   `json:"x5t,omitempty"`
	Iss   string   `json:"iss,omitempty"`
	Tid   string   `json:"tid,omitempty"`
	Aud   []string `json:"aud,omitempty"`
	Azp   string   `json:"azp,omitempty"`
	AppID string   `json:"appid,omitempty"`
	UTI   string   `json:"uti,omitempty"`
	JTI   string   `json:"jti,omitempty"`
	Sub   string   `json:"sub,omitempty"`
	OID   string   `json:"oid,omitempty"`
	Iat   string   `json:"iat,omitempty"`
	Exp   string   `json:"exp,omitempty"`
	Nbf   string   `json:"nbf,omitempty"`

	KeySet        string `json:"key_set,omitempty"`        // issuer configuration the token matched
	KeyScope      string `json:"key_scope,omitempty"`      // key set the key actually belongs to
	KeyIssuer     string `json:"key_issuer,omitempty"`     // per-key issuer, when published
	KeySource     string `json:"key_source,omitempty"`     // file or URL the key came from
	KeyThumbprint string `json:"key_thumbprint,omitempty"` // RFC 7638
	CertNotAfter  string `json:"cert_not_after,omitempty"` // leaf certificate expiry
	KeyRetiredAt  string `json:"key_retired_at,omitempty"` // key no longer published since

	// Normalized names vigil's generic decoders map without configuration.
	Tenant    string `json:"tenant,omitempty"`
	AppIDNorm string `json:"app_id,omitempty"`
	TokenID   string `json:"token_id,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	Method    string `json:"method,omitempty"`
	Path      string `json:"path,omitempty"`
}

// maxField bounds attacker-controlled strings copied into events.
const maxField = 512

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField] + "…"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// NewEvent builds the audit event for d.
func NewEvent(ctx context.Context, d *Decision) Event {
	e := Event{ID: newID(), Time: d.At.UTC().Format(time.RFC3339Nano), Source: AuditSource,
		Operation: OpValidated, Result: "success", Reason: d.Reason, Detail: clip(d.Detail),
		Alg: clip(d.Header.Alg), Kid: clip(d.Header.Kid), X5t: clip(d.Header.X5t), KeySet: d.KeySet}
	if !d.Valid {
		e.Operation, e.Result = OpRejected, "failure"
		for _, c := range d.Checks {
			if c.Status == "fail" {
				e.Check = c.Name
			}
		}
	}
	if c := d.Claims; c != nil {
		e.Iss, e.Tid, e.Azp, e.AppID = clip(c.Issuer), clip(c.Tenant), clip(c.AuthorizedParty), clip(c.AppID)
		e.UTI, e.JTI, e.Sub, e.OID = clip(c.UTI), clip(c.JTI), clip(c.Subject), clip(c.ObjectID)
		for i, a := range c.Audience {
			if i == 8 {
				break
			}
			e.Aud = append(e.Aud, clip(a))
		}
		e.Iat, e.Exp, e.Nbf = fmtTime(c.IssuedAt), fmtTime(c.Expiry), fmtTime(c.NotBefore)
		e.Tenant = e.Tid
		e.AppIDNorm = e.Azp
		if e.AppIDNorm == "" {
			e.AppIDNorm = e.AppID
		}
		e.TokenID = e.UTI
		if e.TokenID == "" {
			e.TokenID = e.JTI
		}
	}
	if k := d.Key; k != nil {
		e.KeyScope, e.KeyIssuer, e.KeySource = k.Scope.KeySet, k.Issuer, k.Scope.Source
		e.KeyThumbprint, e.CertNotAfter, e.KeyRetiredAt = k.Thumbprint, fmtTime(k.NotAfter), fmtTime(k.RetiredAt)
	}
	if ri, ok := ctx.Value(requestKey{}).(RequestInfo); ok {
		e.ClientIP, e.UserAgent, e.Method, e.Path = ri.ClientIP, clip(ri.UserAgent), ri.Method, clip(ri.Path)
	}
	return e
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// RequestInfo describes the HTTP request a token came with.
type RequestInfo struct {
	ClientIP  string
	UserAgent string
	Method    string
	Path      string
}

type requestKey struct{}

// WithRequest attaches r's client details to ctx so audit events carry them.
func WithRequest(ctx context.Context, r *http.Request) context.Context {
	ip := r.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	return context.WithValue(ctx, requestKey{}, RequestInfo{ClientIP: ip, UserAgent: r.UserAgent(),
		Method: r.Method, Path: r.URL.Path})
}

// AuditLog writes one JSON object per line. It is safe for concurrent use.
type AuditLog struct {
	mu     sync.Mutex
	w      io.Writer
	logger *slog.Logger
	errors atomic.Int64
}

// NewAuditLog returns an AuditLog writing to w; write errors are logged to
// logger (slog.Default when nil) and counted, never returned to callers,
// because a full disk must not turn into accepting or rejecting tokens.
func NewAuditLog(w io.Writer, logger *slog.Logger) *AuditLog {
	if logger == nil {
		logger = slog.Default()
	}
	return &AuditLog{w: w, logger: logger}
}

// Record writes the event for d.
func (a *AuditLog) Record(ctx context.Context, d *Decision) {
	a.Write(NewEvent(ctx, d))
}

// Write writes e as one line.
func (a *AuditLog) Write(e Event) {
	b, err := json.Marshal(e)
	if err != nil {
		a.fail(err)
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	_, err = a.w.Write(b)
	a.mu.Unlock()
	if err != nil {
		a.fail(err)
	}
}

func (a *AuditLog) fail(err error) {
	if a.errors.Add(1) == 1 || a.errors.Load()%1000 == 0 {
		a.logger.Error("token: audit write failed", "err", err, "failures", a.errors.Load())
	}
}

// Errors returns the number of events that could not be written.
func (a *AuditLog) Errors() int64 { return a.errors.Load() }
