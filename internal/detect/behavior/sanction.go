package behavior

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
)

// Sanctioned applications: an admin, from a network familiar to them,
// grants an app tenant-wide mail application permissions in the directory
// audit log (Add app role assignment to service principal for
// full_access_as_app or Mail.Read). That app's later reads from its own
// consistent network (the one it first read from after the grant) are a
// reviewable notice, not an intrusion. The same app from another network,
// or with tokens no sign-in issued (D1), is judged as any other.
//
// An admin consent alone (Consent to application with AdminConsent true)
// sanctions nothing: it is what a phished admin's click leaves, while a
// deliberate grant adds app role assignments (the portal and PowerShell
// both write them). It and Add service principal only describe an app an
// assignment sanctions.

// mailAppRoles are application permissions that read every mailbox.
var mailAppRoles = []string{"full_access_as_app", "mail.read", "mail.readwrite", "mail.readbasic.all"}

// firstPartyResources are resource apps every grant names as the API it
// is for: never the app being sanctioned.
var firstPartyResources = map[string]bool{
	"00000002-0000-0ff1-ce00-000000000000": true, // Office 365 Exchange Online
	"00000003-0000-0000-c000-000000000000": true, // Microsoft Graph
}

// sanctionGrant recognises a grant of mail permissions and returns the
// app ids it names and a description; ok is false for other records.
func sanctionGrant(ev *event.Event) (apps []string, what string, ok bool) {
	op := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(ev.Operation)), ".")
	fields := ev.Fields()
	valueHas := func(nameHas string, want ...string) bool {
		for _, f := range fields {
			if !strings.Contains(strings.ToLower(f.Name), nameHas) {
				continue
			}
			v := strings.ToLower(f.Value)
			for _, w := range want {
				if strings.Contains(v, w) {
					return true
				}
			}
		}
		return false
	}
	guidsOf := func(nameHas ...string) []string {
		var out []string
		for _, f := range fields {
			n := strings.ToLower(f.Name)
			for _, h := range nameHas {
				if strings.Contains(n, h) {
					for _, g := range guidsIn(f.Value) {
						if !firstPartyResources[g] && !slices.Contains(out, g) {
							out = append(out, g)
						}
					}
				}
			}
		}
		return out
	}
	switch op {
	case "add app role assignment to service principal":
		if !valueHas("approle.value", mailAppRoles...) {
			return nil, "", false
		}
		return guidsOf("serviceprincipal.appid"), "app role assignment (mail application permission)", true
	case "consent to application":
		if !valueHas("adminconsent", "true") && !valueHas("isadminconsent", "true") {
			return nil, "", false
		}
		var out []string
		for _, id := range consentAppIDs(ev) {
			if id = strings.ToLower(id); !firstPartyResources[id] {
				out = append(out, id)
			}
		}
		return out, "admin consent", true
	case "add service principal":
		return guidsOf("appprincipalid"), "service principal added", true
	}
	return nil, "", false
}

// sanction records a grant made by an admin from a network familiar to
// them; a grant from an unfamiliar network sanctions nothing.
func (e *Engine) sanction(ten *tenantState, ev *event.Event, t time.Time) {
	apps, what, ok := sanctionGrant(ev)
	if !ok || len(apps) == 0 {
		return
	}
	admin := strings.ToLower(ev.User)
	u := ten.Users[admin]
	if u == nil {
		return
	}
	settled := t.Add(-e.cfg.D4.Nearby.D())
	// familiar: an address the admin has signed in from for a while, or
	// a new one in a network (ASN) they have or the organisation's own
	// egress (as D4 counts it: many colleagues sign in from it; an admin
	// who joins the corporate VPN just before the grant is at work), not
	// a data centre (phones and home routers change addresses within
	// their carrier's ranges).
	familiar := func(ip string) bool {
		if s, ok := u.IPs[ip]; ok && s.First.Before(settled) {
			return true
		}
		info, ok := e.lookup(ip)
		if !ok || info.ASN == 0 || info.Kind == "hosting" {
			return false
		}
		if s, ok := u.ASNs[info.ASN]; ok && s.First.Before(settled) {
			return true
		}
		return len(ten.ASNUsers[info.ASN]) >= e.cfg.D4.PrevalentUsers
	}
	if ev.IP != "" {
		if !familiar(ev.IP) {
			return
		}
	} else {
		// Directory audits often carry no address: the admin's sign-ins
		// of the last hour say where they were, and all of them must be
		// familiar (a phished admin's session beside their own phone's
		// sanctions nothing). Without any, the latest sign-in.
		var recent []string
		latest, last := "", time.Time{}
		for a, s := range u.IPs {
			if s.Last.After(t) {
				continue
			}
			if !s.Last.Before(t.Add(-time.Hour)) {
				recent = append(recent, a)
			}
			if s.Last.After(last) || s.Last.Equal(last) && a < latest {
				latest, last = a, s.Last
			}
		}
		if len(recent) == 0 && latest != "" {
			recent = []string{latest}
		}
		if len(recent) == 0 {
			return
		}
		for _, a := range recent {
			if !familiar(a) {
				return
			}
		}
	}
	assignment := strings.HasPrefix(what, "app role assignment")
	for _, id := range apps {
		if old := ten.Sanctioned[id]; old != nil {
			if !strings.Contains(old.What, what) {
				old.What += ", " + what
			}
			continue
		}
		if assignment {
			ten.Sanctioned[id] = &sanction{Time: t, Admin: admin, What: what}
		}
	}
}

// sanctionedRead notes the network of a sanctioned app's first read after
// the grant: its own.
func (e *Engine) sanctionedRead(ten *tenantState, p *pending) {
	s := ten.Sanctioned[sanctionKey(p.AppID, p.ClientApp)]
	if s == nil || s.ASN != 0 || p.Time.Before(s.Time) || p.IP == "" {
		return
	}
	if info, ok := e.lookup(p.IP); ok {
		s.ASN = info.ASN
	}
}

func sanctionKey(app, client string) string {
	if client != "" {
		return strings.ToLower(client)
	}
	return strings.ToLower(app)
}

// notice turns an alert about a sanctioned app reading from its own
// network into a reviewable notice. D1 (tokens no sign-in issued) and IOC
// matches are never softened.
func (e *Engine) notice(a *alert.Alert) {
	switch a.Signal {
	case "D2", "D3", "D4", "D7":
	default:
		return
	}
	ten := e.st.Tenants[a.Tenant]
	if ten == nil || len(ten.Sanctioned) == 0 {
		return
	}
	s := ten.Sanctioned[sanctionKey(a.Fields["app_id"], a.Fields["client_app_id"])]
	if s == nil || s.ASN == 0 || a.Time.Before(s.Time) {
		return
	}
	ip, err := netip.ParseAddr(a.Fields["src_ip"])
	if err != nil {
		return
	}
	info, ok := e.lookup(ip.String())
	if !ok || info.ASN != s.ASN {
		return
	}
	a.Level = alert.Low
	a.Title += " — sanctioned app (" + s.What + " by " + s.Admin + " " + s.Time.UTC().Format("2006-01-02") + ") reading from its own network: review"
	a.Set("sanctioned_by", s.Admin)
}
