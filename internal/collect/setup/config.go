// Package setup reads vigil.yaml (strictly: an unknown key is an error
// naming it and its line) and builds the collectors it describes: one per
// tenant × source, with one token bucket per tenant × API and one clock
// skew meter per tenant × vendor. vigil collect and vigil serve both use it.
package setup

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/internal/collect/graph"
	"github.com/vigil-audit/vigil/internal/collect/gws"
	"github.com/vigil-audit/vigil/internal/collect/o365"
)

// Config is vigil.yaml.
type Config struct {
	Data    string   `yaml:"data"`
	Tenants []Tenant `yaml:"tenants"`
	// Server configures vigil serve; vigil collect reads only its
	// retention_days, for the investigation index.
	Server *Server `yaml:"server"`
	// Cluster runs vigil serve as one node of several around NATS
	// JetStream (see docs/scale.md); vigil collect ignores it.
	Cluster *Cluster `yaml:"cluster"`

	path string // the file it was read from; relative paths are relative to its directory
}

// Tenant is one organisation.
type Tenant struct {
	Name      string     `yaml:"name"`
	Microsoft *Microsoft `yaml:"microsoft"`
	Google    *Google    `yaml:"google"`
}

// Microsoft is an Entra app registration and what to collect with it.
type Microsoft struct {
	TenantID         string `yaml:"tenant_id"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	CertificateFile  string `yaml:"certificate_file"`
	PrivateKeyFile   string `yaml:"private_key_file"`
	Cloud            string `yaml:"cloud"`
	LoginURL         string `yaml:"login_url"`
	ManageURL        string `yaml:"manage_url"`
	GraphURL         string `yaml:"graph_url"`
	// ManageScope overrides the Management API token scope (sovereign
	// clouds disagree on it).
	ManageScope         string   `yaml:"manage_scope"`
	PublisherIdentifier string   `yaml:"publisher_identifier"`
	Sources             []string `yaml:"sources"`
}

// Google is a service account with domain-wide delegation.
type Google struct {
	CustomerID         string   `yaml:"customer_id"`
	ServiceAccountFile string   `yaml:"service_account_file"`
	Subject            string   `yaml:"subject"`
	TokenURL           string   `yaml:"token_url"`
	ReportsURL         string   `yaml:"reports_url"`
	Applications       []string `yaml:"applications"`
}

// Clouds are the Microsoft national clouds' default endpoints.
var Clouds = map[string]struct{ Login, Manage, Graph string }{
	"commercial": {"https://login.microsoftonline.com", "https://manage.office.com", "https://graph.microsoft.com"},
	"gcc":        {"https://login.microsoftonline.com", "https://manage-gcc.office.com", "https://graph.microsoft.com"},
	"gcchigh":    {"https://login.microsoftonline.us", "https://manage.office365.us", "https://graph.microsoft.us"},
	"dod":        {"https://login.microsoftonline.us", "https://manage.protection.apps.mil", "https://dod-graph.microsoft.us"},
}

// DefaultMicrosoftSources and DefaultApplications apply when the lists
// are left out.
var (
	DefaultMicrosoftSources = []string{"audit.exchange", "audit.azureactivedirectory", "audit.sharepoint", "audit.general", "signins", "directory_audits", "risk_detections"}
	DefaultApplications     = []string{"login", "token", "gmail", "admin", "drive", "saml", "user_accounts"}
)

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// Resolve makes p relative to the config file's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

var unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type`)

