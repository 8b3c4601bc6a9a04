package behavior

import (
	"maps"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"

	"github.com/vigil-audit/vigil/internal/event"
)

// Options are the engine's external knowledge.
type Options struct {
	Networks Networks // IP → ASN/country/kind; nil if none
	IOCs     *IOCs    // indicators for D11; nil if none
	// TempDir holds the mail accesses waiting out the sign-in grace
	// period beyond the few thousand kept in memory ("" for the system's
	// temporary directory).
	TempDir string
}

// Engine runs the behaviours over a stream of events.
type Engine struct {
	cfg  *Config
	nets Networks
	iocs *IOCs
	st   *state
	dir  string // where pending accesses spill (Options.TempDir)
	// pqs holds the mail accesses awaiting judgement, a queue per tenant
	// (pqKeys, sorted): each tenant's wait on its own sign-in logs.
	pqs    map[string]*pendingQueue
	pqKeys []string
	alerts []alert.Alert
	// scriptOf caches which D7 pattern (if any) a client string matches:
	// a tenant has few distinct strings and the regexps are the hot spot.
	scriptOf map[string]string
}

// New returns an engine with empty state.
func New(cfg *Config, opt Options) *Engine {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return &Engine{cfg: cfg, nets: opt.Networks, iocs: opt.IOCs, st: newState(), dir: opt.TempDir, pqs: map[string]*pendingQueue{}}
}

// queue is the tenant's pending accesses, made on first use.
func (e *Engine) queue(tenant string) *pendingQueue {
	q := e.pqs[tenant]
	if q == nil {
		q = &pendingQueue{dir: e.dir}
		e.pqs[tenant] = q
		i, _ := slices.BinarySearch(e.pqKeys, tenant)
		e.pqKeys = slices.Insert(e.pqKeys, i, tenant)
	}
	return q
}

// Alerts returns the alerts raised since the last call and forgets them.
func (e *Engine) Alerts() []alert.Alert {
	out := e.alerts
	e.alerts = nil
	return out
}

// Watermark is the latest event time seen.
func (e *Engine) Watermark() time.Time { return e.st.Watermark }

// ATT&CK tags per behaviour.
var signalTags = map[string][]string{
	"D1":  {"attack.credential_access", "attack.t1606", "attack.defense_evasion", "attack.t1550.001", "attack.collection", "attack.t1114.002"},
	"D2":  {"attack.collection", "attack.t1114.002", "attack.t1550.001"},
	"D3":  {"attack.collection", "attack.t1114.002"},
	"D4":  {"attack.initial_access", "attack.t1078.004", "attack.command_and_control", "attack.t1090"},
	"D7":  {"attack.collection", "attack.t1114.002", "attack.execution", "attack.t1059"},
	"D8":  {"attack.collection", "attack.t1114.002", "attack.discovery"},
	"D9":  {"attack.defense_evasion", "attack.t1562.008"},
	"D11": {"attack.command_and_control", "attack.t1090"},
}

// Signals lists the behaviours the engine raises (D1, D2, ...), in order.
func Signals() []string {
	out := slices.Collect(maps.Keys(signalTags))
	slices.SortFunc(out, func(a, b string) int {
		x, _ := strconv.Atoi(a[1:])
		y, _ := strconv.Atoi(b[1:])
		return x - y
	})
	return out
}

var (
	symQueryText = []event.Sym{event.Intern("QueryText"), event.Intern("SearchQuery"), event.Intern("QueryString")}
	symParamID   = event.Intern("Parameters.Identity")
)

// Process feeds one event. Events should come in time order; late ones
// are handled as long as they are no later than the grace period.
func (e *Engine) Process(ev *event.Event) { e.ProcessAccess(ev, nil) }

// ProcessAccess is Process for a caller that has already reduced the
// event's mail access (event.MailAccessOf); acc is nil for other events.
func (e *Engine) ProcessAccess(ev *event.Event, acc *event.MailAccess) {
	if ev.Time.IsZero() {
		return
	}
	st := e.st
	st.Seq++
	t := ev.Time.UTC()
	ten := e.tenant(ev.Tenant, t)
	e.trackSource(ten, ev, t)
	e.trackSignIns(ten, ev, t)
	mail := event.IsMailAccess(ev)
	if mail || strings.EqualFold(ev.Operation, "SearchQueryInitiatedExchange") {
		e.trackMail(ten, t)
	}
	if t.After(ten.Newest) {
		ten.Newest = t
	}
	if isSignIn(ev) {
		e.indexSignIn(ten, ev, t)
	} else if isFailedSignIn(ev) {
		e.failedSignIn(ev, t)
	}
	e.advance(t)
	switch {
	case mail:
		if acc == nil {
			a, _ := event.MailAccessHeader(ev)
			acc = &a
		}
		e.mailAccess(ten, ev, acc, t)
	case strings.EqualFold(ev.Operation, "SearchQueryInitiatedExchange"):
		e.search(ten, ev, t)
	case strings.HasPrefix(strings.ToLower(ev.Operation), "consent to application"):
		e.consent(ten, ev, t)
		e.sanction(ten, ev, t)
	case strings.HasPrefix(strings.ToLower(ev.Operation), "add app role assignment to service principal"),
		strings.HasPrefix(strings.ToLower(ev.Operation), "add service principal"):
		e.sanction(ten, ev, t)
		e.auditChange(ev, t)
	default:
		e.auditChange(ev, t)
	}
	e.ioc(ev, t)
}

// Flush ends the input: pending accesses are judged and open hour buckets
// closed, as if the watermark had moved far ahead. Call it once, at the
// end of a run; Save without Flush to continue later.
func (e *Engine) Flush() {
	st := e.st
	for _, k := range e.pqKeys {
		q := e.pqs[k]
		for q.Len() > 0 {
			p := q.pop()
			e.judge(&p)
		}
	}
	for _, tk := range slices.Sorted(maps.Keys(st.Tenants)) {
		ten := st.Tenants[tk]
		for _, mk := range slices.Sorted(maps.Keys(ten.Mailboxes)) {
			e.closeHour(ten, tk, mk, ten.Mailboxes[mk])
		}
	}
	e.periodic(true)
}

func (e *Engine) tenant(id string, t time.Time) *tenantState {
	id = strings.ToLower(id)
	ten := e.st.Tenants[id]
	if ten == nil {
		ten = newTenant(t)
		e.st.Tenants[id] = ten
	}
	if t.Before(ten.FirstSeen) {
		ten.FirstSeen = t
	}
	return ten
}

