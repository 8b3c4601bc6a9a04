package behavior

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// StateVersion is the persisted state format. A different version is
// refused rather than misread; the state can always be rebuilt by
// replaying the journal.
const StateVersion = 4

const stateMagic = "vigil-behavior-state"

// state is everything the Engine learned. It holds no pointers into
// events and is gob-encoded as is.
type state struct {
	Watermark time.Time
	Seq       uint64
	LastHour  time.Time // last hour boundary the periodic checks ran at
	Tokens    map[string]SignIn
	Sessions  map[string][]SignIn
	IPASN     map[string]uint32    // learned from sign-ins, for addresses no table knows
	Failures  map[string]*failures // D4: failed sign-ins per address
	Tenants   map[string]*tenantState
	// The mail accesses awaiting judgement follow the state in a saved
	// file, tenant by tenant, a chunk at a time (Engine.pqs).
}

// SignIn is a successful sign-in reduced to what joins need.
type SignIn struct {
	Time time.Time
	User string
	IP   string
	ASN  uint32
}

type tenantState struct {
	FirstSeen   time.Time
	Newest      time.Time // the latest event time of the tenant
	FirstSignin time.Time
	Pairs       map[string]time.Time            // D2: AppId|ClientAppId → first read in the tenant
	NewPairs    map[string]*newPair             // D2: pairs first seen after learning, for roll-out detection
	Consents    map[string]consent              // app id → latest consent
	Sanctioned  map[string]*sanction            // app id → admin grant of mail permissions
	UAMailboxes map[string]int                  // D1: client string → mailboxes it read (counted up to prevalent_users)
	Users       map[string]*userState           // by UPN
	Mailboxes   map[string]*mailboxState        // by owner UPN
	AppASNs     map[string]map[uint32]time.Time // D4: client/app key → ASN → first mail read
	IPSeen      map[string]time.Time            // D4: last sign-in from an IP by anyone
	ASNUsers    map[uint32][]string             // D4: users signing in from an ASN (capped)
	D4Alerted   map[string]time.Time            // D4: mailbox|ip → last alert
	Sources     map[string]*sourceState         // D9
	SignIns     map[string]*sourceState         // D1, D4: sign-in streams (signInStream) and their watermarks
	Multi       map[string]map[string]time.Time // D3: app|accessor → mailbox → latest read in the window
	MultiAlert  map[string]time.Time            // D3: app|accessor → last alert
	Searches    []search                        // D8: sensitive searches awaiting reads
	// Mail is the tenant's mail log (mail accesses and searches): its
	// newest record and how far behind the tenant's newest event its
	// records arrive. The sign-in evidence its reads are judged against
	// is kept until it is complete past it (Engine.mailRef). Nil until
	// the tenant's first read, and in a state saved before it existed:
	// such a tenant keeps max_mail_lag.
	Mail *sourceState
	// EvidenceFrom: sign-in evidence for reads before it may be gone
	// (pruned against a mail log later than max_mail_lag); D1 does not
	// judge them, and D9 says so once per episode (MailLagging).
	EvidenceFrom time.Time
	MailLagging  bool
}

type failures struct {
	Users []string // distinct accounts (capped)
	Last  time.Time
}

type newPair struct {
	First time.Time
	Users map[string]bool
	Done  bool // judged a roll-out
}

type userState struct {
	IPs  map[string]seen // sign-in IP → first and last seen
	ASNs map[uint32]seen // sign-in ASN → first and last seen
	UAs  map[string]seen // sign-in user agent → first and last seen
	// OwnIPs are addresses the user signed in from with a user agent
	// they had used for a while: their own device on a new network.
	OwnIPs map[string]time.Time
	// OwnFrom is when each of OwnIPs first became the user's own, so a
	// read is not excused by the user's device signing in there only
	// after it: a mail log that arrives a day late is judged with a
	// day of later sign-ins in. Nil in a state saved before it existed
	// (an address missing from it counts from the start).
	OwnFrom map[string]time.Time
	// No entry of the four maps was last seen before oldest, when
	// oldestOK: prune skips the user while oldest is inside the history
	// (most users, most hours). Not saved: a restored user is scanned.
	oldest   time.Time
	oldestOK bool
}

