package simulate

import (
	"net/netip"
	"sort"
	"strings"
	"time"
)

// script is a stream of pre-planned steps (campaigns and confounders are
// small, so their plans are built up front; the steps run in time order).
type script struct {
	steps []scriptStep
	i     int
}

type scriptStep struct {
	t  int64
	fn func(s *sim) error
}

func (sc *script) at(t int64, fn func(s *sim) error) { sc.steps = append(sc.steps, scriptStep{t, fn}) }

func (sc *script) sort() {
	sort.SliceStable(sc.steps, func(i, j int) bool { return sc.steps[i].t < sc.steps[j].t })
}

func (sc *script) next() int64 {
	if sc.i < len(sc.steps) {
		return sc.steps[sc.i].t
	}
	return never
}

func (sc *script) step(s *sim) error {
	st := sc.steps[sc.i]
	sc.i++
	return st.fn(s)
}

// weekday returns the first weekday at or after day index d (UTC).
func (s *sim) weekday(d int) int {
	for {
		wd := time.Unix(0, s.start+int64(d)*day).UTC().Weekday()
		if wd != time.Saturday && wd != time.Sunday {
			return d
		}
		d++
	}
}

func (s *sim) dayStart(d int) int64 { return s.start + int64(d)*day }

// pickUser returns a user chosen by param (UPN) or by filter from g.
func (s *sim) pickUser(g rng, upn string, ok func(*User) bool) (*User, error) {
	if upn != "" {
		for _, u := range s.t.Users {
			if strings.EqualFold(u.UPN, upn) {
				return u, nil
			}
		}
		return nil, configErr("no user %q in the tenant", upn)
	}
	for tries := 0; tries < 10000; tries++ {
		u := s.t.Users[g.intn(len(s.t.Users))]
		if ok(u) {
			return u, nil
		}
	}
	return s.t.Users[g.intn(len(s.t.Users))], nil
}

// attackNets are networks intruders operate from.
var attackNets = []string{"host-vultr", "vpn-m247", "host-ovh", "vpn-mullvad", "vpn-privatelayer", "host-do", "host-linode", "vpn-datacamp", "host-hetzner"}

const scriptUA = "Client=REST;Client=RESTSystem;;"

