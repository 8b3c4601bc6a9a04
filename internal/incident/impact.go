package incident

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
)

// ThrottleSilence is how long Exchange stops writing MailItemsAccessed for
// a mailbox after its throttling record.
const ThrottleSilence = 24 * time.Hour

// Impact is what an incident's actor read.
type Impact struct {
	Mailboxes         []string        `json:"mailboxes"`
	Messages          []string        `json:"messages"`
	MessageCount      int             `json:"message_count"`
	FolderCount       int             `json:"folder_count"`
	Accesses          int             `json:"accesses"` // mail-read records attributed to the actor
	FirstAccess       *time.Time      `json:"first_access,omitempty"`
	LastAccess        *time.Time      `json:"last_access,omitempty"`
	EvidenceComplete  bool            `json:"evidence_complete"`
	IncompleteReasons []string        `json:"incomplete_reasons,omitempty"`
	PerMailbox        []MailboxImpact `json:"per_mailbox"`
	Reads             []MessageRead   `json:"-"` // one per message, for impact.csv
	AccessTimes       []time.Time     `json:"-"` // time of each attributed record, for charts
}

// MailboxImpact is the impact on one mailbox.
type MailboxImpact struct {
	Mailbox      string         `json:"mailbox"`
	MessageCount int            `json:"message_count"`
	Accesses     int            `json:"accesses"`
	FirstAccess  time.Time      `json:"first_access"`
	LastAccess   time.Time      `json:"last_access"`
	Throttled    bool           `json:"throttled,omitempty"`
	Folders      []FolderImpact `json:"folders"`
}

// FolderImpact is the impact on one folder. SyncExposed means the folder
// was synchronised whole, so every item in it must be assumed read.
type FolderImpact struct {
	Path         string    `json:"path"`
	MessageCount int       `json:"message_count"`
	SyncExposed  bool      `json:"sync_exposed,omitempty"`
	FirstAccess  time.Time `json:"first_access"`
	LastAccess   time.Time `json:"last_access"`
}

// MessageRead is one message the actor read.
type MessageRead struct {
	Mailbox     string
	Folder      string
	MessageID   string
	FirstAccess time.Time
	LastAccess  time.Time
	Count       int
	ClientApp   string
	IP          string
	RecordIDs   []string
}

// matcher decides which accesses belong to an incident's actor: any
// access carrying one of its tokens, client apps, apps or IPs; a session
// alone only when the incident names no IP, because a stolen session is
// shared with its owner and only the network tells the two apart.
type matcher struct {
	tenant   string
	tokens   map[string]bool
	sessions map[string]bool
	ips      map[string]bool
	apps     map[string]bool
	clients  map[string]bool
}

func newMatcher(inc *Incident) *matcher {
	m := &matcher{tenant: inc.Tenant, tokens: map[string]bool{}, sessions: map[string]bool{}, ips: map[string]bool{}, apps: map[string]bool{}, clients: map[string]bool{}}
	for ac := range inc.impactActor {
		switch ac.Kind {
		case alert.ActorToken:
			m.tokens[ac.Value] = true
		case alert.ActorSession:
			m.sessions[ac.Value] = true
		case alert.ActorIP:
			m.ips[ac.Value] = true
		case alert.ActorApp:
			m.apps[ac.Value] = true
		case alert.ActorClientApp:
			m.clients[ac.Value] = true
		}
	}
	return m
}

func (m *matcher) match(a *event.MailAccess) bool {
	if m.tenant != "" && a.Tenant != "" && a.Tenant != m.tenant {
		return false
	}
	if (a.TokenID != "" && m.tokens[a.TokenID]) || (a.IP != "" && m.ips[a.IP]) ||
		(a.ClientApp != "" && m.clients[a.ClientApp]) || (a.AppID != "" && a.ClientApp == "" && m.apps[a.AppID]) {
		return true
	}
	if len(m.ips) == 0 {
		for _, s := range a.SessionIDs {
			if m.sessions[s] {
				return true
			}
		}
	}
	return false
}

