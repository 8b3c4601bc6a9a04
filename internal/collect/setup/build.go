package setup

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/auth"
	"github.com/vigil-audit/vigil/internal/collect/graph"
	"github.com/vigil-audit/vigil/internal/collect/gws"
	"github.com/vigil-audit/vigil/internal/collect/o365"
	"github.com/vigil-audit/vigil/internal/journal"
)

// Options are what Build needs besides the config.
type Options struct {
	Journal journal.Log
	Clock   collect.Clock                     // default the system clock
	HTTP    *http.Client                      // default: 60 s timeout
	Logger  *slog.Logger                      // default: discard
	Since   time.Duration                     // first window of sources with no watermark
	Tenant  string                            // only this tenant ("" all)
	Store   func(tenant string) collect.Store // default DirStore(<data>/collect/<tenant>)
	// RegisterPush makes the collectors register vigil's notification
	// endpoints with the vendors (server: notifications with an address):
	// vigil serve does, since it answers them; vigil collect does not.
	RegisterPush bool
}

// Rate limits per tenant × API (research note §8.4): the Management API
// 1,500 a minute (of its 2,000), Graph audit lists five per ten seconds
// (a bucket of one refilled every 2.5 s never exceeds it), Workspace ten
// a second.
var (
	manageRate = struct {
		every time.Duration
		burst int
	}{time.Minute / 1500, 25}
	graphRate = struct {
		every time.Duration
		burst int
	}{2500 * time.Millisecond, 1}
	reportsRate = struct {
		every time.Duration
		burst int
	}{100 * time.Millisecond, 10}
)

// DataDir is the journal directory, resolved against the config file.
func (c *Config) DataDir() string { return c.Resolve(c.Data) }

