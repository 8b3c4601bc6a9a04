package setup

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/server/sink"
)

// Server is the server: section of vigil.yaml (vigil serve).
type Server struct {
	Listen      string `yaml:"listen"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Retention is how long the journal keeps raw records, in days
	// (default 180), and the investigation index the rows of the entries
	// it received (vigil collect applies it to the index too).
	RetentionDays int `yaml:"retention_days"`
	// MaxBodyBytes bounds one push request (default 32 MiB).
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	Sinks        []Sink `yaml:"sinks"`
	// Networks are IP → ASN/country tables for the behaviours (MaxMind
	// .mmdb files or vigil's CSV network table), as hunt's --networks.
	Networks []string `yaml:"networks"`
	// IndexMemory bounds the investigation index's engine memory, as
	// --index-memory (such as "2GiB"; "" for the default).
	IndexMemory string `yaml:"index_memory"`
	// MaxDetectionDelay is how far detection may fall behind what ingest
	// acknowledged before pushes are answered 429 (default 1s): the
	// bound on how late an alert can be under load.
	MaxDetectionDelay time.Duration `yaml:"max_detection_delay"`
	// Notifications are vendor push endpoints that wake a tenant's
	// collectors (POST /api/v1/notify/{type}/{tenant}).
	Notifications []Notification `yaml:"notifications"`
}

// Notification is one vendor push endpoint. The secret is what was given
// to the vendor: the O365 subscription's authId, or the Google watch
// channel's token.
type Notification struct {
	Type       string `yaml:"type"` // o365 or google
	Tenant     string `yaml:"tenant"`
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// Address is the https URL the vendor reaches this endpoint at
	// (https://HOST/api/v1/notify/TYPE/TENANT). With it, vigil serve
	// registers the push itself: it keeps the O365 subscriptions' webhook
	// enabled, or opens Google watch channels and renews them before they
	// expire. Without it, registering is left to the operator.
	Address string `yaml:"address"`
}

// Sink is one alert destination. Secrets come from files or environment
// variables, never from this file.
type Sink struct {
	Type string `yaml:"type"` // webhook, syslog, email, file
	Name string `yaml:"name"` // default: the type, numbered when repeated
	// MinSeverity drops incident updates below it (default: all).
	MinSeverity string `yaml:"min_severity"`

	// webhook
	URL                string `yaml:"url"`
	SecretFile         string `yaml:"secret_file"`
	SecretEnv          string `yaml:"secret_env"`
	PreviousSecretFile string `yaml:"previous_secret_file"` // during a rotation
	AllowPrivate       bool   `yaml:"allow_private"`

	// syslog
	Address string `yaml:"address"`
	Format  string `yaml:"format"` // cef or json
	Plain   bool   `yaml:"plain"`  // TCP without TLS, loopback receivers only
	CAFile  string `yaml:"ca_file"`

	// email
	SMTP         string   `yaml:"smtp"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	Link         string   `yaml:"link"`

	// file
	Path string `yaml:"path"`
}

var sinkKeys = map[string][]string{
	"webhook": {"url", "secret_file", "secret_env", "previous_secret_file", "allow_private"},
	"syslog":  {"address", "format", "plain", "ca_file"},
	"email":   {"smtp", "from", "to", "username", "password_file", "password_env", "link"},
	"file":    {"path"},
}

