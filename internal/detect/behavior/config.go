package behavior

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/netinfo"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the built-in settings file, the documented template
// for a user's own.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Duration is a time.Duration that YAML spells "90m", "24h" or "14d".
type Duration time.Duration

// UnmarshalYAML accepts Go durations plus a "d" (day) suffix.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"24h\" or \"14d\"", n.Line)
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return v, nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the behaviour settings file. Every field is documented in
// default.yaml and docs/detections.md.
type Config struct {
	Version  int      `yaml:"version"`
	Learning Duration `yaml:"learning"`

	D1 struct {
		Enabled         bool     `yaml:"enabled"`
		TokenLifetime   Duration `yaml:"token_lifetime"`
		SessionLifetime Duration `yaml:"session_lifetime"`
		Skew            Duration `yaml:"skew"`
		Grace           Duration `yaml:"grace"`
		Coverage        Duration `yaml:"coverage"`
		MaxSourceLag    Duration `yaml:"max_source_lag"`
		MaxMailLag      Duration `yaml:"max_mail_lag"`
		AllowApps       []string `yaml:"allow_apps"`
	} `yaml:"orphan_token"`

	D2 struct {
		Enabled         bool     `yaml:"enabled"`
		TenantLevel     string   `yaml:"tenant_level"`
		MailboxLevel    string   `yaml:"mailbox_level"`
		RolloutUsers    int      `yaml:"rollout_users"`
		RolloutWindow   Duration `yaml:"rollout_window"`
		ConsentWindow   Duration `yaml:"consent_window"`
		ConsentedLevel  string   `yaml:"consented_level"`
		AllowClientApps []string `yaml:"allow_client_apps"`
	} `yaml:"first_seen_app"`

	D3 struct {
		Enabled            bool     `yaml:"enabled"`
		HourlyK            float64  `yaml:"hourly_sigma"`
		HourlyMinItems     int      `yaml:"hourly_min_items"`
		BaselineHours      int      `yaml:"baseline_hours"`
		OperationCount     int      `yaml:"operation_count"`
		MultiMailbox       int      `yaml:"multi_mailbox"`
		MultiMailboxWindow Duration `yaml:"multi_mailbox_window"`
		AllowApps          []string `yaml:"allow_apps"`
	} `yaml:"read_volume"`

	D4 struct {
		Enabled        bool     `yaml:"enabled"`
		History        Duration `yaml:"ip_history"`
		Nearby         Duration `yaml:"nearby"`
		PrevalentUsers int      `yaml:"prevalent_users"`
		SprayAccounts  int      `yaml:"spray_accounts"`
		SuspectKinds   []string `yaml:"suspect_kinds"`
		SuspectASNs    []uint32 `yaml:"suspect_asns"`
		AllowCIDRs     []string `yaml:"allow_cidrs"`
	} `yaml:"network"`

	D7 struct {
		Enabled  bool     `yaml:"enabled"`
		Patterns []string `yaml:"patterns"`
	} `yaml:"script_client"`

	D8 struct {
		Enabled bool     `yaml:"enabled"`
		Terms   []string `yaml:"terms"`
		Follow  Duration `yaml:"follow"`
	} `yaml:"sensitive_search"`

	D9 struct {
		Enabled              bool     `yaml:"enabled"`
		SourceGap            Duration `yaml:"source_gap"`
		MailboxGap           Duration `yaml:"mailbox_gap"`
		MailboxMinActiveDays int      `yaml:"mailbox_min_active_days"`
	} `yaml:"coverage"`

	D11 struct {
		Enabled        bool   `yaml:"enabled"`
		InWindowLevel  string `yaml:"in_window_level"`
		OutWindowLevel string `yaml:"out_of_window_level"`
	} `yaml:"ioc"`

	Incident struct {
		Window          Duration `yaml:"window"`
		SingleSignals   []string `yaml:"single_signals"`
		CoreSignals     []string `yaml:"core_signals"`
		SigmaCounts     bool     `yaml:"sigma_counts"`
		SigmaPairLevel  string   `yaml:"sigma_pair_level"`
		MinLevel        string   `yaml:"min_level"`
		SingleLevel     string   `yaml:"single_level"`
		BroadActorUsers int      `yaml:"broad_actor_users"`
		MaxTimeline     int      `yaml:"max_timeline"`
	} `yaml:"incident"`

	// compiled
	scriptRE   []*regexp.Regexp
	allowD1    map[string]bool
	allowD2    map[string]bool
	allowD3    map[string]bool
	suspectK   map[string]bool
	suspectASN map[uint32]bool
	allowNets  []netip.Prefix
	terms      []string
}

// ConfigVersion is the settings format this build reads.
const ConfigVersion = 1

// DefaultConfig returns the built-in settings.
func DefaultConfig() *Config {
	c, err := ParseConfig(defaultYAML)
	if err != nil {
		panic("behavior: built-in default.yaml: " + err.Error())
	}
	return c
}