// touched notes an entry of u's maps last seen at t.
func (u *userState) touched(t time.Time) {
	if u.oldestOK && t.Before(u.oldest) {
		u.oldest = t
	}
}

// ownIP says whether ip was the user's own network (OwnIPs) at some
// time from since until by: signed in from by their own device within
// the history, and first before the verdict's horizon.
func (u *userState) ownIP(ip string, since, by time.Time) bool {
	return !u.OwnIPs[ip].Before(since) && !u.OwnFrom[ip].After(by)
}

type seen struct{ First, Last time.Time }

// sanction is an admin's grant of tenant-wide mail permissions to an app,
// made from a network familiar to the admin.
type sanction struct {
	Time  time.Time
	Admin string
	What  string // the grant, as the audit log says it
	ASN   uint32 // the network of the app's first read after the grant: its own
}

type consent struct {
	Time time.Time
	User string // who consented
}

type mailboxState struct {
	Pairs         map[string]time.Time // D2
	Clients       map[string]time.Time // D7: script-style client strings seen
	ReadUAs       map[string]time.Time // D1: client strings that read the mailbox, first seen (capped)
	HourStart     time.Time            // D3: open hour bucket
	HourItems     int
	HourLast      time.Time
	HourOpAlerted bool
	N             int     // D3: active hours in the baseline
	Mean, Var     float64 // D3: EWMA of items per active hour
	Days          []int64 // D9: distinct active days (Unix day numbers), recent first trimmed
	LastRead      time.Time
	Silent        bool // D9: silence already reported
	// The AppId and ClientAppId last read with, when lastPairOK: a pair
	// in both the tenant's and the mailbox's Pairs, so D2 has nothing to
	// look up for it (a mailbox is mostly read by one client). Not saved.
	lastApp, lastClient string
	lastPairOK          bool
}

// sourceState is one source of a tenant (D9), or one of its sign-in
// streams. Last is its event-time watermark; for a sign-in stream it and
// the stream's delay decide when the tenant's mail accesses can be
// judged (Engine.judgedUpTo).
type sourceState struct {
	Last    time.Time
	MaxGap  time.Duration
	Alerted bool // D9: source gap reported
	Lagging bool // D9: a sign-in stream silent beyond orphan_token.max_source_lag reported
	// How far behind the tenant's newest event a sign-in stream's records
	// arrive: in the window begun at DelayFrom and in the one before.
	Delays, DelaysPrev delayHist
	DelayFrom          time.Time
}

type search struct {
	Time     time.Time
	User     string
	Mailbox  string
	Sessions []string
	IP       string
	Terms    []string
	RecordID string
	Query    string
}

// maxReadUAs caps the client strings remembered per mailbox, and
// maxTenantUAs those counted per tenant.
const (
	maxReadUAs   = 64
	maxTenantUAs = 4096
)

// pending is a mail access held for late sign-ins (D1, D4).
type pending struct {
	Seq       uint64
	Due       time.Time
	Time      time.Time
	Tenant    string
	User      string
	Mailbox   string
	AppID     string
	ClientApp string
	IP        string
	UserAgent string
	Sessions  []string
	Token     string
	RecordID  string
	Items     int
	Source    string
	Operation string
}

func newState() *state {
	return &state{
		Tokens:   map[string]SignIn{},
		Sessions: map[string][]SignIn{},
		IPASN:    map[string]uint32{},
		Failures: map[string]*failures{},
		Tenants:  map[string]*tenantState{},
	}
}

