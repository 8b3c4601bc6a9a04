package ui

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/incident"
)

// Data is what the pages show and the actions they take. The server
// implements it over detection's views, the search index and the journal;
// tests implement it with fakes. Methods that change state journal the
// change before they return nil.
type Data interface {
	Overview(ctx context.Context) (Overview, error)
	// Cases returns incidents newest first.
	Cases(ctx context.Context) ([]Case, error)
	Case(ctx context.Context, id string) (Case, bool, error)
	Timeline(ctx context.Context, q TimelineQuery) (Timeline, error)
	// Search runs a query of `vigil search`'s language; a query the user
	// must fix gives an error wrapping ErrQuery.
	Search(ctx context.Context, query string, limit int) (SearchResult, error)
	// QueryHelp says in one line what Search understands.
	QueryHelp() string
	Rules(ctx context.Context) ([]Rule, error)
	Integrity(ctx context.Context) (Integrity, error)
	Sinks(ctx context.Context) ([]Sink, error)
	Collectors(ctx context.Context) ([]Collector, error)

	// Triage records a status change or a note on an incident.
	Triage(ctx context.Context, c Change) error
	// SetRule enables or disables a rule (c.Rule) and sets c.Index to the
	// journal entry of the switch; a switch to the state the rule is
	// already in gives an error wrapping ErrConflict.
	SetRule(ctx context.Context, c *RuleChange) error
	// TestSink sends a test delivery through the named sink.
	TestSink(ctx context.Context, name, actor string) error
}

// ErrNotFound is what actions return for an unknown incident, rule or sink.
var ErrNotFound = errors.New("not found")

// ErrConflict is what actions return that the state already makes moot
// or impossible (a rule already disabled, a refused rule); the page says
// so with 409.
var ErrConflict = errors.New("conflict")

// ErrInvalid is what actions return for a request the user must fix (the
// page says so with 400).
var ErrInvalid = errors.New("invalid request")

// ErrUnsupported is what actions return that this server cannot take
// (the page says so with 501).
var ErrUnsupported = errors.New("not supported by this server")

// Incident statuses, in queue order.
var Statuses = []string{"open", "acknowledged", "resolved", "false_positive"}

// Overview is the landing page.
type Overview struct {
	Sources []SourceHealth
	// Ingest counts records per source per Step from SeriesFrom; Alerts
	// and Incidents count alerts raised and incidents opened per Step.
	SeriesFrom time.Time
	Step       time.Duration
	Ingest     []Series
	Alerts     []int
	Incidents  []int
	Learning   Learning
	// Events is how many records the journal holds.
	Events int64
}

// Series is one named count series.
type Series struct {
	Name   string
	Counts []int
}

// SourceHealth says whether a source still delivers.
type SourceHealth struct {
	Source     string
	Records    int64
	LastRecord time.Time // event time of the newest record
	Watermark  time.Time // collection complete up to here
	Lag        time.Duration
	Gaps       []Gap
	Status     string // ok, lagging, silent, error
	Detail     string
}

// Gap is a span with no records where the source's history expects some.
type Gap struct {
	From, To time.Time
}

// Learning is the baseline period of the behaviours.
type Learning struct {
	From, Until time.Time
	Done        bool
}

// Case is an incident with its triage state.
type Case struct {
	*incident.Incident
	Status string
	Owner  string
	// Confidence says in words why the signals corroborate; Score (0–100)
	// weighs them; Reasons explain each signal.
	Confidence string
	Score      int
	Reasons    []Reason
	History    []Change
}

// Reason is one signal behind an incident, explained.
type Reason struct {
	Signal   string
	Level    string
	Evidence string // the strongest alert's title
	Count    int    // alerts of this signal
	Counts   bool   // counted towards making the incident
	Points   int    // its share of Score
	Means    string // what it suggests
	Benign   string // its innocent explanation, to rule out first
	First    time.Time
	Last     time.Time
}

// Change is one triage action on an incident.
type Change struct {
	// ID is the change's journal record id ("" until it is journaled).
	ID       string
	Incident string
	Status   string // "" when the change is only a note
	Note     string
	Actor    string // the API key's name
	At       time.Time
	// From is the incident the change was made on when that incident has
	// since merged into this one ("" for this incident's own changes).
	From string
}

// Entity is what a timeline is about.
type Entity struct {
	Kind  string // user, mailbox, ip, app, token, session
	Value string
}

// EntityKinds are the kinds a timeline can be drawn for.
var EntityKinds = []string{"user", "mailbox", "ip", "app", "token", "session"}

// TimelineQuery asks for an entity's records: its whole history (up to
// Limit), or with Around set those within Window of it plus Context
// records before and after, as `vigil timeline` does.
type TimelineQuery struct {
	Entity  Entity
	Around  time.Time
	Window  time.Duration
	Context int
	Limit   int
}

