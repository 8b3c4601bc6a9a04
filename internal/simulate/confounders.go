package simulate

import (
	"sort"
	"strconv"
	"time"
)

func tm(t int64) time.Time { return time.Unix(0, t).UTC() }

// setupConfounders sets the world changes and plans the benign activity
// that must not become incidents.
func (s *sim) setupConfounders() error {
	s.vpnSwitch, s.rolloutStart, s.rolloutEnd = never, never, never
	s.travel = map[*User]travelPlan{}
	s.cloudPC = map[*User]*cloudPC{}
	g := newRNG(s.t.seed, strKey("confounders"))
	days := int64(s.cfg.Days)
	for _, name := range s.cfg.Confounders {
		switch name {
		case ConfOutlookRollout:
			s.rolloutStart = s.start + (days/2)*day + 6*hour
			s.rolloutEnd = min(s.end, s.rolloutStart+5*day)
			var users []string
			for _, u := range s.t.Users {
				if u.client == clientOutlookDesktop {
					users = append(users, u.UPN)
				}
			}
			s.confs = append(s.confs, &Confounder{Name: name, Description: "the new Outlook for Windows replaces classic Outlook: every classic Outlook user's mail access moves to a new client app id and ClientInfoString over the roll-out window",
				Start: tm(s.rolloutStart), End: tm(s.rolloutEnd), Users: users, AppIDs: []string{appOffice.ID, appNewOutlook.ID},
				Details: map[string]string{"old_client_app_id": appOffice.ID, "new_client_app_id": appNewOutlook.ID, "new_client_info_string": "Client=OWA;Action=ViaProxy;Monarch"}})
		case ConfVPNEgress:
			s.vpnSwitch = s.start + (days*3/5)*day + 2*hour
			old, nw := s.t.net["vpn-corp-old"], s.t.net["vpn-corp-new"]
			var users []string
			for _, u := range s.t.Users {
				if u.vpn {
					users = append(users, u.UPN)
				}
			}
			s.confs = append(s.confs, &Confounder{Name: name, Description: "the corporate secure-access egress moves to a new prefix and ASN; remote users on the VPN appear from it, with matching sign-ins",
				Start: tm(s.vpnSwitch), End: tm(s.end), Users: users, Prefixes: []string{old.entry.Prefix.String(), nw.entry.Prefix.String()}, ASNs: []uint32{old.entry.ASN, nw.entry.ASN}})
		case ConfTravel:
			dests := []string{"isp-fr-orange", "isp-sg-singtel", "isp-jp-ntt", "isp-es-telefonica", "isp-ae-etisalat"}
			n := max(1, len(s.t.Users)/50)
			c := &Confounder{Name: name, Description: "users travel abroad for a few days and work from hotel networks, signing in normally (mobile data still egresses through the home carrier)", Start: tm(never - 1), Details: map[string]string{}}
			for _, i := range permute(g, len(s.t.Users))[:n] {
				u := s.t.Users[i]
				dn := s.t.net[dests[g.intn(len(dests))]]
				from := s.start + (days/3+int64(g.intn(int(max(1, days/2)))))*day + int64(g.intn(24))*hour
				to := min(s.end, from+int64(g.between(3, 6))*day)
				if from >= s.end {
					continue
				}
				tp := travelPlan{from: from, to: to, net: dn, key: g.u64()}
				s.travel[u] = tp
				c.Users = append(c.Users, u.UPN)
				c.IPs = append(c.IPs, dn.host(tp.key).String())
				c.Details[u.UPN] = dn.entry.Country + " " + tm(from).Format(time.RFC3339) + "/" + tm(to).Format(time.RFC3339)
				if tm(from).Before(c.Start) {
					c.Start = tm(from)
				}
				if tm(to).After(c.End) {
					c.End = tm(to)
				}
			}
			sort.Strings(c.IPs)
			if len(c.Users) == 0 {
				c.Start, c.End = tm(s.start), tm(s.start)
			}
			s.confs = append(s.confs, c)
		case ConfBackupTool:
			sc, c := s.setupBackup(g)
			s.add(sc)
			s.confs = append(s.confs, c)
		case ConfNewSaaSApp:
			sc, c := s.setupSaaS(g)
			s.add(sc)
			s.confs = append(s.confs, c)
		case ConfUnlinkedTokens:
			c := &Confounder{Name: name, Description: "benign mail reads whose tokens have no sign-in record: Entra aggregates and samples non-interactive sign-ins (a refresh is missing from the log though its session is there), and some sessions (refresh-token redemptions, first-party flows) leave no sign-in at all; the reads come from the users' own networks, devices, clients and apps",
				Start: tm(s.start), End: tm(s.end), Details: map[string]string{
					"sessions_without_sign_in_per_mille": itoa(unlinkedSessionPerMille),
					"refresh_sign_ins_missing_per_mille": itoa(droppedRefreshPerMille),
				}}
			s.unl = &unlinkedState{conf: c, tokens: set{}, sessions: set{}, users: set{}}
			s.confs = append(s.confs, c)
		case ConfSanctionedApp:
			sc, c := s.setupSanctionedApp(g)
			s.add(sc)
			s.confs = append(s.confs, c)
		case ConfCloudPC:
			s.confs = append(s.confs, s.setupCloudPC(g))
		}
	}
	return nil
}

