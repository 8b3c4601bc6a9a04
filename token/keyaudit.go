package token

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Severity orders key-audit findings.
type Severity int

// Severities, lowest first.
const (
	SevInfo Severity = iota
	SevLow
	SevMedium
	SevHigh
)

var sevNames = []string{"info", "low", "medium", "high"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(sevNames) {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return sevNames[s]
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ParseSeverity parses "info", "low", "medium" or "high".
func ParseSeverity(s string) (Severity, error) {
	i := slices.Index(sevNames, strings.ToLower(s))
	if i < 0 {
		return 0, fmt.Errorf("unknown severity %q (want info, low, medium or high)", s)
	}
	return Severity(i), nil
}

// Finding is one key-hygiene observation.
type Finding struct {
	Severity   Severity `json:"severity"`
	Code       string   `json:"code"`
	Source     string   `json:"source,omitempty"`
	Scope      string   `json:"scope,omitempty"`
	KeyID      string   `json:"kid,omitempty"`
	Thumbprint string   `json:"thumbprint,omitempty"`
	Message    string   `json:"message"`
}

// KeyInfo summarises one published key.
type KeyInfo struct {
	Source     string    `json:"source"`
	Scope      string    `json:"scope"`
	KeyID      string    `json:"kid"`
	X5t        string    `json:"x5t,omitempty"`
	Thumbprint string    `json:"thumbprint"`
	Type       string    `json:"kty"`
	Bits       int       `json:"bits"`
	Curve      string    `json:"crv,omitempty"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	// AgeDays is whole days since the certificate's notBefore; nil when
	// the key publishes no certificate, so its age is unknown.
	AgeDays *int `json:"age_days,omitempty"`
}

// KeyAuditOptions tunes AuditKeys.
type KeyAuditOptions struct {
	Now           time.Time
	MaxAge        time.Duration // key age (from the certificate's notBefore) past which rotation is overdue; 0 disables
	ExpiryWarning time.Duration // certificates expiring within this are flagged; default 30 days
	// Previous[i] is an earlier snapshot of sets[i] (nil: no diff for that
	// input): kids that appeared or vanished are reported per input. When
	// set, it must have one entry per key set.
	Previous []*KeySet
	Denied   []string // kid/x5t values known to be compromised; DefaultDeniedKeys is always included
}

// KeyReport is the result of AuditKeys.
type KeyReport struct {
	Keys     []KeyInfo `json:"keys"`
	Findings []Finding `json:"findings"`
}

// Max returns the highest severity found, and false when there are none.
func (r *KeyReport) Max() (Severity, bool) {
	if len(r.Findings) == 0 {
		return 0, false
	}
	m := SevInfo
	for _, f := range r.Findings {
		m = max(m, f.Severity)
	}
	return m, true
}

// keyScope is the scope a key is published for: its own issuer member, the
// set's issuer, or failing both the document it came from.
func keyScope(ks *KeySet, k *Key) string {
	switch {
	case k.Issuer != "":
		return k.Issuer
	case ks.Scope.Issuer != "":
		return ks.Scope.Issuer
	}
	return ks.Scope.Source
}

// AuditKeys reviews published key sets for the failures behind Storm-0558:
// keys whose certificates expired but are still published, keys never
// rotated, weak keys, and one key (or kid) serving several scopes. It fails
// only when Previous cannot be paired with sets.
func AuditKeys(sets []*KeySet, o KeyAuditOptions) (*KeyReport, error) {
	if len(o.Previous) > 0 && len(o.Previous) != len(sets) {
		return nil, fmt.Errorf("key audit: %d previous snapshots for %d key sets: give one per key set", len(o.Previous), len(sets))
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.ExpiryWarning == 0 {
		o.ExpiryWarning = 30 * 24 * time.Hour
	}
	denied := map[string]bool{}
	for _, d := range append(slices.Clone(DefaultDeniedKeys), o.Denied...) {
		denied[d] = true
	}
	r := &KeyReport{Keys: []KeyInfo{}, Findings: []Finding{}}
	add := func(sev Severity, code string, ks *KeySet, k *Key, format string, a ...any) {
		f := Finding{Severity: sev, Code: code, Source: ks.Scope.Source, Message: fmt.Sprintf(format, a...)}
		if k != nil {
			f.Scope, f.KeyID, f.Thumbprint = keyScope(ks, k), k.ID, k.Thumbprint
		}
		r.Findings = append(r.Findings, f)
	}
	day := 24 * time.Hour
	scopesByThumb := map[string]map[string]bool{}
	kidThumbs := map[string]map[string]bool{}
	kidScopes := map[string]map[string]bool{}
	for _, ks := range sets {
		issuers := map[string]bool{}
		seenKid := map[string]string{}
		for _, rk := range ks.Rejected {
			sev, code := SevMedium, "unusable_key"
			if rk.Private {
				sev, code = SevHigh, "private_key_published"
			}
			r.Findings = append(r.Findings, Finding{Severity: sev, Code: code, Source: ks.Scope.Source,
				KeyID: rk.KeyID, Message: fmt.Sprintf("entry %d (kty %q crv %q): %s", rk.Index, rk.Type, rk.Curve, rk.Reason)})
		}
		for _, k := range ks.Keys {
			scope := keyScope(ks, k)
			info := KeyInfo{Source: ks.Scope.Source, Scope: scope, KeyID: k.ID, X5t: k.X5t, Thumbprint: k.Thumbprint,
				Type: k.Type, Bits: k.Bits, Curve: k.Curve, NotBefore: k.NotBefore, NotAfter: k.NotAfter}
			age := 0
			if !k.NotBefore.IsZero() {
				age = int(o.Now.Sub(k.NotBefore) / day)
				info.AgeDays = &age
			}
			r.Keys = append(r.Keys, info)
			if k.Issuer != "" {
				issuers[k.Issuer] = true
			}
			if k.ID == "" {
				add(SevLow, "no_kid", ks, k, "key has no kid; relying parties cannot select it reliably")
			} else if prev, dup := seenKid[k.ID]; dup && prev != k.Thumbprint {
				add(SevMedium, "duplicate_kid", ks, k, "kid %q names more than one key in this document", k.ID)
			}
			seenKid[k.ID] = k.Thumbprint
			if denied[k.ID] || denied[k.X5t] {
				add(SevHigh, "compromised_key", ks, k, "key %s is a known compromised signing key", k.ID)
			}
			if w := k.Weak(); w != "" {
				add(SevHigh, "weak_key", ks, k, "%s", w)
			}
			switch {
			case len(k.Certificates) == 0:
				add(SevInfo, "no_certificate", ks, k, "no x5c: key age and expiry cannot be checked")
			case o.Now.After(k.NotAfter):
				add(SevHigh, "cert_expired", ks, k, "certificate expired %s (%d days ago) but the key is still published",
					k.NotAfter.UTC().Format(time.DateOnly), int(o.Now.Sub(k.NotAfter)/day))
			case o.Now.Before(k.NotBefore):
				add(SevMedium, "cert_not_yet_valid", ks, k, "certificate valid only from %s", k.NotBefore.UTC().Format(time.DateOnly))
			case k.NotAfter.Sub(o.Now) < o.ExpiryWarning:
				add(SevMedium, "cert_expiring", ks, k, "certificate expires %s (in %d days)",
					k.NotAfter.UTC().Format(time.DateOnly), int(k.NotAfter.Sub(o.Now)/day))
			default:
				add(SevInfo, "key_age", ks, k, "key %d days old, certificate valid until %s", age,
					k.NotAfter.UTC().Format(time.DateOnly))
			}
			if o.MaxAge > 0 && !k.NotBefore.IsZero() && o.Now.Sub(k.NotBefore) > o.MaxAge {
				add(SevMedium, "rotation_overdue", ks, k, "key is %d days old, past the %d-day maximum",
					age, int(o.MaxAge/day))
			}
			addTo(scopesByThumb, k.Thumbprint, scope)
			if k.ID != "" {
				addTo(kidThumbs, k.ID, k.Thumbprint)
				addTo(kidScopes, k.ID, scope)
			}
		}
		if len(issuers) > 1 {
			add(SevMedium, "mixed_scope_set", ks, nil, "one document publishes keys for %d issuers (%s): relying parties must check each key's issuer",
				len(issuers), strings.Join(slices.Sorted(maps.Keys(issuers)), ", "))
		}
	}
	// Cross-scope reuse: the consumer/enterprise overlap of 2023.
	for _, tp := range slices.Sorted(maps.Keys(scopesByThumb)) {
		if sc := scopesByThumb[tp]; len(sc) > 1 {
			kid := ""
			for _, ki := range r.Keys {
				if ki.Thumbprint == tp {
					kid = ki.KeyID
				}
			}
			r.Findings = append(r.Findings, Finding{Severity: SevHigh, Code: "shared_key", KeyID: kid, Thumbprint: tp,
				Message: fmt.Sprintf("the same key is published for %d scopes: %s", len(sc), strings.Join(slices.Sorted(maps.Keys(sc)), ", "))})
		}
	}
	for _, kid := range slices.Sorted(maps.Keys(kidScopes)) {
		if len(kidScopes[kid]) > 1 && len(kidThumbs[kid]) > 1 {
			r.Findings = append(r.Findings, Finding{Severity: SevMedium, Code: "shared_kid", KeyID: kid,
				Message: fmt.Sprintf("kid names different keys in %d scopes: %s", len(kidScopes[kid]),
					strings.Join(slices.Sorted(maps.Keys(kidScopes[kid])), ", "))})
		}
	}
	for i, prev := range o.Previous {
		if prev != nil {
			r.Findings = append(r.Findings, diffKids(prev, sets[i])...)
		}
	}
	sort.SliceStable(r.Findings, func(i, j int) bool { return r.Findings[i].Severity > r.Findings[j].Severity })
	return r, nil
}

// diffKids reports the kids of cur that were not in prev and the reverse.
func diffKids(prev, cur *KeySet) []Finding {
	kids := func(ks *KeySet) map[string]bool {
		m := map[string]bool{}
		for _, k := range ks.Keys {
			m[k.ID] = true
		}
		return m
	}
	before, now := kids(prev), kids(cur)
	var out []Finding
	for _, kid := range slices.Sorted(maps.Keys(before)) {
		if !now[kid] {
			out = append(out, Finding{Severity: SevLow, Code: "kid_removed", Source: cur.Scope.Source, KeyID: kid,
				Message: fmt.Sprintf("kid was published in the previous snapshot (%s) and is gone: tokens signed with it must now be refused",
					prev.Scope.Source)})
		}
	}
	for _, kid := range slices.Sorted(maps.Keys(now)) {
		if !before[kid] {
			out = append(out, Finding{Severity: SevLow, Code: "kid_added", Source: cur.Scope.Source, KeyID: kid,
				Message: fmt.Sprintf("kid is new since the previous snapshot (%s): confirm the rotation was planned",
					prev.Scope.Source)})
		}
	}
	return out
}

func addTo(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}
