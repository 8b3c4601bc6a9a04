package simulate

import (
	"net/netip"
	"time"
)

const (
	second = int64(time.Second)
	minute = int64(time.Minute)
	hour   = int64(time.Hour)
	day    = 24 * hour
)

// clientProfile is how a mail client appears in the logs.
type clientProfile struct {
	app        *App
	appID      string // UAL AppId
	clientInfo string
	clientUsed string // sign-in clientAppUsed
	sync       bool   // uses Sync for folder synchronisation
	resource   *App
}

func (s *sim) profile(u *User, k clientKind, dev *device) clientProfile {
	switch k {
	case clientOutlookDesktop:
		return clientProfile{app: &appOffice, appID: appOffice.ID, clientInfo: "Client=MSExchangeRPC", clientUsed: "Mobile Apps and Desktop clients", sync: true, resource: &resExchange}
	case clientNewOutlook:
		return clientProfile{app: &appNewOutlook, appID: appNewOutlook.ID, clientInfo: "Client=OWA;Action=ViaProxy;Monarch", clientUsed: "Mobile Apps and Desktop clients", resource: &resExchange}
	case clientOWA:
		return clientProfile{app: &appOWA, appID: appOWA.ID, clientInfo: "Client=OWA;Action=ViaProxy", clientUsed: "Browser", resource: &resExchange}
	case clientMobile:
		ci := "Client=OutlookService;Outlook-iOS/2.0;"
		if dev != nil && dev.os == "Android" {
			ci = "Client=OutlookService;Outlook-Android/2.0;"
		}
		return clientProfile{app: &appMobile, appID: appMobile.ID, clientInfo: ci, clientUsed: "Mobile Apps and Desktop clients", resource: &resExchange}
	default:
		return clientProfile{app: u.thirdParty, appID: resGraph.ID, clientInfo: "Client=REST;;", clientUsed: "Mobile Apps and Desktop clients", resource: &resGraph}
	}
}

func (c clientProfile) userAgent(k clientKind, dev *device) string {
	switch k {
	case clientOutlookDesktop:
		if dev.os == "MacOs" {
			return "Microsoft Office/16.0 (Macintosh; Mac OS X 14.6; Microsoft Outlook 16.89)"
		}
		return "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
	case clientNewOutlook:
		return "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 OneOutlook/1.2024.1120.300"
	case clientThirdParty:
		return c.app.DisplayName + "/5.2 (" + dev.os + ")"
	}
	return dev.ua
}

// desktopClient is the client u uses on the computer at t (the Outlook
// roll-out moves classic Outlook users to the new Outlook).
func (s *sim) desktopClient(u *User, t int64) clientKind {
	if u.client == clientOutlookDesktop && s.rolloutStart != never {
		at := s.rolloutStart + int64(hashKey(s.t.seed, 0x726f6c6c, uint64(u.Index))%uint64(max(1, s.rolloutEnd-s.rolloutStart)))
		if t >= at {
			return clientNewOutlook
		}
	}
	return u.client
}

// travelPlan is a confounder trip: the user works from another country.
type travelPlan struct {
	from, to int64
	net      *network
	key      uint64
}

// away says whether u works from somewhere other than their usual
// networks at t: on a trip, or on a cloud PC (a phone stays on its
// carrier either way).
func (s *sim) away(u *User, t int64, mobile bool) bool {
	if mobile && u.mobileNet != nil {
		return false
	}
	if !mobile && s.cloudPCAt(u, t) != nil {
		return true
	}
	tp, ok := s.travel[u]
	return ok && t >= tp.from && t < tp.to
}

