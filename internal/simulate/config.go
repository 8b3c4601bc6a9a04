package simulate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Format is the output encoding.
type Format string

// Output formats.
const (
	FormatJSONL Format = "jsonl" // one JSON record per line (every source)
	FormatJSON  Format = "json"  // one JSON array per file
	FormatCSV   Format = "csv"   // UAL as the Purview export CSV; other sources JSON lines
)

// Campaign names.
const (
	CampaignForgedToken   = "forged-token"
	CampaignTokenReplay   = "token-replay"
	CampaignConsentPhish  = "consent-phish"
	CampaignPasswordSpray = "password-spray"
	// CampaignForgedCommonApp is forged-token with a twist: the forged
	// tokens claim a common first-party client app id, so an unusual app id
	// cannot give the intruder away.
	CampaignForgedCommonApp = "forged-token-common-app"
)

// Confounder names.
const (
	ConfOutlookRollout = "outlook-rollout"
	ConfTravel         = "travel"
	ConfVPNEgress      = "vpn-egress-change"
	ConfBackupTool     = "backup-tool"
	ConfNewSaaSApp     = "new-saas-app"
	ConfUnlinkedTokens = "unlinked-tokens"
	ConfSanctionedApp  = "sanctioned-backup-app"
	ConfCloudPC        = "cloud-pc"
)

// Campaigns lists every campaign with its parameters and their defaults.
var Campaigns = map[string]map[string]string{
	CampaignForgedToken: {
		"start-day":      "",    // default: two thirds into the run
		"days":           "5",   // weekdays active
		"targets":        "3",   // VIP mailboxes read
		"reads-per-day":  "6",   // Bind requests per target per active day
		"sync-per-day":   "0.3", // chance per target-day of one Sync of a folder
		"items-per-read": "4",
	},
	CampaignTokenReplay: {
		"start-day":    "",
		"victim":       "", // UPN; default: a non-VIP user
		"reads":        "25",
		"forward-to":   "invoices-archive@protonmail.example",
		"replay-hours": "6",
	},
	CampaignConsentPhish: {
		"start-day":         "",
		"victim":            "", // UPN of the admin who consents; default: an admin
		"mailboxes":         "12",
		"reads-per-mailbox": "30",
		"items-per-read":    "10",
		"bulk-mailboxes":    "1", // mailboxes read hard enough to be throttled
	},
	CampaignForgedCommonApp: {
		"start-day":      "",
		"days":           "6",      // weekdays active
		"targets":        "2",      // VIP mailboxes read (preferring ones no other campaign reads)
		"reads-per-day":  "6",      // Bind requests per target per active day
		"items-per-read": "4",      // messages per Bind request
		"client-app":     "office", // claimed client: office, owa, mobile or new-outlook
	},
	CampaignPasswordSpray: {
		"start-day": "",
		"targets":   "60", // accounts sprayed
		"ips":       "3",
		"rounds":    "3",
		"reads":     "15",
	},
}

// ConfounderNames lists every benign confounder.
var ConfounderNames = []string{ConfOutlookRollout, ConfTravel, ConfVPNEgress, ConfBackupTool, ConfNewSaaSApp, ConfUnlinkedTokens, ConfSanctionedApp, ConfCloudPC}

// CampaignNames lists every campaign in a fixed order (the order truth.json
// lists them in when all are enabled).
var CampaignNames = []string{CampaignForgedToken, CampaignTokenReplay, CampaignConsentPhish, CampaignPasswordSpray, CampaignForgedCommonApp}

// Progress reports a run's progress.
type Progress struct {
	Events   int64
	SimTime  time.Time
	Fraction float64
}

// Config is one simulation. Zero fields take the defaults of Defaults.
type Config struct {
	Users           int
	Days            int
	Seed            uint64
	Start           time.Time // midnight UTC of the first day
	Campaigns       []string
	Params          map[string]map[string]string // campaign → parameter → value
	Confounders     []string
	Format          Format
	SharedMailboxes int  // default max(2, Users/25)
	ThrottleLimit   int  // MailItemsAccessed records per mailbox per 24 h; default 1000
	NoWorkspace     bool // skip the Google Workspace tenant
	Progress        func(Progress)
}