// Load reads and checks a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse checks config text; path names it in errors and anchors relative
// paths.
func Parse(path string, b []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var msgs []string
			for _, e := range te.Errors {
				if m := unknownField.FindStringSubmatch(e); m != nil {
					msgs = append(msgs, fmt.Sprintf("%s:%s: unknown key %q", path, m[1], m[2]))
				} else {
					msgs = append(msgs, path+": "+e)
				}
			}
			return nil, errors.New(strings.Join(msgs, "\n"))
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.path = path
	if err := cfg.check(&root); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// lineOf finds the line of a key path (strings for map keys, ints for
// list items) in the YAML tree, or of the deepest part found.
func lineOf(n *yaml.Node, path ...any) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

var tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) check(root *yaml.Node) error {
	var errs []string
	bad := func(path []any, format string, a ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", c.path, lineOf(root, path...), fmt.Sprintf(format, a...)))
	}
	if c.Data == "" {
		bad(nil, "data (the journal directory) is required")
	}
	if len(c.Tenants) == 0 && c.Server == nil {
		bad(nil, "no tenants (and no server section)")
	}
	c.checkServer(bad)
	c.checkCluster(bad)
	seen := map[string]bool{}
	for i, t := range c.Tenants {
		at := func(p ...any) []any { return append([]any{"tenants", i}, p...) }
		if !tenantName.MatchString(t.Name) {
			bad(at("name"), "tenant name %q: use letters, digits, '.', '_' and '-' (it names a directory)", t.Name)
		} else if seen[t.Name] {
			bad(at("name"), "tenant name %q used twice", t.Name)
		}
		seen[t.Name] = true
		if t.Microsoft == nil && t.Google == nil {
			bad(at(), "tenant %q has neither microsoft nor google", t.Name)
		}
		if m := t.Microsoft; m != nil {
			mat := func(k string) []any { return at("microsoft", k) }
			if m.TenantID == "" {
				bad(mat("tenant_id"), "microsoft.tenant_id is required")
			}
			if m.ClientID == "" {
				bad(mat("client_id"), "microsoft.client_id is required")
			}
			creds := 0
			for _, s := range []string{m.ClientSecretFile, m.ClientSecretEnv, m.CertificateFile} {
				if s != "" {
					creds++
				}
			}
			switch {
			case creds != 1:
				bad(at("microsoft"), "give exactly one of client_secret_file, client_secret_env, or certificate_file with private_key_file")
			case m.CertificateFile != "" && m.PrivateKeyFile == "":
				bad(mat("certificate_file"), "certificate_file needs private_key_file")
			case m.CertificateFile == "" && m.PrivateKeyFile != "":
				bad(mat("private_key_file"), "private_key_file needs certificate_file")
			}
			if m.Cloud == "" {
				m.Cloud = "commercial"
			}
			cl, ok := Clouds[m.Cloud]
			if !ok {
				bad(mat("cloud"), "cloud %q: want commercial, gcc, gcchigh or dod", m.Cloud)
			}
			for _, u := range []struct {
				key string
				v   *string
				def string
			}{{"login_url", &m.LoginURL, cl.Login}, {"manage_url", &m.ManageURL, cl.Manage}, {"graph_url", &m.GraphURL, cl.Graph}} {
				if *u.v == "" {
					*u.v = u.def
				} else if err := checkURL(*u.v); err != nil {
					bad(mat(u.key), "%s: %v", u.key, err)
				}
			}
			if m.Sources == nil {
				m.Sources = DefaultMicrosoftSources
			}
			for j, s := range m.Sources {
				_, isO365 := o365.ContentTypes[s]
				_, isGraph := graph.Streams[s]
				if s == graph.QueryName && m.Cloud != "commercial" {
					bad(at("microsoft", "sources", j), "%s (the Graph audit log query) is available in the commercial cloud only", s)
				}
				if !isO365 && !isGraph && s != graph.QueryName {
					bad(at("microsoft", "sources", j), "unknown source %q (known: %s)", s, strings.Join(knownMicrosoft(), ", "))
				}
			}
			if dup := firstDup(m.Sources); dup != "" {
				bad(mat("sources"), "source %q listed twice", dup)
			}
		}
		if g := t.Google; g != nil {
			gat := func(k string) []any { return at("google", k) }
			if g.ServiceAccountFile == "" {
				bad(gat("service_account_file"), "google.service_account_file is required")
			}
			if g.Subject == "" || !strings.Contains(g.Subject, "@") {
				bad(gat("subject"), "google.subject must be the email of a Workspace admin to act as")
			}
			for _, u := range []struct {
				key string
				v   *string
				def string
			}{{"token_url", &g.TokenURL, ""}, {"reports_url", &g.ReportsURL, "https://admin.googleapis.com"}} {
				if *u.v == "" {
					*u.v = u.def
				} else if err := checkURL(*u.v); err != nil {
					bad(gat(u.key), "%s: %v", u.key, err)
				}
			}
			if g.Applications == nil {
				g.Applications = DefaultApplications
			}
			for j, a := range g.Applications {
				if !slices.Contains(gws.Applications, a) {
					bad(at("google", "applications", j), "unknown application %q (known: %s)", a, strings.Join(gws.Applications, ", "))
				}
			}
			if dup := firstDup(g.Applications); dup != "" {
				bad(gat("applications"), "application %q listed twice", dup)
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func knownMicrosoft() []string {
	var out []string
	for k := range o365.ContentTypes {
		out = append(out, k)
	}
	for k := range graph.Streams {
		out = append(out, k)
	}
	out = append(out, graph.QueryName)
	slices.Sort(out)
	return out
}

func firstDup(xs []string) string {
	seen := map[string]bool{}
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

// checkURL accepts https URLs, and http ones only for loopback hosts
// (tests and local fakes): tokens must not cross a network in clear.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: give scheme, host and path only", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: http is allowed only for loopback addresses; use https", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}
