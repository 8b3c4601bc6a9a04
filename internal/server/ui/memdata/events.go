package memdata

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// rec is what search and timelines need of one event: its fields as
// strings, not the raw record (which a journal reader reuses).
type rec struct {
	Time                                          time.Time
	Source, Operation, User, IP, AppID, ClientApp string
	UserAgent, Mailbox, Subject, Result           string
	SessionID, TokenID, RecordID                  string
	Folders, MessageIDs                           []string
}

// recOf copies what it keeps, so no string of it holds on to the
// record's bytes.
func recOf(e *event.Event) rec {
	c := strings.Clone
	all := func(ss []string) []string {
		if len(ss) == 0 {
			return nil
		}
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = c(s)
		}
		return out
	}
	return rec{Time: e.Time, Source: c(e.Source), Operation: c(e.Operation), User: c(e.User), IP: c(e.IP), AppID: c(e.AppID),
		ClientApp: c(e.ClientAppID), UserAgent: c(e.UserAgent), Mailbox: c(e.Mailbox), Subject: c(e.Get("Subject")),
		Result: c(e.Result), SessionID: c(e.SessionID), TokenID: c(e.TokenID), RecordID: c(e.RecordID),
		Folders: all(e.Folders), MessageIDs: all(e.MessageIDs)}
}

func (e *rec) row(signal func(string) string) ui.Row {
	app := e.AppID
	if app == "" {
		app = e.ClientApp
	}
	r := ui.Row{Time: e.Time, Source: e.Source, Operation: e.Operation, User: e.User, IP: e.IP, App: app,
		UserAgent: e.UserAgent, Mailbox: e.Mailbox, Folders: e.Folders, Subject: e.Subject, Result: e.Result}
	if signal != nil && e.RecordID != "" {
		r.Signal = signal(e.RecordID)
	}
	return r
}

// Events holds records for search and timelines: all of them, or with a
// limit the newest Max, so memory stays bounded on a server that runs for
// months. What it let go is said in QueryHelp, never hidden.
type Events struct {
	max int

	mu      sync.RWMutex
	recs    []rec
	sorted  bool
	dropped int64     // records let go, oldest first
	before  time.Time // the newest time let go
}

// NewEvents holds at most max records (0: no limit).
func NewEvents(max int) *Events { return &Events{max: max, sorted: true} }

// Add keeps e; past the limit the oldest quarter is let go.
func (x *Events) Add(e *event.Event) {
	r := recOf(e)
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := len(x.recs); n > 0 && r.Time.Before(x.recs[n-1].Time) {
		x.sorted = false
	}
	x.recs = append(x.recs, r)
	if x.max > 0 && len(x.recs) > x.max {
		x.sortLocked()
		drop := len(x.recs) - x.max + x.max/4
		x.dropped += int64(drop)
		x.before = x.recs[drop-1].Time
		x.recs = slices.Delete(x.recs, 0, drop)
		x.recs = slices.Clip(x.recs)
	}
}

// Len is how many records are held.
func (x *Events) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.recs)
}

func (x *Events) sort() {
	x.mu.RLock()
	ok := x.sorted
	x.mu.RUnlock()
	if ok {
		return
	}
	x.mu.Lock()
	x.sortLocked()
	x.mu.Unlock()
}

func (x *Events) sortLocked() {
	if !x.sorted {
		slices.SortStableFunc(x.recs, func(a, b rec) int { return a.Time.Compare(b.Time) })
		x.sorted = true
	}
}

// held says what the scan covers when it let records go.
func (x *Events) held() string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.dropped == 0 {
		return ""
	}
	return fmt.Sprintf("This in-memory search holds the newest %d records; %d older ones (up to %s) are not searched. ",
		len(x.recs), x.dropped, x.before.UTC().Format(time.RFC3339))
}

// matches reports whether e involves the entity.
func (e *rec) matches(en ui.Entity) bool {
	v := en.Value
	switch en.Kind {
	case "user":
		return strings.EqualFold(e.User, v)
	case "mailbox":
		return strings.EqualFold(e.Mailbox, v)
	case "ip":
		return e.IP == v
	case "app":
		return strings.EqualFold(e.AppID, v) || strings.EqualFold(e.ClientApp, v)
	case "token":
		return e.TokenID == v
	case "session":
		return e.SessionID == v
	}
	return false
}

// Timeline scans the records for the entity: its whole history, or the
// records within q.Window of q.Around with q.Context records on each side.
// It leaves Timeline.Cases to the caller.
func (x *Events) Timeline(ctx context.Context, q ui.TimelineQuery, signal func(string) string) (ui.Timeline, error) {
	en := q.Entity
	tl := ui.Timeline{Entity: en}
	related := map[ui.Entity]bool{}
	add := func(kind, v string) {
		if v != "" && len(related) < 40 && !(kind == en.Kind && strings.EqualFold(v, en.Value)) {
			related[ui.Entity{Kind: kind, Value: v}] = true
		}
	}
	lo, hi := q.Around.Add(-q.Window), q.Around.Add(q.Window)
	var before []ui.Row
	after := 0
	x.sort()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for i := range x.recs {
		e := &x.recs[i]
		if i%4096 == 0 && ctx.Err() != nil {
			return ui.Timeline{}, ctx.Err()
		}
		if !e.matches(en) {
			continue
		}
		if !q.Around.IsZero() {
			if e.Time.Before(lo) {
				if q.Context > 0 {
					r := e.row(signal)
					r.At = "before"
					before = append(before, r)
					if len(before) > q.Context {
						before = before[1:]
					}
				}
				continue
			}
			if e.Time.After(hi) {
				if after < q.Context {
					r := e.row(signal)
					r.At = "after"
					tl.Rows = append(tl.Rows, r)
					after++
				}
				continue
			}
		}
		tl.Total++
		if tl.Total <= q.Limit {
			tl.Rows = append(tl.Rows, e.row(signal))
		}
		add("ip", e.IP)
		add("user", e.User)
		add("mailbox", e.Mailbox)
		add("app", e.AppID)
		add("session", e.SessionID)
		add("token", e.TokenID)
	}
	tl.Rows = append(before, tl.Rows...)
	for k := range related {
		tl.Related = append(tl.Related, k)
	}
	slices.SortFunc(tl.Related, func(a, b ui.Entity) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Value, b.Value))
	})
	return tl, nil
}