func newTenant(t time.Time) *tenantState {
	return &tenantState{
		FirstSeen: t, Pairs: map[string]time.Time{}, NewPairs: map[string]*newPair{},
		Consents: map[string]consent{}, Sanctioned: map[string]*sanction{}, UAMailboxes: map[string]int{}, ASNUsers: map[uint32][]string{}, Users: map[string]*userState{}, Mailboxes: map[string]*mailboxState{},
		AppASNs: map[string]map[uint32]time.Time{}, IPSeen: map[string]time.Time{}, D4Alerted: map[string]time.Time{},
		Sources: map[string]*sourceState{}, SignIns: map[string]*sourceState{}, Multi: map[string]map[string]time.Time{}, MultiAlert: map[string]time.Time{},
	}
}

type stateHeader struct {
	Magic   string
	Version int
}

// Save writes the engine's learned state (not its settings) so a later
// Load continues exactly where this one stopped.
func (e *Engine) Save(w io.Writer) error { return e.save(w, false) }

// SaveLocal is Save for a snapshot read back on this machine with the
// same TempDir (vigil serve's): the accesses awaiting judgement that wait
// on disk are named, not copied, so saving costs the bounded in-memory
// part whatever the event rate. The files it names stay until a later
// SaveLocal no longer names them. Without a TempDir of the caller's own
// (Options.TempDir) there is no place to name them in, and it copies
// them as Save does.
func (e *Engine) SaveLocal(w io.Writer) error { return e.save(w, e.dir != "") }