func (e *Engine) learned(ten *tenantState, t time.Time) bool {
	return !t.Before(ten.FirstSeen.Add(e.cfg.Learning.D()))
}

func isSignIn(ev *event.Event) bool {
	return ev.Source == "entra.signin" && !ev.Failed
}

var symInteractive = event.Intern("isInteractive")

func isInteractive(ev *event.Event) bool {
	v := ev.Values(symInteractive)
	return len(v) > 0 && strings.EqualFold(v[0].Value, "true")
}

func isFailedSignIn(ev *event.Event) bool {
	return ev.Failed && ev.IP != "" && ev.User != "" && (ev.Source == "entra.signin" || strings.EqualFold(ev.Operation, "UserLoginFailed"))
}

// failedSignIn counts the accounts each address failed to sign in to.
// Failures are kept across tenants: a failed sign-in often names no
// tenant (the account was never resolved).
func (e *Engine) failedSignIn(ev *event.Event, t time.Time) {
	f := e.st.Failures[ev.IP]
	if f == nil || f.Last.Before(t.Add(-e.cfg.D4.Nearby.D())) {
		f = &failures{}
		e.st.Failures[ev.IP] = f
	}
	if t.After(f.Last) {
		f.Last = t
	}
	u := strings.ToLower(ev.User)
	if len(f.Users) < 4*e.cfg.D4.SprayAccounts && !contains(f.Users, u) {
		f.Users = append(f.Users, u)
	}
}

func (e *Engine) raise(a alert.Alert) {
	if a.Raised.IsZero() || a.Raised.Before(e.st.Watermark) {
		a.Raised = e.st.Watermark
	}
	if a.Tags == nil {
		a.Tags = signalTags[a.Signal]
	}
	a.Author = "vigil"
	e.notice(&a)
	e.alerts = append(e.alerts, a)
}

// ---- sign-ins ----

func (e *Engine) indexSignIn(ten *tenantState, ev *event.Event, t time.Time) {
	st := e.st
	asn := ev.ASN
	if ev.IP != "" {
		if asn != 0 {
			st.IPASN[ev.IP] = asn
		} else if info, ok := e.lookup(ev.IP); ok {
			asn = info.ASN
		}
	}
	si := SignIn{Time: t, User: strings.ToLower(ev.User), IP: ev.IP, ASN: asn}
	if ev.TokenID != "" {
		if old, ok := st.Tokens[ev.TokenID]; !ok || t.Before(old.Time) {
			st.Tokens[ev.TokenID] = si
		}
	}
	if ev.SessionID != "" {
		l := st.Sessions[ev.SessionID]
		i := sort.Search(len(l), func(i int) bool { return l[i].Time.After(t) })
		l = append(l, SignIn{})
		copy(l[i+1:], l[i:])
		l[i] = si
		// A session's sign-ins beyond the newest few add nothing the
		// network check needs.
		if len(l) > 32 {
			l = l[len(l)-32:]
		}
		st.Sessions[ev.SessionID] = l
	}
	if ten.FirstSignin.IsZero() || t.Before(ten.FirstSignin) {
		ten.FirstSignin = t
	}
	if si.User != "" {
		u := e.user(ten, si.User)
		u.touched(t) // every entry written below is last seen at t or later
		if ev.IP != "" {
			u.IPs[ev.IP] = seenAt(u.IPs[ev.IP], t)
		}
		// The user's own device on a new network: a user agent they have
		// used for a while, or an interactive sign-in (the session began
		// here, not a replay of one begun elsewhere) from a network that
		// is not a data centre.
		own := false
		if ua := ev.UserAgent; ua != "" {
			if s, ok := u.UAs[ua]; ok && s.First.Before(t.Add(-e.cfg.D4.Nearby.D())) {
				own = true
			}
			u.UAs[ua] = seenAt(u.UAs[ua], t)
		}
		if !own && ev.IP != "" && isInteractive(ev) {
			info, _ := e.lookup(ev.IP)
			own = info.Kind != "hosting"
		}
		if own && ev.IP != "" {
			if u.OwnIPs[ev.IP].Before(t) {
				u.OwnIPs[ev.IP] = t
			}
			if f, ok := u.OwnFrom[ev.IP]; !ok || t.Before(f) {
				u.OwnFrom[ev.IP] = t
			}
		}
		if asn != 0 {
			u.ASNs[asn] = seenAt(u.ASNs[asn], t)
			l := ten.ASNUsers[asn]
			if len(l) < e.cfg.D4.PrevalentUsers && !contains(l, si.User) {
				ten.ASNUsers[asn] = append(l, si.User)
			}
		}
	}
	if ev.IP != "" && ten.IPSeen[ev.IP].Before(t) {
		ten.IPSeen[ev.IP] = t
	}
}