// where returns the network and address u uses at t.
func (s *sim) where(u *User, t int64, mobile bool) (*network, netip.Addr) {
	d := uint64((t - s.start) / day)
	if mobile && u.mobileNet != nil {
		// Roaming data egresses through the home carrier, even abroad.
		return u.mobileNet, u.mobileNet.host(hashKey(u.homeKey, 0x6d6f62, d/3))
	}
	if cp := s.cloudPCAt(u, t); cp != nil && !mobile {
		// A cloud PC egresses from its provider wherever the user sits.
		return cp.net, cp.net.host(cp.key)
	}
	if tp, ok := s.travel[u]; ok && t >= tp.from && t < tp.to {
		return tp.net, tp.net.host(tp.key)
	}
	if s.inOffice(u, t) {
		return u.office, u.office.host(hashKey(0x6f6663, uint64(u.Index%6)))
	}
	if u.vpn {
		n := s.t.net["vpn-corp-old"]
		if t >= s.vpnSwitch {
			n = s.t.net["vpn-corp-new"]
		}
		return n, n.host(hashKey(0x76706e, uint64(u.Index%12)))
	}
	return u.home, u.home.host(u.homeKey)
}

func (s *sim) inOffice(u *User, t int64) bool {
	local := t + u.tzOffset
	d := uint64(local / day)
	wd := time.Unix(0, local).UTC().Weekday()
	if wd == time.Saturday || wd == time.Sunday {
		return false
	}
	return hashKey(s.t.seed, 0x6f6666, uint64(u.Index), d)%100 < 55
}

// userStream drives one user's days: it plans each day's sessions and
// starts them as separate streams.
type userStream struct {
	u    *User
	g    rng
	day  int64 // UTC midnight of the planned local day
	plan [12]plannedSession
	n, i int
}

type plannedSession struct {
	t, end   int64
	kind     clientKind
	mobile   bool
	delegate bool
	sync     bool
}

func newUserStream(s *sim, u *User) *userStream {
	us := &userStream{u: u, g: newRNG(s.t.seed, 0x75736572, uint64(u.Index)), day: s.start - day}
	us.planNext(s)
	return us
}

func (us *userStream) next() int64 {
	if us.i < us.n {
		return us.plan[us.i].t
	}
	return never
}

func (us *userStream) step(s *sim) error {
	p := us.plan[us.i]
	us.i++
	key := us.g.u64()
	m := newMailSession(s, us.u, p, key)
	// A session with no sign-in record comes from the user's usual
	// networks, as unlinked-tokens describes: abroad or on a new cloud PC
	// (travel, cloud-pc) it would be a token used from a network no
	// sign-in shows, which is what an intruder's looks like.
	if s.unl != nil && hashKey(s.t.seed, 0x756e6c6b, key)%1000 < unlinkedSessionPerMille && !s.away(us.u, p.t, p.mobile) {
		m.unlinked = true
	}
	s.add(m)
	if us.i >= us.n {
		us.planNext(s)
	}
	return nil
}

// planNext plans the next day that has any activity.
func (us *userStream) planNext(s *sim) {
	for {
		us.day += day
		if us.day >= s.end {
			us.n, us.i = 0, 0
			return
		}
		us.n, us.i = 0, 0
		us.planDay(s)
		if us.n > 0 {
			return
		}
	}
}

func (us *userStream) add(p plannedSession) {
	if us.n < len(us.plan) && p.t >= us.day && p.end > p.t {
		us.plan[us.n] = p
		us.n++
	}
}

