package behavior

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// IOC file format (see docs/iocs/storm0558.yaml):
//
//	name: ...
//	reference: https://...
//	indicators:
//	  - type: ip | cidr | user_agent | kid | thumbprint | jarm | sha1 | sha256 | value
//	    value: "..."
//	    first_seen: 2023-05-15   # optional validity window (inclusive days, UTC)
//	    last_seen: 2023-06-25
//	    description: ...
type iocFile struct {
	Name       string         `yaml:"name"`
	Reference  string         `yaml:"reference"`
	Indicators []iocIndicator `yaml:"indicators"`
}

type iocIndicator struct {
	Type        string `yaml:"type"`
	Value       string `yaml:"value"`
	FirstSeen   string `yaml:"first_seen"`
	LastSeen    string `yaml:"last_seen"`
	Description string `yaml:"description"`
}

// Indicator is one loaded IOC.
type Indicator struct {
	Set         string
	Type        string
	Value       string
	From, To    time.Time // zero when unbounded; To is exclusive
	Description string
	prefix      netip.Prefix
}

// InWindow reports whether t lies in the indicator's validity window.
func (i *Indicator) InWindow(t time.Time) bool {
	if !i.From.IsZero() && t.Before(i.From) {
		return false
	}
	if !i.To.IsZero() && !t.Before(i.To) {
		return false
	}
	return true
}

// IOCs is a set of indicators indexed for matching.
type IOCs struct {
	ips    map[netip.Addr][]*Indicator
	cidrs  []*Indicator
	uas    map[string][]*Indicator
	values map[string][]*Indicator // lower-cased
	n      int
}

// Len is the number of indicators.
func (s *IOCs) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// LoadIOCFiles reads one or more IOC files into one set.
func LoadIOCFiles(paths ...string) (*IOCs, error) {
	s := &IOCs{ips: map[netip.Addr][]*Indicator{}, uas: map[string][]*Indicator{}, values: map[string][]*Indicator{}}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("IOC file: %w", err)
		}
		if err := s.add(b); err != nil {
			return nil, fmt.Errorf("IOC file %s: %w", p, err)
		}
	}
	return s, nil
}

// ParseIOCs reads one IOC file's bytes.
func ParseIOCs(b []byte) (*IOCs, error) {
	s := &IOCs{ips: map[netip.Addr][]*Indicator{}, uas: map[string][]*Indicator{}, values: map[string][]*Indicator{}}
	if err := s.add(b); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *IOCs) add(b []byte) error {
	var f iocFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return err
	}
	if len(f.Indicators) == 0 {
		return errors.New("no indicators")
	}
	for i, x := range f.Indicators {
		ind := &Indicator{Set: f.Name, Type: strings.ToLower(strings.TrimSpace(x.Type)), Value: strings.TrimSpace(x.Value), Description: x.Description}
		if ind.Value == "" {
			return fmt.Errorf("indicator %d: empty value", i+1)
		}
		var err error
		if x.FirstSeen != "" {
			if ind.From, err = parseDay(x.FirstSeen); err != nil {
				return fmt.Errorf("indicator %d (%s): first_seen: %w", i+1, ind.Value, err)
			}
		}
		if x.LastSeen != "" {
			if ind.To, err = parseDay(x.LastSeen); err != nil {
				return fmt.Errorf("indicator %d (%s): last_seen: %w", i+1, ind.Value, err)
			}
			if len(strings.TrimSpace(x.LastSeen)) == len("2006-01-02") {
				ind.To = ind.To.Add(24 * time.Hour) // the whole last day
			}
		}
		if !ind.From.IsZero() && !ind.To.IsZero() && !ind.From.Before(ind.To) {
			return fmt.Errorf("indicator %d (%s): first_seen is not before last_seen", i+1, ind.Value)
		}
		switch ind.Type {
		case "ip":
			// Published IOCs are often defanged: 195.26.87[.]219.
			v := strings.NewReplacer("[.]", ".", "[:]", ":").Replace(ind.Value)
			a, err := netip.ParseAddr(v)
			if err != nil {
				return fmt.Errorf("indicator %d: bad ip %q", i+1, ind.Value)
			}
			ind.Value = a.String()
			s.ips[a.Unmap()] = append(s.ips[a.Unmap()], ind)
		case "cidr":
			p, err := netinfo.ParsePrefix(strings.ReplaceAll(ind.Value, "[.]", "."))
			if err != nil {
				return fmt.Errorf("indicator %d: %w", i+1, err)
			}
			ind.prefix = p
			s.cidrs = append(s.cidrs, ind)
		case "user_agent":
			s.uas[ind.Value] = append(s.uas[ind.Value], ind)
		case "kid", "thumbprint", "jarm", "sha1", "sha256", "md5", "value", "domain", "url":
			k := strings.ToLower(ind.Value)
			s.values[k] = append(s.values[k], ind)
		default:
			return fmt.Errorf("indicator %d: unknown type %q (ip, cidr, user_agent, kid, thumbprint, jarm, sha1, sha256, md5, domain, url, value)", i+1, x.Type)
		}
		s.n++
	}
	return nil
}

func parseDay(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (2006-01-02) or RFC 3339 time", s)
}

func (s *IOCs) matchIP(ip string) []*Indicator {
	if s == nil || ip == "" || (len(s.ips) == 0 && len(s.cidrs) == 0) {
		return nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	a = a.Unmap()
	out := s.ips[a]
	for _, c := range s.cidrs {
		if c.prefix.Contains(a) {
			out = append(out[:len(out):len(out)], c)
		}
	}
	return out
}