// save writes the header, the state, the tenants that have a queue of
// pending accesses and then each tenant's queue in that order: the
// in-memory part, and the chunks on disk by name (local) or copied after
// it, ended by an empty chunk.
func (e *Engine) save(w io.Writer, local bool) error {
	bw := bufio.NewWriter(w)
	enc := gob.NewEncoder(bw)
	if err := enc.Encode(stateHeader{Magic: stateMagic, Version: StateVersion}); err != nil {
		return fmt.Errorf("save behaviour state: %w", err)
	}
	if err := enc.Encode(e.st); err != nil {
		return fmt.Errorf("save behaviour state: %w", err)
	}
	if err := enc.Encode(append([]string{}, e.pqKeys...)); err != nil {
		return fmt.Errorf("save behaviour state: %w", err)
	}
	for _, k := range e.pqKeys {
		q := e.pqs[k]
		if local {
			ps, err := q.state()
			if err == nil {
				err = enc.Encode(ps)
			}
			if err != nil {
				return fmt.Errorf("save behaviour state: tenant %q: %w", k, err)
			}
			continue
		}
		ps, err := q.inlineState()
		if err == nil {
			err = enc.Encode(ps)
		}
		if err == nil {
			err = q.eachChunk(func(c []pending) error { return enc.Encode(c) })
		}
		if err == nil {
			err = enc.Encode([]pending{})
		}
		if err != nil {
			return fmt.Errorf("save behaviour state: tenant %q: %w", k, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save behaviour state: %w", err)
	}
	return nil
}

// Load replaces the engine's state with one written by Save.
func (e *Engine) Load(r io.Reader) error {
	dec := gob.NewDecoder(bufio.NewReader(r))
	var h stateHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("load behaviour state: not a state file: %w", err)
	}
	if h.Magic != stateMagic {
		return errors.New("load behaviour state: not a vigil behaviour state file")
	}
	if h.Version != StateVersion {
		return fmt.Errorf("load behaviour state: version %d, this build reads %d (replay the logs to rebuild it)", h.Version, StateVersion)
	}
	st := newState()
	if err := dec.Decode(st); err != nil {
		return fmt.Errorf("load behaviour state: %w", err)
	}
	// gob leaves empty maps nil.
	if st.Tokens == nil {
		st.Tokens = map[string]SignIn{}
	}
	if st.Sessions == nil {
		st.Sessions = map[string][]SignIn{}
	}
	if st.IPASN == nil {
		st.IPASN = map[string]uint32{}
	}
	if st.Failures == nil {
		st.Failures = map[string]*failures{}
	}
	if st.Tenants == nil {
		st.Tenants = map[string]*tenantState{}
	}
	for _, t := range st.Tenants {
		t.fill()
	}
	var keys []string
	if err := dec.Decode(&keys); err != nil {
		return fmt.Errorf("load behaviour state: pending accesses: %w", err)
	}
	if !slices.IsSorted(keys) || len(slices.Compact(slices.Clone(keys))) != len(keys) {
		return errors.New("load behaviour state: pending accesses: damaged tenant list")
	}
	pqs := make(map[string]*pendingQueue, len(keys))
	closeAll := func() {
		for _, q := range pqs {
			q.close()
		}
	}
	local := false
	for _, k := range keys {
		var ps pendingState
		if err := dec.Decode(&ps); err != nil {
			closeAll()
			return fmt.Errorf("load behaviour state: pending accesses of tenant %q: %w", k, err)
		}
		local = local || !ps.Inline
		q, err := restoreQueue(e.dir, ps, func() ([]pending, error) {
			var c []pending
			if err := dec.Decode(&c); err != nil {
				return nil, fmt.Errorf("pending accesses: %w", err)
			}
			return c, nil
		})
		if err != nil {
			closeAll()
			return fmt.Errorf("load behaviour state: tenant %q: %w", k, err)
		}
		pqs[k] = &q
	}
	// The directory being the engine's own, segments there that the
	// loaded state does not name were left by a run that crashed after
	// its last saved state.
	if local && e.dir != "" {
		named := map[string]bool{}
		for _, q := range pqs {
			for p := range q.pinned {
				named[p] = true
			}
		}
		removeStaleSegments(e.dir, named)
	}
	for _, q := range e.pqs {
		q.close()
	}
	e.st, e.pqs, e.pqKeys = st, pqs, keys
	return nil
}

func (t *tenantState) fill() {
	n := newTenant(t.FirstSeen)
	if t.Pairs == nil {
		t.Pairs = n.Pairs
	}
	if t.NewPairs == nil {
		t.NewPairs = n.NewPairs
	}
	for _, p := range t.NewPairs {
		if p.Users == nil {
			p.Users = map[string]bool{}
		}
	}
	if t.Consents == nil {
		t.Consents = n.Consents
	}
	if t.Sanctioned == nil {
		t.Sanctioned = n.Sanctioned
	}
	if t.UAMailboxes == nil {
		t.UAMailboxes = n.UAMailboxes
	}
	if t.Users == nil {
		t.Users = n.Users
	}
	for _, u := range t.Users {
		if u.IPs == nil {
			u.IPs = map[string]seen{}
		}
		if u.ASNs == nil {
			u.ASNs = map[uint32]seen{}
		}
		if u.UAs == nil {
			u.UAs = map[string]seen{}
		}
		if u.OwnIPs == nil {
			u.OwnIPs = map[string]time.Time{}
		}
		if u.OwnFrom == nil {
			u.OwnFrom = map[string]time.Time{}
		}
	}
	if t.Mailboxes == nil {
		t.Mailboxes = n.Mailboxes
	}
	for _, m := range t.Mailboxes {
		if m.Pairs == nil {
			m.Pairs = map[string]time.Time{}
		}
		if m.Clients == nil {
			m.Clients = map[string]time.Time{}
		}
		if m.ReadUAs == nil {
			m.ReadUAs = map[string]time.Time{}
		}
	}
	if t.AppASNs == nil {
		t.AppASNs = n.AppASNs
	}
	for k, m := range t.AppASNs {
		if m == nil {
			t.AppASNs[k] = map[uint32]time.Time{}
		}
	}
	if t.ASNUsers == nil {
		t.ASNUsers = n.ASNUsers
	}
	if t.IPSeen == nil {
		t.IPSeen = n.IPSeen
	}
	if t.D4Alerted == nil {
		t.D4Alerted = n.D4Alerted
	}
	if t.Sources == nil {
		t.Sources = n.Sources
	}
	if t.SignIns == nil {
		t.SignIns = n.SignIns
	}
	if t.Multi == nil {
		t.Multi = n.Multi
	}
	if t.MultiAlert == nil {
		t.MultiAlert = n.MultiAlert
	}
}