// Assess computes the impact of every incident from the mail-read records
// (in any order). It holds them all: streaming callers use an Assessor.
func Assess(incs []*Incident, accesses []event.MailAccess) {
	sorted := append([]event.MailAccess(nil), accesses...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].Time.Equal(sorted[j].Time) {
			return sorted[i].Time.Before(sorted[j].Time)
		}
		return sorted[i].RecordID < sorted[j].RecordID
	})
	as := NewAssessor(incs)
	for i := range sorted {
		as.Add(&sorted[i])
	}
	as.Finish()
}

// Assessor accumulates incidents' impact from mail accesses streamed in
// event-time order (a second pass over the inputs or the journal). It
// keeps only what the incidents' actors read and the throttling records
// of every mailbox, never the accesses themselves.
type Assessor struct {
	incs      []*Incident
	states    []*assessState
	throttles map[string][]time.Time
}

// NewAssessor starts the impact of incs from nothing.
func NewAssessor(incs []*Incident) *Assessor {
	as := &Assessor{incs: incs, throttles: map[string][]time.Time{}}
	for _, inc := range incs {
		as.states = append(as.states, &assessState{m: newMatcher(inc), mbs: map[string]*mbAcc{}, reads: map[string]*MessageRead{},
			imp: Impact{EvidenceComplete: true}, reasons: map[string]bool{}})
	}
	return as
}

// Add accounts one access. Accesses must come in time order (ties in
// record id order) for the per-message first folder to be stable.
func (as *Assessor) Add(a *event.MailAccess) {
	// Throttling records of every mailbox, whoever caused them: a throttle
	// silences auditing of the mailbox for everyone.
	if a.Throttled {
		k := a.Tenant + "|" + a.Mailbox
		as.throttles[k] = append(as.throttles[k], a.Time)
	}
	for _, s := range as.states {
		if s.m.match(a) {
			s.add(a)
		}
	}
}

// Rebind makes the assessor set the impact of incs, a regrouping of the
// incidents it was made for with the same attribution (SameAttribution),
// so the accesses added so far need not be read again.
func (as *Assessor) Rebind(incs []*Incident) { as.incs = incs }

// SameAttribution says whether a and b attribute mail accesses alike:
// the same incidents, in the same order, each matching the same actors.
// An assessor made for a can go on for b.
func SameAttribution(a, b []*Incident) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Tenant != b[i].Tenant || !maps.Equal(a[i].impactActor, b[i].impactActor) {
			return false
		}
	}
	return true
}

// Finish sets each incident's Impact. More accesses may be added after
// it, and Finish called again.
func (as *Assessor) Finish() {
	for i, inc := range as.incs {
		inc.Impact = as.states[i].finish(as.throttles)
	}
}

type folderAcc struct {
	fi   FolderImpact
	msgs map[string]bool
}

type mbAcc struct {
	mi      MailboxImpact
	folders map[string]*folderAcc
	msgs    map[string]bool
	tenant  string
}

type assessState struct {
	m       *matcher
	mbs     map[string]*mbAcc
	reads   map[string]*MessageRead
	imp     Impact
	reasons map[string]bool
}

