package simulate

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Truth is the ground truth of one run, written as truth.json.
type Truth struct {
	Version     int             `json:"version"`
	Seed        uint64          `json:"seed"`
	Start       time.Time       `json:"start"`
	End         time.Time       `json:"end"`
	Tenant      TenantInfo      `json:"tenant"`
	Files       []FileInfo      `json:"files"`
	Campaigns   []CampaignTruth `json:"campaigns"`
	Confounders []Confounder    `json:"confounders"`
}

// LogPaths are the paths of the simulated audit-log files in dir (where
// Run wrote them), without the network table.
func (t *Truth) LogPaths(dir string) []string {
	var paths []string
	for _, f := range t.Files {
		if f.Source != "networks" {
			paths = append(paths, filepath.Join(dir, f.Name))
		}
	}
	return paths
}

// TruthVersion is the truth.json schema version.
const TruthVersion = 2

// TenantInfo identifies the simulated organisations.
type TenantInfo struct {
	TenantID           string   `json:"tenant_id"`
	Domain             string   `json:"domain"`
	OrganizationName   string   `json:"organization_name"`
	Users              int      `json:"users"`
	SharedMailboxes    []string `json:"shared_mailboxes"`
	VIPs               []string `json:"vips"`
	Admins             []string `json:"admins"`
	WorkspaceDomain    string   `json:"workspace_domain"`
	WorkspaceCustomer  string   `json:"workspace_customer_id"`
	WorkspaceUsers     int      `json:"workspace_users"`
	ThirdPartyMailApps []App    `json:"third_party_mail_apps"`
	BackupApp          App      `json:"backup_app"`
}

// FileInfo describes one written file.
type FileInfo struct {
	Name    string `json:"name"`
	Source  string `json:"source"` // what it holds: m365.ual, entra.signin, gws, networks
	Format  string `json:"format"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
}

// CampaignTruth is the exact ground truth of one intrusion campaign.
type CampaignTruth struct {
	// IntrusionID names the one intrusion the campaign is: one actor, on
	// every day it is active, however often it rotates networks and
	// tokens. A scorer counts incidents per intrusion against it.
	IntrusionID string            `json:"intrusion_id"`
	Name        string            `json:"name"`
	Params      map[string]string `json:"params"`
	// Start and End bound the campaign's records.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Actor Actor     `json:"actor"`
	// Records are every malicious record, in output order.
	Records []RecordRef     `json:"records"`
	Impact  []MailboxImpact `json:"impact"`
	// MessagesRead counts the (mailbox, message id) pairs of impact[]
	// message_ids: the messages the log shows the intruder read.
	// MessagesUnlogged counts the further pairs of impact[].unlogged.
	MessagesRead     int `json:"messages_read"`
	MessagesUnlogged int `json:"messages_unlogged"`
}

// Actor lists the intruder's identifiers as they appear in the records.
type Actor struct {
	Users        []string `json:"users,omitempty"` // compromised or impersonated accounts
	AppIDs       []string `json:"app_ids,omitempty"`
	ClientAppIDs []string `json:"client_app_ids,omitempty"`
	IPs          []string `json:"ips,omitempty"`
	ASNs         []uint32 `json:"asns,omitempty"`
	SessionIDs   []string `json:"session_ids,omitempty"`
	TokenIDs     []string `json:"token_ids,omitempty"`
	UserAgents   []string `json:"user_agents,omitempty"`
	// TokensWithoutSignIn are token ids the identity provider never issued
	// (forged): no sign-in record carries them.
	TokensWithoutSignIn []string `json:"tokens_without_sign_in,omitempty"`
}

// RecordRef names one record: its source and its own id (UAL Id, sign-in
// id, Workspace uniqueQualifier).
type RecordRef struct {
	Source    string    `json:"source"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
}

// MailboxImpact is what the intruder read in one mailbox. Folders,
// MessageIDs, FirstAccess and LastAccess are exactly what the campaign's
// MailItemsAccessed records show; Unlogged is what the intruder also read
// that the log does not itemise (Sync access, throttling).
type MailboxImpact struct {
	Mailbox     string    `json:"mailbox"`
	FirstAccess time.Time `json:"first_access"`
	LastAccess  time.Time `json:"last_access"`
	Records     int       `json:"records"`
	Folders     []string  `json:"folders"`
	MessageIDs  []string  `json:"message_ids"`
	// Complete is true when the records itemise everything read.
	Complete bool          `json:"complete"`
	Gaps     []EvidenceGap `json:"gaps,omitempty"`
	Unlogged *Unlogged     `json:"unlogged,omitempty"`
}

// Evidence gap reasons.
const (
	GapSync      = "sync"      // Sync access logs folders, not messages
	GapThrottled = "throttled" // Exchange stopped logging the mailbox for 24 h
)