// setupBackup plans the backup tool: a long-standing service principal
// reading every mailbox incrementally each night (app-only Graph), one
// full backup that trips Exchange's throttling, and a routine credential
// rotation by an admin.
func (s *sim) setupBackup(g rng) (*script, *Confounder) {
	app := &s.t.Backup
	net := s.t.net["host-azure"]
	ip := net.host(strKey(app.ID))
	sc := &script{}
	admin := s.t.Users[0]
	for _, u := range s.t.Users {
		if u.Admin {
			admin = u
			break
		}
	}
	c := &Confounder{Name: ConfBackupTool, Description: "a consented backup service reads mailboxes nightly with app-only Graph tokens from a hosting network; one full backup is throttled; an admin rotates its credential",
		Start: tm(s.start), End: tm(s.end), AppIDs: []string{app.ID, resGraph.ID}, IPs: []string{ip.String()}, ASNs: []uint32{net.entry.ASN},
		Users: []string{admin.UPN}, Details: map[string]string{"service_principal_id": app.ServicePrincipalID}}
	tok := &access{appID: resGraph.ID, clientAppID: app.ID, ip: ip, clientInfo: "Client=REST;;"}
	var exp int64
	read := func(t int64, mb *Mailbox, rg rng, full bool) func(s *sim) error {
		return func(s *sim) error {
			if t >= exp {
				si := &signIn{t: t, id: rg.id(), corr: rg.id(), sp: app, app: app, resource: &resGraph, ip: ip, net: net, token: rg.id(), credential: "clientAssertion", incoming: "none"}
				tok.token, tok.issued = si.token, t
				exp = t + 60*minute
				if err := s.emitSignIn(si, nil); err != nil {
					return err
				}
			}
			f := rg.intn(len(folderPaths))
			hi := s.t.latest(mb, f, t)
			var its []int
			k := 1 + rg.intn(8)
			if full {
				k = 20
			}
			for i := 0; i < k; i++ {
				n := hi - i
				if full {
					n = hi - rg.intn(2000)
				}
				its = appendUnique(its, max(0, n))
			}
			aa := *tok
			return s.mailAccess(t+second, rg.id(), appActor(app), mb, 0, &aa, false, []folderRead{{folder: f, items: its}}, nil)
		}
	}
	bs := &backupStream{read: read, d: -1}
	bs.plan(s)
	s.add(bs)
	// the full backup of the first shared mailbox on the first night
	if len(s.t.Shared) > 0 {
		mb := s.t.Shared[0]
		base := s.start + 90*minute
		n := s.cfg.ThrottleLimit + 40
		for k := 0; k < n; k++ {
			t := base + int64(k)*10*second
			sc.at(t, read(t, mb, newRNG(s.t.seed, 0x66756c6c, uint64(k)), true))
		}
		c.Mailboxes = []string{mb.UPN}
		c.Details["full_backup_mailbox"] = mb.UPN
		c.Details["full_backup_start"] = tm(base).Format(time.RFC3339)
	}
	rot := s.start + 3*hour + 17*minute
	if s.cfg.Days > 2 {
		rot = s.start + 2*day + 15*hour
	}
	sc.at(rot, func(s *sim) error {
		id := g.id()
		s.reset()
		s.directoryAudit(&s.w, rot, id, "Add service principal credentials.", admin, app, [][3]string{
			{"KeyDescription", `["[KeyIdentifier=` + guid(g.id()) + `,KeyType=AsymmetricX509Cert,KeyUsage=Verify,DisplayName=CN=keepwell-2026]"]`, "[]"},
			{"Included Updated Properties", "KeyDescription", ""},
		}, admin.desktop.ua)
		return s.emitUAL(rot, id, admin.UPN, "Add service principal credentials.", nil)
	})
	c.Details["credential_rotation"] = tm(rot).Format(time.RFC3339)
	sc.sort()
	return sc, c
}