func (s *assessState) add(a *event.MailAccess) {
	imp, reasons := &s.imp, s.reasons
	imp.Accesses++
	t := a.Time
	imp.AccessTimes = append(imp.AccessTimes, t)
	if imp.FirstAccess == nil || t.Before(*imp.FirstAccess) {
		imp.FirstAccess = &t
	}
	if imp.LastAccess == nil || t.After(*imp.LastAccess) {
		tt := t
		imp.LastAccess = &tt
	}
	mb := s.mbs[a.Mailbox]
	if mb == nil {
		mb = &mbAcc{mi: MailboxImpact{Mailbox: a.Mailbox, FirstAccess: t}, folders: map[string]*folderAcc{}, msgs: map[string]bool{}, tenant: a.Tenant}
		s.mbs[a.Mailbox] = mb
	}
	mb.mi.Accesses++
	mb.mi.LastAccess = t
	if a.Throttled {
		mb.mi.Throttled = true
		reasons["access to "+a.Mailbox+" was throttled at "+stamp(t)+": Exchange stops auditing the mailbox for 24 h, so later reads are unrecorded"] = true
	}
	for _, f := range a.Folders {
		fa := mb.folders[f.Path]
		if fa == nil {
			fa = &folderAcc{fi: FolderImpact{Path: f.Path, FirstAccess: t}, msgs: map[string]bool{}}
			mb.folders[f.Path] = fa
		}
		fa.fi.LastAccess = t
		if a.Sync {
			if !fa.fi.SyncExposed {
				reasons["folder "+displayFolder(f.Path)+" of "+a.Mailbox+" was synchronised (Sync) at "+stamp(t)+": the whole folder is assumed exposed"] = true
			}
			fa.fi.SyncExposed = true
		}
		for _, id := range f.Messages {
			fa.msgs[id] = true
			mb.msgs[id] = true
			k := a.Mailbox + "\x00" + id
			r := s.reads[k]
			if r == nil {
				r = &MessageRead{Mailbox: a.Mailbox, Folder: f.Path, MessageID: id, FirstAccess: t, ClientApp: a.ClientApp, IP: a.IP}
				s.reads[k] = r
			}
			r.LastAccess = t
			r.Count++
			if a.RecordID != "" && (len(r.RecordIDs) == 0 || r.RecordIDs[len(r.RecordIDs)-1] != a.RecordID) {
				r.RecordIDs = append(r.RecordIDs, a.RecordID)
			}
		}
	}
	if a.Sync && len(a.Folders) == 0 {
		reasons["a Sync access to "+a.Mailbox+" at "+stamp(t)+" named no folder: the whole mailbox is assumed exposed"] = true
	}
}

// finish is the impact of the accesses added so far. It changes nothing
// in s, so more accesses may be added and finish called again (a
// pipeline that never ends measures as it goes).
func (s *assessState) finish(throttles map[string][]time.Time) Impact {
	imp, reasons := s.imp, maps.Clone(s.reasons)
	for _, mb := range s.mbs {
		mi := mb.mi
		// Someone else's throttling silences the actor too.
		for _, tt := range throttles[mb.tenant+"|"+mi.Mailbox] {
			if !tt.After(mi.LastAccess) && tt.Add(ThrottleSilence).After(mi.FirstAccess) && !mi.Throttled {
				mi.Throttled = true
				reasons[mi.Mailbox+" was throttled at "+stamp(tt)+" during the actor's activity: reads in the next 24 h are unrecorded"] = true
			}
		}
		mi.MessageCount = len(mb.msgs)
		paths := make([]string, 0, len(mb.folders))
		for p := range mb.folders {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		mi.Folders = make([]FolderImpact, 0, len(paths))
		for _, p := range paths {
			fa := mb.folders[p]
			fi := fa.fi
			fi.MessageCount = len(fa.msgs)
			mi.Folders = append(mi.Folders, fi)
		}
		imp.FolderCount += len(paths)
		imp.PerMailbox = append(imp.PerMailbox, mi)
		imp.Mailboxes = append(imp.Mailboxes, mi.Mailbox)
	}
	imp.AccessTimes = slices.Clone(imp.AccessTimes)
	sort.Strings(imp.Mailboxes)
	sort.Slice(imp.PerMailbox, func(i, j int) bool { return imp.PerMailbox[i].Mailbox < imp.PerMailbox[j].Mailbox })
	msgs := map[string]bool{}
	for _, r := range s.reads {
		imp.Reads = append(imp.Reads, *r)
		msgs[r.MessageID] = true
	}
	sort.Slice(imp.Reads, func(i, j int) bool {
		a, b := imp.Reads[i], imp.Reads[j]
		if !a.FirstAccess.Equal(b.FirstAccess) {
			return a.FirstAccess.Before(b.FirstAccess)
		}
		if a.Mailbox != b.Mailbox {
			return a.Mailbox < b.Mailbox
		}
		return a.MessageID < b.MessageID
	})
	imp.Messages = sortedKeys(msgs)
	if imp.Messages == nil {
		imp.Messages = []string{}
	}
	if imp.Mailboxes == nil {
		imp.Mailboxes = []string{}
	}
	imp.MessageCount = len(imp.Messages)
	imp.IncompleteReasons = sortedKeys(reasons)
	imp.EvidenceComplete = len(imp.IncompleteReasons) == 0
	return imp
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04Z") }

func displayFolder(p string) string {
	if p == "" {
		return "(unnamed)"
	}
	return strings.TrimPrefix(p, "\\")
}