// EvidenceGap says why a mailbox's evidence is incomplete.
type EvidenceGap struct {
	Reason  string    `json:"reason"`
	Folders []string  `json:"folders,omitempty"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	// Accesses counts the intruder's folder accesses affected (folders in
	// Sync or IsThrottled records, or in requests not logged at all).
	Accesses int    `json:"accesses"`
	Detail   string `json:"detail"`
}

// Unlogged is what the intruder read beyond the itemised records.
type Unlogged struct {
	FirstAccess time.Time `json:"first_access"`
	LastAccess  time.Time `json:"last_access"`
	Folders     []string  `json:"folders"`
	MessageIDs  []string  `json:"message_ids"`
}

// Labels and expectations of benign confounders.
const (
	LabelBenign = "benign"
	// ExpectNoIncident: nothing about the confounder may become an incident.
	ExpectNoIncident = "no-incident"
	// ExpectNotice: a reviewable notice (low/medium alert) is acceptable,
	// an incident is not.
	ExpectNotice = "notice"
)

// Confounder is one benign change that must not become an incident.
type Confounder struct {
	Name        string    `json:"name"`
	Label       string    `json:"label"`  // always LabelBenign
	Expect      string    `json:"expect"` // ExpectNoIncident or ExpectNotice
	Description string    `json:"description"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Users       []string  `json:"users,omitempty"`
	AppIDs      []string  `json:"app_ids,omitempty"`
	IPs         []string  `json:"ips,omitempty"`
	Prefixes    []string  `json:"prefixes,omitempty"`
	ASNs        []uint32  `json:"asns,omitempty"`
	Mailboxes   []string  `json:"mailboxes,omitempty"`
	// SessionIDs are sessions no sign-in record carries (unlinked-tokens);
	// TokensWithoutSignIn the token ids (UniqueTokenId) no sign-in record
	// carries. A MailItemsAccessed record whose token is listed here is a
	// benign read with no sign-in.
	SessionIDs          []string `json:"session_ids,omitempty"`
	TokensWithoutSignIn []string `json:"tokens_without_sign_in,omitempty"`
	// MailReads counts the MailItemsAccessed records the confounder wrote
	// (for unlinked-tokens: the benign reads whose token has no sign-in).
	MailReads int `json:"mail_reads,omitempty"`
	// Records is the confounder's audit trail (sign-ins and directory
	// changes), when it has one.
	Records []RecordRef       `json:"records,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// ReadTruth decodes a truth.json.
func ReadTruth(r io.Reader) (*Truth, error) {
	var t Truth
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("simulate: decode truth: %w", err)
	}
	if t.Version != TruthVersion {
		return nil, fmt.Errorf("simulate: truth version %d, want %d", t.Version, TruthVersion)
	}
	return &t, nil
}

// LoadTruth reads truth.json from path.
func LoadTruth(path string) (*Truth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	defer f.Close()
	return ReadTruth(f)
}

// ---- accumulation during a run ----

type set map[string]struct{}

func (s set) add(v string) { s[v] = struct{}{} }
func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type gapAcc struct {
	folders     set
	first, last int64
	n           int
}

type impactAcc struct {
	mb            *Mailbox
	first, last   int64
	records       int
	folders, msgs set
	gaps          map[string]*gapAcc
	unFolders     set
	unMsgs        set
	unFirst       int64
	unLast        int64
}

// campaignState accumulates a campaign's truth while it runs.
type campaignState struct {
	name                                                        string
	params                                                      map[string]string
	first                                                       int64
	last                                                        int64
	records                                                     []RecordRef
	impact                                                      map[*Mailbox]*impactAcc
	order                                                       []*Mailbox
	users, apps, clientApps, ips, sessions, tokens, uas, forged set
	asns                                                        map[uint32]bool
}

func newCampaignState(name string, params map[string]string) *campaignState {
	return &campaignState{name: name, params: params, first: never, impact: map[*Mailbox]*impactAcc{},
		users: set{}, apps: set{}, clientApps: set{}, ips: set{}, sessions: set{}, tokens: set{}, uas: set{}, forged: set{}, asns: map[uint32]bool{}}
}

func (c *campaignState) record(source, id string, t int64, op string) {
	c.records = append(c.records, RecordRef{Source: source, ID: id, Time: time.Unix(0, t).UTC(), Operation: op})
	c.first = min(c.first, t)
	c.last = max(c.last, t)
}

func (c *campaignState) acc(mb *Mailbox) *impactAcc {
	a := c.impact[mb]
	if a == nil {
		a = &impactAcc{mb: mb, first: never, unFirst: never, folders: set{}, msgs: set{}, gaps: map[string]*gapAcc{}, unFolders: set{}, unMsgs: set{}}
		c.impact[mb] = a
		c.order = append(c.order, mb)
	}
	return a
}

func (a *impactAcc) gap(reason string, t int64, folder string) {
	g := a.gaps[reason]
	if g == nil {
		g = &gapAcc{folders: set{}, first: t}
		a.gaps[reason] = g
	}
	g.folders.add(folder)
	g.first = min(g.first, t)
	g.last = max(g.last, t)
	g.n++
}

// syncWindow is how many of a folder's newest messages a Sync fetches.
const syncWindow = 120

func (a *impactAcc) unlog(s *sim, t int64, f int, msgs []int) {
	a.unFolders.add(folderPaths[f])
	for _, n := range msgs {
		a.unMsgs.add(s.t.messageID(a.mb, f, n))
	}
	a.unFirst = min(a.unFirst, t)
	a.unLast = max(a.unLast, t)
}

func syncedItems(s *sim, mb *Mailbox, f int, t int64) []int {
	hi := s.t.latest(mb, f, t)
	lo := max(0, hi-syncWindow+1)
	out := make([]int, 0, hi-lo+1)
	for n := lo; n <= hi; n++ {
		out = append(out, n)
	}
	return out
}

// logged records a MailItemsAccessed record the campaign caused.
func (c *campaignState) logged(s *sim, mb *Mailbox, t int64, sync, throttled bool, reads []folderRead) {
	a := c.acc(mb)
	a.first = min(a.first, t)
	a.last = max(a.last, t)
	a.records++
	for _, r := range reads {
		a.folders.add(folderPaths[r.folder])
		if sync {
			a.gap(GapSync, t, folderPaths[r.folder])
			a.unlog(s, t, r.folder, syncedItems(s, mb, r.folder, t))
			continue
		}
		for _, n := range r.items {
			a.msgs.add(s.t.messageID(mb, r.folder, n))
		}
		if throttled {
			a.gap(GapThrottled, t, folderPaths[r.folder])
		}
	}
}

// unlogged records intruder reads Exchange did not log (throttled mailbox).
func (c *campaignState) unlogged(s *sim, mb *Mailbox, t int64, sync bool, reads []folderRead, reason string) {
	a := c.acc(mb)
	for _, r := range reads {
		a.gap(reason, t, folderPaths[r.folder])
		if sync {
			a.unlog(s, t, r.folder, syncedItems(s, mb, r.folder, t))
		} else {
			a.unlog(s, t, r.folder, r.items)
		}
	}
}

var gapDetail = map[string]string{
	GapSync:      "Sync access: the record lists folders only; the messages synchronised are not itemised",
	GapThrottled: "more than the throttle limit of MailItemsAccessed records in 24 h: Exchange wrote one IsThrottled record and then logged nothing for this mailbox for 24 h",
}

func (c *campaignState) truth() CampaignTruth {
	ct := CampaignTruth{IntrusionID: c.name + "#1", Name: c.name, Params: c.params, Records: c.records}
	if c.first != never {
		ct.Start = time.Unix(0, c.first).UTC()
		ct.End = time.Unix(0, c.last).UTC()
	}
	if ct.Records == nil {
		ct.Records = []RecordRef{}
	}
	ct.Actor = Actor{
		Users: c.users.sorted(), AppIDs: c.apps.sorted(), ClientAppIDs: c.clientApps.sorted(), IPs: c.ips.sorted(),
		SessionIDs: c.sessions.sorted(), TokenIDs: c.tokens.sorted(), UserAgents: c.uas.sorted(), TokensWithoutSignIn: c.forged.sorted(),
	}
	for a := range c.asns {
		ct.Actor.ASNs = append(ct.Actor.ASNs, a)
	}
	sort.Slice(ct.Actor.ASNs, func(i, j int) bool { return ct.Actor.ASNs[i] < ct.Actor.ASNs[j] })
	mbs := append([]*Mailbox(nil), c.order...)
	sort.Slice(mbs, func(i, j int) bool { return mbs[i].UPN < mbs[j].UPN })
	ct.Impact = []MailboxImpact{}
	for _, mb := range mbs {
		a := c.impact[mb]
		mi := MailboxImpact{Mailbox: mb.UPN, Records: a.records, Folders: a.folders.sorted(), MessageIDs: a.msgs.sorted(), Complete: len(a.gaps) == 0}
		if a.first != never {
			mi.FirstAccess = time.Unix(0, a.first).UTC()
			mi.LastAccess = time.Unix(0, a.last).UTC()
		}
		for _, r := range []string{GapSync, GapThrottled} {
			g := a.gaps[r]
			if g == nil {
				continue
			}
			mi.Gaps = append(mi.Gaps, EvidenceGap{Reason: r, Folders: g.folders.sorted(), First: time.Unix(0, g.first).UTC(), Last: time.Unix(0, g.last).UTC(), Accesses: g.n, Detail: gapDetail[r]})
		}
		if a.unFirst != never {
			mi.Unlogged = &Unlogged{FirstAccess: time.Unix(0, a.unFirst).UTC(), LastAccess: time.Unix(0, a.unLast).UTC(), Folders: a.unFolders.sorted(), MessageIDs: a.unMsgs.sorted()}
		}
		ct.Impact = append(ct.Impact, mi)
		ct.MessagesRead += len(mi.MessageIDs)
		if mi.Unlogged != nil {
			for _, m := range mi.Unlogged.MessageIDs {
				if _, logged := a.msgs[m]; !logged {
					ct.MessagesUnlogged++
				}
			}
		}
	}
	return ct
}
