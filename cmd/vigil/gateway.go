package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/token"
)

func init() {
	register(command{name: "gateway", summary: "reverse proxy that validates bearer tokens and audits every decision", run: runGateway})
}

// gatewayConfig is the YAML configuration of vigil gateway.
type gatewayConfig struct {
	Listen             string          `yaml:"listen"`
	Realm              string          `yaml:"realm"`
	Skew               yamlDuration    `yaml:"skew"`
	MaxTokenSize       int             `yaml:"max_token_size"`
	DeniedKeys         []string        `yaml:"denied_keys"`
	StripAuthorization bool            `yaml:"strip_authorization"`
	Issuers            []gatewayIssuer `yaml:"issuers"`
}

type gatewayIssuer struct {
	Name           string       `yaml:"name"`
	Issuer         string       `yaml:"issuer"`
	Tenants        []string     `yaml:"tenants"`
	AnyTenant      bool         `yaml:"any_tenant"`
	Audiences      []string     `yaml:"audiences"`
	AnyAudience    bool         `yaml:"any_audience"`
	Algorithms     []string     `yaml:"algorithms"`
	RequiredClaims []string     `yaml:"required_claims"`
	MaxLifetime    yamlDuration `yaml:"max_lifetime"`
	AllowHighS     bool         `yaml:"allow_high_s"` // accept non-normalised ECDSA signatures (see token.IssuerConfig)
	Keys           []string     `yaml:"keys"`         // JWKS or discovery files/https URLs
	MinRefresh     yamlDuration `yaml:"min_refresh"`
	Overlap        yamlDuration `yaml:"overlap"`
}

type yamlDuration time.Duration

func (d *yamlDuration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = yamlDuration(v)
	return nil
}

func loadGatewayConfig(path string) (*gatewayConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key must not silently disable a check
	var c gatewayConfig
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("gateway config %s: %w", path, err)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8443"
	}
	return &c, nil
}