func (us *userStream) planDay(s *sim) {
	u, g := us.u, us.g
	// Local midnight of this UTC day, as an absolute time.
	mid := us.day - u.tzOffset
	wd := time.Unix(0, us.day).UTC().Weekday()
	weekend := wd == time.Saturday || wd == time.Sunday
	jit := func(m int) int64 { return int64(g.between(-m, m)) * minute }
	dk := s.desktopClient(u, mid+u.workStart)
	if !weekend && g.chance(0.95) {
		start := mid + u.workStart + jit(20)
		lunch := mid + 12*hour + jit(30)
		stop := mid + u.workStart + u.workLen + jit(30)
		us.add(plannedSession{t: start, end: lunch, kind: dk, sync: true})
		us.add(plannedSession{t: lunch + 40*minute + jit(10), end: stop, kind: dk})
		for _, mb := range u.delegateOf {
			_ = mb
			t0 := start + int64(g.between(30, 300))*minute
			us.add(plannedSession{t: t0, end: t0 + int64(g.between(5, 25))*minute, kind: dk, delegate: true})
		}
		if u.thirdParty != nil {
			for h := 0; h < 5; h++ {
				t0 := mid + int64(7+3*h)*hour + jit(40)
				us.add(plannedSession{t: t0, end: t0 + int64(g.between(2, 6))*minute, kind: clientThirdParty})
			}
		}
	} else if g.chance(0.12) {
		t0 := mid + int64(g.between(10, 18))*hour + jit(30)
		us.add(plannedSession{t: t0, end: t0 + int64(g.between(15, 60))*minute, kind: dk})
	}
	if u.phone != nil {
		n := g.between(2, 6)
		if weekend {
			n = g.between(0, 3)
		}
		for i := 0; i < n; i++ {
			t0 := mid + int64(g.between(7*60, 22*60))*minute
			us.add(plannedSession{t: t0, end: t0 + int64(g.between(2, 12))*minute, kind: clientMobile, mobile: true})
		}
	}
	// keep the plan in time order (insertion sort; at most a dozen)
	for i := 1; i < us.n; i++ {
		for j := i; j > 0 && us.plan[j].t < us.plan[j-1].t; j-- {
			us.plan[j], us.plan[j-1] = us.plan[j-1], us.plan[j]
		}
	}
}

// mailSession is one client session: a sign-in, then mail activity with
// token refreshes, all linked by session and token ids.
type mailSession struct {
	u      *User
	mb     *Mailbox
	logon  int
	kind   clientKind
	prof   clientProfile
	dev    *device
	net    *network
	who    actor
	a      access
	t, end int64
	exp    int64 // token expiry
	phase  int
	syncF  bool
	g      rng
	reads  []folderRead
	buf    []int
	camp   *campaignState
	// attack settings
	noSignIn    bool // forged token: no sign-in issues the token
	unlinked    bool // benign: the session's tokens have no sign-in records (unlinked-tokens)
	useSession  id16 // replay a stolen session
	searchTerms []string
	maxActions  int // stop after this many actions (0: until end)
	actions     int
	hooks       []sessionHook
}

// sessionHook runs extra work (an inbox rule, a forwarding change) after
// the session's at-th action, with the session's access context.
type sessionHook struct {
	at int
	fn func(s *sim, m *mailSession) error
}

func newMailSession(s *sim, u *User, p plannedSession, key uint64) *mailSession {
	m := &mailSession{u: u, mb: u.mailbox, kind: p.kind, t: p.t, end: p.end, g: newRNG(s.t.seed, 0x73657373, key), who: userActor(u), syncF: p.sync}
	if p.mobile {
		m.dev = u.phone
	} else if cp := s.cloudPCAt(u, p.t); cp != nil {
		m.dev = &cp.dev
	} else {
		m.dev = &u.desktop
	}
	m.prof = s.profile(u, p.kind, m.dev)
	if p.delegate && len(u.delegateOf) > 0 {
		m.mb = u.delegateOf[m.g.intn(len(u.delegateOf))]
		m.logon = 2
	}
	if p.kind == clientThirdParty && u.thirdParty != nil && u.thirdParty.DisplayName == "Teleport CRM Sync" {
		// a cloud service: it reads from its vendor's network
		m.net = s.t.net["host-aws"]
		m.a.ip = m.net.host(hashKey(strKey(u.thirdParty.ID), uint64(m.g.intn(4))))
	} else {
		m.net, m.a.ip = s.where(u, p.t, p.mobile)
	}
	m.a.appID = m.prof.appID
	m.a.clientAppID = m.prof.app.ID
	m.a.clientInfo = m.prof.clientInfo
	return m
}

func (m *mailSession) next() int64 {
	if m.phase >= 3 && (m.t > m.end || (m.maxActions > 0 && m.actions >= m.maxActions && len(m.hooks) == 0)) {
		return never
	}
	return m.t
}