// setupSaaS plans a user consenting to a new scheduling app that then
// reads that user's mail through Graph from its vendor's cloud.
func (s *sim) setupSaaS(g rng) (*script, *Confounder) {
	app := &App{ID: guid(g.id()), DisplayName: "Slotwise Scheduling", ServicePrincipalID: guid(g.id())}
	u := s.t.Users[g.intn(len(s.t.Users))]
	for tries := 0; (u.VIP || u.Admin) && tries < 100; tries++ {
		u = s.t.Users[g.intn(len(s.t.Users))]
	}
	d := s.weekday(int(int64(s.cfg.Days) * 55 / 100))
	t0 := s.dayStart(d) - u.tzOffset + 11*hour + int64(g.intn(120))*minute
	net := s.t.net["host-azure"]
	ip := net.host(strKey(app.ID))
	c := &Confounder{Name: ConfNewSaaSApp, Description: "a user consents to a new scheduling app (delegated Mail.Read) which then reads that user's mailbox through Graph from its vendor's cloud",
		Start: tm(t0), End: tm(s.end), Users: []string{u.UPN}, AppIDs: []string{app.ID}, IPs: []string{ip.String()}, ASNs: []uint32{net.entry.ASN}, Mailboxes: []string{u.UPN},
		Details: map[string]string{"service_principal_id": app.ServicePrincipalID}}
	sc := &script{}
	sess := g.id()
	sc.at(t0, func(s *sim) error {
		n, uip := s.where(u, t0, false)
		si := &signIn{t: t0, id: g.id(), corr: g.id(), user: u, app: app, resource: &resGraph, ip: uip, net: n, dev: s.desktopAt(u, t0), ua: s.desktopAt(u, t0).ua,
			interactive: true, session: sess, token: g.id(), clientApp: "Browser", incoming: "none"}
		return s.emitSignIn(si, nil)
	})
	t1 := t0 + 40*second
	sc.at(t1, func(s *sim) error {
		id := g.id()
		s.reset()
		s.directoryAudit(&s.w, t1, id, "Add service principal.", u, app, [][3]string{{"AppPrincipalId", `["` + app.ID + `"]`, "[]"}, {"DisplayName", `["` + app.DisplayName + `"]`, "[]"}}, u.desktop.ua)
		return s.emitUAL(t1, id, u.UPN, "Add service principal.", nil)
	})
	t2 := t1 + 2*second
	sc.at(t2, func(s *sim) error {
		id := g.id()
		s.reset()
		s.directoryAudit(&s.w, t2, id, "Consent to application.", u, app, consentProps(s, app, false, "Mail.Read Calendars.ReadWrite offline_access"), u.desktop.ua)
		return s.emitUAL(t2, id, u.UPN, "Consent to application.", nil)
	})
	// hourly delegated reads on weekdays during the user's day
	dev := device{os: "", browser: "", ua: "Slotwise-Sync/3.1"}
	for t := t2 + 20*minute; t < s.end; t += hour {
		local := time.Unix(0, t+u.tzOffset).UTC()
		if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday || local.Hour() < 7 || local.Hour() > 19 {
			continue
		}
		tt := t
		rg := newRNG(s.t.seed, 0x73616173, uint64(t))
		sc.at(tt, func(s *sim) error {
			si := &signIn{t: tt, id: rg.id(), corr: rg.id(), user: u, app: app, resource: &resGraph, ip: ip, net: net, dev: dev, ua: dev.ua,
				session: sess, token: rg.id(), clientApp: "Mobile Apps and Desktop clients", incoming: "refreshToken"}
			if err := s.emitSignIn(si, nil); err != nil {
				return err
			}
			a := access{appID: resGraph.ID, clientAppID: app.ID, ip: ip, clientInfo: "Client=REST;;", session: sess, token: si.token, issued: tt}
			hi := s.t.latest(u.mailbox, 0, tt)
			var its []int
			for k := 0; k < 3; k++ {
				its = appendUnique(its, max(0, hi-k))
			}
			return s.mailAccess(tt+2*second, rg.id(), userActor(u), u.mailbox, 0, &a, false, []folderRead{{folder: 0, items: its}}, nil)
		})
	}
	return sc, c
}

