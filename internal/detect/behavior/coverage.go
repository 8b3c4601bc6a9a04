package behavior

import (
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"

	"github.com/vigil-audit/vigil/internal/event"
)

// trackSource notes a source's activity for the coverage checks (D9).
func (e *Engine) trackSource(ten *tenantState, ev *event.Event, t time.Time) {
	k := ev.Source
	if k == "" {
		k = "unknown"
	}
	s := ten.Sources[k]
	if s == nil {
		s = &sourceState{Last: t}
		ten.Sources[k] = s
		return
	}
	// How far behind the tenant's other sources it arrives: a mail log a
	// day behind the sign-in log is late, not silent.
	s.delayed(ten.Newest, t)
	if t.After(s.Last) {
		// Gaps seen while learning set the source's normal rhythm.
		if gap := t.Sub(s.Last); !e.learned(ten, t) && gap > s.MaxGap {
			s.MaxGap = gap
		}
		s.Last = t
		s.Alerted = false
	}
}

// signInStream names the sign-in stream an event belongs to, "" for an
// event of no source that carries sign-ins. Interactive and
// non-interactive sign-ins are collected from different lists with
// different delays (vigil collect's signins and signins.noninteractive),
// so each is a stream of its own; a record that does not say is taken
// for interactive (Graph v1.0 lists only those).
func signInStream(ev *event.Event) string {
	if ev.Source != "entra.signin" {
		return ""
	}
	if v := ev.Values(symInteractive); len(v) > 0 && strings.EqualFold(v[0].Value, "false") {
		return ev.Source + " (non-interactive)"
	}
	return ev.Source + " (interactive)"
}

// trackSignIns notes a record of a sign-in stream (successful or not):
// from its first record on, the tenant's mail accesses wait for the
// stream (judgedUpTo). Call it before the tenant's newest event time
// takes t in.
func (e *Engine) trackSignIns(ten *tenantState, ev *event.Event, t time.Time) {
	k := signInStream(ev)
	if k == "" {
		return
	}
	s := ten.SignIns[k]
	if s == nil {
		s = &sourceState{Last: t}
		ten.SignIns[k] = s
	}
	s.delayed(ten.Newest, t)
	if t.After(s.Last) {
		if gap := t.Sub(s.Last); !e.learned(ten, t) && gap > s.MaxGap {
			s.MaxGap = gap
		}
		s.Last = t
	}
}

// delayWindow is how long (in event time) a stream's delays are
// remembered: those of the last one to two windows count.
const delayWindow = 12 * time.Hour

// delayed notes how far behind the tenant's newest event w a record of
// the stream with time t arrived (0 in time order: the reordering window
// sorts what is only a little late).
func (s *sourceState) delayed(w, t time.Time) {
	if s.DelayFrom.IsZero() || w.Sub(s.DelayFrom) >= delayWindow {
		s.DelaysPrev = s.Delays
		if w.Sub(s.DelayFrom) >= 2*delayWindow {
			s.DelaysPrev = delayHist{}
		}
		s.Delays, s.DelayFrom = delayHist{}, w
	}
	s.Delays.add(max(w.Sub(t), 0))
}

// delayHist counts a stream's delays in buckets that double from 5
// minutes (bucket 0 holds those under 5 minutes), with the largest delay
// of each: bounded, whatever the rate.
type delayHist struct {
	N   [delayBuckets]int64
	Max [delayBuckets]time.Duration
}

const delayBuckets = 16

func (h *delayHist) add(d time.Duration) {
	i := min(bits.Len64(uint64(d/(5*time.Minute))), delayBuckets-1)
	h.N[i]++
	h.Max[i] = max(h.Max[i], d)
}

