package simulate

import (
	"sort"
	"time"
)

func tm(t int64) time.Time { return time.Unix(0, t).UTC() }

// setupConfounders sets the world changes and plans the benign activity
// that must not become incidents.
func (s *sim) setupConfounders() error {
	s.vpnSwitch, s.rolloutStart, s.rolloutEnd = never, never, never
	s.travel = map[*User]travelPlan{}
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
		si := &signIn{t: t0, id: g.id(), corr: g.id(), user: u, app: app, resource: &resGraph, ip: uip, net: n, dev: u.desktop, ua: u.desktop.ua,
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
	err := b.read(r.t, r.mb, newRNG(s.t.seed, 0x6261636c, uint64(r.t), uint64(r.mb.index)), false)(s)
	if b.i >= len(b.night) {
		b.plan(s)
	}
	return err
}

// plan moves to the next night: each mailbox every third night,
// 01:00–05:00 UTC.
func (b *backupStream) plan(s *sim) {
	b.night, b.i = b.night[:0], 0
	for b.d++; b.d < s.cfg.Days; b.d++ {
		for _, mb := range s.t.Mailboxes {
			if (mb.index+b.d)%3 != 0 {
				continue
			}
			rg := newRNG(s.t.seed, 0x6261636b, uint64(b.d), uint64(mb.index))
			base := s.dayStart(b.d) + hour + int64(rg.intn(4*3600))*second
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