// backupStream plans the backup tool's nightly incremental reads one night
// at a time, so memory does not grow with the number of days.
type backupStream struct {
	read  func(t int64, mb *Mailbox, rg rng, full bool) func(s *sim) error
	d     int
	night []backupRead
	i     int
	// every reads each mailbox every n-th night (0: every third); salt
	// keys the stream's randomness (0: the backup tool's); hour is when
	// the night's window (four hours) opens, UTC (0: 01:00).
	every int
	salt  uint64
	hour  int64
}

type backupRead struct {
	t  int64
	mb *Mailbox
}

func (b *backupStream) next() int64 {
	if b.i < len(b.night) {
		return b.night[b.i].t
	}
	return never
}

func (b *backupStream) step(s *sim) error {
	r := b.night[b.i]
	b.i++
	salt := uint64(0x6261636c)
	if b.salt != 0 {
		salt = b.salt + 1
	}
	err := b.read(r.t, r.mb, newRNG(s.t.seed, salt, uint64(r.t), uint64(r.mb.index)), false)(s)
	if b.i >= len(b.night) {
		b.plan(s)
	}
	return err
}

// plan moves to the next night: each mailbox every third night (or
// every b.every nights), 01:00–05:00 UTC (or from b.hour).
func (b *backupStream) plan(s *sim) {
	b.night, b.i = b.night[:0], 0
	every, salt, h0 := 3, uint64(0x6261636b), int64(1)
	if b.every > 0 {
		every = b.every
	}
	if b.salt != 0 {
		salt = b.salt
	}
	if b.hour > 0 {
		h0 = b.hour
	}
	for b.d++; b.d < s.cfg.Days; b.d++ {
		for _, mb := range s.t.Mailboxes {
			if (mb.index+b.d)%every != 0 {
				continue
			}
			rg := newRNG(s.t.seed, salt, uint64(b.d), uint64(mb.index))
			base := s.dayStart(b.d) + h0*hour + int64(rg.intn(4*3600))*second
			for k, n := 0, rg.between(1, 3); k < n; k++ {
				b.night = append(b.night, backupRead{t: base + int64(k)*int64(rg.between(5, 90))*second, mb: mb})
			}
		}
		if len(b.night) > 0 {
			sort.SliceStable(b.night, func(i, j int) bool { return b.night[i].t < b.night[j].t })
			return
		}
	}
}

// Shares of benign activity whose tokens have no sign-in record
// (unlinked-tokens): user sessions with no sign-in at all, and refresh
// sign-ins missing from the log. Together about 3.5 % of benign
// MailItemsAccessed records.
const (
	unlinkedSessionPerMille = 12
	droppedRefreshPerMille  = 25
)