func (c *Config) checkServer(bad func(path []any, format string, a ...any)) {
	s := c.Server
	if s == nil {
		return
	}
	if s.RetentionDays < 0 {
		bad([]any{"server", "retention_days"}, "retention_days must be positive")
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		bad([]any{"server"}, "tls_cert_file and tls_key_file go together")
	}
	if s.MaxDetectionDelay < 0 || (s.MaxDetectionDelay > 0 && s.MaxDetectionDelay < 500*time.Millisecond) {
		bad([]any{"server", "max_detection_delay"}, "max_detection_delay %v: at least 500ms (detection refreshes its incidents every 2s)", s.MaxDetectionDelay)
	}
	seenNotify := map[string]bool{}
	for i, n := range s.Notifications {
		at := []any{"server", "notifications", i}
		var t *Tenant
		for k := range c.Tenants {
			if c.Tenants[k].Name == n.Tenant {
				t = &c.Tenants[k]
			}
		}
		switch {
		case n.Type != "o365" && n.Type != "google":
			bad(append(at, "type"), "notification type %q: want o365 or google", n.Type)
		case t == nil:
			bad(append(at, "tenant"), "notification tenant %q is not among the tenants", n.Tenant)
		case n.Type == "o365" && t.Microsoft == nil:
			bad(append(at, "tenant"), "tenant %q has no microsoft: section for O365 notifications", n.Tenant)
		case n.Type == "google" && t.Google == nil:
			bad(append(at, "tenant"), "tenant %q has no google: section for Google notifications", n.Tenant)
		}
		if (n.SecretFile == "") == (n.SecretEnv == "") {
			bad(at, "a notification needs exactly one of secret_file or secret_env (the authId or channel token given to the vendor)")
		}
		if n.Address != "" {
			if u, err := url.Parse(n.Address); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
				bad(append(at, "address"), "notification address %q: want an https URL without credentials (vendors deliver only over https)", n.Address)
			} else if want := "/api/v1/notify/" + n.Type + "/" + n.Tenant; !strings.HasSuffix(u.Path, want) {
				bad(append(at, "address"), "notification address %q: its path should end in %s, where vigil serve answers", n.Address, want)
			}
		}
		if seenNotify[n.Type+"/"+n.Tenant] {
			bad(at, "a second %s notification for tenant %q", n.Type, n.Tenant)
		}
		seenNotify[n.Type+"/"+n.Tenant] = true
	}
	names := map[string]bool{}
	count := map[string]int{}
	for i := range s.Sinks {
		k := &s.Sinks[i]
		at := func(p ...any) []any { return append([]any{"server", "sinks", i}, p...) }
		if _, ok := sinkKeys[k.Type]; !ok {
			bad(at("type"), "sink type %q: want webhook, syslog, email or file", k.Type)
			continue
		}
		count[k.Type]++
		if k.Name == "" {
			k.Name = k.Type
			if count[k.Type] > 1 {
				k.Name = fmt.Sprintf("%s-%d", k.Type, count[k.Type])
			}
		}
		if !tenantName.MatchString(k.Name) || names[k.Name] {
			bad(at("name"), "sink name %q is repeated or not a plain name (letters, digits, '.', '_', '-')", k.Name)
		}
		names[k.Name] = true
		set := map[string]bool{"url": k.URL != "", "secret_file": k.SecretFile != "", "secret_env": k.SecretEnv != "",
			"previous_secret_file": k.PreviousSecretFile != "", "allow_private": k.AllowPrivate, "address": k.Address != "",
			"format": k.Format != "", "plain": k.Plain, "ca_file": k.CAFile != "", "smtp": k.SMTP != "", "from": k.From != "",
			"to": len(k.To) > 0, "username": k.Username != "", "password_file": k.PasswordFile != "",
			"password_env": k.PasswordEnv != "", "link": k.Link != "", "path": k.Path != ""}
		for _, key := range slices.Sorted(maps.Keys(set)) {
			if set[key] && !slices.Contains(sinkKeys[k.Type], key) {
				bad(at(key), "%s does not apply to a %s sink", key, k.Type)
			}
		}
		switch k.MinSeverity {
		case "", "critical", "high", "medium", "low", "info":
		default:
			bad(at("min_severity"), "min_severity %q: want critical, high, medium, low or info", k.MinSeverity)
		}
		switch k.Type {
		case "webhook":
			if k.URL == "" {
				bad(at("url"), "a webhook sink needs url")
			}
			if (k.SecretFile == "") == (k.SecretEnv == "") {
				bad(at(), "a webhook sink needs exactly one of secret_file or secret_env (a Standard Webhooks whsec_ secret)")
			}
		case "syslog":
			if k.Address == "" {
				bad(at("address"), "a syslog sink needs address (host:port)")
			}
		case "email":
			if k.SMTP == "" || k.From == "" || len(k.To) == 0 {
				bad(at(), "an email sink needs smtp, from and to")
			}
			if k.PasswordFile != "" && k.PasswordEnv != "" {
				bad(at(), "give password_file or password_env, not both")
			}
		case "file":
			if k.Path == "" {
				bad(at("path"), "a file sink needs path")
			}
		}
	}
}

// NotificationSecret reads the secret of a notification endpoint.
func (c *Config) NotificationSecret(n Notification) (string, error) {
	v, err := c.secret(n.SecretFile, n.SecretEnv)
	if err != nil {
		return "", fmt.Errorf("notification %s/%s: %w", n.Type, n.Tenant, err)
	}
	if v == "" {
		return "", fmt.Errorf("notification %s/%s: empty secret", n.Type, n.Tenant)
	}
	return v, nil
}

// Sinks builds the configured sinks; version goes into CEF headers.
func (c *Config) Sinks(version string) ([]sink.Sink, error) {
	if c.Server == nil {
		return nil, nil
	}
	var out []sink.Sink
	for _, k := range c.Server.Sinks {
		s, err := c.buildSink(k, version)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", k.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *Config) secret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(c.Resolve(file))
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return strings.TrimSpace(v), nil
	}
	return "", nil
}

func (c *Config) buildSink(k Sink, version string) (sink.Sink, error) {
	var s sink.Sink
	var err error
	switch k.Type {
	case "webhook":
		var secrets []string
		cur, err := c.secret(k.SecretFile, k.SecretEnv)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, cur)
		if k.PreviousSecretFile != "" {
			prev, err := c.secret(k.PreviousSecretFile, "")
			if err != nil {
				return nil, err
			}
			secrets = append(secrets, prev)
		}
		s, err = sink.NewWebhook(k.Name, sink.WebhookConfig{URL: k.URL, Secrets: secrets, AllowPrivate: k.AllowPrivate})
		if err != nil {
			return nil, err
		}
	case "syslog":
		var tc *tls.Config
		if k.CAFile != "" {
			pem, err := os.ReadFile(c.Resolve(k.CAFile))
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s holds no PEM certificate", k.CAFile)
			}
			tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		s, err = sink.NewSyslog(k.Name, sink.SyslogConfig{Address: k.Address, Format: k.Format, Plain: k.Plain, TLSConfig: tc, Version: version})
	case "email":
		pw, perr := c.secret(k.PasswordFile, k.PasswordEnv)
		if perr != nil {
			return nil, perr
		}
		s, err = sink.NewEmail(k.Name, sink.EmailConfig{SMTP: k.SMTP, From: k.From, To: k.To, Username: k.Username, Password: pw, Link: k.Link, Timeout: 30 * time.Second})
	case "file":
		s, err = sink.NewFile(k.Name, c.Resolve(k.Path))
	}
	if err != nil {
		return nil, err
	}
	if k.MinSeverity != "" {
		s = &sink.MinSeverity{Sink: s, Level: k.MinSeverity}
	}
	return s, nil
}