func seenAt(s seen, t time.Time) seen {
	if s.First.IsZero() || t.Before(s.First) {
		s.First = t
	}
	if t.After(s.Last) {
		s.Last = t
	}
	return s
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (e *Engine) user(ten *tenantState, upn string) *userState {
	u := ten.Users[upn]
	if u == nil {
		u = &userState{IPs: map[string]seen{}, ASNs: map[uint32]seen{}, UAs: map[string]seen{}, OwnIPs: map[string]time.Time{}, OwnFrom: map[string]time.Time{}}
		ten.Users[upn] = u
	}
	return u
}

func (e *Engine) mailbox(ten *tenantState, mb string) *mailboxState {
	m := ten.Mailboxes[mb]
	if m == nil {
		m = &mailboxState{Pairs: map[string]time.Time{}, Clients: map[string]time.Time{}, ReadUAs: map[string]time.Time{}}
		ten.Mailboxes[mb] = m
	}
	return m
}

func (e *Engine) lookup(ip string) (NetInfo, bool) {
	if e.nets != nil {
		if a, err := netip.ParseAddr(ip); err == nil {
			if info, ok := e.nets.Lookup(a); ok {
				return info, true
			}
		}
	}
	if asn, ok := e.st.IPASN[ip]; ok {
		return NetInfo{ASN: asn}, true
	}
	return NetInfo{}, false
}

// ---- time ----

// advance moves the watermark and releases what became due.
func (e *Engine) advance(t time.Time) {
	st := e.st
	if !t.After(st.Watermark) {
		e.release()
		return
	}
	st.Watermark = t
	e.release()
	if h := t.Truncate(time.Hour); h.After(st.LastHour) {
		if !st.LastHour.IsZero() {
			e.periodic(false)
		}
		st.LastHour = h
	}
}

// release judges the accesses that became due: those whose grace period
// the tenant's sign-in logs have passed (judgedUpTo).
func (e *Engine) release() {
	w := e.st.Watermark
	for _, k := range e.pqKeys {
		q := e.pqs[k]
		var upTo time.Time
		known := false
		for {
			p, ok := q.peek()
			if !ok || p.Due.After(w) {
				break
			}
			if !known {
				upTo, known = e.judgedUpTo(e.st.Tenants[k]), true
			}
			if p.Due.After(upTo) {
				break
			}
			x := q.pop()
			e.judge(&x)
		}
	}
}

func (e *Engine) hold(p pending) { e.queue(p.Tenant).push(p) }

// Err reports accesses the engine could not keep for judgement (a
// failing temporary disk); they are counted in the error.
func (e *Engine) Err() error {
	for _, k := range e.pqKeys {
		if err := e.pqs[k].err; err != nil {
			return err
		}
	}
	return nil
}

// periodic runs hourly (in event time): coverage checks and pruning.
func (e *Engine) periodic(final bool) {
	e.coverageChecks(final)
	e.prune()
}

// evidenceMargin is how far past an access's time the sign-in evidence
// it is judged against reaches: it is held for grace, and judged at most
// max_source_lag after that against sign-ins up to grace + skew later.
func (e *Engine) evidenceMargin() time.Duration {
	return 2*e.cfg.D1.Grace.D() + e.cfg.D1.Skew.D() + e.cfg.D1.MaxSourceLag.D()
}

// mailRef is the tenant's reference time for keeping the sign-in
// evidence its mail reads are judged against: its mail log's newest
// record (the unified audit log routinely arrives hours after the
// sign-ins that issued its tokens), but never more than max_mail_lag
// behind the newest event of all, nor ahead of it. A tenant whose mail
// log has not arrived yet keeps max_mail_lag.
func (e *Engine) mailRef(ten *tenantState) time.Time {
	w := e.st.Watermark
	floor := w.Add(-e.cfg.D1.MaxMailLag.D())
	if ten.Mail == nil {
		return floor
	}
	return latest(e.mailTime(ten), floor)
}

// mailTime is how far the tenant's mail log is complete: its newest
// record, or less by its usual delay behind the tenant's newest event
// (the unified audit log delivers records 30 minutes to a day late, not
// in order), never past the watermark. What is remembered of its reads
// and searches (D2 roll-outs, D3 windows, D4 de-duplication, D8
// searches) expires against it, not against sign-ins ahead of it.
func (e *Engine) mailTime(ten *tenantState) time.Time {
	w := e.st.Watermark
	if ten.Mail == nil {
		return w
	}
	c := ten.Mail.Last
	if d := ten.Newest.Add(-ten.Mail.delay()); d.Before(c) {
		c = d
	}
	if c.After(w) {
		return w
	}
	return c
}

// trackMail notes a record of the tenant's mail log at t: its newest
// time and how far behind the tenant's newest event it arrived. Call it
// before the tenant's newest event time takes t in.
func (e *Engine) trackMail(ten *tenantState, t time.Time) {
	if ten.Mail == nil {
		ten.Mail = &sourceState{Last: t}
	}
	ten.Mail.delayed(ten.Newest, t)
	if t.After(ten.Mail.Last) {
		ten.Mail.Last = t
	}
}

func (e *Engine) prune() {
	st := e.st
	// Sign-in evidence is kept relative to the mail log it is judged for
	// (mailRef); tokens, sessions and failures are not per tenant, so the
	// tenant furthest behind sets their cut (at most max_mail_lag). A
	// tenant with no sign-ins (a Workspace tenant) has none to keep.
	ref := st.Watermark
	for _, ten := range st.Tenants {
		if ten.FirstSignin.IsZero() {
			continue
		}
		if r := e.mailRef(ten); r.Before(ref) {
			ref = r
		}
	}
	// An access may be judged max_source_lag after its grace period (a
	// lagging sign-in log): what it joins with is kept that much longer.
	m := e.evidenceMargin()
	keep := e.cfg.D1.TokenLifetime.D() + m
	for k, si := range st.Tokens {
		if si.Time.Before(ref.Add(-keep)) {
			delete(st.Tokens, k)
		}
	}
	skeep := e.cfg.D1.SessionLifetime.D() + m
	for k, l := range st.Sessions {
		if l[len(l)-1].Time.Before(ref.Add(-skeep)) {
			delete(st.Sessions, k)
		}
	}
	for ip, f := range st.Failures {
		if f.Last.Before(ref.Add(-e.cfg.D4.Nearby.D() - m)) {
			delete(st.Failures, ip)
		}
	}
	// What the judgement of a held access looks back on is kept from
	// when the oldest access that may still be held happened.
	held := e.cfg.D1.Grace.D() + e.cfg.D1.MaxSourceLag.D()
	hist := e.cfg.D4.History.D() + m
	for _, ten := range st.Tenants {
		r := e.mailRef(ten)
		// Reads before this are judged without sign-in evidence.
		if from := r.Add(-m); from.After(ten.EvidenceFrom) {
			ten.EvidenceFrom = from
		}
		cut := r.Add(-hist)
		for _, u := range ten.Users {
			if u.oldestOK && !u.oldest.Before(cut) {
				continue // nothing to prune
			}
			// What is kept bounds oldest anew.
			var oldest time.Time
			keep := func(last time.Time) bool {
				if last.Before(cut) {
					return false
				}
				if oldest.IsZero() || last.Before(oldest) {
					oldest = last
				}
				return true
			}
			for ip, s := range u.IPs {
				if !keep(s.Last) {
					delete(u.IPs, ip)
				}
			}
			for a, s := range u.ASNs {
				if !keep(s.Last) {
					delete(u.ASNs, a)
				}
			}
			for a, s := range u.UAs {
				if !keep(s.Last) {
					delete(u.UAs, a)
				}
			}
			for ip, lt := range u.OwnIPs {
				if !keep(lt) {
					delete(u.OwnIPs, ip)
					delete(u.OwnFrom, ip)
				}
			}
			u.oldest, u.oldestOK = oldest, !oldest.IsZero()
		}
		for ip, lt := range ten.IPSeen {
			if lt.Before(cut) {
				delete(ten.IPSeen, ip)
			}
		}
		mw := e.mailTime(ten)
		for k, lt := range ten.D4Alerted {
			if lt.Before(mw.Add(-24*time.Hour - held)) {
				delete(ten.D4Alerted, k)
			}
		}
		for k, np := range ten.NewPairs {
			if np.First.Before(mw.Add(-e.cfg.D2.RolloutWindow.D())) && !np.Done {
				delete(ten.NewPairs, k)
			}
		}
		for k, mm := range ten.Multi {
			cut := mw.Add(-e.cfg.D3.MultiMailboxWindow.D())
			for mbx, t := range mm {
				if t.Before(cut) {
					delete(mm, mbx)
				}
			}
			if len(mm) == 0 {
				delete(ten.Multi, k)
			}
		}
		ss := ten.Searches[:0]
		for _, s := range ten.Searches {
			if !s.Time.Before(mw.Add(-e.cfg.D8.Follow.D())) {
				ss = append(ss, s)
			}
		}
		ten.Searches = ss
	}
}

// ---- mail access ----

func pairKey(app, client string) string { return strings.ToLower(app) + "|" + strings.ToLower(client) }

func appKey(app, client string) string {
	if client != "" {
		return strings.ToLower(client)
	}
	return strings.ToLower(app)
}

func (e *Engine) mailAccess(ten *tenantState, ev *event.Event, acc *event.MailAccess, t time.Time) {
	mbName := acc.Mailbox
	if mbName == "" {
		return
	}
	p := pending{
		Seq: e.st.Seq, Due: t.Add(e.cfg.D1.Grace.D()), Time: t, Tenant: strings.ToLower(ev.Tenant),
		User: strings.ToLower(ev.User), Mailbox: mbName, AppID: ev.AppID, ClientApp: ev.ClientAppID,
		IP: ev.IP, UserAgent: ev.UserAgent, Sessions: acc.SessionIDs, Token: ev.TokenID,
		RecordID: ev.RecordID, Items: acc.Items, Source: ev.Source, Operation: ev.Operation,
	}
	if p.User == "" {
		p.User = mbName
	}
	mb := e.mailbox(ten, mbName)
	if ua := p.UserAgent; ua != "" {
		f, ok := mb.ReadUAs[ua]
		if !ok && len(mb.ReadUAs) < maxReadUAs || ok && t.Before(f) {
			mb.ReadUAs[ua] = t
		}
		if !ok && ten.UAMailboxes[ua] < e.cfg.D4.PrevalentUsers && (ten.UAMailboxes[ua] > 0 || len(ten.UAMailboxes) < maxTenantUAs) {
			ten.UAMailboxes[ua]++
		}
	}
	e.sanctionedRead(ten, &p)
	e.firstSeenApp(ten, mb, &p)
	e.volume(ten, mb, &p, acc)
	e.scriptClient(ten, mb, &p)
	if !acc.Sync {
		e.searchFollow(ten, &p)
	}
	// D9 activity.
	day := t.Unix() / 86400
	if n := len(mb.Days); n == 0 || mb.Days[n-1] < day {
		mb.Days = append(mb.Days, day)
		if len(mb.Days) > 14 {
			mb.Days = mb.Days[len(mb.Days)-14:]
		}
	}
	if t.After(mb.LastRead) {
		mb.LastRead = t
		mb.Silent = false
	}
	if (e.cfg.D1.Enabled || e.cfg.D4.Enabled) && (ev.Source == "" || ev.Source == "m365.ual" || ev.Source == "json") {
		e.hold(p)
		e.release() // a late access may already be due
	}
	// D4 baseline: when each app first read mail from each network.
	if p.IP != "" {
		if info, ok := e.lookup(p.IP); ok && info.ASN != 0 {
			k := appKey(p.AppID, p.ClientApp)
			m := ten.AppASNs[k]
			if m == nil {
				m = map[uint32]time.Time{}
				ten.AppASNs[k] = m
			}
			if f, ok := m[info.ASN]; !ok || t.Before(f) {
				m[info.ASN] = t
			}
		}
	}
}

func (e *Engine) base(p *pending, signal, title string, level alert.Level) alert.Alert {
	a := alert.Alert{
		Time: p.Time, Signal: signal, Title: title, Level: level, Tenant: p.Tenant,
		Source: p.Source, Operation: p.Operation, User: p.User, Mailbox: p.Mailbox,
		Fields: map[string]string{},
	}
	if p.RecordID != "" {
		a.RecordIDs = []string{p.RecordID}
	}
	set := func(k, v string) {
		if v != "" {
			a.Fields[k] = v
		}
	}
	set("app_id", p.AppID)
	set("client_app_id", p.ClientApp)
	set("src_ip", p.IP)
	set("user_agent", p.UserAgent)
	set("token_id", p.Token)
	set("session_id", strings.Join(p.Sessions, ","))
	return a
}

func (e *Engine) idActors(a *alert.Alert, p *pending) {
	a.AddActor(alert.ActorToken, p.Token)
	for _, s := range p.Sessions {
		a.AddActor(alert.ActorSession, s)
	}
}

// judge runs the checks that wait for late sign-ins: D1 and D4.
func (e *Engine) judge(p *pending) {
	ten := e.st.Tenants[p.Tenant]
	if ten == nil {
		return
	}
	silent := e.silentSources(ten, p)
	n := len(e.alerts)
	// A read older than the sign-in evidence still kept (its mail log
	// arrives later than max_mail_lag) is judged as a tenant's first mail
	// export before any sign-ins: D1 has nothing to look its token up in
	// and stays quiet; D4's network history reaches back far enough.
	forgotten := p.Time.Before(ten.EvidenceFrom)
	if e.cfg.D1.Enabled && !forgotten {
		e.orphanToken(ten, p)
	}
	if e.cfg.D4.Enabled {
		e.network(ten, p)
	}
	if forgotten {
		for i := range e.alerts[n:] {
			e.alerts[n+i].Set("mail_lag", "read "+roundHours(e.st.Watermark.Sub(p.Time))+" before the newest event, beyond max_mail_lag: judged without the sign-ins of its day")
		}
	}
	e.mailLag(ten, p, forgotten)
	if len(silent) == 0 {
		return
	}
	if len(e.alerts) > n {
		lag := e.signInLag(ten, p, silent)
		for i := range e.alerts[n:] {
			a := &e.alerts[n+i]
			a.Set("signin_lag", lag)
			a.Title += " (judged without the sign-in log, which was silent or late)"
		}
	}
	e.silentSignIns(ten, p, silent)
}

// mailLag reports (D9), once per episode, that the tenant's mail log
// arrives later than the sign-in evidence is kept (max_mail_lag), so its
// reads are judged without it; a read judged with its evidence again
// ends the episode.
func (e *Engine) mailLag(ten *tenantState, p *pending, forgotten bool) {
	if !forgotten || ten.MailLagging {
		ten.MailLagging = ten.MailLagging && forgotten
		return
	}
	ten.MailLagging = true
	c := e.cfg
	if !c.D9.Enabled {
		return
	}
	lag := e.st.Watermark.Sub(p.Time)
	e.raise(alert.Alert{
		Time: p.Time, Signal: "D9", Level: alert.Medium, Tenant: p.Tenant, Source: p.Source, Operation: p.Operation, Posture: true,
		Title: "Mail log arrives " + roundHours(lag) + " after the sign-in log: mail reads older than " + ten.EvidenceFrom.UTC().Format(time.RFC3339) +
			" are judged without sign-in evidence (D1 does not judge them; max_mail_lag " + c.D1.MaxMailLag.D().String() + ")",
		Fields: map[string]string{"source": p.Source, "mail_lag": lag.Round(time.Minute).String(), "evidence_from": ten.EvidenceFrom.UTC().Format(time.RFC3339),
			"newest_event": e.st.Watermark.UTC().Format(time.RFC3339), "max_mail_lag": c.D1.MaxMailLag.D().String()},
	})
}

// roundHours writes d in whole hours ("30 h").
func roundHours(d time.Duration) string {
	return strconv.FormatInt(int64(d.Round(time.Hour)/time.Hour), 10) + " h"
}

// D1.
func (e *Engine) orphanToken(ten *tenantState, p *pending) {
	c := e.cfg
	if c.allowD1[strings.ToLower(p.AppID)] || c.allowD1[strings.ToLower(p.ClientApp)] {
		return
	}
	if p.Token == "" && len(p.Sessions) == 0 {
		return // nothing to join on
	}
	// Judge only accesses the sign-in logs cover.
	if ten.FirstSignin.IsZero() || ten.FirstSignin.After(p.Time.Add(-c.D1.Coverage.D())) {
		return
	}
	hi := p.Time.Add(c.D1.Skew.D())
	// The sign-ins that could have issued the token or session, the
	// token's first. They are walked again below rather than collected:
	// a session holds up to 32, and a list of them was an allocation per
	// access.
	var tokenSI SignIn
	byToken := false
	if p.Token != "" {
		si, ok := e.st.Tokens[p.Token]
		tokenSI, byToken = si, ok && !si.Time.After(hi) && !si.Time.Before(p.Time.Add(-c.D1.TokenLifetime.D()))
	}
	matches := func(yield func(SignIn) bool) {
		if byToken && !yield(tokenSI) {
			return
		}
		for _, s := range p.Sessions {
			for _, si := range e.st.Sessions[s] {
				if !si.Time.After(hi) && !si.Time.Before(p.Time.Add(-c.D1.SessionLifetime.D())) && !yield(si) {
					return
				}
			}
		}
	}
	var first SignIn
	matched := false
	for si := range matches {
		first, matched = si, true
		break
	}
	how := "session"
	if byToken {
		how = "token"
	}
	if !matched {
		// Tokens with no sign-in record are common in real tenants
		// (non-interactive sign-ins are aggregated and sampled; refresh
		// redemptions leave none): alone, with everything else about the
		// access familiar, D1 is context, not an intrusion.
		why := e.corroboration(ten, p)
		if len(why) == 0 {
			a := e.base(p, "D1", "Mail read with a token no sign-in issued; network, client and volume familiar", alert.Low)
			e.idActors(&a, p)
			a.AddActor(alert.ActorUser, p.User)
			e.raise(a)
			return
		}
		a := e.base(p, "D1", "Mail read with a token and session no sign-in issued", alert.High)
		a.Set("corroboration", strings.Join(why, "; "))
		e.idActors(&a, p)
		// Forged tokens are minted one by one; an app that is itself new
		// to the tenant ties them into one incident.
		if first, ok := ten.Pairs[pairKey(p.AppID, p.ClientApp)]; ok && e.learned(ten, first) {
			a.AddActor(alert.ActorClientApp, appKey(p.AppID, p.ClientApp))
		}
		a.AddActor(alert.ActorUser, p.User)
		e.raise(a)
		return
	}
	// The issuing sign-in came from elsewhere: a replayed token or
	// session. Only judged when both networks are known.
	if p.IP == "" {
		return
	}
	info, ok := e.lookup(p.IP)
	if !ok || info.ASN == 0 {
		return
	}
	for si := range matches {
		if si.IP == p.IP || si.ASN == 0 || si.ASN == info.ASN {
			return
		}
	}
	title := "Mail read with a " + how + " issued to another network (AS" + strconv.FormatUint(uint64(first.ASN), 10) + ", used from AS" + strconv.FormatUint(uint64(info.ASN), 10) + ")"
	// A session that moves between the user's own networks (office,
	// VPN egress, home) is roaming, not replay.
	why := e.corroboration(ten, p)
	if len(why) == 0 {
		a := e.base(p, "D1", title+"; the network is familiar", alert.Low)
		e.idActors(&a, p)
		e.raise(a)
		return
	}
	a := e.base(p, "D1", title, alert.Medium)
	a.Set("corroboration", strings.Join(why, "; "))
	e.idActors(&a, p)
	a.AddActor(alert.ActorIP, p.IP)
	a.Fields["signin_ip"] = first.IP
	e.raise(a)
}

// tenantNetworkUsers is how many other users of the tenant must have
// signed in from a network for D1 to count it as the organisation's.
const tenantNetworkUsers = 2

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// corroboration says what, besides the missing sign-in, is unfamiliar
// about an access: the network (new to the user and not the tenant's
// own egress), a hosting or residential range never seen in the tenant,
// a client new to the mailbox, bulk reads. The app id is never a reason:
// a forged token claims whatever app id it likes.
func (e *Engine) corroboration(ten *tenantState, p *pending) []string {
	c := e.cfg
	var why []string
	since, settled := p.Time.Add(-c.D4.History.D()), p.Time.Add(-c.D4.Nearby.D())
	established := func(s seen, ok bool) bool { return ok && !s.Last.Before(since) && s.First.Before(settled) }
	u := ten.Users[p.User]
	info, _ := e.lookup(p.IP)
	familiar := false
	if p.IP != "" && u != nil {
		s, ok := u.IPs[p.IP]
		// The user signed in from this very address within a session's
		// lifetime (a new cloud PC, a new office): their network now,
		// even before it is established.
		current := ok && !s.First.After(p.Time) && !s.Last.Before(p.Time.Add(-c.D1.SessionLifetime.D()))
		familiar = established(s, ok) || current || u.ownIP(p.IP, since, p.Due)
		if info.ASN != 0 {
			s, ok := u.ASNs[info.ASN]
			familiar = familiar || established(s, ok)
		}
	}
	// A network colleagues sign in from is the organisation's (an egress
	// that just moved, an office): a token refreshed there without a
	// sign-in record is not an intruder's for that alone.
	if others := len(ten.ASNUsers[info.ASN]); info.ASN != 0 && (others >= c.D4.PrevalentUsers || others-boolInt(slices.Contains(ten.ASNUsers[info.ASN], p.User)) >= tenantNetworkUsers) {
		familiar = true
	}
	// A record without a client address (UAL leaves it out now and then)
	// says nothing either way about the network; nor does a network
	// before the baseline has been learned.
	learned := e.learned(ten, p.Time)
	if !familiar && p.IP != "" && learned {
		w := "a network the user never signed in from"
		if info.ASN != 0 {
			w += " (AS" + strconv.FormatUint(uint64(info.ASN), 10) + ")"
		}
		why = append(why, w)
	}
	if learned && (info.Kind == "hosting" || info.Kind == "residential") && info.ASN != 0 && len(ten.ASNUsers[info.ASN]) == 0 {
		why = append(why, "a "+info.Kind+" range no one in the tenant signed in from")
	}
	if mb := ten.Mailboxes[p.Mailbox]; mb != nil && p.UserAgent != "" {
		// New to the mailbox and to most of the tenant: a client roll-out
		// brings one string to many mailboxes at once.
		if first, ok := mb.ReadUAs[p.UserAgent]; ok && !first.Before(p.Time) && mb.N > 0 && ten.UAMailboxes[p.UserAgent] < c.D4.PrevalentUsers {
			why = append(why, "a client new to the mailbox and to the tenant ("+p.UserAgent+")")
		}
	}
	if p.Items >= c.D3.OperationCount {
		why = append(why, "bulk reads ("+strconv.Itoa(p.Items)+" items in one record)")
	}
	return why
}

// D4.
func (e *Engine) network(ten *tenantState, p *pending) {
	c := e.cfg
	if p.IP == "" || !e.learned(ten, p.Time) {
		return
	}
	addr, err := netip.ParseAddr(p.IP)
	if err != nil {
		return
	}
	for _, n := range c.allowNets {
		if n.Contains(addr.Unmap()) {
			return
		}
	}
	// A network the user has signed in from for a while (not just now:
	// an intruder signing in with stolen credentials or a replayed
	// session also leaves sign-ins) is the user's own.
	since := p.Time.Add(-c.D4.History.D())
	settled := p.Time.Add(-c.D4.Nearby.D())
	established := func(s seen, ok bool) bool {
		return ok && !s.Last.Before(since) && s.First.Before(settled)
	}
	u := ten.Users[p.User]
	if u != nil {
		s, ok := u.IPs[p.IP]
		if established(s, ok) {
			return
		}
	}
	info, _ := e.lookup(p.IP)
	suspect := c.suspectK[info.Kind] || (info.ASN != 0 && c.suspectASN[info.ASN])
	var iocHit *Indicator
	for _, ind := range e.iocs.matchIP(p.IP) {
		if ind.InWindow(p.Time) {
			iocHit = ind
			break
		}
	}
	known := false
	if info.ASN != 0 {
		if u != nil {
			s, ok := u.ASNs[info.ASN]
			known = established(s, ok)
		}
		// Many users signing in from the network: the organisation's own
		// egress (a new VPN or SASE provider), not an intruder's.
		known = known || len(ten.ASNUsers[info.ASN]) >= c.D4.PrevalentUsers
		// An app that has read mail from this network for longer than
		// the learning period (a SaaS connector, a backup service) is not
		// new there.
		if m := ten.AppASNs[appKey(p.AppID, p.ClientApp)]; m != nil {
			if f, ok := m[info.ASN]; ok && f.Before(p.Time.Add(-e.cfg.Learning.D())) {
				known = true
			}
		}
	}
	nearby := !ten.IPSeen[p.IP].Before(p.Time.Add(-c.D4.Nearby.D()))
	if known && iocHit == nil {
		return
	}
	if !suspect && iocHit == nil && nearby {
		return
	}
	// An address that failed to sign in to many accounts is a password
	// sprayer's; mail read from it is a takeover, not travel.
	spray := 0
	if f := e.st.Failures[p.IP]; f != nil && !f.Last.Before(p.Time.Add(-c.D4.Nearby.D())) {
		spray = len(f.Users)
	}
	// The user's own, long-used device signed in from this address: a
	// new network of theirs (a VPN change, a hotel), not an intruder's.
	if u != nil && u.ownIP(p.IP, since, p.Due) && iocHit == nil && spray < c.D4.SprayAccounts {
		return
	}
	k := p.Mailbox + "|" + p.IP
	if last, ok := ten.D4Alerted[k]; ok && p.Time.Sub(last) < 24*time.Hour && p.Time.Sub(last) >= 0 {
		return
	}
	ten.D4Alerted[k] = p.Time
	level := alert.Medium
	why := "an address no sign-in used"
	switch {
	case iocHit != nil:
		level, why = alert.High, "an IOC address ("+iocHit.Set+")"
	case spray >= c.D4.SprayAccounts:
		level, why = alert.Critical, "an address that failed to sign in to "+strconv.Itoa(spray)+" accounts (password spray)"
	case suspect:
		level, why = alert.High, "a "+info.Kind+" network"
		if info.Org != "" {
			why += " (" + info.Org + ")"
		}
	}
	a := e.base(p, "D4", "Mail read from "+why, level)
	a.AddActor(alert.ActorIP, p.IP)
	e.idActors(&a, p)
	if info.ASN != 0 {
		a.Fields["asn"] = strconv.FormatUint(uint64(info.ASN), 10)
	}
	if info.Country != "" {
		a.Fields["country"] = info.Country
	}
	if info.Kind != "" {
		a.Fields["network_kind"] = info.Kind
	}
	e.raise(a)
}

// D2.
func (e *Engine) firstSeenApp(ten *tenantState, mb *mailboxState, p *pending) {
	c := e.cfg
	if mb.lastPairOK && p.AppID == mb.lastApp && p.ClientApp == mb.lastClient {
		return // the mailbox's usual client: known to both, nothing to say
	}
	key := pairKey(p.AppID, p.ClientApp)
	_, inTenant := ten.Pairs[key]
	_, inMailbox := mb.Pairs[key]
	if !inTenant {
		ten.Pairs[key] = p.Time
	}
	if !inMailbox {
		mb.Pairs[key] = p.Time
	}
	// Pairs are never forgotten: from now on this pair is in both.
	mb.lastApp, mb.lastClient, mb.lastPairOK = p.AppID, p.ClientApp, true
	if !c.D2.Enabled || (inTenant && inMailbox) || !e.learned(ten, p.Time) {
		return
	}
	if c.allowD2[strings.ToLower(p.ClientApp)] || (p.ClientApp == "" && c.allowD2[strings.ToLower(p.AppID)]) {
		return
	}
	own := p.User == p.Mailbox
	np := ten.NewPairs[key]
	if !inTenant {
		np = &newPair{First: p.Time, Users: map[string]bool{}}
		ten.NewPairs[key] = np
	}
	if np != nil {
		if own && p.Time.Sub(np.First) <= c.D2.RolloutWindow.D() {
			np.Users[p.User] = true
			if len(np.Users) >= c.D2.RolloutUsers {
				np.Done = true
			}
		}
		if np.Done {
			return // a client roll-out, not an intruder
		}
	}
	level, title := alert.MustLevel(c.D2.MailboxLevel), "App new to this mailbox read mail"
	if !inTenant {
		level, title = alert.MustLevel(c.D2.TenantLevel), "App never seen in the tenant read mail"
	}
	consentKey := strings.ToLower(p.ClientApp)
	if consentKey == "" {
		consentKey = strings.ToLower(p.AppID)
	}
	// A recent consent explains a new app only where it reads the
	// consenting user's own mailbox (delegated access); an app reading
	// other people's mail right after a consent is the consent-phishing
	// pattern, not its excuse.
	if ct, ok := ten.Consents[consentKey]; ok && !ct.Time.After(p.Time) && p.Time.Sub(ct.Time) <= c.D2.ConsentWindow.D() {
		if ct.User == p.Mailbox {
			level = alert.MustLevel(c.D2.ConsentedLevel)
			title += " (consented by its user " + ct.Time.UTC().Format("2006-01-02") + ")"
		} else {
			title += " (consented by " + ct.User + ", reading another mailbox)"
		}
	}
	a := e.base(p, "D2", title, level)
	// The app identifies the actor only when it is new to the tenant; an
	// app every user has (OWA) new to one mailbox says nothing about who.
	if !inTenant {
		if p.ClientApp != "" {
			a.AddActor(alert.ActorClientApp, p.ClientApp)
		} else {
			a.AddActor(alert.ActorApp, p.AppID)
		}
	}
	e.idActors(&a, p)
	e.raise(a)
}

// D3.
func (e *Engine) volume(ten *tenantState, mb *mailboxState, p *pending, acc *event.MailAccess) {
	c := e.cfg
	if !c.D3.Enabled {
		return
	}
	if acc.Throttled {
		a := e.base(p, "D3", "Mailbox throttled: auditing of its reads stops for 24 h", alert.High)
		// The throttled record is the heavy reader's own.
		e.idActors(&a, p)
		a.AddActor(alert.ActorIP, p.IP)
		e.raise(a)
	}
	items := acc.Items
	if items == 0 {
		for _, f := range acc.Folders {
			items += len(f.Messages)
		}
	}
	hour := p.Time.Truncate(time.Hour)
	if !mb.HourStart.IsZero() && hour.After(mb.HourStart) {
		e.closeHour(ten, p.Tenant, p.Mailbox, mb)
	}
	if mb.HourStart.IsZero() || hour.After(mb.HourStart) {
		mb.HourStart, mb.HourItems, mb.HourOpAlerted = hour, 0, false
	}
	mb.HourItems += items
	if p.Time.After(mb.HourLast) {
		mb.HourLast = p.Time
	}
	if items >= c.D3.OperationCount && !mb.HourOpAlerted {
		mb.HourOpAlerted = true
		a := e.base(p, "D3", "One record aggregated "+strconv.Itoa(items)+" mail accesses", alert.Medium)
		e.idActors(&a, p)
		e.raise(a)
	}
	// One app and accessor reading many mailboxes.
	k := appKey(p.AppID, p.ClientApp)
	if c.allowD3[k] || c.allowD3[strings.ToLower(p.AppID)] {
		return
	}
	mk := k + "|" + p.User
	win := c.D3.MultiMailboxWindow.D()
	// The latest read of each mailbox by this accessor: bounded by the
	// mailboxes it reads, not by how often it reads them.
	m := ten.Multi[mk]
	if m == nil {
		m = map[string]time.Time{}
		ten.Multi[mk] = m
	}
	if t, ok := m[p.Mailbox]; !ok || p.Time.After(t) {
		m[p.Mailbox] = p.Time
	}
	cut := p.Time.Add(-win)
	distinct := 0
	for mbx, t := range m {
		if t.Before(cut) {
			delete(m, mbx)
		} else {
			distinct++
		}
	}
	if distinct > c.D3.MultiMailbox {
		if last, ok := ten.MultiAlert[mk]; ok && p.Time.Sub(last) < 24*time.Hour {
			return
		}
		ten.MultiAlert[mk] = p.Time
		a := e.base(p, "D3", "One app read "+strconv.Itoa(distinct)+" mailboxes within "+win.String(), alert.Medium)
		a.Mailbox = ""
		if p.ClientApp != "" {
			a.AddActor(alert.ActorClientApp, p.ClientApp)
		} else {
			a.AddActor(alert.ActorApp, p.AppID)
		}
		a.AddActor(alert.ActorIP, p.IP)
		a.Fields["mailboxes"] = strings.Join(slices.Sorted(maps.Keys(m)), ",")
		e.raise(a)
	}
}

// closeHour judges a finished hour of a mailbox's reads against its
// baseline, then adds it to the baseline.
func (e *Engine) closeHour(ten *tenantState, tenantID, mbName string, mb *mailboxState) {
	c := e.cfg
	if mb.HourStart.IsZero() || mb.HourItems == 0 {
		return
	}
	x := float64(mb.HourItems)
	if c.D3.Enabled && mb.N >= c.D3.BaselineHours && e.learned(ten, mb.HourStart) {
		sd := math.Sqrt(mb.Var)
		limit := mb.Mean + c.D3.HourlyK*sd
		if x > limit && mb.HourItems >= c.D3.HourlyMinItems {
			a := alert.Alert{
				Time: mb.HourLast, Signal: "D3", Level: alert.Medium, Tenant: tenantID, Mailbox: mbName,
				Source: "m365.ual", Operation: "MailItemsAccessed",
				Title:  "Read volume " + strconv.Itoa(mb.HourItems) + " items in an hour, baseline " + strconv.FormatFloat(mb.Mean, 'f', 0, 64) + " ± " + strconv.FormatFloat(sd, 'f', 0, 64),
				Fields: map[string]string{"hour": mb.HourStart.UTC().Format(time.RFC3339), "items": strconv.Itoa(mb.HourItems)},
			}
			e.raise(a)
		}
	}
	// EWMA over about a week of active hours; the first hours seed it.
	alpha := 1.0 / 168
	if mb.N < 24 {
		alpha = 1.0 / float64(mb.N+1)
	}
	d := x - mb.Mean
	mb.Mean += alpha * d
	mb.Var = (1 - alpha) * (mb.Var + alpha*d*d)
	mb.N++
	mb.HourItems = 0
}

// D7.
func (e *Engine) scriptClient(ten *tenantState, mb *mailboxState, p *pending) {
	c := e.cfg
	ua := strings.TrimSpace(p.UserAgent)
	if !c.D7.Enabled || ua == "" {
		return
	}
	matched, ok := e.scriptOf[ua]
	if !ok {
		for _, re := range c.scriptRE {
			if re.MatchString(ua) {
				matched = re.String()
				break
			}
		}
		if e.scriptOf == nil || len(e.scriptOf) > 1<<14 {
			e.scriptOf = map[string]string{}
		}
		e.scriptOf[ua] = matched
	}
	if matched == "" {
		return
	}
	if _, seen := mb.Clients[ua]; seen {
		return
	}
	mb.Clients[ua] = p.Time
	if !e.learned(ten, p.Time) {
		return
	}
	a := e.base(p, "D7", "Script-style client new to this mailbox: "+ua, alert.Medium)
	e.idActors(&a, p)
	if p.ClientApp != "" {
		a.AddActor(alert.ActorClientApp, p.ClientApp)
	}
	a.Fields["pattern"] = strings.TrimPrefix(matched, "(?i)")
	e.raise(a)
}

// D8: remember sensitive searches.
func (e *Engine) search(ten *tenantState, ev *event.Event, t time.Time) {
	if !e.cfg.D8.Enabled {
		return
	}
	q := ""
	for _, s := range symQueryText {
		if v := ev.Values(s); len(v) > 0 && v[0].Value != "" {
			q = v[0].Value
			break
		}
	}
	if q == "" {
		return
	}
	lq := strings.ToLower(q)
	var hits []string
	for _, term := range e.cfg.terms {
		if containsWord(lq, term) {
			hits = append(hits, term)
		}
	}
	if len(hits) == 0 {
		return
	}
	mb := strings.ToLower(ev.Mailbox)
	if mb == "" {
		mb = strings.ToLower(ev.User)
	}
	ten.Searches = append(ten.Searches, search{
		Time: t, User: strings.ToLower(ev.User), Mailbox: mb, Sessions: sessionIDs(ev), IP: ev.IP,
		Terms: hits, RecordID: ev.RecordID, Query: q,
	})
}

func sessionIDs(ev *event.Event) []string { return event.SessionIDs(ev) }

// containsWord matches a term at word boundaries, so "token" does not
// match "tokenization" but "wire transfer" matches as a phrase.
func containsWord(s, term string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], term)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(term)
		if (j == 0 || !isWordByte(s[j-1])) && (end == len(s) || !isWordByte(s[end])) {
			return true
		}
		i = j + 1
	}
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 0x80
}

