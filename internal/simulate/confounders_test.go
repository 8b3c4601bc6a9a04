package simulate

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

func confounder(t *testing.T, tr *Truth, name string) Confounder {
	t.Helper()
	for _, c := range tr.Confounders {
		if c.Name == name {
			if c.Label != LabelBenign {
				t.Fatalf("confounder %s: label %q, want %q", name, c.Label, LabelBenign)
			}
			return c
		}
	}
	t.Fatalf("no confounder %s in truth", name)
	return Confounder{}
}

func campaign(t *testing.T, tr *Truth, name string) CampaignTruth {
	t.Helper()
	for _, c := range tr.Campaigns {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no campaign %s in truth", name)
	return CampaignTruth{}
}

// signInIndex holds the successful sign-ins by token and by session.
type signInIndex struct {
	tokens   map[string]map[string]any
	sessions map[string][]map[string]any
}

func indexSignIns(si []map[string]any) signInIndex {
	x := signInIndex{tokens: map[string]map[string]any{}, sessions: map[string][]map[string]any{}}
	for _, s := range si {
		if get(s, "status", "errorCode").(interface{ String() string }).String() != "0" {
			continue
		}
		x.tokens[str(s, "uniqueTokenIdentifier")] = s
		if sid := str(s, "sessionId"); sid != "" {
			x.sessions[sid] = append(x.sessions[sid], s)
		}
	}
	return x
}

// num returns a JSON number field as its literal.
func num(m map[string]any, k string) string {
	n, _ := m[k].(interface{ String() string })
	if n == nil {
		return ""
	}
	return n.String()
}

func maliciousIDs(tr *Truth) map[string]string {
	m := map[string]string{}
	for _, c := range tr.Campaigns {
		for _, r := range c.Records {
			m[r.Source+"/"+r.ID] = c.Name
		}
	}
	return m
}

func asnOf(t *testing.T, nt *netinfo.Table, ip string) uint32 {
	t.Helper()
	e, ok := nt.Lookup(parseAddr(ip))
	if !ok {
		t.Fatalf("IP %s not in the network table", ip)
	}
	return e.ASN
}

// TestUnlinkedTokens checks the benign reads whose tokens have no
// sign-in: truth names exactly them, they are a few per cent of benign
// reads spread over many users and days, both kinds occur (a session no
// sign-in shows; a refresh missing from a logged session), and each
// comes from the user's own kind of access: a network (ASN) and client
// app the same user also uses with sign-ins, and never a trip's or a cloud
// PC's address for a session no sign-in shows.
func TestUnlinkedTokens(t *testing.T) {
	f := getFixture(t)
	c := confounder(t, f.truth, ConfUnlinkedTokens)
	if c.Expect != ExpectNoIncident {
		t.Errorf("expect %q", c.Expect)
	}
	x := indexSignIns(f.si)
	nt := loadNets(t, f.dir)
	toks := map[string]bool{}
	for _, tok := range c.TokensWithoutSignIn {
		toks[tok] = true
	}
	noSess := map[string]bool{}
	for _, sid := range c.SessionIDs {
		if len(x.sessions[sid]) > 0 {
			t.Fatalf("session %s is listed as having no sign-in, but %d sign-ins carry it", sid, len(x.sessions[sid]))
		}
		noSess[sid] = true
	}
	// what each user does with sign-ins: ASNs and client apps of linked reads
	type own struct{ asns, apps map[string]bool }
	owns := map[string]*own{}
	ownOf := func(u string) *own {
		o := owns[u]
		if o == nil {
			o = &own{asns: map[string]bool{}, apps: map[string]bool{}}
			owns[u] = o
		}
		return o
	}
	bad := maliciousIDs(f.truth)
	benign, reads, sessionless, refreshGaps := 0, 0, 0, 0
	users, days := map[string]bool{}, map[string]bool{}
	var unlinkedRecs []map[string]any
	for _, r := range f.ual {
		if r["Operation"] != "MailItemsAccessed" || bad["m365.ual/"+str(r, "Id")] != "" {
			continue
		}
		benign++
		tok := str(r, "AppAccessContext", "UniqueTokenId")
		if !toks[tok] {
			if _, ok := x.tokens[tok]; ok && num(r, "UserType") == "0" {
				u := strings.ToLower(str(r, "UserId"))
				ownOf(u).asns[itoa(int(asnOf(t, nt, str(r, "ClientIPAddress"))))] = true
				ownOf(u).apps[str(r, "ClientAppId")] = true
			}
			continue
		}
		reads++
		unlinkedRecs = append(unlinkedRecs, r)
		users[str(r, "UserId")] = true
		days[str(r, "CreationTime")[:10]] = true
		if n := num(r, "UserType"); n != "0" {
			t.Fatalf("unlinked read %s: UserType %s, want a user's own read (0)", str(r, "Id"), n)
		}
		sid := str(r, "AppAccessContext", "AADSessionId")
		switch {
		case noSess[sid]:
			sessionless++
		case len(x.sessions[sid]) > 0:
			refreshGaps++
		default:
			t.Fatalf("unlinked read %s: session %s is neither listed nor signed in", str(r, "Id"), sid)
		}
	}
	// A session no sign-in shows never comes from a trip's hotel or a
	// cloud PC: from a network no sign-in shows, it would be an
	// intruder's token, not a benign gap.
	away := map[string]string{}
	for _, name := range []string{ConfTravel, ConfCloudPC} {
		for _, ip := range confounder(t, f.truth, name).IPs {
			away[ip] = name
		}
	}
	for _, r := range unlinkedRecs {
		if ip := str(r, "ClientIPAddress"); noSess[str(r, "AppAccessContext", "AADSessionId")] && away[ip] != "" {
			t.Errorf("read %s of a session with no sign-in comes from %s (%s)", str(r, "Id"), ip, away[ip])
		}
	}
	for _, r := range unlinkedRecs {
		u := strings.ToLower(str(r, "UserId"))
		o := owns[u]
		asn := itoa(int(asnOf(t, nt, str(r, "ClientIPAddress"))))
		if o == nil || !o.asns[asn] || !o.apps[str(r, "ClientAppId")] {
			t.Errorf("unlinked read %s by %s: AS%s / client app %s is not one the user reads from with sign-ins", str(r, "Id"), u, asn, str(r, "ClientAppId"))
		}
	}
	if reads != c.MailReads {
		t.Errorf("truth mail_reads %d, records with listed tokens %d", c.MailReads, reads)
	}
	if c.Details["benign_mail_reads"] != itoa(benign) {
		t.Errorf("truth benign_mail_reads %s, records %d", c.Details["benign_mail_reads"], benign)
	}
	share := float64(reads) / float64(benign)
	if share < 0.015 || share > 0.06 {
		t.Errorf("unlinked share %.4f of %d benign reads, want a few per cent", share, benign)
	}
	if sessionless == 0 || refreshGaps == 0 {
		t.Errorf("%d reads in sessions without sign-ins, %d after a missing refresh: want both", sessionless, refreshGaps)
	}
	if len(users) < len(f.truth.Tenant.VIPs)+10 || len(days) < testConfig().Days/2 {
		t.Errorf("unlinked reads by %d users on %d days: want them spread", len(users), len(days))
	}
	if !slices.IsSorted(c.TokensWithoutSignIn) || !slices.IsSorted(c.SessionIDs) || !slices.IsSorted(c.Users) {
		t.Error("truth lists are not sorted")
	}
}

// TestUnlinkedTokensOff: without the confounder, every benign token has a
// sign-in (the TestSignInLinks invariant holds without exemptions).
func TestUnlinkedTokensOff(t *testing.T) {
	dir := t.TempDir()
	tr, err := Run(context.Background(), Config{Users: 15, Days: 4, Seed: 3, NoWorkspace: true}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Confounders) != 0 {
		t.Fatalf("%d confounders with none configured", len(tr.Confounders))
	}
	si, err := readJSONL(filepath.Join(dir, "signins.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	ual, err := readJSONL(filepath.Join(dir, "ual.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	x := indexSignIns(si)
	n := 0
	for _, r := range ual {
		if tok := str(r, "AppAccessContext", "UniqueTokenId"); tok != "" {
			n++
			if _, ok := x.tokens[tok]; !ok {
				t.Fatalf("record %s: token %s has no sign-in without unlinked-tokens", str(r, "Id"), tok)
			}
		}
	}
	if n == 0 {
		t.Fatal("no records with tokens")
	}
}

// TestSanctionedBackupApp checks the sanctioned app's audit trail (portal
// sign-in from a network the admin already uses, Add service principal,
// two app role assignments, admin consent) and its daily app-only reads of
// (nearly) every mailbox from one address in a cloud ASN nothing else uses.
func TestSanctionedBackupApp(t *testing.T) {
	f := getFixture(t)
	c := confounder(t, f.truth, ConfSanctionedApp)
	if c.Expect != ExpectNotice || len(c.AppIDs) != 1 || len(c.IPs) != 1 || len(c.Users) != 1 {
		t.Fatalf("truth: expect %q, apps %v, ips %v, users %v", c.Expect, c.AppIDs, c.IPs, c.Users)
	}
	app, ip, admin := c.AppIDs[0], c.IPs[0], c.Users[0]
	if !slices.Contains(f.truth.Tenant.Admins, admin) {
		t.Fatalf("%s consented but is not an admin", admin)
	}
	if v := campaign(t, f.truth, CampaignConsentPhish).Params["victim"]; v == admin && len(f.truth.Tenant.Admins) > 1 {
		t.Errorf("the consent-phish victim is the sanctioned app's admin %s, though there are %d admins", admin, len(f.truth.Tenant.Admins))
	}
	ual := map[string]map[string]any{}
	for _, r := range f.ual {
		ual[str(r, "Id")] = r
	}
	signins := map[string]map[string]any{}
	for _, s := range f.si {
		signins[str(s, "id")] = s
	}
	var ops []string
	var last time.Time
	var portalIP string
	roles := map[string]bool{}
	for _, ref := range c.Records {
		if ref.Time.Before(last) {
			t.Fatalf("audit trail out of order at %s", ref.Operation)
		}
		last = ref.Time
		ops = append(ops, ref.Operation)
		if ref.Source == "entra.signin" {
			s := signins[ref.ID]
			if s == nil || s["isInteractive"] != true || str(s, "userPrincipalName") != admin || str(s, "authenticationRequirement") != "multiFactorAuthentication" {
				t.Fatalf("trail sign-in %s: %v", ref.ID, s != nil)
			}
			portalIP = str(s, "ipAddress")
			continue
		}
		r := ual[ref.ID]
		if r == nil || r["Operation"] != ref.Operation || str(r, "UserId") != admin {
			t.Fatalf("trail record %s %s missing or not by %s", ref.ID, ref.Operation, admin)
		}
		props := map[string]string{}
		for _, p := range r["ModifiedProperties"].([]any) {
			pm := p.(map[string]any)
			props[str(pm, "Name")] = str(pm, "NewValue")
		}
		switch ref.Operation {
		case "Add app role assignment to service principal.":
			if props["ServicePrincipal.AppId"] != app {
				t.Errorf("role assignment %s for app %q", ref.ID, props["ServicePrincipal.AppId"])
			}
			roles[props["AppRole.Value"]] = true
		case "Consent to application.":
			if props["ConsentContext.IsAdminConsent"] != "True" || props["ConsentContext.IsAppOnly"] != "True" || props["TargetId.ServicePrincipalNames"] != app {
				t.Errorf("consent %s: %v", ref.ID, props)
			}
		}
	}
	want := []string{"signIn", "UserLoggedIn", "Add service principal.", "Add app role assignment to service principal.", "Add app role assignment to service principal.", "Consent to application."}
	if !slices.Equal(ops, want) {
		t.Fatalf("audit trail %v, want %v", ops, want)
	}
	if !roles["full_access_as_app"] || !roles["Mail.Read"] {
		t.Fatalf("app roles granted %v", roles)
	}
	// the admin's network is familiar: the admin signed in from its ASN before
	nt := loadNets(t, f.dir)
	familiar := false
	for _, s := range f.si {
		ct, _ := time.Parse(layoutGraph, str(s, "createdDateTime"))
		if str(s, "userPrincipalName") == admin && ct.Before(c.Start) &&
			asnOf(t, nt, str(s, "ipAddress")) == asnOf(t, nt, portalIP) {
			familiar = true
			break
		}
	}
	if !familiar {
		t.Errorf("the admin consented from %s, a network they had not signed in from", portalIP)
	}
	// reads: app-only, one address, every mailbox daily from the first backup day
	firstDay := c.Details["first_backup_day"]
	perDay := map[string]map[string]bool{}
	reads := 0
	for _, r := range f.ual {
		if r["Operation"] != "MailItemsAccessed" || str(r, "ClientAppId") != app {
			if str(r, "ClientIPAddress") == ip || str(r, "ClientIP") == ip {
				t.Fatalf("record %s (%s) from the backup app's address", str(r, "Id"), r["Operation"])
			}
			continue
		}
		reads++
		if str(r, "UserId") != app || str(r, "ClientIPAddress") != ip || str(r, "AppAccessContext", "AADSessionId") != "" {
			t.Fatalf("backup read %s: user %s, ip %s, session %q", str(r, "Id"), str(r, "UserId"), str(r, "ClientIPAddress"), str(r, "AppAccessContext", "AADSessionId"))
		}
		d := str(r, "CreationTime")[:10]
		if d < firstDay {
			t.Fatalf("backup read %s on %s, before the first backup day %s", str(r, "Id"), d, firstDay)
		}
		if perDay[d] == nil {
			perDay[d] = map[string]bool{}
		}
		perDay[d][str(r, "MailboxOwnerUPN")] = true
	}
	if reads != c.MailReads || reads == 0 {
		t.Errorf("truth mail_reads %d, records %d", c.MailReads, reads)
	}
	mailboxes := f.truth.Tenant.Users + len(f.truth.Tenant.SharedMailboxes)
	start, _ := time.Parse("2006-01-02", firstDay)
	for d := start; d.Before(f.truth.End); d = d.Add(24 * time.Hour) {
		// a throttled mailbox may be silent for a day; every other one is read
		if n := len(perDay[d.Format("2006-01-02")]); n < mailboxes-2 {
			t.Errorf("%s: the backup app read %d of %d mailboxes", d.Format("2006-01-02"), n, mailboxes)
		}
	}
	// the app's ASN is its own
	for _, s := range f.si {
		if asnOf(t, nt, str(s, "ipAddress")) == c.ASNs[0] && str(s, "appId") != app {
			t.Fatalf("sign-in %s by %s from the backup app's ASN", str(s, "id"), str(s, "appId"))
		}
	}
}

// TestForgedCommonApp checks the forged-token campaign that claims a
// common first-party client: its client app id is one many benign records
// carry, none of its tokens or sessions has a sign-in, and it moves to a
// new hosting/VPN address on each active day with new tokens, while truth
// keeps it one intrusion.
func TestForgedCommonApp(t *testing.T) {
	f := getFixture(t)
	c := campaign(t, f.truth, CampaignForgedCommonApp)
	if c.IntrusionID == "" || len(c.Actor.ClientAppIDs) != 1 || c.Actor.ClientAppIDs[0] != appOffice.ID {
		t.Fatalf("intrusion %q, client apps %v", c.IntrusionID, c.Actor.ClientAppIDs)
	}
	for _, o := range f.truth.Campaigns {
		if o.Name != c.Name && o.IntrusionID == c.IntrusionID {
			t.Fatalf("intrusion id %s shared with %s", c.IntrusionID, o.Name)
		}
	}
	bad := maliciousIDs(f.truth)
	common := 0
	for _, r := range f.ual {
		if r["Operation"] == "MailItemsAccessed" && str(r, "ClientAppId") == appOffice.ID && bad["m365.ual/"+str(r, "Id")] == "" {
			common++
		}
	}
	if common < 1000 {
		t.Fatalf("only %d benign reads carry the claimed client app id: not a common one", common)
	}
	x := indexSignIns(f.si)
	nt := loadNets(t, f.dir)
	ual := map[string]map[string]any{}
	for _, r := range f.ual {
		ual[str(r, "Id")] = r
	}
	ipsByDay, toksByDay := map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, ref := range c.Records {
		r := ual[ref.ID]
		if r == nil || r["Operation"] != "MailItemsAccessed" {
			t.Fatalf("campaign record %s: %v", ref.ID, r["Operation"])
		}
		tok, sess := str(r, "AppAccessContext", "UniqueTokenId"), str(r, "AppAccessContext", "AADSessionId")
		if _, ok := x.tokens[tok]; ok || len(x.sessions[sess]) > 0 || !slices.Contains(c.Actor.TokensWithoutSignIn, tok) {
			t.Fatalf("record %s: token %s / session %s is linked to a sign-in or not listed as forged", ref.ID, tok, sess)
		}
		if str(r, "AppId") != appOffice.ID || str(r, "ClientInfoString") != "Client=MSExchangeRPC" {
			t.Errorf("record %s: AppId %s, ClientInfoString %q: want the claimed client's", ref.ID, str(r, "AppId"), str(r, "ClientInfoString"))
		}
		e, _ := nt.Lookup(parseAddr(str(r, "ClientIPAddress")))
		if e.Kind != netinfo.KindHosting && e.Kind != netinfo.KindVPN {
			t.Errorf("record %s from a %s network", ref.ID, e.Kind)
		}
		d := ref.Time.Format("2006-01-02")
		if ipsByDay[d] == nil {
			ipsByDay[d], toksByDay[d] = map[string]bool{}, map[string]bool{}
		}
		ipsByDay[d][str(r, "ClientIPAddress")] = true
		toksByDay[d][tok] = true
	}
	if len(ipsByDay) < 2 {
		t.Fatalf("active on %d days", len(ipsByDay))
	}
	seenIP, seenTok := map[string]string{}, map[string]string{}
	for d, ips := range ipsByDay {
		if len(ips) != 1 {
			t.Errorf("%s: %d addresses, want one per day", d, len(ips))
		}
		for ip := range ips {
			if o, ok := seenIP[ip]; ok {
				t.Errorf("address %s used on %s and %s: want a new one each day", ip, o, d)
			}
			seenIP[ip] = d
		}
		for tok := range toksByDay[d] {
			if o, ok := seenTok[tok]; ok {
				t.Errorf("token %s used on %s and %s", tok, o, d)
			}
			seenTok[tok] = d
		}
	}
	n := 0
	for _, imp := range c.Impact {
		n += len(imp.MessageIDs)
	}
	if n == 0 || n != c.MessagesRead {
		t.Errorf("messages_read %d, impact lists %d", c.MessagesRead, n)
	}
}

// TestCampaignsKeepApart: with enough VIPs the two forged-token campaigns
// read different mailboxes, so each intrusion's impact is its own; with
// more than one admin, the consent-phish victim is not the admin who
// consents to the sanctioned backup app.
func TestCampaignsKeepApart(t *testing.T) {
	for _, seed := range []uint64{1, 8, 14} { // 8 and 14: a random pick would choose the same admin
		tr, err := Run(context.Background(), Config{Users: 200, Days: 2, Seed: seed, NoWorkspace: true,
			Campaigns:   []string{CampaignForgedToken, CampaignForgedCommonApp, CampaignConsentPhish},
			Confounders: []string{ConfSanctionedApp},
			Params: map[string]map[string]string{CampaignForgedToken: {"start-day": "0"}, CampaignForgedCommonApp: {"start-day": "0"},
				CampaignConsentPhish: {"start-day": "0", "mailboxes": "2", "reads-per-mailbox": "2", "bulk-mailboxes": "0"}}}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		a, b := campaign(t, tr, CampaignForgedToken), campaign(t, tr, CampaignForgedCommonApp)
		if len(a.Actor.Users) == 0 || len(b.Actor.Users) == 0 {
			t.Fatalf("seed %d: victims %v / %v", seed, a.Actor.Users, b.Actor.Users)
		}
		for _, u := range b.Actor.Users {
			if slices.Contains(a.Actor.Users, u) {
				t.Fatalf("seed %d: both campaigns read %s though %d VIPs exist", seed, u, len(tr.Tenant.VIPs))
			}
		}
		if len(tr.Tenant.Admins) < 2 {
			t.Fatalf("seed %d: %d admins", seed, len(tr.Tenant.Admins))
		}
		if v, adm := campaign(t, tr, CampaignConsentPhish).Params["victim"], confounder(t, tr, ConfSanctionedApp).Users[0]; v == adm {
			t.Fatalf("seed %d: the consent-phish victim %s is the sanctioned app's admin", seed, v)
		}
	}
}

// TestCloudPC checks the cloud-PC confounder: the users' reads from the
// cloud PCs' hosting ASN (new to the tenant) are theirs, after the move,
// linked to sign-ins from the same address, and each user signed in
// interactively with MFA on the new device first.
func TestCloudPC(t *testing.T) {
	f := getFixture(t)
	c := confounder(t, f.truth, ConfCloudPC)
	if len(c.Users) < 2 || len(c.ASNs) != 1 || c.Expect != ExpectNoIncident {
		t.Fatalf("truth: users %v, asns %v, expect %q", c.Users, c.ASNs, c.Expect)
	}
	nt := loadNets(t, f.dir)
	from := map[string]time.Time{}
	for _, u := range c.Users {
		tt, err := time.Parse(time.RFC3339, c.Details[u])
		if err != nil {
			t.Fatalf("user %s: move time %q", u, c.Details[u])
		}
		from[strings.ToLower(u)] = tt
	}
	x := indexSignIns(f.si)
	firstMFA := map[string]time.Time{}
	trail := map[string]bool{}
	for _, r := range c.Records {
		trail[r.ID] = true
	}
	for _, s := range f.si {
		if asnOf(t, nt, str(s, "ipAddress")) != c.ASNs[0] {
			continue
		}
		u := strings.ToLower(str(s, "userPrincipalName"))
		ct, _ := time.Parse(layoutGraph, str(s, "createdDateTime"))
		if _, ok := from[u]; !ok || ct.Before(from[u]) {
			t.Fatalf("sign-in %s by %q at %s from the cloud PCs' ASN", str(s, "id"), u, ct)
		}
		if s["isInteractive"] == true {
			if str(s, "authenticationRequirement") != "multiFactorAuthentication" || str(s, "deviceDetail", "deviceId") == "" {
				t.Errorf("cloud PC sign-in %s: %s on device %q", str(s, "id"), str(s, "authenticationRequirement"), str(s, "deviceDetail", "deviceId"))
			}
			mailClient := slices.Contains([]string{appOffice.ID, appOWA.ID, appNewOutlook.ID, appMobile.ID}, str(s, "appId"))
			for _, a := range f.truth.Tenant.ThirdPartyMailApps {
				mailClient = mailClient || a.ID == str(s, "appId")
			}
			if mailClient && !trail[str(s, "id")] {
				t.Errorf("interactive cloud PC sign-in %s not in truth records", str(s, "id"))
			}
			if ft, ok := firstMFA[u]; !ok || ct.Before(ft) {
				firstMFA[u] = ct
			}
		}
	}
	readers := map[string]bool{}
	for _, r := range f.ual {
		if r["Operation"] != "MailItemsAccessed" || asnOf(t, nt, str(r, "ClientIPAddress")) != c.ASNs[0] {
			continue
		}
		u := strings.ToLower(str(r, "UserId"))
		ct := recTime(t, r, "CreationTime", layoutUAL)
		mfa, ok := firstMFA[u]
		if !ok || ct.Before(mfa) {
			t.Fatalf("read %s by %s at %s from the cloud PC before any MFA sign-in there", str(r, "Id"), u, ct)
		}
		tok := str(r, "AppAccessContext", "UniqueTokenId")
		s, ok := x.tokens[tok]
		if !ok {
			if slices.Contains(confounder(t, f.truth, ConfUnlinkedTokens).TokensWithoutSignIn, tok) {
				continue // a benign unlinked read, listed there
			}
			t.Fatalf("cloud PC read %s: token %s has no sign-in", str(r, "Id"), tok)
		}
		if str(s, "ipAddress") != str(r, "ClientIPAddress") {
			t.Errorf("cloud PC read %s from %s with a token issued to %s", str(r, "Id"), str(r, "ClientIPAddress"), str(s, "ipAddress"))
		}
		readers[u] = true
	}
	if len(readers) < len(c.Users)/2+1 {
		t.Errorf("%d of %d cloud PC users read mail from it", len(readers), len(c.Users))
	}
	// nobody used the ASN before the first move
	for _, s := range f.si {
		ct, _ := time.Parse(layoutGraph, str(s, "createdDateTime"))
		if ct.Before(c.Start) && asnOf(t, nt, str(s, "ipAddress")) == c.ASNs[0] {
			t.Fatalf("sign-in %s from the cloud PCs' ASN before the first move", str(s, "id"))
		}
	}
}