// setupForgedToken plans Storm-0558: mail read through tokens no sign-in
// issued, by a new client app, from hosting/VPN networks, 00–09 UTC on
// weekdays, against a few VIP mailboxes.
func (s *sim) setupForgedToken(c *campaignState, p params) (*script, error) {
	g := newRNG(s.t.seed, strKey(c.name))
	sd, err := p.startDay(s.cfg.Days)
	if err != nil {
		return nil, err
	}
	days, err := p.int("days", 1, 365)
	if err != nil {
		return nil, err
	}
	targets, err := p.int("targets", 1, 1000)
	if err != nil {
		return nil, err
	}
	reads, err := p.int("reads-per-day", 1, 1000)
	if err != nil {
		return nil, err
	}
	syncP, err := p.float("sync-per-day", 0, 1)
	if err != nil {
		return nil, err
	}
	items, err := p.int("items-per-read", 1, 100)
	if err != nil {
		return nil, err
	}
	vips := s.t.vips()
	if targets > len(vips) {
		targets = len(vips)
		p.m["targets"] = itoa(targets)
	}
	victims := make([]*User, 0, targets)
	for _, i := range permute(g, len(vips))[:targets] {
		victims = append(victims, vips[i])
		s.targeted[vips[i]] = true
	}
	clientApp := guid(g.id())
	nets := []*network{}
	for _, i := range permute(g, len(attackNets))[:3] {
		nets = append(nets, s.t.net[attackNets[i]])
	}
	c.clientApps.add(clientApp)
	c.apps.add(clientApp)
	c.uas.add(scriptUA)
	sc := &script{}
	d := sd
	for active := 0; active < days; d++ {
		d = s.weekday(d)
		if d >= s.cfg.Days {
			break
		}
		active++
		for _, v := range victims {
			v := v
			n := nets[g.intn(len(nets))]
			ip := s.attackerHost(c, n, &g)
			c.users.add(v.UPN)
			c.ips.add(ip.String())
			c.asns[n.entry.ASN] = true
			a := access{appID: clientApp, clientAppID: clientApp, ip: ip, clientInfo: scriptUA, session: g.id(), token: g.id()}
			c.sessions.add(guid(a.session))
			c.tokens.add(tokenID(a.token))
			c.forged.add(tokenID(a.token))
			// the actor's working hours: 00–09 UTC
			times := make([]int64, reads)
			for i := range times {
				times[i] = s.dayStart(d) + int64(g.intn(9*60))*minute + int64(g.intn(60))*second
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			a.issued = times[0] - int64(g.between(2, 20))*minute
			if a.issued < s.start {
				a.issued = s.start
			}
			for _, t := range times {
				rg := newRNG(s.t.seed, strKey(c.name), uint64(t))
				sc.at(t, func(s *sim) error {
					f := []int{0, 0, 4, 3, 1, 2}[rg.intn(6)]
					hi := s.t.latest(v.mailbox, f, t)
					var its []int
					for i := 0; i < items; i++ {
						its = appendUnique(its, max(0, hi-rg.intn(150)))
					}
					aa := a
					return s.mailAccess(t, rg.id(), userActor(v), v.mailbox, 0, &aa, false, []folderRead{{folder: f, items: its}}, c)
				})
			}
			if g.chance(syncP) {
				t := times[len(times)/2] + 30*second
				id := g.id()
				f := []int{4, 3, 2}[g.intn(3)]
				sc.at(t, func(s *sim) error {
					aa := a
					return s.mailAccess(t, id, userActor(v), v.mailbox, 0, &aa, true, []folderRead{{folder: f}}, c)
				})
			}
		}
	}
	return sc, nil
}

func permute(g rng, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := g.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// setupTokenReplay plans an adversary-in-the-middle phish: the victim
// signs in through the attacker's proxy, the stolen session is replayed
// from another network, then an inbox rule hides replies and mail is
// forwarded out.
func (s *sim) setupTokenReplay(c *campaignState, p params) (*script, error) {
	g := newRNG(s.t.seed, strKey(c.name))
	sd, err := p.startDay(s.cfg.Days)
	if err != nil {
		return nil, err
	}
	reads, err := p.int("reads", 1, 10000)
	if err != nil {
		return nil, err
	}
	hours, err := p.int("replay-hours", 1, 72)
	if err != nil {
		return nil, err
	}
	fwd := p.m["forward-to"]
	if !strings.Contains(fwd, "@") {
		return nil, configErr("token-replay parameter forward-to=%q is not an address", fwd)
	}
	v, err := s.pickUser(g, p.m["victim"], func(u *User) bool { return !u.VIP && !u.Admin && u.Country == "US" })
	if err != nil {
		return nil, err
	}
	p.m["victim"] = v.UPN
	c.users.add(v.UPN)
	d := s.weekday(sd)
	phish := s.dayStart(d) - v.tzOffset + 10*hour + int64(g.intn(120))*minute
	proxy := s.t.net["host-do"]
	replayNet := s.t.net["vpn-m247"]
	sess := g.id()
	proxyIP := s.attackerHost(c, proxy, &g)
	replayIP := s.attackerHost(c, replayNet, &g)
	c.ips.add(proxyIP.String())
	c.ips.add(replayIP.String())
	c.asns[proxy.entry.ASN] = true
	c.asns[replayNet.entry.ASN] = true
	c.sessions.add(guid(sess))
	c.apps.add(appOWA.ID)
	c.clientApps.add(appOWA.ID)
	sc := &script{}
	sc.at(phish, func(s *sim) error {
		si := &signIn{t: phish, id: g.id(), corr: g.id(), user: v, app: &appOWA, resource: &resExchange, ip: proxyIP, net: proxy,
			dev: v.desktop, ua: v.desktop.ua, interactive: true, session: sess, token: g.id(), clientApp: "Browser", incoming: "none"}
		c.tokens.add(tokenID(si.token))
		c.uas.add(si.ua)
		return s.emitSignIn(si, c)
	})
	replay := phish + int64(g.between(8, 40))*minute
	sc.at(replay, func(s *sim) error {
		m := newMailSession(s, v, plannedSession{t: replay, end: replay + int64(hours)*hour, kind: clientOWA}, g.u64())
		m.net, m.a.ip = replayNet, replayIP
		// the attacker's browser, not the victim's
		atk := desktopProfiles[1]
		atk.id = g.id()
		atk.managed = false
		atk.trust = ""
		atk.ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36"
		atk.os = "Linux"
		m.dev = &atk
		c.uas.add(atk.ua)
		c.uas.add(m.a.clientInfo)
		m.useSession = sess
		m.camp = c
		m.maxActions = reads
		m.searchTerms = []string{"invoice", "payment", "wire transfer", "bank details", "remittance"}
		m.hooks = []sessionHook{
			{at: min(reads, 4), fn: func(s *sim, m *mailSession) error {
				id := m.g.id()
				s.reset()
				s.exchangeAdmin(&s.w, m.t, id, "New-InboxRule", m.who, v.UPN+`\.`, &m.a, []nv{
					{"Identity", v.UPN}, {"Name", "."}, {"SubjectOrBodyContainsWords", "invoice;payment;remittance"},
					{"MoveToFolder", `\RSS Subscriptions`}, {"MarkAsRead", "True"}, {"StopProcessingRules", "True"},
				})
				return s.emitUAL(m.t, id, m.who.userID, "New-InboxRule", c)
			}},
			{at: min(reads, 6), fn: func(s *sim, m *mailSession) error {
				id := m.g.id()
				s.reset()
				s.exchangeAdmin(&s.w, m.t, id, "Set-Mailbox", m.who, v.UPN, &m.a, []nv{
					{"Identity", v.UPN}, {"ForwardingSmtpAddress", "smtp:" + fwd}, {"DeliverToMailboxAndForward", "True"},
				})
				return s.emitUAL(m.t, id, m.who.userID, "Set-Mailbox", c)
			}},
		}
		s.add(m)
		return nil
	})
	return sc, nil
}

// setupConsentPhish plans an illicit consent grant: an admin consents to a
// malicious multi-tenant app, which then reads many mailboxes app-only.
func (s *sim) setupConsentPhish(c *campaignState, p params) (*script, error) {
	g := newRNG(s.t.seed, strKey(c.name))
	sd, err := p.startDay(s.cfg.Days)
	if err != nil {
		return nil, err
	}
	nmb, err := p.int("mailboxes", 1, 100000)
	if err != nil {
		return nil, err
	}
	perMB, err := p.int("reads-per-mailbox", 1, 100000)
	if err != nil {
		return nil, err
	}
	items, err := p.int("items-per-read", 1, 1000)
	if err != nil {
		return nil, err
	}
	bulk, err := p.int("bulk-mailboxes", 0, 1000)
	if err != nil {
		return nil, err
	}
	admins := 0
	for _, u := range s.t.Users {
		if u.Admin {
			admins++
		}
	}
	// not the admin who consents to the sanctioned backup app, when there
	// is another: two consents by one admin would tie the benign one to
	// the intrusion
	v, err := s.pickUser(g, p.m["victim"], func(u *User) bool { return u.Admin && (u != s.sanctionedAdmin || admins == 1) })
	if err != nil {
		return nil, err
	}
	p.m["victim"] = v.UPN
	app := &App{ID: guid(g.id()), DisplayName: "DocuSafe Secure Viewer", ServicePrincipalID: guid(g.id())}
	c.users.add(v.UPN)
	c.apps.add(resGraph.ID)
	c.clientApps.add(app.ID)
	c.apps.add(app.ID)
	c.uas.add("Client=REST;;")
	d := s.weekday(sd)
	t0 := s.dayStart(d) - v.tzOffset + 14*hour + int64(g.intn(90))*minute
	sc := &script{}
	sc.at(t0, func(s *sim) error {
		n, ip := s.where(v, t0, false)
		si := &signIn{t: t0, id: g.id(), corr: g.id(), user: v, app: app, resource: &resGraph, ip: ip, net: n, dev: s.desktopAt(v, t0),
			ua: s.desktopAt(v, t0).ua, interactive: true, session: g.id(), token: g.id(), clientApp: "Browser", incoming: "none"}
		c.sessions.add(guid(si.session))
		c.tokens.add(tokenID(si.token))
		return s.emitSignIn(si, c)
	})
	t1 := t0 + int64(g.between(20, 90))*second
	sc.at(t1, func(s *sim) error {
		id := g.id()
		s.reset()
		s.directoryAudit(&s.w, t1, id, "Add service principal.", v, app, [][3]string{
			{"AccountEnabled", "[true]", "[]"}, {"AppPrincipalId", `["` + app.ID + `"]`, "[]"}, {"DisplayName", `["` + app.DisplayName + `"]`, "[]"},
			{"ServicePrincipalType", `["Application"]`, "[]"}, {"Included Updated Properties", "AccountEnabled, AppPrincipalId, DisplayName, ServicePrincipalType", ""},
		}, v.desktop.ua)
		return s.emitUAL(t1, id, v.UPN, "Add service principal.", c)
	})
	t2 := t1 + 2*second
	sc.at(t2, func(s *sim) error {
		id := g.id()
		s.reset()
		s.directoryAudit(&s.w, t2, id, "Consent to application.", v, app, consentProps(s, app, true, "Mail.Read User.Read.All"), v.desktop.ua)
		return s.emitUAL(t2, id, v.UPN, "Consent to application.", c)
	})
	// App-only reads from the attacker's infrastructure.
	atk := s.t.net["host-hetzner"]
	atkIP := s.attackerHost(c, atk, &g)
	c.ips.add(atkIP.String())
	c.asns[atk.entry.ASN] = true
	var targets []*Mailbox
	for _, u := range s.t.vips() {
		targets = append(targets, u.mailbox)
	}
	for _, i := range permute(g, len(s.t.Mailboxes)) {
		targets = append(targets, s.t.Mailboxes[i])
	}
	seen := map[*Mailbox]bool{}
	var chosen []*Mailbox
	for _, mb := range targets {
		if !seen[mb] && len(chosen) < nmb {
			seen[mb] = true
			chosen = append(chosen, mb)
		}
	}
	start := t2 + int64(g.between(30, 180))*minute
	tok := &access{appID: resGraph.ID, clientAppID: app.ID, ip: atkIP, clientInfo: "Client=REST;;"}
	var exp int64
	type rd struct {
		t  int64
		mb *Mailbox
	}
	var plan []rd
	for i, mb := range chosen {
		n := perMB
		span := 20 * hour
		if i < bulk {
			n = s.cfg.ThrottleLimit + perMB
			span = 12 * hour
		}
		for k := 0; k < n; k++ {
			plan = append(plan, rd{t: start + int64(i)*7*minute + int64(g.intn(int(span/second)))*second, mb: mb})
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].t < plan[j].t })
	for _, r := range plan {
		r := r
		rg := newRNG(s.t.seed, strKey(c.name), uint64(r.t), uint64(r.mb.index))
		sc.at(r.t, func(s *sim) error {
			if r.t >= exp {
				si := &signIn{t: r.t, id: rg.id(), corr: rg.id(), sp: app, app: app, resource: &resGraph, ip: atkIP, net: atk,
					ua: "", token: rg.id(), clientApp: "", credential: "clientSecret", incoming: "none"}
				tok.token, tok.issued = si.token, r.t
				exp = r.t + 60*minute + int64(rg.intn(30))*minute
				c.tokens.add(tokenID(si.token))
				if err := s.emitSignIn(si, c); err != nil {
					return err
				}
			}
			var reads []folderRead
			for f := range folderPaths {
				if rg.chance(0.3) || f == 0 {
					hi := s.t.latest(r.mb, f, r.t)
					var its []int
					for i := 0; i < max(1, items/2); i++ {
						its = appendUnique(its, max(0, hi-rg.intn(200)))
					}
					reads = append(reads, folderRead{folder: f, items: its})
				}
			}
			aa := *tok
			return s.mailAccess(r.t+second, rg.id(), appActor(app), r.mb, 0, &aa, false, reads, c)
		})
	}
	return sc, nil
}

func consentProps(s *sim, app *App, admin bool, scope string) [][3]string {
	ct := "Principal"
	if admin {
		ct = "AllPrincipals"
	}
	return [][3]string{
		{"ConsentContext.IsAdminConsent", pyBool(admin), ""},
		{"ConsentContext.IsAppOnly", pyBool(admin), ""},
		{"ConsentContext.OnBehalfOfAll", pyBool(admin), ""},
		{"ConsentContext.Tags", "WindowsAzureActiveDirectoryIntegratedApp", ""},
		{"ConsentAction.Permissions", "[] => [[Id: " + guid(idFrom(strKey(app.ID))) + ", ClientId: " + app.ServicePrincipalID + ", PrincipalId: , ResourceId: " + s.resourceSP(&resGraph) + ", ConsentType: " + ct + ", Scope: " + scope + ", CreatedDateTime: , LastModifiedDateTime ]]; ", ""},
		{"TargetId.ServicePrincipalNames", app.ID, ""},
	}
}

// setupPasswordSpray plans a spray: failures across many accounts from a
// few IPs in rounds, one success in the last round, then mail access.
func (s *sim) setupPasswordSpray(c *campaignState, p params) (*script, error) {
	g := newRNG(s.t.seed, strKey(c.name))
	sd, err := p.startDay(s.cfg.Days)
	if err != nil {
		return nil, err
	}
	nt, err := p.int("targets", 1, 1000000)
	if err != nil {
		return nil, err
	}
	nip, err := p.int("ips", 1, 50)
	if err != nil {
		return nil, err
	}
	rounds, err := p.int("rounds", 1, 100)
	if err != nil {
		return nil, err
	}
	reads, err := p.int("reads", 1, 10000)
	if err != nil {
		return nil, err
	}
	nt = min(nt, len(s.t.Users))
	var targets []*User
	for _, i := range permute(g, len(s.t.Users))[:nt] {
		targets = append(targets, s.t.Users[i])
	}
	// the victim: a target that is neither VIP nor admin if possible
	victim := targets[0]
	for _, u := range targets {
		if !u.VIP && !u.Admin {
			victim = u
			break
		}
	}
	type src struct {
		n  *network
		ip string
	}
	var ips []src
	for i := 0; i < nip; i++ {
		n := s.t.net[attackNets[g.intn(len(attackNets))]]
		ip := s.attackerHost(c, n, &g)
		ips = append(ips, src{n, ip.String()})
		c.ips.add(ip.String())
		c.asns[n.entry.ASN] = true
	}
	const sprayUA = "python-requests/2.32.3"
	azcli := &App{ID: "04b07795-8ddb-461a-bbee-02f9e1bf7b46", DisplayName: "Microsoft Azure CLI", FirstParty: true}
	c.apps.add(azcli.ID)
	c.uas.add(sprayUA)
	for _, u := range targets {
		c.users.add(u.UPN)
	}
	dev := device{os: "", browser: "Python Requests 2.32", ua: sprayUA}
	d := s.weekday(sd)
	t := s.dayStart(d) + int64(g.between(60, 300))*minute
	sc := &script{}
	for r := 0; r < rounds; r++ {
		for _, i := range permute(g, len(targets)) {
			u := targets[i]
			src := ips[g.intn(len(ips))]
			ok := r == rounds-1 && u == victim
			tt := t
			id, corr, tok, sess := g.id(), g.id(), g.id(), g.id()
			sc.at(tt, func(s *sim) error {
				ip := parseAddr(src.ip)
				si := &signIn{t: tt, id: id, corr: corr, user: u, app: azcli, resource: &resGraph, ip: ip, net: src.n, dev: dev, ua: sprayUA,
					interactive: true, errorCode: 50126, token: tok, clientApp: "Mobile Apps and Desktop clients", incoming: "none"}
				if ok {
					si.errorCode = 0
					si.session = sess
					si.resource = &resExchange
					c.sessions.add(guid(sess))
					c.tokens.add(tokenID(tok))
					// the attacker then reads mail with the session
					m := newMailSession(s, u, plannedSession{t: tt + int64(3)*minute, end: tt + 8*hour, kind: clientOWA}, g.u64())
					m.net, m.a.ip = src.n, ip
					m.dev = &dev
					m.useSession = sess
					m.camp = c
					m.maxActions = reads
					m.prof.clientUsed = "Browser"
					m.a.clientInfo = "Client=OWA;Action=ViaProxy"
					s.add(m)
				}
				return s.emitSignIn(si, c)
			})
			t += int64(g.between(2, 25)) * second
		}
		t += int64(g.between(60, 150)) * minute
	}
	p.m["victim"] = victim.UPN
	return sc, nil
}

// claimedClients are the first-party clients forged-token-common-app can
// claim to be.
var claimedClients = map[string]clientKind{"office": clientOutlookDesktop, "owa": clientOWA, "mobile": clientMobile, "new-outlook": clientNewOutlook}

// setupForgedCommonApp plans a forged-token intrusion that hides behind a
// common first-party client: the forged tokens claim the app id (and the
// client string) of a mail client most of the tenant uses. Like
// forged-token, no sign-in issued them and the reads come from hosting
// and VPN networks, 00–09 UTC on weekdays; each active day the actor
// moves to another network and address and mints new tokens and sessions.
// It is one intrusion throughout.
func (s *sim) setupForgedCommonApp(c *campaignState, p params) (*script, error) {
	g := newRNG(s.t.seed, strKey(c.name))
	sd, err := p.startDay(s.cfg.Days)
	if err != nil {
		return nil, err
	}
	days, err := p.int("days", 1, 365)
	if err != nil {
		return nil, err
	}
	targets, err := p.int("targets", 1, 1000)
	if err != nil {
		return nil, err
	}
	reads, err := p.int("reads-per-day", 1, 1000)
	if err != nil {
		return nil, err
	}
	items, err := p.int("items-per-read", 1, 100)
	if err != nil {
		return nil, err
	}
	kind, ok := claimedClients[p.m["client-app"]]
	if !ok {
		return nil, configErr("%s parameter client-app=%q: want office, owa, mobile or new-outlook", c.name, p.m["client-app"])
	}
	// VIPs no other campaign reads first, so each intrusion's impact is its own
	var vips, others []*User
	all := s.t.vips()
	for _, i := range permute(g, len(all)) {
		u := all[i]
		if s.targeted[u] {
			others = append(others, u)
		} else {
			vips = append(vips, u)
		}
	}
	vips = append(vips, others...)
	if targets > len(vips) {
		targets = len(vips)
		p.m["targets"] = itoa(targets)
	}
	victims := vips[:targets]
	for _, v := range victims {
		s.targeted[v] = true
		c.users.add(v.UPN)
	}
	dev := &phoneProfiles[0]
	if kind != clientMobile {
		dev = &desktopProfiles[0]
	}
	prof := s.profile(nil, kind, dev)
	c.apps.add(prof.appID)
	c.clientApps.add(prof.app.ID)
	c.uas.add(prof.clientInfo)
	sc := &script{}
	prev := -1
	d := sd
	for active := 0; active < days; d++ {
		d = s.weekday(d)
		if d >= s.cfg.Days {
			break
		}
		active++
		// a new network and address every day
		k := g.intn(len(attackNets))
		if k == prev {
			k = (k + 1) % len(attackNets)
		}
		prev = k
		n := s.t.net[attackNets[k]]
		ip := s.attackerHost(c, n, &g)
		c.ips.add(ip.String())
		c.asns[n.entry.ASN] = true
		for _, v := range victims {
			v := v
			a := access{appID: prof.appID, clientAppID: prof.app.ID, ip: ip, clientInfo: prof.clientInfo, session: g.id(), token: g.id()}
			c.sessions.add(guid(a.session))
			c.tokens.add(tokenID(a.token))
			c.forged.add(tokenID(a.token))
			times := make([]int64, reads)
			for i := range times {
				times[i] = s.dayStart(d) + int64(g.intn(9*60))*minute + int64(g.intn(60))*second
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			a.issued = max(s.start, times[0]-int64(g.between(2, 20))*minute)
			for _, t := range times {
				rg := newRNG(s.t.seed, strKey(c.name), uint64(t), uint64(v.Index))
				sc.at(t, func(s *sim) error {
					f := []int{0, 0, 4, 3, 1, 2}[rg.intn(6)]
					hi := s.t.latest(v.mailbox, f, t)
					var its []int
					for i := 0; i < items; i++ {
						its = appendUnique(its, max(0, hi-rg.intn(150)))
					}
					aa := a
					return s.mailAccess(t, rg.id(), userActor(v), v.mailbox, 0, &aa, false, []folderRead{{folder: f, items: its}}, c)
				})
			}
		}
	}
	return sc, nil
}

// attackerHost draws an address in n for campaign c's attacker that no
// other campaign uses: two intrusions sharing an address are one actor to
// any detector (at 500 users consent-phish and forged-token-common-app
// drew the same hosting address and chained into one incident).
func (s *sim) attackerHost(c *campaignState, n *network, g *rng) netip.Addr {
	if s.attackerIPs == nil {
		s.attackerIPs = map[netip.Addr]*campaignState{}
	}
	for try := 0; ; try++ {
		ip := n.host(g.u64())
		if owner, ok := s.attackerIPs[ip]; !ok || owner == c || try >= 64 {
			if !ok {
				s.attackerIPs[ip] = c
			}
			return ip
		}
	}
}
