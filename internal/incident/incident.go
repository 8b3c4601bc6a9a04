package incident

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
)

// Config says which alerts make incidents and how they are grouped.
type Config struct {
	// Window bounds how far apart two alerts sharing an actor or a
	// mailbox may be and still be grouped, and the span within which two
	// different signals on one mailbox make an incident.
	Window time.Duration `yaml:"window"`
	// SingleSignals make an incident on their own (high-fidelity).
	SingleSignals []string `yaml:"single_signals"`
	// CoreSignals count towards the two-signals rule. Other signals (and
	// Sigma rules unless SigmaCounts) only enrich an incident.
	CoreSignals []string `yaml:"core_signals"`
	// SigmaCounts lets Sigma detections (any signal not named D1..D11)
	// count as core signals.
	SigmaCounts bool `yaml:"sigma_counts"`
	// SigmaPairLevel: a Sigma detection at or above this level, grouped
	// with an alert that counts (they share an actor), pairs with it for
	// the two-signals rule on the alert's mailbox (or its user's): an
	// intruder who reads mail from a VPN range and sets forwarding to an
	// outside address is one. Two such Sigma detections never pair alone
	// ("": none pair).
	SigmaPairLevel string `yaml:"sigma_pair_level"`
	// MinLevel is the lowest alert level that counts towards making an
	// incident; lower alerts only enrich.
	MinLevel string `yaml:"min_level"`
	// SingleLevel: a counting alert at or above this level makes an
	// incident on its own ("" for none).
	SingleLevel string `yaml:"single_level"`
	// BroadActorUsers: an actor seen in alerts of more accessing users
	// than this (a tenant-wide client roll-out) links nothing and does
	// not define impact, unless it carries a single signal.
	BroadActorUsers int `yaml:"broad_actor_users"`
	// MaxTimeline caps the timeline entries kept per incident.
	MaxTimeline int `yaml:"max_timeline"`
}

// DefaultConfig follows the correlation guidance of the detection
// catalogue: D1 or D5 alone, or two of D1, D2, D4, D5, D7 on one mailbox
// within 24 h.
func DefaultConfig() Config {
	return Config{
		Window:          24 * time.Hour,
		SingleSignals:   []string{"D1", "D5"},
		CoreSignals:     []string{"D1", "D2", "D4", "D5", "D7"},
		MinLevel:        "medium",
		SingleLevel:     "critical",
		SigmaPairLevel:  "high",
		BroadActorUsers: 10,
		MaxTimeline:     200,
	}
}

// Actors is an incident's identifiers, by kind, each list sorted.
type Actors struct {
	Tokens     []string `json:"tokens,omitempty"`
	Sessions   []string `json:"sessions,omitempty"`
	IPs        []string `json:"ips,omitempty"`
	Apps       []string `json:"apps,omitempty"`
	ClientApps []string `json:"client_apps,omitempty"`
	Users      []string `json:"users,omitempty"`
}

// TimelineEntry is a run of alerts with the same signal, title and
// mailbox.
type TimelineEntry struct {
	First   time.Time   `json:"first"`
	Last    time.Time   `json:"last"`
	Count   int         `json:"count"`
	Signal  string      `json:"signal"`
	Title   string      `json:"title"`
	Level   alert.Level `json:"level"`
	Mailbox string      `json:"mailbox,omitempty"`
}

// Incident is a group of alerts that together say one intrusion.
type Incident struct {
	ID         string          `json:"id"`
	Tenant     string          `json:"tenant,omitempty"`
	Severity   alert.Level     `json:"severity"`
	Title      string          `json:"title"`
	Signals    []string        `json:"signals"`
	Actors     Actors          `json:"actors"`
	Mailboxes  []string        `json:"mailboxes"` // mailboxes named by the alerts
	FirstSeen  time.Time       `json:"first_seen"`
	LastSeen   time.Time       `json:"last_seen"`
	Raised     time.Time       `json:"raised"` // event time when the incident criterion was first met
	Tags       []string        `json:"tags"`
	AlertCount int             `json:"alert_count"`
	Timeline   []TimelineEntry `json:"timeline"`
	Impact     Impact          `json:"impact"`
	// Score (0–100) weighs the signals; Reasons put each in words and
	// Confidence says why they corroborate.
	Score       int           `json:"score"`
	Reasons     []Reason      `json:"reasons"`
	Confidence  string        `json:"confidence"`
	Alerts      []alert.Alert `json:"-"`
	impactActor map[alert.Actor]bool
}