// LoadConfig reads a settings file; "" means the built-in defaults.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return DefaultConfig(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("behaviour settings: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("behaviour settings %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a complete settings file. Unknown keys are errors: a
// misspelt threshold must not silently fall back to a default.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty settings file")
		}
		return nil, err
	}
	if err := c.compile(); err != nil {
		return nil, err
	}
	// A settings file written before max_source_lag existed would read as
	// 0 (judge without waiting for late sign-in logs): say so instead.
	var has struct {
		D1 struct {
			MaxSourceLag *Duration `yaml:"max_source_lag"`
			MaxMailLag   *Duration `yaml:"max_mail_lag"`
		} `yaml:"orphan_token"`
		Incident struct {
			SigmaPairLevel *string `yaml:"sigma_pair_level"`
		} `yaml:"incident"`
	}
	if err := yaml.Unmarshal(b, &has); err != nil {
		return nil, err
	}
	if has.D1.MaxSourceLag == nil {
		return nil, errors.New("orphan_token.max_source_lag is missing: add it (the built-in default is 6h; 0 judges mail accesses without waiting for a late sign-in log)")
	}
	// Likewise max_mail_lag: 0 would forget the sign-ins a late mail log
	// is judged against as soon as the sign-in log has passed them.
	if has.D1.MaxMailLag == nil {
		return nil, errors.New("orphan_token.max_mail_lag is missing: add it (the built-in default is 36h; 0 keeps no sign-in evidence for a mail log that arrives after the sign-in log)")
	}
	// And sigma_pair_level: "" would pair no Sigma detection.
	if has.Incident.SigmaPairLevel == nil {
		return nil, errors.New("incident.sigma_pair_level is missing: add it (the built-in default is high; \"\" lets no Sigma detection pair with a behavioural alert)")
	}
	return &c, nil
}

func (c *Config) compile() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("version is %d, this build reads version %d", c.Version, ConfigVersion)
	}
	for _, lv := range []struct{ name, v string }{
		{"first_seen_app.tenant_level", c.D2.TenantLevel}, {"first_seen_app.mailbox_level", c.D2.MailboxLevel},
		{"first_seen_app.consented_level", c.D2.ConsentedLevel}, {"ioc.in_window_level", c.D11.InWindowLevel},
		{"ioc.out_of_window_level", c.D11.OutWindowLevel}, {"incident.min_level", c.Incident.MinLevel},
		{"incident.single_level", c.Incident.SingleLevel},
	} {
		if _, ok := map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}[lv.v]; !ok {
			return fmt.Errorf("%s: %q is not a level (informational, low, medium, high, critical)", lv.name, lv.v)
		}
	}
	if v := c.Incident.SigmaPairLevel; v != "" && !map[string]bool{"informational": true, "low": true, "medium": true, "high": true, "critical": true}[v] {
		return fmt.Errorf("incident.sigma_pair_level: %q is not a level (informational, low, medium, high, critical) or \"\"", v)
	}
	pos := []struct {
		name string
		v    Duration
	}{
		{"orphan_token.token_lifetime", c.D1.TokenLifetime}, {"orphan_token.session_lifetime", c.D1.SessionLifetime},
		{"orphan_token.grace", c.D1.Grace}, {"first_seen_app.rollout_window", c.D2.RolloutWindow},
		{"read_volume.multi_mailbox_window", c.D3.MultiMailboxWindow}, {"network.ip_history", c.D4.History},
		{"sensitive_search.follow", c.D8.Follow}, {"coverage.source_gap", c.D9.SourceGap},
		{"coverage.mailbox_gap", c.D9.MailboxGap}, {"incident.window", c.Incident.Window},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("%s must be a positive duration", p.name)
		}
	}
	if c.D4.PrevalentUsers <= 0 || c.D4.SprayAccounts <= 0 {
		return errors.New("network.prevalent_users and network.spray_accounts must be positive")
	}
	if c.D3.HourlyK <= 0 || c.D3.MultiMailbox <= 0 || c.D3.OperationCount <= 0 || c.D3.BaselineHours <= 0 {
		return errors.New("read_volume: hourly_sigma, baseline_hours, operation_count and multi_mailbox must be positive")
	}
	c.scriptRE = nil
	for _, p := range c.D7.Patterns {
		re, err := regexp.Compile("(?i)" + p)
		if err != nil {
			return fmt.Errorf("script_client.patterns: %q: %w", p, err)
		}
		c.scriptRE = append(c.scriptRE, re)
	}
	c.allowD1 = lowerSet(c.D1.AllowApps)
	c.allowD2 = lowerSet(c.D2.AllowClientApps)
	c.allowD3 = lowerSet(c.D3.AllowApps)
	c.suspectK = lowerSet(c.D4.SuspectKinds)
	c.suspectASN = map[uint32]bool{}
	for _, a := range c.D4.SuspectASNs {
		c.suspectASN[a] = true
	}
	c.allowNets = nil
	for _, s := range c.D4.AllowCIDRs {
		p, err := netinfo.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("network.allow_cidrs: %w", err)
		}
		c.allowNets = append(c.allowNets, p)
	}
	c.terms = nil
	for _, t := range c.D8.Terms {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" {
			c.terms = append(c.terms, t)
		}
	}
	return nil
}

// IncidentConfig returns the grouping settings for package incident.
func (c *Config) IncidentConfig() incident.Config {
	return incident.Config{
		Window:          c.Incident.Window.D(),
		SingleSignals:   c.Incident.SingleSignals,
		CoreSignals:     c.Incident.CoreSignals,
		SigmaCounts:     c.Incident.SigmaCounts,
		SigmaPairLevel:  c.Incident.SigmaPairLevel,
		MinLevel:        c.Incident.MinLevel,
		SingleLevel:     c.Incident.SingleLevel,
		BroadActorUsers: c.Incident.BroadActorUsers,
		MaxTimeline:     c.Incident.MaxTimeline,
	}
}

func lowerSet(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[strings.ToLower(strings.TrimSpace(x))] = true
	}
	return m
}