// D8: a read after a sensitive search by the same party.
func (e *Engine) searchFollow(ten *tenantState, p *pending) {
	if len(ten.Searches) == 0 {
		return
	}
	follow := e.cfg.D8.Follow.D()
	kept := ten.Searches[:0]
	for _, s := range ten.Searches {
		if p.Time.Sub(s.Time) > follow {
			continue // expired
		}
		same := s.Mailbox == p.Mailbox || s.User == p.User
		party := len(s.Sessions) == 0 && s.IP == "" || s.IP != "" && s.IP == p.IP || overlap(s.Sessions, p.Sessions)
		if !same || !party || p.Time.Before(s.Time) {
			kept = append(kept, s)
			continue
		}
		a := e.base(p, "D8", "Mail read after a sensitive search ("+strings.Join(s.Terms, ", ")+")", alert.Medium)
		a.Fields["query"] = s.Query
		if s.RecordID != "" {
			a.RecordIDs = append([]string{s.RecordID}, a.RecordIDs...)
		}
		e.idActors(&a, p)
		e.raise(a)
	}
	ten.Searches = kept
}

func overlap(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// consent remembers when an application was consented to.
func (e *Engine) consent(ten *tenantState, ev *event.Event, t time.Time) {
	for _, id := range consentAppIDs(ev) {
		ten.Consents[strings.ToLower(id)] = consent{Time: t, User: strings.ToLower(ev.User)}
	}
}

// AlertDelay bounds how far before the newest event an alert the engine
// raises from now on may be dated: an access is judged up to the evidence
// margin after it, a late mail log is waited for up to max_mail_lag, a
// silent mailbox or source is reported dated its last record once the
// gap passes, and the hourly checks and hour closings add up to a day.
// Incident grouping settles the groups older than this (detect.Pipeline).
func (e *Engine) AlertDelay() time.Duration {
	c := e.cfg
	d := max(e.evidenceMargin(), c.D1.MaxMailLag.D(), c.D9.MailboxGap.D(), c.D9.SourceGap.D())
	return d + 24*time.Hour
}