// Timeline is an entity's activity across sources.
type Timeline struct {
	Entity Entity
	// Rows are in time order; context rows (Row.At before or after) come
	// first and last.
	Rows []Row
	// Total counts every matching record in the window; Rows may hold
	// fewer.
	Total int
	// Related are other entities seen with this one, for pivots.
	Related []Entity
	Cases   []string // incidents naming the entity
	// Note says what the answer may leave out (an index behind the
	// journal); "" when nothing.
	Note string
}

// Row is one record in a timeline or a search result.
type Row struct {
	Time      time.Time
	Source    string
	Operation string
	User      string
	IP        string
	App       string
	UserAgent string
	Mailbox   string
	Folders   []string
	Subject   string
	Result    string
	Signal    string // the detection on this record, if any
	// At is "before" or "after" for context rows of a timeline around a
	// time, "" otherwise.
	At string
}

// SearchResult is the answer to a query.
type SearchResult struct {
	Rows  []Row
	Total int
	// Counts are every match per Step from From (Rows may hold fewer);
	// nil draws the chart from Rows.
	From   time.Time
	Step   time.Duration
	Counts []int
	// Note says what the answer may leave out (an index behind the
	// journal); "" when nothing.
	Note string
}

// Rule is one detection rule as loaded.
type Rule struct {
	ID      string
	Title   string
	Level   string
	Kind    string // sigma, behaviour
	Loaded  bool
	Refused string // the reason it was refused
	Enabled bool
	// Fixed rules cannot be enabled or disabled from the interface.
	Fixed bool
	// Change is the latest switch detection applied (zero: none, the
	// rule runs as loaded); Pending one journaled that detection has not
	// reached yet.
	Change  RuleChange
	Pending *RuleChange
	Hits    int
	// Suppressed counts the alerts the rule raised while disabled: dropped.
	Suppressed int
}

// RuleChange switches a rule on or off, from the moment detection reads
// it in the journal.
type RuleChange struct {
	Rule    string
	Enabled bool
	Reason  string
	Actor   string // the API key's name
	At      time.Time
	Index   uint64 // the journal entry (set when journaled)
	ID      string // the switch record's id (set when journaled)
}

// MaxRuleReason bounds the reason given for a rule switch, in bytes.
const MaxRuleReason = 1000

// Integrity is the journal's latest signed checkpoint.
type Integrity struct {
	Origin       string
	Size         uint64
	Root         string // base64
	Checkpoint   string // the signed note
	VerifierKey  string
	SignedAt     time.Time
	Verified     bool
	VerifiedAt   time.Time
	VerifyDetail string
}

// Sink is one configured alert destination.
type Sink struct {
	Name, Kind, Target string
	Pending            int
	LastDelivery       time.Time
	LastError          string
}

// Collector is one configured log collector.
type Collector struct {
	Name, Source string
	Configured   bool
	Detail       string
	LastPoll     time.Time
}

// NewCase is an open, unowned case of inc, with detection's own score,
// confidence and reasons, and each signal's span from the incident's
// timeline.
func NewCase(inc *incident.Incident) Case {
	c := Case{Incident: inc, Status: "open", Score: inc.Score, Confidence: inc.Confidence}
	c.Reasons = make([]Reason, 0, len(inc.Reasons))
	for _, r := range inc.Reasons {
		ur := Reason{Signal: r.Signal, Level: r.Level.String(), Evidence: r.Evidence, Count: r.Count, Counts: r.Counts,
			Points: r.Points, Means: r.Means, Benign: r.Benign}
		for _, t := range inc.Timeline {
			if t.Signal != r.Signal {
				continue
			}
			if ur.First.IsZero() || t.First.Before(ur.First) {
				ur.First = t.First
			}
			if t.Last.After(ur.Last) {
				ur.Last = t.Last
			}
		}
		c.Reasons = append(c.Reasons, ur)
	}
	return c
}

// Names reports whether inc names the entity among its actors or
// mailboxes: the incidents a timeline links to.
func Names(inc *incident.Incident, en Entity) bool {
	a := inc.Actors
	switch en.Kind {
	case "ip":
		return slices.Contains(a.IPs, en.Value)
	case "user":
		return slices.Contains(a.Users, en.Value)
	case "mailbox":
		return slices.Contains(inc.Impact.Mailboxes, en.Value) || slices.Contains(inc.Mailboxes, en.Value)
	case "app":
		return slices.Contains(a.Apps, en.Value) || slices.Contains(a.ClientApps, en.Value)
	case "token":
		return slices.Contains(a.Tokens, en.Value)
	case "session":
		return slices.Contains(a.Sessions, en.Value)
	}
	return false
}