func (m *mailSession) signIn(s *sim, interactive bool) error {
	if m.unlinked {
		// A refresh-token redemption that leaves no sign-in record: the
		// client gets a new access token all the same.
		m.a.token = m.g.id()
		m.a.issued = m.t
		m.a.unlinked = true
		m.exp = m.t + 60*minute + int64(m.g.intn(30))*minute
		s.unl.tokens.add(tokenID(m.a.token))
		return nil
	}
	si := &signIn{
		t: m.t, id: m.g.id(), corr: m.g.id(), user: m.u, app: m.prof.app, resource: m.prof.resource,
		ip: m.a.ip, net: m.net, dev: *m.dev, ua: m.prof.userAgent(m.kind, m.dev), interactive: interactive,
		session: m.a.session, token: m.g.id(), clientApp: m.prof.clientUsed, incoming: "none",
	}
	if !interactive {
		si.incoming = "refreshToken"
	}
	m.a.token = si.token
	m.a.issued = m.t
	m.exp = m.t + 60*minute + int64(m.g.intn(30))*minute
	if m.camp != nil {
		m.camp.tokens.add(tokenID(si.token))
		m.camp.ips.add(si.ip.String())
		m.camp.asns[m.net.entry.ASN] = true
		m.camp.sessions.add(guid(si.session))
	}
	m.a.unlinked = false
	if !interactive && m.camp == nil && s.unl != nil && hashKey(s.t.seed, 0x61676772, idKey(si.token))%1000 < droppedRefreshPerMille {
		// Entra aggregates and samples non-interactive sign-ins: this
		// refresh is not in the sign-in log, though its session is.
		m.a.unlinked = true
		s.unl.tokens.add(tokenID(si.token))
		return nil
	}
	if cp := s.cloudPCAt(m.u, m.t); cp != nil && interactive && m.dev == &cp.dev && m.camp == nil {
		s.cloudPCConf.Records = append(s.cloudPCConf.Records, RecordRef{Source: "entra.signin", ID: guid(si.id), Time: tm(si.t), Operation: "signIn"})
	}
	return s.emitSignIn(si, m.camp)
}

func (m *mailSession) step(s *sim) error {
	switch m.phase {
	case 0:
		m.phase = 1
		if m.noSignIn {
			m.t += second
			return nil
		}
		if m.unlinked {
			// a session no sign-in record shows (see unlinked-tokens)
			m.a.session = m.g.id()
			s.unl.sessions.add(guid(m.a.session))
			s.unl.users.add(m.u.UPN)
			if err := m.signIn(s, false); err != nil {
				return err
			}
			m.t += int64(1+m.g.intn(3)) * second
			return nil
		}
		slot := m.kind
		u := m.u
		interactive := false
		cp := s.cloudPCAt(u, m.t)
		switch {
		case m.useSession != (id16{}):
			m.a.session = m.useSession
		case cp != nil && m.dev == &cp.dev && !cp.signedIn[slot]:
			// first use of this client on the new cloud PC: a fresh
			// interactive sign-in with MFA on the new device
			cp.signedIn[slot] = true
			u.sess[slot] = m.g.id()
			u.lastInter[slot] = m.t
			interactive = true
			m.a.session = u.sess[slot]
		default:
			if u.sess[slot] == (id16{}) {
				u.sess[slot] = m.g.id()
				u.lastInter[slot] = s.start - int64(m.g.intn(7*24))*hour
			}
			if m.t-u.lastInter[slot] > 7*day+int64(m.g.intn(48))*hour {
				u.sess[slot] = m.g.id()
				u.lastInter[slot] = m.t
				interactive = true
			}
			m.a.session = u.sess[slot]
		}
		if err := m.signIn(s, interactive); err != nil {
			return err
		}
		m.t += int64(1+m.g.intn(3)) * second
	case 1:
		m.phase = 2
		if m.kind == clientOutlookDesktop && m.logon == 0 {
			s.reset()
			id := m.g.id()
			s.exchangeItem(&s.w, m.t, id, "MailboxLogin", m.who, m.mb, m.logon, &m.a, 0)
			if err := s.emitUAL(m.t, id, m.who.userID, "MailboxLogin", m.camp); err != nil {
				return err
			}
			m.t += second
		}
	case 2:
		m.phase = 3
		if m.syncF && m.prof.sync {
			m.reads = m.reads[:0]
			nf := m.g.between(1, 3)
			for i := 0; i < nf; i++ {
				m.reads = append(m.reads, folderRead{folder: []int{0, 1, 3, 4}[m.g.intn(4)]})
			}
			m.reads = dedupFolders(m.reads)
			if err := s.mailAccess(m.t, m.g.id(), m.who, m.mb, m.logon, &m.a, true, m.reads, m.camp); err != nil {
				return err
			}
			m.t += int64(m.g.between(2, 10)) * second
		}
	default:
		if m.t >= m.exp && !m.noSignIn {
			if err := m.signIn(s, false); err != nil {
				return err
			}
			m.t += int64(1+m.g.intn(2)) * second
			return nil
		}
		if len(m.hooks) > 0 && m.actions >= m.hooks[0].at {
			h := m.hooks[0]
			m.hooks = m.hooks[1:]
			if err := h.fn(s, m); err != nil {
				return err
			}
			m.t += int64(m.g.between(20, 120)) * second
			return nil
		}
		if m.maxActions > 0 && m.actions >= m.maxActions {
			m.t += minute
			return nil
		}
		m.actions++
		if err := m.action(s); err != nil {
			return err
		}
		m.t += m.gap()
	}
	return nil
}