func (c *Config) isCore(sig string) bool {
	for _, s := range c.CoreSignals {
		if s == sig {
			return true
		}
	}
	return c.SigmaCounts && !isBehaviour(sig)
}

func (c *Config) isSingle(sig string) bool {
	for _, s := range c.SingleSignals {
		if s == sig {
			return true
		}
	}
	return false
}

func isBehaviour(sig string) bool {
	return len(sig) >= 2 && len(sig) <= 3 && sig[0] == 'D' && sig[1] >= '0' && sig[1] <= '9'
}

// Counts reports whether a counts towards making an incident (the others
// only enrich one).
func (c *Config) Counts(a *alert.Alert) bool { return c.counts(a) }

func (c *Config) counts(a *alert.Alert) bool {
	return !a.Posture && a.Level >= alert.MustLevel(c.MinLevel) && (c.isCore(a.Signal) || c.isSingle(a.Signal))
}

// pairs reports whether a is a Sigma detection that pairs with a
// behavioural alert (SigmaPairLevel).
func (c *Config) pairs(a *alert.Alert) bool {
	return c.SigmaPairLevel != "" && !a.Posture && !isBehaviour(a.Signal) && a.Level >= alert.MustLevel(c.SigmaPairLevel)
}

// Group turns alerts into incidents. Alerts are sorted first, so the
// result depends only on the set of alerts. Alerts that make no incident
// are not returned; they remain detections.
func Group(cfg Config, alerts []alert.Alert) []*Incident {
	return GroupUntil(cfg, alerts, nil, time.Time{}).Incidents
}

// Grouping is what GroupUntil found.
type Grouping struct {
	// Incidents are the qualifying groups, as Group returns them.
	Incidents []*Incident
	// Settled[i] says Incidents[i] can no longer change.
	Settled []bool
	// Held are the alerts of the groups that may still change, sorted;
	// Left those of the settled groups, sorted.
	Held, Left []alert.Alert
}