// unlinkedState accumulates the unlinked-tokens truth during the run.
type unlinkedState struct {
	conf                    *Confounder
	tokens, sessions, users set
	reads                   int
}

// finish writes the accumulated truth into the confounder.
func (u *unlinkedState) finish(benignReads int) {
	c := u.conf
	c.Users = u.users.sorted()
	c.SessionIDs = u.sessions.sorted()
	c.TokensWithoutSignIn = u.tokens.sorted()
	c.MailReads = u.reads
	c.Details["benign_mail_reads"] = itoa(benignReads)
	if benignReads > 0 {
		c.Details["unlinked_share_of_benign_mail_reads"] = strconv.FormatFloat(float64(u.reads)/float64(benignReads), 'f', 4, 64)
	}
}

// cloudPC is one user's move to a cloud PC: from then on every desktop
// session runs on it, egressing from the provider's hosting network.
type cloudPC struct {
	from     int64
	net      *network
	key      uint64
	dev      device
	signedIn [numClients]bool // a client has signed in interactively on the cloud PC
}

// desktopAt is the computer u works on at t: the cloud PC once u has one.
func (s *sim) desktopAt(u *User, t int64) device {
	if cp := s.cloudPCAt(u, t); cp != nil {
		return cp.dev
	}
	return u.desktop
}

// cloudPCAt returns u's cloud PC if u works on one at t.
func (s *sim) cloudPCAt(u *User, t int64) *cloudPC {
	if len(s.cloudPC) == 0 {
		return nil
	}
	if cp := s.cloudPC[u]; cp != nil && t >= cp.from {
		return cp
	}
	return nil
}