// DefaultStart is the default first day (a Monday).
var DefaultStart = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// The tenant sizes the simulator accepts.
const (
	MinUsers = 10
	MaxDays  = 3660
)

// normalize applies defaults and validates.
func (c *Config) normalize() error {
	if c.Users == 0 {
		c.Users = 200
	}
	if c.Users < MinUsers {
		return configErr("users %d: need at least %d", c.Users, MinUsers)
	}
	if c.Days == 0 {
		c.Days = 21
	}
	if c.Days < 1 || c.Days > MaxDays {
		return configErr("days %d: must be 1..%d", c.Days, MaxDays)
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if !c.Start.Equal(c.Start.UTC().Truncate(24 * time.Hour)) {
		return configErr("start %s must be midnight UTC", c.Start)
	}
	c.Start = c.Start.UTC()
	if c.Format == "" {
		c.Format = FormatJSONL
	}
	switch c.Format {
	case FormatJSONL, FormatJSON, FormatCSV:
	default:
		return configErr("format %q: want jsonl, json or csv", c.Format)
	}
	if c.SharedMailboxes == 0 {
		c.SharedMailboxes = max(2, c.Users/25)
	}
	if c.ThrottleLimit == 0 {
		c.ThrottleLimit = 1000
	}
	if c.ThrottleLimit < 1 {
		return configErr("throttle limit %d must be positive", c.ThrottleLimit)
	}
	seen := map[string]bool{}
	for _, n := range c.Campaigns {
		if _, ok := Campaigns[n]; !ok {
			return configErr("unknown campaign %q (have %s)", n, strings.Join(slices.Sorted(maps.Keys(Campaigns)), ", "))
		}
		if seen[n] {
			return configErr("campaign %q given twice", n)
		}
		seen[n] = true
	}
	for n, ps := range c.Params {
		def, ok := Campaigns[n]
		if !ok {
			return configErr("parameters for unknown campaign %q", n)
		}
		if !seen[n] {
			return configErr("parameters for campaign %q, which is not enabled", n)
		}
		for k := range ps {
			if _, ok := def[k]; !ok {
				return configErr("campaign %q has no parameter %q (have %s)", n, k, strings.Join(slices.Sorted(maps.Keys(def)), ", "))
			}
		}
	}
	cs := map[string]bool{}
	for _, n := range c.Confounders {
		ok := false
		for _, k := range ConfounderNames {
			ok = ok || k == n
		}
		if !ok {
			return configErr("unknown confounder %q (have %s)", n, strings.Join(ConfounderNames, ", "))
		}
		if cs[n] {
			return configErr("confounder %q given twice", n)
		}
		cs[n] = true
	}
	return nil
}

// params resolves a campaign's parameters over its defaults.
type params struct {
	campaign string
	m        map[string]string
}

func (c *Config) params(name string) params {
	m := map[string]string{}
	for k, v := range Campaigns[name] {
		m[k] = v
	}
	for k, v := range c.Params[name] {
		m[k] = v
	}
	return params{campaign: name, m: m}
}

func (p params) int(k string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(p.m[k])
	if err != nil || v < lo || v > hi {
		return 0, configErr("%s parameter %s=%q: want an integer in %d..%d", p.campaign, k, p.m[k], lo, hi)
	}
	return v, nil
}

func (p params) float(k string, lo, hi float64) (float64, error) {
	v, err := strconv.ParseFloat(p.m[k], 64)
	if err != nil || v < lo || v > hi {
		return 0, configErr("%s parameter %s=%q: want a number in %g..%g", p.campaign, k, p.m[k], lo, hi)
	}
	return v, nil
}

// startDay resolves start-day: default two thirds into the run so the
// detectors have a baseline first.
func (p params) startDay(days int) (int, error) {
	if p.m["start-day"] == "" {
		d := days * 2 / 3
		p.m["start-day"] = strconv.Itoa(d)
		return d, nil
	}
	return p.int("start-day", 0, days-1)
}

// ConfigError is an invalid Config: an unknown campaign, confounder or
// parameter, or a value out of range. Callers can report it as a usage
// error.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return "simulate: " + e.msg }

func configErr(format string, a ...any) error { return &ConfigError{msg: fmt.Sprintf(format, a...)} }