func (m *mailSession) gap() int64 {
	switch m.kind {
	case clientMobile:
		return m.g.expo(90 * second)
	case clientThirdParty:
		return m.g.expo(40 * second)
	}
	return m.g.expo(7 * minute)
}

var folderWeights = [len(folderPaths)]int{60, 10, 8, 10, 5, 5, 2}

func (m *mailSession) pickFolder() int {
	x := m.g.intn(100)
	for f, w := range folderWeights {
		if x < w {
			return f
		}
		x -= w
	}
	return 0
}

func (m *mailSession) action(s *sim) error {
	x := m.g.intn(100)
	switch {
	case x < 12 && m.logon == 0 && m.kind != clientThirdParty:
		id := m.g.id()
		s.reset()
		s.exchangeItem(&s.w, m.t, id, "Send", m.who, m.mb, m.logon, &m.a, s.t.latest(m.mb, 1, m.t))
		return s.emitUAL(m.t, id, m.who.userID, "Send", m.camp)
	case x < 15 && (m.kind == clientOWA || m.kind == clientNewOutlook):
		id := m.g.id()
		s.reset()
		q := searchWords[m.g.intn(len(searchWords))]
		if len(m.searchTerms) > 0 {
			q = m.searchTerms[m.g.intn(len(m.searchTerms))]
		}
		s.searchQuery(&s.w, m.t, id, m.who, m.mb, &m.a, q)
		return s.emitUAL(m.t, id, m.who.userID, "SearchQueryInitiatedExchange", m.camp)
	}
	f := m.pickFolder()
	hi := s.t.latest(m.mb, f, m.t)
	if hi < 0 {
		return nil
	}
	k := 1 + m.g.intn(3)
	if m.kind == clientThirdParty {
		k = 1 + m.g.intn(6)
	}
	m.buf = m.buf[:0]
	for i := 0; i < k; i++ {
		n := hi - int(m.g.expo(4))
		if n < 0 {
			n = 0
		}
		m.buf = appendUnique(m.buf, n)
	}
	m.reads = append(m.reads[:0], folderRead{folder: f, items: m.buf})
	return s.mailAccess(m.t, m.g.id(), m.who, m.mb, m.logon, &m.a, false, m.reads, m.camp)
}

var searchWords = []string{"budget", "offsite", "invoice", "contract", "roadmap", "hiring", "expenses", "travel", "Q3 forecast", "board"}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func dedupFolders(r []folderRead) []folderRead {
	out := r[:0]
	for _, x := range r {
		dup := false
		for _, y := range out {
			dup = dup || y.folder == x.folder
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}