// Build returns one collector per tenant × source.
func Build(cfg *Config, o Options) ([]*collect.Collector, error) {
	if o.Clock == nil {
		o.Clock = collect.SystemClock{}
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Store == nil {
		data := cfg.DataDir()
		o.Store = func(t string) collect.Store { return collect.DirStore(filepath.Join(data, "collect", t)) }
	}
	var out []*collect.Collector
	found := false
	for _, t := range cfg.Tenants {
		if o.Tenant != "" && t.Name != o.Tenant {
			continue
		}
		found = true
		log := o.Logger.With("tenant", t.Name)
		newCollector := func(src collect.Source, skew *collect.Skew, cl *collect.Client) error {
			c, err := collect.New(collect.Options{
				Tenant: t.Name, Source: src, Journal: o.Journal, State: o.Store(t.Name), Clock: o.Clock,
				Skew: skew, Since: o.Since, Logger: o.Logger, Clients: []*collect.Client{cl},
			})
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		}
		if m := t.Microsoft; m != nil {
			skew := &collect.Skew{}
			client := func(l *collect.Limiter, ts collect.TokenSource) *collect.Client {
				return &collect.Client{HTTP: o.HTTP, Clock: o.Clock, Limiter: l, Tokens: ts, Skew: skew, Logger: log}
			}
			ent := &auth.Entra{LoginURL: m.LoginURL, TenantID: m.TenantID, ClientID: m.ClientID, Clock: o.Clock, Client: client(nil, nil)}
			switch {
			case m.CertificateFile != "":
				cert, key, err := auth.LoadCertificate(cfg.Resolve(m.CertificateFile), cfg.Resolve(m.PrivateKeyFile))
				if err != nil {
					return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
				}
				ent.Certificate, ent.Key = cert, key
			case m.ClientSecretFile != "":
				s, err := readSecret(cfg.Resolve(m.ClientSecretFile), log)
				if err != nil {
					return nil, fmt.Errorf("tenant %s: client_secret_file: %w", t.Name, err)
				}
				ent.Secret = s
			default:
				s := strings.TrimSpace(os.Getenv(m.ClientSecretEnv))
				if s == "" {
					return nil, fmt.Errorf("tenant %s: environment variable %s (client_secret_env) is empty", t.Name, m.ClientSecretEnv)
				}
				ent.Secret = s
			}
			manageScope := m.ManageScope
			if manageScope == "" {
				manageScope = strings.TrimRight(m.ManageURL, "/") + "/.default"
			}
			manageTokens := ent.Source(manageScope)
			graphTokens := ent.Source(strings.TrimRight(m.GraphURL, "/") + "/.default")
			manageLim := collect.NewLimiter(o.Clock, manageRate.every, manageRate.burst)
			graphLim := collect.NewLimiter(o.Clock, graphRate.every, graphRate.burst)
			queryLim := collect.NewLimiter(o.Clock, graphRate.every, graphRate.burst)
			for _, name := range m.Sources {
				var src collect.Source
				var cl *collect.Client
				var err error
				if _, ok := o365.ContentTypes[name]; ok {
					cl = client(manageLim, manageTokens)
					var s *o365.Source
					s, err = o365.New(name, m.ManageURL, m.TenantID, m.PublisherIdentifier, cl)
					if err == nil && o.RegisterPush {
						var addr, secret string
						if addr, secret, err = cfg.pushFor("o365", t.Name); err == nil && addr != "" {
							s.SetWebhook(&o365.Webhook{Address: addr, AuthID: secret})
						}
					}
					src = s
				} else if name == graph.QueryName {
					cl = client(queryLim, graphTokens)
					src, err = graph.NewQuery(m.GraphURL, cl)
				} else {
					cl = client(graphLim, graphTokens)
					src, err = graph.New(name, m.GraphURL, cl)
				}
				if err == nil {
					err = newCollector(src, skew, cl)
				}
				if err != nil {
					return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
				}
			}
		}
		if g := t.Google; g != nil {
			skew := &collect.Skew{}
			client := func(l *collect.Limiter, ts collect.TokenSource) *collect.Client {
				return &collect.Client{HTTP: o.HTTP, Clock: o.Clock, Limiter: l, Tokens: ts, Skew: skew, Logger: log}
			}
			sa, key, err := auth.LoadServiceAccount(cfg.Resolve(g.ServiceAccountFile))
			if err != nil {
				return nil, fmt.Errorf("tenant %s: service_account_file: %w", t.Name, err)
			}
			tokenURL := g.TokenURL
			if tokenURL == "" {
				tokenURL = "https://oauth2.googleapis.com/token"
			}
			ga := &auth.Google{TokenURL: tokenURL, Email: sa.ClientEmail, KeyID: sa.PrivateKeyID, Key: key, Subject: g.Subject, Clock: o.Clock, Client: client(nil, nil)}
			tokens := ga.Source(gws.Scope)
			lim := collect.NewLimiter(o.Clock, reportsRate.every, reportsRate.burst)
			for _, app := range g.Applications {
				cl := client(lim, tokens)
				src, err := gws.New(app, g.ReportsURL, g.CustomerID, cl)
				if err == nil && o.RegisterPush {
					var addr, secret string
					if addr, secret, err = cfg.pushFor("google", t.Name); err == nil && addr != "" {
						src.SetWatch(&gws.Watch{Address: addr, Token: secret})
					}
				}
				if err == nil {
					err = newCollector(src, skew, cl)
				}
				if err != nil {
					return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
				}
			}
		}
	}
	if o.Tenant != "" && !found {
		return nil, fmt.Errorf("no tenant named %q in %s", o.Tenant, cfg.path)
	}
	return out, nil
}

// readSecret reads a secret file, warning when others may read it.
func readSecret(path string, log *slog.Logger) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("secret file is readable by group or others; chmod 600 it", "file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// pushFor is the address and secret of the tenant's notification endpoint
// of type typ, if one with an address is configured.
func (c *Config) pushFor(typ, tenant string) (addr, secret string, err error) {
	if c.Server == nil {
		return "", "", nil
	}
	for _, n := range c.Server.Notifications {
		if n.Type == typ && n.Tenant == tenant && n.Address != "" {
			s, err := c.NotificationSecret(n)
			if err != nil {
				return "", "", err
			}
			return n.Address, s, nil
		}
	}
	return "", "", nil
}