// GroupUntil groups alerts as Group does, seeing the actors' breadth of
// prior (alerts grouped before and let go; nil for none) as well, and
// settles every group whose alerts are all before horizon less
// cfg.Window: an alert at or after horizon can link to none of them. A
// zero horizon settles nothing.
func GroupUntil(cfg Config, alerts []alert.Alert, prior *Tally, horizon time.Time) Grouping {
	as := append([]alert.Alert(nil), alerts...)
	alert.Sort(as)
	n := len(as)
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(i, j int) {
		a, b := find(i), find(j)
		if a == b {
			return
		}
		if a < b {
			parent[b] = a
		} else {
			parent[a] = b
		}
	}

	broad := broadActors(cfg, as, prior)
	// Alerts sharing an actor link when close in time; chaining lets a
	// slow campaign stay one incident.
	byKey := map[string][]int{}
	var anonymous []int
	for i := range as {
		a := &as[i]
		named := false
		for _, ac := range a.Actors {
			if ac.Kind == alert.ActorUser {
				continue // a user is a victim as often as an actor
			}
			if broad[ac] && !cfg.isSingle(a.Signal) {
				continue
			}
			named = true
			k := a.Tenant + "|" + ac.String()
			byKey[k] = append(byKey[k], i)
		}
		if !named {
			anonymous = append(anonymous, i)
		}
	}
	// A forged token claims whatever app id it likes and the attacker
	// rotates addresses and tokens across days: what stays is the client
	// they claim, the client string they send and the mailbox they come
	// back to. Alerts that count and share all three chain too (linking
	// only: a common client never defines impact); the same common client
	// on two mailboxes links nothing, so two intruders who both use a
	// browser stay two. A fingerprint in so many users' alerts that it
	// says nothing links nothing.
	fpUsers := map[string]map[string]bool{}
	fps := make([]string, len(as))
	for i := range as {
		a := &as[i]
		if !cfg.counts(a) {
			continue
		}
		app := a.Fields["client_app_id"]
		if app == "" {
			app = a.Fields["app_id"]
		}
		ua := a.Fields["user_agent"]
		if app == "" || ua == "" {
			continue
		}
		fp := a.Tenant + "|fingerprint:" + strings.ToLower(app) + "|" + ua
		fps[i] = fp + "|" + a.Mailbox
		m := fpUsers[fp]
		if m == nil {
			m = map[string]bool{}
			fpUsers[fp] = m
		}
		m[a.Mailbox] = true
	}
	for i, k := range fps {
		if k != "" && as[i].Mailbox != "" && (cfg.BroadActorUsers <= 0 || len(fpUsers[strings.TrimSuffix(k, "|"+as[i].Mailbox)]) <= cfg.BroadActorUsers) {
			byKey[k] = append(byKey[k], i)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		idx := byKey[k]
		for j := 1; j < len(idx); j++ {
			if as[idx[j]].Time.Sub(as[idx[j-1]].Time) <= cfg.Window {
				union(idx[j-1], idx[j])
			}
		}
	}
	// An alert naming no actor of its own (a volume anomaly, a coverage
	// gap, a rule on the user) joins the incident of the nearest alert on
	// its mailbox. It never bridges two actors: two intruders on one
	// mailbox stay two incidents, each with its own impact.
	byMailbox := map[string][]int{}
	isAnon := map[int]bool{}
	for _, i := range anonymous {
		isAnon[i] = true
	}
	for i := range as {
		if as[i].Mailbox != "" {
			k := as[i].Tenant + "|" + as[i].Mailbox
			byMailbox[k] = append(byMailbox[k], i)
		}
	}
	for _, i := range anonymous {
		a := &as[i]
		if a.Mailbox == "" {
			continue
		}
		best, bestD := -1, cfg.Window+1
		for _, j := range byMailbox[a.Tenant+"|"+a.Mailbox] {
			if isAnon[j] {
				continue
			}
			if d := absDur(as[j].Time.Sub(a.Time)); d < bestD {
				best, bestD = j, d
			}
		}
		if best >= 0 {
			union(best, i)
		}
	}
	groups := map[int][]int{}
	var roots []int
	for i := range as {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], i)
	}
	var g Grouping
	settleBy := horizon.Add(-cfg.Window)
	settled := map[int]bool{}
	for _, r := range roots {
		members := groups[r]
		done := !horizon.IsZero()
		for _, i := range members {
			if !as[i].Time.Before(settleBy) {
				done = false
				break
			}
		}
		if done {
			settled[r] = true
		}
		raised, ok := qualifies(cfg, as, members)
		if !ok {
			continue
		}
		inc := build(cfg, as, members, broad)
		inc.Raised = raised
		g.Incidents = append(g.Incidents, inc)
		g.Settled = append(g.Settled, done)
	}
	if !horizon.IsZero() {
		for i := range as {
			if settled[find(i)] {
				g.Left = append(g.Left, as[i])
			} else {
				g.Held = append(g.Held, as[i])
			}
		}
	} else {
		g.Held = as
	}
	sort.Stable(byFirstSeen(g))
	return g
}

// byFirstSeen orders a Grouping's incidents (and their Settled flags) by
// first alert, then id.
type byFirstSeen Grouping

func (g byFirstSeen) Len() int { return len(g.Incidents) }
func (g byFirstSeen) Less(i, j int) bool {
	return IncidentLess(g.Incidents[i], g.Incidents[j])
}
func (g byFirstSeen) Swap(i, j int) {
	g.Incidents[i], g.Incidents[j] = g.Incidents[j], g.Incidents[i]
	g.Settled[i], g.Settled[j] = g.Settled[j], g.Settled[i]
}