// validator builds the token validator the configuration describes.
func (c *gatewayConfig) validator(audit *token.AuditLog, logger *slog.Logger) (*token.Validator, error) {
	cfg := token.Config{Skew: time.Duration(c.Skew), MaxTokenSize: c.MaxTokenSize, DeniedKeys: c.DeniedKeys,
		Audit: audit, Logger: logger}
	for _, gi := range c.Issuers {
		name := gi.Name
		if name == "" {
			name = gi.Issuer
		}
		ic := token.IssuerConfig{Name: name, Issuer: gi.Issuer, Tenants: gi.Tenants, AnyTenant: gi.AnyTenant,
			Audiences: gi.Audiences, AnyAudience: gi.AnyAudience, RequiredClaims: gi.RequiredClaims,
			MaxLifetime: time.Duration(gi.MaxLifetime), AllowHighS: gi.AllowHighS}
		for _, a := range gi.Algorithms {
			ic.Algorithms = append(ic.Algorithms, jose.SignatureAlgorithm(a))
		}
		for _, loc := range gi.Keys {
			src, err := token.NewSource(loc, token.SourceOptions{
				Scope:      token.Scope{KeySet: name, Issuer: gi.Issuer},
				MinRefresh: time.Duration(gi.MinRefresh), Overlap: time.Duration(gi.Overlap), Logger: logger})
			if err != nil {
				return nil, fmt.Errorf("issuer %s: %w", name, err)
			}
			ic.Keys = append(ic.Keys, src)
		}
		cfg.Issuers = append(cfg.Issuers, ic)
	}
	return token.New(cfg)
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", stderr)
	upstream := fs.String("upstream", "", "upstream base `URL` requests are proxied to")
	config := fs.String("config", "", "gateway YAML configuration `FILE`")
	auditPath := fs.String("audit", "", "append audit events (JSON lines) to `FILE`; default stdout unless --journal is given")
	journalDir := fs.String("journal", "", "also append audit events to the vigil journal in `DIR` (tamper-evident; read it with vigil hunt --journal)")
	listen := fs.String("listen", "", "listen address; overrides the config (default 127.0.0.1:8443)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `FILE` (PEM)")
	tlsKey := fs.String("tls-key", "", "TLS private key `FILE` (PEM)")
	setHelp(fs, stderr, helpText{synopsis: "gateway --config FILE --upstream URL [flags]",
		summary: "Runs a reverse proxy that validates each request's bearer token before forwarding it, and audits every decision."})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("gateway takes no positional arguments")
	}
	if *upstream == "" || *config == "" {
		return usageError("--upstream and --config are required")
	}
	up, err := url.Parse(*upstream)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return usageError("--upstream must be an http(s) URL")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageError("--tls-cert and --tls-key go together")
	}
	cfg, err := loadGatewayConfig(*config)
	if err != nil {
		return usageError("%v", err)
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *tlsCert == "" && !loopback(cfg.Listen) {
		return usageError("listening on %s without TLS: give --tls-cert/--tls-key or listen on loopback", cfg.Listen)
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	var auditW io.Writer = stdout
	if *auditPath != "" {
		f, err := os.OpenFile(*auditPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("opening audit file: %w", err)
		}
		defer f.Close()
		auditW = f
	}
	var sink *journalSink
	if *journalDir != "" {
		if sink, err = newJournalSink(ctx, *journalDir, logger); err != nil {
			return err
		}
		if *auditPath == "" {
			auditW = sink
		} else {
			auditW = io.MultiWriter(auditW, sink)
		}
	}
	audit := token.NewAuditLog(auditW, logger)
	v, err := cfg.validator(audit, logger)
	if err != nil {
		return usageError("%v", err)
	}
	handler := gatewayHandler(v, up, cfg, logger)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stderr, "vigil gateway: listening on %s://%s, proxying to %s\n", scheme, ln.Addr(), up)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() {
		if *tlsCert != "" {
			errc <- srv.ServeTLS(ln, *tlsCert, *tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		if sink != nil {
			sink.Close()
		}
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	if sink != nil {
		lost, err := sink.Close()
		if err != nil {
			return fmt.Errorf("gateway: closing the journal: %w", err)
		}
		if lost > 0 {
			return fmt.Errorf("gateway: %d audit events could not be appended to the journal", lost)
		}
	}
	if n := audit.Errors(); n > 0 {
		return fmt.Errorf("gateway: %d audit events could not be written", n)
	}
	return nil
}

// Headers the gateway sets for the upstream; any client-sent copies are
// removed first so they cannot be spoofed.
const (
	hdrSubject = "X-Vigil-Subject"
	hdrTenant  = "X-Vigil-Tenant"
	hdrAppID   = "X-Vigil-App-Id"
	hdrIssuer  = "X-Vigil-Issuer"
)

// clientAddressHeaders are headers through which proxies and CDNs tell an
// upstream who the client is, in folded form (see foldHeader). A client can
// send any of them, so the gateway removes every one and then sets
// X-Forwarded-For (and X-Forwarded-Host/-Proto) and X-Real-IP itself.
var clientAddressHeaders = map[string]bool{
	"forwarded": true, "forwarded-for": true, "x-forwarded": true, "x-forwarded-for": true,
	"x-forwarded-host": true, "x-forwarded-proto": true, "x-forwarded-port": true, "x-forwarded-server": true,
	"x-forwarded-scheme": true, "x-original-forwarded-for": true, "x-real-ip": true, "true-client-ip": true,
	"x-true-client-ip": true, "cf-connecting-ip": true, "cf-connecting-ipv6": true, "x-client-ip": true,
	"client-ip": true, "x-cluster-client-ip": true, "fastly-client-ip": true, "akamai-client-ip": true,
	"x-originating-ip": true, "x-remote-ip": true, "x-remote-addr": true, "x-proxyuser-ip": true,
	"x-envoy-external-address": true, "x-azure-clientip": true, "x-azure-socketip": true,
	"x-appengine-user-ip": true, "x-forwarded-client-cert": true, "x-client-cert": true, "ssl-client-cert": true,
}

// foldHeader lower-cases a header name and treats "_" as "-": CGI/WSGI
// servers and several proxies fold X_Vigil_Subject and X-Vigil-Subject into
// one variable, so both spellings must be removed.
func foldHeader(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// stripClientHeaders removes, under any spelling, the headers the upstream
// trusts because the gateway sets them: identity (X-Vigil-*) and client
// address headers.
func stripClientHeaders(h http.Header) {
	for name := range h {
		f := foldHeader(name)
		if strings.HasPrefix(f, "x-vigil-") || clientAddressHeaders[f] {
			delete(h, name)
		}
	}
}

func gatewayHandler(v *token.Validator, up *url.URL, cfg *gatewayConfig, logger *slog.Logger) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			stripClientHeaders(pr.Out.Header)
			pr.SetXForwarded()
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				pr.Out.Header.Set("X-Real-IP", ip)
			}
			if c, ok := token.ClaimsFromContext(pr.In.Context()); ok {
				pr.Out.Header.Set(hdrSubject, c.Subject)
				pr.Out.Header.Set(hdrTenant, c.Tenant)
				pr.Out.Header.Set(hdrIssuer, c.Issuer)
				app := c.AuthorizedParty
				if app == "" {
					app = c.AppID
				}
				pr.Out.Header.Set(hdrAppID, app)
			}
			if cfg.StripAuthorization {
				pr.Out.Header.Del("Authorization")
			}
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return token.Middleware(v, token.MiddlewareOptions{Realm: cfg.Realm})(proxy)
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