// setupCloudPC moves a few users (US first: the cloud PCs are provisioned
// in a US region) to cloud PCs from before the campaigns start. Each
// client signs in interactively with MFA on the new device, and its
// tokens are refreshed from there as usual.
func (s *sim) setupCloudPC(g rng) *Confounder {
	n := max(2, len(s.t.Users)*3/100)
	net := s.t.net["host-cloudpc"]
	c := &Confounder{Name: ConfCloudPC, Description: "users move to cloud PCs (a hosted-desktop service such as Windows 365) that egress from a hosting ASN nobody in the tenant used before; each client signs in interactively with MFA on the new device, so their reads are linked to sign-ins",
		Start: tm(s.end), End: tm(s.end), Prefixes: []string{net.entry.Prefix.String()}, ASNs: []uint32{net.entry.ASN}, Details: map[string]string{}}
	var us []*User
	for _, i := range permute(g, len(s.t.Users)) {
		if u := s.t.Users[i]; u.Country == "US" {
			us = append(us, u)
		}
	}
	for _, i := range permute(g, len(s.t.Users)) {
		if u := s.t.Users[i]; u.Country != "US" {
			us = append(us, u)
		}
	}
	d := s.weekday(int(int64(s.cfg.Days) * 45 / 100))
	ips := set{}
	for _, u := range us[:min(n, len(us))] {
		from := s.dayStart(d) - u.tzOffset + 6*hour
		if from < s.start {
			from = s.start
		}
		if from >= s.end {
			continue
		}
		dev := device{id: g.id(), os: "Windows10", browser: "Edge 131.0.2903", trust: "Azure AD joined", managed: true,
			ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86"}
		cp := &cloudPC{from: from, net: net, key: g.u64(), dev: dev}
		s.cloudPC[u] = cp
		c.Users = append(c.Users, u.UPN)
		ips.add(net.host(cp.key).String())
		c.Details[u.UPN] = tm(from).Format(time.RFC3339)
		if tm(from).Before(c.Start) {
			c.Start = tm(from)
		}
	}
	sort.Strings(c.Users)
	c.IPs = ips.sorted()
	s.cloudPCConf = c
	return c
}

// Permissions a mailbox backup product is granted (application
// permissions: the app role ids are those of the Exchange Online and
// Microsoft Graph service principals).
var backupAppRoles = []struct {
	res                *App
	id, value, display string
}{
	{&resExchange, "dc890d15-9560-4a4c-9b7f-a736ec74ec40", "full_access_as_app", "Use Exchange Web Services with full access to all mailboxes"},
	{&resGraph, "810c84a8-4a9e-49e6-bf7d-12d183f40d01", "Mail.Read", "Read mail in all mailboxes"},
}

var (
	appAzurePortal = App{ID: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", DisplayName: "Azure Portal", FirstParty: true}
	resAzureMgmt   = App{ID: "797f4846-ba00-4fd7-ba43-dac1f8f63013", DisplayName: "Windows Azure Service Management API", FirstParty: true}
)

// setupSanctionedApp plans a sanctioned backup product: an admin signs in
// to the portal from a familiar network and grants it tenant-wide
// application permissions (the directory audit trail: Add service
// principal, Add app role assignment to service principal for
// full_access_as_app and Mail.Read, Consent to application with admin
// consent); from the next night it reads every mailbox daily, app-only,
// from one address in its vendor's cloud.
func (s *sim) setupSanctionedApp(g rng) (*script, *Confounder) {
	app := &App{ID: guid(g.id()), DisplayName: "Arkive Cloud Backup", ServicePrincipalID: guid(g.id())}
	var admins []*User
	for _, u := range s.t.Users {
		if u.Admin {
			admins = append(admins, u)
		}
	}
	if len(admins) == 0 {
		admins = s.t.Users[:1]
	}
	admin := admins[len(admins)-1]
	s.sanctionedAdmin = admin
	d := s.weekday(int(int64(s.cfg.Days) * 35 / 100))
	t0 := s.dayStart(d) - admin.tzOffset + 10*hour + int64(g.intn(150))*minute
	net := s.t.net["host-gcp"]
	ip := net.host(strKey(app.ID))
	c := &Confounder{Name: ConfSanctionedApp, Expect: ExpectNotice,
		Description: "an admin, signed in from a familiar network, grants a backup product tenant-wide application permissions (full_access_as_app, Mail.Read) with admin consent; the app then reads every mailbox daily, app-only, from one address in its vendor's cloud",
		Start:       tm(t0), End: tm(s.end), Users: []string{admin.UPN}, AppIDs: []string{app.ID}, IPs: []string{ip.String()},
		Prefixes: []string{net.entry.Prefix.String()}, ASNs: []uint32{net.entry.ASN},
		Details: map[string]string{"service_principal_id": app.ServicePrincipalID, "display_name": app.DisplayName, "admin": admin.UPN,
			"permissions": "full_access_as_app (Office 365 Exchange Online), Mail.Read (Microsoft Graph): application"}}
	sc := &script{}
	sc.at(t0, func(s *sim) error {
		n, aip := s.where(admin, t0, false)
		c.Details["admin_ip"] = aip.String()
		si := &signIn{t: t0, id: g.id(), corr: g.id(), user: admin, app: &appAzurePortal, resource: &resAzureMgmt, ip: aip, net: n, dev: s.desktopAt(admin, t0), ua: s.desktopAt(admin, t0).ua,
			interactive: true, session: g.id(), token: g.id(), clientApp: "Browser", incoming: "none"}
		c.Records = append(c.Records, RecordRef{Source: "entra.signin", ID: guid(si.id), Time: tm(t0), Operation: "signIn"},
			RecordRef{Source: "m365.ual", ID: guid(si.id), Time: tm(t0), Operation: "UserLoggedIn"})
		return s.emitSignIn(si, nil)
	})
	audit := func(t int64, op string, target *App, props [][3]string) {
		sc.at(t, func(s *sim) error {
			id := g.id()
			s.reset()
			s.directoryAudit(&s.w, t, id, op, admin, target, props, admin.desktop.ua)
			c.Records = append(c.Records, RecordRef{Source: "m365.ual", ID: guid(id), Time: tm(t), Operation: op})
			return s.emitUAL(t, id, admin.UPN, op, nil)
		})
	}
	t1 := t0 + int64(g.between(60, 240))*second
	audit(t1, "Add service principal.", app, [][3]string{
		{"AccountEnabled", "[true]", "[]"}, {"AppPrincipalId", `["` + app.ID + `"]`, "[]"}, {"DisplayName", `["` + app.DisplayName + `"]`, "[]"},
		{"ServicePrincipalType", `["Application"]`, "[]"}, {"Included Updated Properties", "AccountEnabled, AppPrincipalId, DisplayName, ServicePrincipalType", ""},
	})
	t := t1
	for _, r := range backupAppRoles {
		t += int64(g.between(2, 5)) * second
		res := &App{ID: r.res.ID, DisplayName: r.res.DisplayName, ServicePrincipalID: s.resourceSP(r.res), FirstParty: true}
		created := tm(t).Format("2006-01-02T15:04:05.0000000Z")
		audit(t, "Add app role assignment to service principal.", res, [][3]string{
			{"AppRole.Id", r.id, ""}, {"AppRole.Value", r.value, ""}, {"AppRole.DisplayName", r.display, ""},
			{"AppRoleAssignment.CreatedDateTime", created, ""}, {"AppRoleAssignment.LastModifiedDateTime", created, ""},
			{"ServicePrincipal.ObjectID", app.ServicePrincipalID, ""}, {"ServicePrincipal.DisplayName", app.DisplayName, ""},
			{"ServicePrincipal.AppId", app.ID, ""}, {"ServicePrincipal.Name", app.DisplayName, ""},
			{"TargetId.ServicePrincipalNames", r.res.ID, ""},
			{"Included Updated Properties", "AppRole.Id, AppRole.Value, AppRole.DisplayName, AppRoleAssignment.CreatedDateTime, AppRoleAssignment.LastModifiedDateTime, ServicePrincipal.ObjectID, ServicePrincipal.DisplayName, ServicePrincipal.AppId, ServicePrincipal.Name", ""},
		})
	}
	t += int64(g.between(2, 5)) * second
	audit(t, "Consent to application.", app, consentProps(s, app, true, "Mail.Read"))
	c.Details["consent_time"] = tm(t).Format(time.RFC3339)
	// daily backups of every mailbox from the next night on
	tok := &access{appID: resGraph.ID, clientAppID: app.ID, ip: ip, clientInfo: "Client=REST;;"}
	var exp int64
	read := func(t int64, mb *Mailbox, rg rng, _ bool) func(s *sim) error {
		return func(s *sim) error {
			if t >= exp {
				si := &signIn{t: t, id: rg.id(), corr: rg.id(), sp: app, app: app, resource: &resGraph, ip: ip, net: net, token: rg.id(), credential: "certificate", incoming: "none"}
				tok.token, tok.issued = si.token, t
				exp = t + 60*minute
				if err := s.emitSignIn(si, nil); err != nil {
					return err
				}
			}
			var reads []folderRead
			for f := range folderPaths {
				if f != 0 && !rg.chance(0.4) {
					continue
				}
				hi := s.t.latest(mb, f, t)
				var its []int
				for i, k := 0, 1+rg.intn(6); i < k; i++ {
					its = appendUnique(its, max(0, hi-i))
				}
				reads = append(reads, folderRead{folder: f, items: its})
			}
			aa := *tok
			if t+second >= s.thr[mb.index].silentUntil {
				c.MailReads++ // logged: the mailbox is not in a throttled silence
			}
			return s.mailAccess(t+second, rg.id(), appActor(app), mb, 0, &aa, false, reads, nil)
		}
	}
	bs := &backupStream{read: read, d: d, every: 1, salt: 0x61726b76, hour: 2}
	bs.plan(s)
	s.add(bs)
	c.Details["first_backup_day"] = tm(s.dayStart(d + 1)).Format("2006-01-02")
	sc.sort()
	return sc, c
}