// IncidentLess is the order Group returns incidents in: by first alert,
// then id.
func IncidentLess(a, b *Incident) bool {
	if !a.FirstSeen.Equal(b.FirstSeen) {
		return a.FirstSeen.Before(b.FirstSeen)
	}
	return a.ID < b.ID
}

// broadActors finds actors seen in alerts of more than BroadActorUsers
// accessing users: a client every user adopts is not an intruder, while
// one app reading many mailboxes is still one accessor.
func broadActors(cfg Config, as []alert.Alert, prior *Tally) map[alert.Actor]bool {
	out := map[alert.Actor]bool{}
	if cfg.BroadActorUsers <= 0 {
		return out
	}
	users := map[alert.Actor]map[string]bool{}
	for i := range as {
		u := alertUser(&as[i])
		if u == "" {
			continue
		}
		for _, ac := range as[i].Actors {
			m := users[ac]
			if m == nil {
				m = map[string]bool{}
				for _, pu := range prior.users(ac) {
					m[pu] = true
				}
				users[ac] = m
			}
			m[u] = true
		}
	}
	for ac, m := range users {
		if len(m) > cfg.BroadActorUsers {
			out[ac] = true
		}
	}
	return out
}

// alertUser is the accessing user an alert counts towards an actor's
// breadth.
func alertUser(a *alert.Alert) string {
	if a.User != "" {
		return a.User
	}
	return a.Mailbox
}

