package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// Config is the server: section of vigil.yaml, after defaults.
type Config struct {
	Listen      string // default 127.0.0.1:8080
	TLSCertFile string
	TLSKeyFile  string
	// MaxBodyBytes bounds one request body (default 32 MiB, compressed size).
	MaxBodyBytes int64
	// RatePerKey and Burst bound each key's requests per second.
	RatePerKey float64 // default 50
	Burst      int     // default 100
	// MaxLag is how many journal entries detection may trail before ingest
	// answers 429 (default 1,000,000).
	MaxLag uint64
	// MaxDelay is how long an entry may wait for detection before ingest
	// answers 429 (default 1 s; negative: no limit): ingest then goes at
	// detection's pace, and an alert is at most about this late (plus a
	// refresh period) however hard the pushes come.
	MaxDelay time.Duration
}

func (c *Config) fill() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.RatePerKey <= 0 {
		c.RatePerKey = 50
	}
	if c.Burst <= 0 {
		c.Burst = 100
	}
	if c.MaxLag == 0 {
		c.MaxLag = 1_000_000
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = time.Second
	}
}

// Journal is what the server needs of the journal.
type Journal interface {
	journal.Log
	Latest() journal.Checkpoint
	VerifierKey() string
	LeafHash(index uint64) (journal.Hash, error)
	InclusionProof(index, size uint64) ([]journal.Hash, error)
}

// Deps are the parts the server wires together.
type Deps struct {
	Journal Journal
	Keys    *auth.Store
	Ingest  *Ingester
	// Lag reports how many journal entries detection has not processed
	// yet; nil means detection never lags (tests).
	Lag func() uint64
	// Delay reports how long the oldest of them has waited (nil: never).
	Delay func() time.Duration
	// Views answer the read-only API; nil answers 503 on those routes.
	Views Views
	// Index answers /api/v1/search and /api/v1/timeline; nil answers 503.
	Index *index.Follower
	// Forward, when set, answers JournalRoutes by asking the node that
	// holds the journal (a cluster's ingest and detect nodes); nil answers
	// them from Journal and Index.
	Forward Forwarder
	// UI answers the web interface's pages; nil serves no /ui/.
	UI     ui.Data
	Logger *slog.Logger
}

// Views are the read models behind the API, kept by the detection side.
type Views interface {
	// Incidents returns incidents newest first, as incidents.json renders them.
	Incidents(since time.Time, minSeverity string) ([]json.RawMessage, error)
	IncidentByID(id string) (json.RawMessage, bool, error)
	Alerts(since time.Time) ([]json.RawMessage, error)
	Sources() ([]json.RawMessage, error)
	// Ready is nil once detection has caught up with the journal at start.
	Ready() error
}

// Server is a configured HTTP server.
type Server struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	metrics *Metrics

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
	notify   *notifier // vendor push endpoints (notify.go)

	ui *ui.UI
}