// delay is the stream's usual delay over the last one to two windows: the
// largest, leaving out the latest 1 % of its records (a straggler the
// sign-in log delivers days late must not hold every access).
func (s *sourceState) delay() time.Duration {
	var total int64
	for i := range delayBuckets {
		total += s.Delays.N[i] + s.DelaysPrev.N[i]
	}
	skip := total / 100
	for i := delayBuckets - 1; i >= 0; i-- {
		n := s.Delays.N[i] + s.DelaysPrev.N[i]
		if n > skip {
			return max(s.Delays.Max[i], s.DelaysPrev.Max[i])
		}
		skip -= n
	}
	return 0
}

// complete is how far (in event time) the source's records can be taken
// to be in: what arrived, or as far as its usual delay behind the newest
// event lets one expect, whichever is later. A source that delivers in
// time order is complete up to the newest event even while it is quiet
// (a small tenant's night); one whose records arrive three hours late
// is complete up to three hours before it.
func (s *sourceState) complete(w time.Time) time.Time {
	c := w.Add(-s.delay())
	if s.Last.After(c) {
		return s.Last
	}
	return c
}

// judgedUpTo is the event time up to which the tenant's sign-in evidence
// is in: the lowest completeness (sourceState.complete, against the
// tenant's newest event) of its sign-in streams, but never more than
// orphan_token.max_source_lag behind the newest event of all, so that a
// slow or stopped collector holds no access for longer. A mail access is
// judged once this passes the end of its grace period. A tenant with no
// sign-in stream waits on nothing but the newest event, as a tenant
// without sign-in logs always did.
func (e *Engine) judgedUpTo(ten *tenantState) time.Time {
	w := e.st.Watermark
	if ten == nil {
		return w
	}
	upTo := w
	for _, s := range ten.SignIns {
		if c := s.complete(ten.Newest); c.Before(upTo) {
			upTo = c
		}
	}
	return latest(upTo, w.Add(-e.cfg.D1.MaxSourceLag.D()))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// silentAt is how long a sign-in stream had had nothing at time at, when
// that is longer than both max_source_lag and the pauses it made while
// the tenant was learned (a small tenant's nights): a stopped collector.
// 0 otherwise. Measured at an access's due time it does not depend on
// when the access is judged, so not on the order the logs arrive in.
func (e *Engine) silentAt(s *sourceState, at time.Time) time.Duration {
	gap := at.Sub(s.Last)
	if gap <= e.cfg.D1.MaxSourceLag.D() || gap <= 2*s.MaxGap {
		return 0
	}
	return gap
}

// silentNow is silentAt where the stream's usual delay says it should
// have got to by now.
func (e *Engine) silentNow(ten *tenantState, s *sourceState) time.Duration {
	return e.silentAt(s, ten.Newest.Add(-s.delay()))
}

// tooLate is a sign-in stream's usual delay when it is longer than
// max_source_lag (accesses are judged before its records arrive), 0
// otherwise.
func (e *Engine) tooLate(s *sourceState) time.Duration {
	if d := s.delay(); d > e.cfg.D1.MaxSourceLag.D() {
		return d
	}
	return 0
}

// withoutSignIns says why a sign-in stream's evidence is missing from a
// judgement due at ("" when it is not): it had gone silent, or it arrives
// later than the bound.
func (e *Engine) withoutSignIns(ten *tenantState, k string, at time.Time) string {
	s := ten.SignIns[k]
	if gap := e.silentAt(s, at); gap > 0 {
		return k + " has nothing after " + s.Last.UTC().Format(time.RFC3339) + ", " + roundDur(gap) +
			" before the access was due (longer than max_source_lag and its usual pauses)"
	}
	if d := e.tooLate(s); d > 0 {
		return k + " arrives " + roundDur(d) + " late, beyond max_source_lag; it has nothing after " + s.Last.UTC().Format(time.RFC3339)
	}
	return ""
}

// silentSources names the tenant's sign-in streams an access is judged
// without: those silent or too late (withoutSignIns) whose last record
// is before the end of its grace period, sorted. nil when the sign-in
// evidence was there.
func (e *Engine) silentSources(ten *tenantState, p *pending) []string {
	// While the tenant is learning, a stream's usual pauses are not known
	// yet: its first quiet night is no sign of a stopped collector.
	if !e.learned(ten, p.Due) {
		return nil
	}
	var out []string
	for k, s := range ten.SignIns {
		if s.Last.Before(p.Due) && (e.silentAt(s, p.Due) > 0 || e.tooLate(s) > 0) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// signInLag says, for an alert's signin_lag field, which sign-in streams
// it was judged without and why.
func (e *Engine) signInLag(ten *tenantState, p *pending, silent []string) string {
	var out []string
	for _, k := range silent {
		out = append(out, e.withoutSignIns(ten, k, p.Due)+"; judged without its later records")
	}
	return strings.Join(out, "; ")
}

// silentSignIns reports (D9), once per episode, a sign-in source that
// mail accesses are being judged without. A silent sign-in log with no
// access to judge changes no verdict; the source gap check (a day) still
// reports it.
func (e *Engine) silentSignIns(ten *tenantState, p *pending, silent []string) {
	c := e.cfg
	if !c.D9.Enabled || !e.learned(ten, e.st.Watermark) {
		return
	}
	for _, sk := range silent {
		s := ten.SignIns[sk]
		if s.Lagging {
			continue
		}
		s.Lagging = true
		src, _, _ := strings.Cut(sk, " (")
		e.raise(alert.Alert{
			Time: s.Last, Signal: "D9", Level: alert.Medium, Tenant: p.Tenant, Source: src, Posture: true,
			Title: "Sign-in log " + e.withoutSignIns(ten, sk, p.Due) + ": mail accesses are judged without it (their D1 and D4 alerts say so in signin_lag)",
			Fields: map[string]string{"source": src, "stream": sk, "last_event": s.Last.Format(time.RFC3339), "newest_event": ten.Newest.Format(time.RFC3339),
				"max_source_lag": c.D1.MaxSourceLag.D().String()},
		})
	}
}

// coverageChecks looks for silent sources and mailboxes. It runs on hour
// boundaries of the watermark and at Flush.
func (e *Engine) coverageChecks(final bool) {
	c := e.cfg
	if !c.D9.Enabled {
		return
	}
	w := e.st.Watermark
	for _, tk := range slices.Sorted(maps.Keys(e.st.Tenants)) {
		ten := e.st.Tenants[tk]
		// A sign-in log that speaks again ends its silence episode
		// (silentSignIns).
		for _, s := range ten.SignIns {
			if s.Lagging && e.silentNow(ten, s) == 0 && e.tooLate(s) == 0 {
				s.Lagging = false
			}
		}
		if !e.learned(ten, w) {
			continue
		}
		// Is anything else still arriving for this tenant? A silence only
		// means something when other sources carry on.
		latest := time.Time{}
		for _, s := range ten.Sources {
			if s.Last.After(latest) {
				latest = s.Last
			}
		}
		for _, sk := range slices.Sorted(maps.Keys(ten.Sources)) {
			s := ten.Sources[sk]
			limit := c.D9.SourceGap.D()
			if 2*s.MaxGap > limit {
				limit = 2 * s.MaxGap
			}
			// A source that usually arrives late (the unified audit log
			// lags the sign-in log by up to a day) is silent only beyond
			// its usual delay.
			if s.Alerted || latest.Sub(s.Last)-s.delay() <= limit {
				continue
			}
			s.Alerted = true
			e.raise(alert.Alert{
				Time: s.Last, Signal: "D9", Level: alert.Medium, Tenant: tk, Source: sk, Posture: true,
				Title:  "No " + sk + " events for " + roundDur(latest.Sub(s.Last)) + " while other sources continued",
				Fields: map[string]string{"source": sk, "last_event": s.Last.Format(time.RFC3339), "others_until": latest.Format(time.RFC3339)},
			})
		}
		ual := ten.Sources["m365.ual"]
		if ual == nil {
			continue
		}
		for _, mk := range slices.Sorted(maps.Keys(ten.Mailboxes)) {
			mb := ten.Mailboxes[mk]
			if mb.Silent || mb.LastRead.IsZero() || len(mb.Days) < c.D9.MailboxMinActiveDays {
				continue
			}
			// Regular: active on enough of the last 14 days before it went quiet.
			lastDay := mb.LastRead.Unix() / 86400
			recent := 0
			for _, d := range mb.Days {
				if lastDay-d < 14 {
					recent++
				}
			}
			if recent < c.D9.MailboxMinActiveDays || ual.Last.Sub(mb.LastRead) <= c.D9.MailboxGap.D() {
				continue
			}
			mb.Silent = true
			e.raise(alert.Alert{
				Time: mb.LastRead, Signal: "D9", Level: alert.Low, Tenant: tk, Mailbox: mk, Source: "m365.ual",
				Operation: "MailItemsAccessed", Posture: true,
				Title:  "Regularly read mailbox has had no MailItemsAccessed for " + roundDur(ual.Last.Sub(mb.LastRead)),
				Fields: map[string]string{"last_read": mb.LastRead.Format(time.RFC3339), "active_days": strconv.Itoa(recent)},
			})
		}
	}
	_ = final
}

func roundDur(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.Round(time.Hour).String()
}

var (
	symParamAuditEnabled   = event.Intern("Parameters.AuditEnabled")
	symParamUALIngestion   = event.Intern("Parameters.UnifiedAuditLogIngestionEnabled")
	symParamAuditBypass    = event.Intern("Parameters.AuditBypassEnabled")
	symParamAuditDisabled  = event.Intern("Parameters.AuditDisabled")
	symParamAdminAuditLog  = event.Intern("Parameters.AdminAuditLogEnabled")
	symParamAuditOwner     = event.Intern("Parameters.AuditOwner")
	symParamAuditDelegate  = event.Intern("Parameters.AuditDelegate")
	symParamAuditAdmin     = event.Intern("Parameters.AuditAdmin")
	symParamRetentionLimit = event.Intern("Parameters.AuditLogAgeLimit")
)

// auditChange raises D9 for configuration changes that blind auditing.
func (e *Engine) auditChange(ev *event.Event, t time.Time) {
	if !e.cfg.D9.Enabled || ev.Failed {
		return
	}
	op := strings.ToLower(ev.Operation)
	var why string
	is := func(s event.Sym, want string) bool {
		for _, f := range ev.Values(s) {
			v := strings.Trim(strings.ToLower(f.Value), "$ ")
			if v == want {
				return true
			}
		}
		return false
	}
	switch op {
	case "set-adminauditlogconfig":
		if is(symParamUALIngestion, "false") {
			why = "unified audit log ingestion disabled"
		} else if is(symParamAdminAuditLog, "false") {
			why = "admin audit logging disabled"
		}
	case "set-mailbox":
		if is(symParamAuditEnabled, "false") {
			why = "mailbox auditing disabled"
		} else if len(ev.Values(symParamAuditOwner)) > 0 || len(ev.Values(symParamAuditDelegate)) > 0 || len(ev.Values(symParamAuditAdmin)) > 0 {
			why = "mailbox audit actions changed"
		} else if len(ev.Values(symParamRetentionLimit)) > 0 {
			why = "mailbox audit retention changed"
		}
	case "set-mailboxauditbypassassociation":
		if is(symParamAuditBypass, "true") {
			why = "mailbox audit bypass enabled"
		}
	case "set-organizationconfig":
		if is(symParamAuditDisabled, "true") {
			why = "organisation-wide mailbox auditing disabled"
		}
	}
	if why == "" {
		return
	}
	target := ""
	if v := ev.Values(symParamID); len(v) > 0 {
		target = strings.ToLower(v[0].Value)
	}
	a := alert.Alert{
		Time: t, Signal: "D9", Level: alert.High, Tenant: strings.ToLower(ev.Tenant), Source: ev.Source, Operation: ev.Operation,
		User: strings.ToLower(ev.User), Posture: true, Title: "Audit logging weakened: " + why,
		Fields: map[string]string{"change": why},
	}
	if strings.Contains(target, "@") {
		a.Mailbox = target
	}
	if target != "" {
		a.Fields["target"] = target
	}
	if ev.RecordID != "" {
		a.RecordIDs = []string{ev.RecordID}
	}
	a.AddActor(alert.ActorIP, ev.IP)
	e.raise(a)
}

// ioc matches every event against the indicators (D11).
func (e *Engine) ioc(ev *event.Event, t time.Time) {
	s := e.iocs
	if !e.cfg.D11.Enabled || s.Len() == 0 {
		return
	}
	var hits []*Indicator
	hits = append(hits, s.matchIP(ev.IP)...)
	if ev.UserAgent != "" {
		hits = append(hits, s.uas[strings.TrimSpace(ev.UserAgent)]...)
	}
	if len(s.values) > 0 {
		for _, f := range ev.Fields() {
			if len(f.Value) < 8 || len(f.Value) > 128 {
				continue
			}
			if l := s.values[strings.ToLower(f.Value)]; l != nil {
				hits = append(hits, l...)
			}
		}
	}
	seen := map[*Indicator]bool{}
	for _, ind := range hits {
		if seen[ind] {
			continue
		}
		seen[ind] = true
		level, when := alert.MustLevel(e.cfg.D11.OutWindowLevel), "outside its published window"
		switch {
		case ind.From.IsZero() && ind.To.IsZero():
			// Unbounded: it applies at any time, but the title must not
			// claim a window the source never published.
			level, when = alert.MustLevel(e.cfg.D11.InWindowLevel), "the indicator has no published window"
		case ind.InWindow(t):
			level, when = alert.MustLevel(e.cfg.D11.InWindowLevel), "inside its published window"
		}
		a := alert.Alert{
			Time: t, Signal: "D11", Level: level, Tenant: strings.ToLower(ev.Tenant), Source: ev.Source, Operation: ev.Operation,
			User: strings.ToLower(ev.User), Mailbox: strings.ToLower(ev.Mailbox),
			Title:  "IOC match (" + ind.Type + " " + ind.Value + ", " + when + ")",
			Fields: map[string]string{"ioc_type": ind.Type, "ioc_value": ind.Value, "ioc_set": ind.Set},
		}
		if ind.Description != "" {
			a.Fields["ioc_description"] = ind.Description
		}
		if ev.RecordID != "" {
			a.RecordIDs = []string{ev.RecordID}
		}
		if ind.Type == "ip" || ind.Type == "cidr" {
			a.AddActor(alert.ActorIP, ev.IP)
		}
		a.AddActor(alert.ActorToken, ev.TokenID)
		for _, sid := range event.SessionIDs(ev) {
			a.AddActor(alert.ActorSession, sid)
		}
		e.raise(a)
	}
}

// consentAppIDs finds the application ids a consent record names: every
// GUID-shaped value of the record's target and property fields.
func consentAppIDs(ev *event.Event) []string {
	var out []string
	seen := map[string]bool{}
	if ev.AppID != "" {
		seen[strings.ToLower(ev.AppID)] = true
		out = append(out, ev.AppID)
	}
	for _, f := range ev.Fields() {
		n := strings.ToLower(f.Name)
		if !(strings.HasPrefix(n, "target") || strings.Contains(n, "appid") || strings.Contains(n, "modifiedproperties") || n == "objectid") {
			continue
		}
		for _, v := range guidsIn(f.Value) {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// guidsIn returns the GUIDs inside s, lower-cased.
func guidsIn(s string) []string {
	var out []string
	for i := 0; i+36 <= len(s); i++ {
		c := s[i : i+36]
		if isGUID(c) && (i == 0 || !isHex(s[i-1])) && (i+36 == len(s) || !isHex(s[i+36])) {
			out = append(out, strings.ToLower(c))
			i += 35
		}
	}
	return out
}

func isGUID(s string) bool {
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' }