// qualifies applies the incident criterion to a group and returns the
// event time at which it was first met (the alert latency).
func qualifies(cfg Config, as []alert.Alert, members []int) (time.Time, bool) {
	type sigAt struct {
		sig  string
		t    time.Time
		core bool // counts; otherwise a Sigma detection that only pairs
	}
	byMailbox := map[string][]sigAt{}
	var best time.Time
	found := false
	note := func(t time.Time) {
		if !found || t.Before(best) {
			best, found = t, true
		}
	}
	for _, i := range members {
		a := &as[i]
		mb := a.Mailbox
		core := cfg.counts(a)
		if !core {
			if !cfg.pairs(a) {
				continue
			}
			// A Sigma detection on a mailbox's settings (forwarding, a
			// rule) names the user who changed them.
			if mb == "" {
				mb = a.User
			}
		}
		raised := a.Raised
		if raised.IsZero() {
			raised = a.Time
		}
		if core && (cfg.isSingle(a.Signal) || (cfg.SingleLevel != "" && a.Level >= alert.MustLevel(cfg.SingleLevel))) {
			note(raised)
			continue
		}
		if mb == "" {
			continue
		}
		byMailbox[mb] = append(byMailbox[mb], sigAt{a.Signal, a.Time, core})
		for _, prev := range byMailbox[mb] {
			if prev.sig != a.Signal && (prev.core || core) && absDur(a.Time.Sub(prev.t)) <= cfg.Window {
				note(raised)
				break
			}
		}
	}
	return best, found
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func build(cfg Config, as []alert.Alert, members []int, broad map[alert.Actor]bool) *Incident {
	inc := &Incident{impactActor: map[alert.Actor]bool{}}
	sigs := map[string]bool{}
	core := map[string]bool{}
	tags := map[string]bool{}
	mbs := map[string]bool{}
	act := map[alert.ActorKind]map[string]bool{}
	maxLevel := alert.Informational
	for k, i := range members {
		a := as[i]
		inc.Alerts = append(inc.Alerts, a)
		if k == 0 {
			inc.FirstSeen, inc.LastSeen, inc.Tenant = a.Time, a.Time, a.Tenant
		}
		if a.Time.Before(inc.FirstSeen) {
			inc.FirstSeen = a.Time
		}
		if a.Time.After(inc.LastSeen) {
			inc.LastSeen = a.Time
		}
		sigs[a.Signal] = true
		if cfg.counts(&a) {
			core[a.Signal] = true
			maxLevel = max(maxLevel, a.Level)
		}
		for _, t := range a.Tags {
			tags[t] = true
		}
		if a.Mailbox != "" {
			mbs[a.Mailbox] = true
		}
		for _, ac := range a.Actors {
			m := act[ac.Kind]
			if m == nil {
				m = map[string]bool{}
				act[ac.Kind] = m
			}
			m[ac.Value] = true
			// Impact follows only actors that counted towards the
			// incident and single out the intruder.
			if cfg.counts(&a) && ac.Kind != alert.ActorUser && (!broad[ac] || cfg.isSingle(a.Signal)) {
				inc.impactActor[ac] = true
			}
		}
	}
	inc.AlertCount = len(members)
	inc.Signals = sortedKeys(sigs)
	inc.Tags = sortedKeys(tags)
	inc.Mailboxes = sortedKeys(mbs)
	inc.Actors = Actors{
		Tokens: sortedKeys(act[alert.ActorToken]), Sessions: sortedKeys(act[alert.ActorSession]),
		IPs: sortedKeys(act[alert.ActorIP]), Apps: sortedKeys(act[alert.ActorApp]),
		ClientApps: sortedKeys(act[alert.ActorClientApp]), Users: sortedKeys(act[alert.ActorUser]),
	}
	// Two or more corroborating core signals, or a single signal backed
	// by another, is worse than any one alert says.
	if len(core) >= 3 || (len(core) >= 2 && hasSingle(cfg, core)) {
		maxLevel = alert.Critical
	}
	inc.Severity = maxLevel
	inc.Timeline = timeline(inc.Alerts, cfg.MaxTimeline)
	explain(cfg, inc)
	inc.Title = title(inc)
	inc.ID = IDOf(&as[members[0]])
	return inc
}

// IDOf is the id of an incident whose first alert is a. An incident
// that gains an earlier alert, or merges into one that started earlier,
// takes that alert's id: the id it had is IDOf of an alert it still holds.
func IDOf(a *alert.Alert) string {
	h := sha256.Sum256([]byte(a.Tenant + "|" + a.Key()))
	return "INC-" + hex.EncodeToString(h[:5])
}

func hasSingle(cfg Config, core map[string]bool) bool {
	for s := range core {
		if cfg.isSingle(s) {
			return true
		}
	}
	return false
}

func title(inc *Incident) string {
	mb := "no mailbox"
	switch len(inc.Mailboxes) {
	case 0:
	case 1:
		mb = inc.Mailboxes[0]
	default:
		mb = inc.Mailboxes[0] + " and " + itoa(len(inc.Mailboxes)-1) + " more"
	}
	for _, a := range inc.Alerts {
		if a.Signal == "D1" {
			return "Mail read with tokens no sign-in issued (" + mb + ")"
		}
	}
	return "Suspicious mail access (" + mb + ")"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// timeline merges runs of alerts with the same signal, title and mailbox
// that follow each other within an hour, so a thousand reads by one token
// read as one line.
func timeline(as []alert.Alert, max int) []TimelineEntry {
	var out []TimelineEntry
	open := map[string]int{}
	for _, a := range as {
		k := a.Signal + "|" + a.Title + "|" + a.Mailbox
		if j, ok := open[k]; ok && a.Time.Sub(out[j].Last) <= time.Hour {
			out[j].Last = a.Time
			out[j].Count++
			continue
		}
		open[k] = len(out)
		out = append(out, TimelineEntry{First: a.Time, Last: a.Time, Count: 1, Signal: a.Signal, Title: a.Title, Level: a.Level, Mailbox: a.Mailbox})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First.Before(out[j].First) })
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ImpactActors are the actors whose accesses make the incident's impact,
// sorted (for a snapshot of the incident, with SetImpactActors).
func (inc *Incident) ImpactActors() []alert.Actor {
	out := make([]alert.Actor, 0, len(inc.impactActor))
	for ac := range inc.impactActor {
		out = append(out, ac)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// SetImpactActors restores what ImpactActors returned.
func (inc *Incident) SetImpactActors(acs []alert.Actor) {
	inc.impactActor = make(map[alert.Actor]bool, len(acs))
	for _, ac := range acs {
		inc.impactActor[ac] = true
	}
}