// New checks the configuration: a non-loopback listen address needs TLS.
func New(cfg Config, d Deps) (*Server, error) {
	cfg.fill()
	if d.Journal == nil || d.Keys == nil || d.Ingest == nil {
		return nil, errors.New("server: journal, keys and ingest are required")
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen %q: %w", cfg.Listen, err)
	}
	tlsOn := cfg.TLSCertFile != "" || cfg.TLSKeyFile != ""
	if tlsOn && (cfg.TLSCertFile == "" || cfg.TLSKeyFile == "") {
		return nil, errors.New("server: tls_cert_file and tls_key_file go together")
	}
	if !tlsOn && !loopback(host) {
		return nil, fmt.Errorf("server: listening on %s needs TLS (tls_cert_file, tls_key_file); without TLS only loopback addresses are allowed", cfg.Listen)
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, d: d, log: d.Logger, metrics: newMetrics(d), limiters: map[string]*rate.Limiter{}}
	if d.UI != nil {
		if s.ui, err = ui.New(ui.Options{Keys: d.Keys, Data: d.UI, Secure: tlsOn, Logger: d.Logger}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return s, nil
}

// LoginPath mints a one-time login link for the web interface, valid
// once and for 15 minutes, as a path to append to the server's address.
func (s *Server) LoginPath(r auth.Role) (string, error) {
	if s.ui == nil {
		return "", errors.New("server: the web interface is off")
	}
	if !r.Allows(auth.PermRead) {
		return "", fmt.Errorf("server: role %s cannot log in to the web interface", r)
	}
	return ui.Prefix + "login?token=" + s.ui.LoginToken(r), nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Metrics gives the collectors, detection and sinks their instruments.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Handler is the API with every route behind auth except /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /readyz", s.guard(auth.PermRead, s.readyz))
	mux.Handle("POST /api/v1/ingest", s.guard(auth.PermIngest, s.ingest))
	mux.Handle("GET /api/v1/incidents", s.guard(auth.PermRead, s.incidents))
	mux.Handle("GET /api/v1/incidents/{id}", s.guard(auth.PermRead, s.incident))
	mux.Handle("GET /api/v1/alerts", s.guard(auth.PermRead, s.alerts))
	mux.Handle("GET /api/v1/sources", s.guard(auth.PermRead, s.sources))
	// The journal's routes: from the journal here, or from the node that
	// holds it, asked once the caller passed this node's guard.
	journalRoute := func(h http.HandlerFunc) http.HandlerFunc {
		if s.d.Forward != nil {
			return s.forward
		}
		return h
	}
	mux.Handle("GET /api/v1/checkpoint", s.guard(auth.PermRead, journalRoute(s.checkpoint)))
	mux.Handle("GET /api/v1/proof", s.guard(auth.PermRead, journalRoute(s.proof)))
	mux.Handle("GET /api/v1/search", s.guard(auth.PermRead, journalRoute(s.search)))
	mux.Handle("GET /api/v1/timeline", s.guard(auth.PermRead, journalRoute(s.timeline)))
	mux.Handle("GET /api/v1/rules", s.guard(auth.PermRead, s.rulesAPI))
	mux.Handle("POST /api/v1/rules/{id}/disable", s.guard(auth.PermAdmin, s.switchRuleAPI(false)))
	mux.Handle("POST /api/v1/rules/{id}/enable", s.guard(auth.PermAdmin, s.switchRuleAPI(true)))
	mux.Handle("GET /metrics", s.guard(auth.PermRead, s.metrics.handler().ServeHTTP))
	// Vendor push notifications authenticate with their own shared secret.
	mux.HandleFunc("POST /api/v1/notify/{type}/{tenant}", s.notifyHandler)
	if s.ui != nil {
		mux.Handle(ui.Prefix, s.ui.Handler())
		mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusSeeOther))
	}
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// guard authenticates the Bearer key, checks the role and the key's rate.
func (s *Server) guard(p auth.Permission, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		k, err := s.d.Keys.Authenticate(strings.TrimSpace(presented))
		if err != nil {
			s.deny(w, r, http.StatusUnauthorized, err.Error(), "")
			return
		}
		if !k.Role.Allows(p) {
			s.deny(w, r, http.StatusForbidden, "role "+string(k.Role)+" may not do this", k.ID)
			return
		}
		if !s.limiter(k.ID).Allow() {
			w.Header().Set("Retry-After", "1")
			s.deny(w, r, http.StatusTooManyRequests, "rate limit", k.ID)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, k)))
	})
}

type keyCtx struct{}

// keyOf is the API key a guarded request authenticated with.
func keyOf(r *http.Request) (auth.Key, bool) {
	k, ok := r.Context().Value(keyCtx{}).(auth.Key)
	return k, ok
}

func (s *Server) deny(w http.ResponseWriter, r *http.Request, code int, why, keyID string) {
	// The key itself is never logged; its id is not secret.
	s.log.Warn("request denied", "status", code, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "key_id", keyID, "reason", why)
	s.metrics.denied.WithLabelValues(strconv.Itoa(code)).Inc()
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
	}
	writeError(w, code, why)
}

func (s *Server) limiter(id string) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l, ok := s.limiters[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerKey), s.cfg.Burst)
		s.limiters[id] = l
	}
	return l
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Serve listens until ctx ends, then shuts down gracefully: requests in
// flight (acknowledged writes) finish first.
func (s *Server) Serve(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: TLS key pair: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}
