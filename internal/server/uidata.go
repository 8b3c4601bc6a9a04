package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
)

// TriageSource is the journal source of the triage changes made in the
// web interface: each change is a journal entry, so it is signed into the
// checkpoints like the logs and replayed after a restart.
const TriageSource = "vigil.triage"

// UIOptions configure the web interface's data.
type UIOptions struct {
	Journal Journal
	// Rules are the loaded and refused rules.
	Rules []ui.Rule
	// Switches are the rules disabled as detection read the journal, the
	// same the watcher applies and the pipeline mutes with; nil: the rules
	// are fixed while the server runs.
	Switches *RuleSwitches
	// FixedWhy says why the rules are fixed (Switches nil), for the
	// refusal of a switch.
	FixedWhy string
	// ChangeLog, when set, is where rule switches and triage changes are
	// appended instead of Journal: a cluster's stream, from which detect
	// nodes read the switches and the journal node's sequencer journals
	// both, so that a journal rebuilt from the stream holds them and a
	// change made on any node reaches the journal node's pages.
	ChangeLog journal.Log
	// Sinks deliver test messages; SinkInfo describes them for the admin
	// page (name, kind, target); Outbox says what each has pending.
	Sinks    []sink.Sink
	SinkInfo []ui.Sink
	Outbox   *sink.Outbox
	// Learning is the behaviours' baseline period from the first record.
	Learning time.Duration
	// Index is the investigation index serve follows: the search and
	// timeline pages query it. Without one (vigil serve --no-index) they
	// scan the records detection read, kept in memory up to MaxRecords.
	Index *index.Follower
	// IndexWait is how long a page waits for the index to catch up with
	// the journal before it answers from what is indexed (default 5 s).
	IndexWait time.Duration
	// MaxRecords bounds the records kept for search and timelines without
	// an index (default 150,000: some 115 MB at the 770 bytes a record of
	// typical mail-access fields); older ones are let go, and the search
	// page says so.
	MaxRecords int
	// Forward, when set, answers the search, timeline and integrity pages
	// from the node holding the journal (a cluster's ingest and detect
	// nodes: their own journal and index stay empty).
	Forward Forwarder
	// ReplayClock measures how far behind a source is from the newest
	// record instead of the wall clock: --demo replays a simulated past.
	ReplayClock bool
	Logger      *slog.Logger
}

// UIData answers the web interface from the watcher's live views (its
// incidents and alerts), the journal (checkpoints; triage changes are
// appended to it) and the investigation index for search and timelines;
// without an index, from the records detection reads, kept in memory up
// to UIOptions.MaxRecords.
//
// Its Entry and Alert methods are the watcher's OnEntry and OnAlert.
type UIData struct {
	o  UIOptions
	w  *Watcher
	ev *memdata.Events // nil with an index

	mu          sync.Mutex
	hours       map[string]map[int64]int // records per source per event-time hour
	alertHours  map[int64]int
	hits        map[string]int // alerts per signal
	first, last time.Time      // event times read
	triage      map[string]*triageState
	// made are the triage changes made here, applied when made: reading
	// them back from the journal applies them no second time.
	made map[string]bool
	// pending are the changes made on a node that does not read the
	// journal (Forward set), until the journal node's triage has them.
	pending []ui.Change
	// pendingRules are rule switches journaled here, per rule, until
	// detection reads them.
	pendingRules map[string]ui.RuleChange
	// merged maps an incident id with triage changes that regrouping has
	// since merged into another incident to that incident's id; mergedSig
	// is the grouping it was last worked out for.
	merged    map[string]string
	mergedSig uint64
}

type triageState struct {
	status, owner string
	history       []ui.Change
}

// maxHistory bounds the changes kept per incident (all stay in the journal).
const maxHistory = 200

// NewUIData returns the data; give its Entry and Alert to the watcher,
// then the watcher to Watch.
func NewUIData(o UIOptions) *UIData {
	if o.MaxRecords <= 0 {
		o.MaxRecords = 150_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.IndexWait <= 0 {
		o.IndexWait = uiIndexWait
	}
	d := &UIData{o: o, hours: map[string]map[int64]int{},
		alertHours: map[int64]int{}, hits: map[string]int{}, triage: map[string]*triageState{}, made: map[string]bool{},
		pendingRules: map[string]ui.RuleChange{}, merged: map[string]string{}}
	if o.Index == nil {
		d.ev = memdata.NewEvents(o.MaxRecords)
	}
	return d
}

// Watch sets the watcher whose incidents and alerts the pages show.
func (d *UIData) Watch(w *Watcher) { d.w = w }

var _ ui.Data = (*UIData)(nil)

// triageRecord is a triage change as journaled.
type triageRecord struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
	Operation string    `json:"operation"`
	User      string    `json:"user"`
	Incident  string    `json:"incident"`
	Status    string    `json:"status,omitempty"`
	Note      string    `json:"note,omitempty"`
}

// Entry keeps what the pages need of a journal entry: its records for
// search (without an index), counts per hour, and triage changes.
func (d *UIData) Entry(idx uint64, en *journal.Entry, evs []*event.Event) {
	if d.ev != nil {
		for _, e := range evs {
			d.ev.Add(e)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if en.Source == TriageSource {
		var tr triageRecord
		switch err := json.Unmarshal(en.Raw, &tr); {
		case err != nil || tr.Incident == "":
			d.o.Logger.Warn("triage entry does not parse", "index", idx, "err", err)
		case d.made[tr.ID]:
			delete(d.made, tr.ID)
		default:
			d.apply(ui.Change{ID: tr.ID, Incident: tr.Incident, Status: tr.Status, Note: tr.Note, Actor: tr.User, At: tr.Time})
		}
		// Searchable (source:vigil.triage), but no log source: its wall-clock
		// times stay out of the overview's series and source health.
		return
	}
	if en.Source == RuleSource {
		return // the watcher applies it; searchable, but no log source either
	}
	for _, e := range evs {
		if e.Time.IsZero() {
			continue
		}
		h := d.hours[e.Source]
		if h == nil {
			h = map[int64]int{}
			d.hours[e.Source] = h
		}
		h[e.Time.Unix()/3600]++
		if d.first.IsZero() || e.Time.Before(d.first) {
			d.first = e.Time
		}
		if e.Time.After(d.last) {
			d.last = e.Time
		}
	}
}

// Alert counts an alert per rule and per hour.
func (d *UIData) Alert(a *alert.Alert) {
	d.mu.Lock()
	d.hits[a.Signal]++
	d.alertHours[a.Time.Unix()/3600]++
	d.mu.Unlock()
}

func (d *UIData) apply(ch ui.Change) {
	st := d.triage[ch.Incident]
	if st == nil {
		st = &triageState{status: "open"}
		d.triage[ch.Incident] = st
	}
	if ch.Status != "" {
		st.status = ch.Status
		if st.owner == "" && ch.Status == "acknowledged" {
			st.owner = ch.Actor
		}
	}
	st.history = append(st.history, ch)
	if len(st.history) > maxHistory {
		st.history = slices.Delete(st.history, 0, len(st.history)-maxHistory)
	}
}

func (d *UIData) watcher() (*Watcher, error) {
	if d.w == nil {
		return nil, errNoViews
	}
	return d.w, nil
}

// caseOf is inc with its triage: the changes made on it and on the
// incidents merged into it (absorbed, from mergedInto), in the order they
// were made, so the latest status set on any part is its status and every
// note stays, marked with the incident it was written on. Call with d.mu
// held.
func (d *UIData) caseOf(inc *incident.Incident, absorbed map[string][]string) ui.Case {
	c := ui.NewCase(inc)
	parts := absorbed[inc.ID]
	if len(parts) == 0 {
		if st := d.triage[inc.ID]; st != nil {
			c.Status, c.Owner, c.History = st.status, st.owner, slices.Clone(st.history)
		}
		return c
	}
	for _, id := range append([]string{inc.ID}, parts...) {
		st := d.triage[id]
		if st == nil {
			continue
		}
		for _, ch := range st.history {
			if id != inc.ID {
				ch.From = id
			}
			c.History = append(c.History, ch)
		}
	}
	slices.SortStableFunc(c.History, func(a, b ui.Change) int { return a.At.Compare(b.At) })
	for _, ch := range c.History {
		if ch.Status != "" {
			c.Status = ch.Status
			if c.Owner == "" && ch.Status == "acknowledged" {
				c.Owner = ch.Actor
			}
		}
	}
	if len(c.History) > maxHistory {
		c.History = slices.Delete(c.History, 0, len(c.History)-maxHistory)
	}
	return c
}

// mergedInto works out which incidents with triage changes regrouping has
// merged into which of incs (the grouping as it stands; reordered here),
// and returns the ids merged into each. An incident's id is that of its
// first alert (incident.IDOf), so one whose id is gone lives on in the
// incident that holds the alert it was named after. Call with d.mu held.
func (d *UIData) mergedInto(incs []*incident.Incident) map[string][]string {
	cur := make(map[string]bool, len(incs))
	for _, inc := range incs {
		cur[inc.ID] = true
	}
	orphans := false
	for id := range d.triage {
		if !cur[id] && !cur[d.merged[id]] {
			orphans = true
			break
		}
	}
	if orphans {
		// Hashing every alert again is only worth it when the grouping
		// has changed since the last time.
		slices.SortFunc(incs, func(a, b *incident.Incident) int { return cmp.Compare(a.ID, b.ID) })
		sig := fnv.New64a()
		for _, inc := range incs {
			fmt.Fprintf(sig, "%s/%d;", inc.ID, inc.AlertCount)
		}
		if s := sig.Sum64(); s != d.mergedSig {
			d.mergedSig = s
			named := map[string]string{}
			for _, inc := range incs {
				for i := range inc.Alerts {
					named[incident.IDOf(&inc.Alerts[i])] = inc.ID
				}
			}
			for id := range d.triage {
				if to, ok := named[id]; ok && !cur[id] {
					d.merged[id] = to
				}
			}
		}
	}
	out := map[string][]string{}
	for from, to := range d.merged {
		if cur[to] && !cur[from] {
			out[to] = append(out[to], from)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// Cases returns the incidents, most severe and most recent first.
func (d *UIData) Cases(ctx context.Context) ([]ui.Case, error) {
	w, err := d.watcher()
	if err != nil {
		return nil, err
	}
	d.syncTriage(ctx)
	incs := w.IncidentList()
	slices.SortFunc(incs, func(a, b *incident.Incident) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.ID, b.ID))
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	absorbed := d.mergedInto(slices.Clone(incs))
	out := make([]ui.Case, 0, len(incs))
	for _, inc := range incs {
		out = append(out, d.caseOf(inc, absorbed))
	}
	return out, nil
}

// Case returns one incident.
func (d *UIData) Case(ctx context.Context, id string) (ui.Case, bool, error) {
	w, err := d.watcher()
	if err != nil {
		return ui.Case{}, false, err
	}
	d.syncTriage(ctx)
	incs := w.IncidentList()
	d.mu.Lock()
	defer d.mu.Unlock()
	absorbed := d.mergedInto(incs)
	// An incident merged into another since (an old link) is that one.
	if to, ok := d.merged[id]; ok && slices.Contains(absorbed[to], id) {
		id = to
	}
	i := slices.IndexFunc(incs, func(inc *incident.Incident) bool { return inc.ID == id })
	if i < 0 {
		return ui.Case{}, false, nil
	}
	return d.caseOf(incs[i], absorbed), true, nil
}

// Triage journals the change, then applies it.
func (d *UIData) Triage(ctx context.Context, ch ui.Change) error {
	w, err := d.watcher()
	if err != nil {
		return err
	}
	if _, ok := w.IncidentOf(ch.Incident); !ok {
		return fmt.Errorf("incident %q: %w", ch.Incident, ui.ErrNotFound)
	}
	if ch.At.IsZero() {
		ch.At = time.Now().UTC()
	}
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	tr := triageRecord{ID: hex.EncodeToString(idb[:]), Time: ch.At, Source: TriageSource, Operation: "IncidentTriaged",
		User: ch.Actor, Incident: ch.Incident, Status: ch.Status, Note: ch.Note}
	raw, err := json.Marshal(tr)
	if err != nil {
		return err
	}
	ch.ID = tr.ID
	log := d.changeLog()
	// Marked before the append, so detection cannot read the entry before
	// it is marked.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.o.Forward == nil {
		d.made[tr.ID] = true
	}
	if _, err := log.AppendBatch(ctx, []journal.Entry{{Source: TriageSource, Origin: "vigil serve: web interface", RecordID: tr.ID, Raw: raw}}); err != nil {
		delete(d.made, tr.ID)
		return fmt.Errorf("journaling the change: %w", err)
	}
	d.apply(ch)
	if d.o.Forward != nil {
		d.pending = append(d.pending, ch)
		if over := len(d.pending) - maxPending; over > 0 {
			d.pending = slices.Delete(d.pending, 0, over)
		}
	}
	w.Wake()
	return nil
}

// changeLog is where the web interface's changes are appended.
func (d *UIData) changeLog() journal.Log {
	if d.o.ChangeLog != nil {
		return d.o.ChangeLog
	}
	return d.o.Journal
}

// maxPending bounds the changes a node that does not read the journal
// shows before the journal node's triage has them.
const maxPending = 1000

// signal maps record ids to the first kept alert on them.
func (d *UIData) signal() func(string) string {
	m := map[string]string{}
	if d.w != nil {
		for _, a := range d.w.AlertList() {
			for _, id := range a.RecordIDs {
				if _, ok := m[id]; !ok {
					m[id] = a.Signal
				}
			}
		}
	}
	return func(id string) string { return m[id] }
}

// Timeline asks the index (or scans the kept records) for the entity and
// links the incidents that name it.
func (d *UIData) Timeline(ctx context.Context, q ui.TimelineQuery) (ui.Timeline, error) {
	var tl ui.Timeline
	var err error
	if d.o.Forward != nil {
		tl, err = d.forwardTimeline(ctx, q)
	} else {
		tl, err = d.timelineRecords(ctx, q)
	}
	if err != nil || d.w == nil {
		return tl, err
	}
	incs := d.w.IncidentList()
	slices.SortFunc(incs, func(a, b *incident.Incident) int { return cmp.Compare(a.ID, b.ID) })
	for _, inc := range incs {
		if ui.Names(inc, q.Entity) {
			tl.Cases = append(tl.Cases, inc.ID)
		}
	}
	return tl, nil
}

// timelineRecords is the timeline's records, from the index or the kept
// records.
func (d *UIData) timelineRecords(ctx context.Context, q ui.TimelineQuery) (ui.Timeline, error) {
	if d.o.Index != nil {
		return d.timelineIndex(ctx, q)
	}
	return d.ev.Timeline(ctx, q, d.signal())
}

// Search asks the index, or without one scans the kept records.
func (d *UIData) Search(ctx context.Context, q string, limit int) (ui.SearchResult, error) {
	if d.o.Forward != nil {
		return d.forwardSearch(ctx, q, limit)
	}
	if d.o.Index != nil {
		return d.searchIndex(ctx, q, limit)
	}
	return d.ev.Search(ctx, q, limit, d.signal())
}

// QueryHelp says what the search understands and what it holds.
func (d *UIData) QueryHelp() string {
	if d.o.Index != nil {
		return indexHelp()
	}
	return d.ev.QueryHelp()
}

// Rules returns the rules with their alerts since the server started
// (the journal replay included), each with its latest switch and one
// pending.
func (d *UIData) Rules(context.Context) ([]ui.Rule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.o.Rules)
	for i := range out {
		r := &out[i]
		r.Hits = d.hits[r.ID]
		if d.o.Switches == nil || d.w == nil {
			r.Fixed = true
			continue
		}
		if !r.Loaded {
			continue
		}
		ch, muted, ok := d.o.Switches.State(r.ID)
		r.Suppressed = muted
		if ok {
			r.Change, r.Enabled = ch, ch.Enabled
		}
		if _, p := d.ruleTarget(d.w, r.ID); p != nil {
			r.Pending = p
		}
	}
	return out, nil
}

// Integrity returns the latest signed checkpoint and checks its
// signature with the journal's verifier key.
func (d *UIData) Integrity(ctx context.Context) (ui.Integrity, error) {
	if d.o.Forward != nil {
		return d.forwardIntegrity(ctx)
	}
	j := d.o.Journal
	cp := j.Latest()
	var signed time.Time // unknown for the journal's periodic checkpoint
	if cp.Size < j.Size() || cp.Note == nil {
		var err error
		if cp, err = j.Checkpoint(ctx); err != nil {
			return ui.Integrity{}, fmt.Errorf("checkpoint: %w", err)
		}
		signed = time.Now().UTC()
	}
	in := ui.Integrity{Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]),
		Checkpoint: string(cp.Note), VerifierKey: j.VerifierKey(), SignedAt: signed}
	v, err := journal.NewVerifier(j.VerifierKey())
	if err == nil {
		_, err = journal.ParseCheckpoint(cp.Note, v)
	}
	if err != nil {
		in.VerifyDetail = err.Error()
	} else {
		in.Verified, in.VerifiedAt = true, time.Now().UTC()
		in.VerifyDetail = "the checkpoint's signature checks with the verifier key"
	}
	return in, nil
}

// Sinks returns the configured sinks with what each has pending.
func (d *UIData) Sinks(context.Context) ([]ui.Sink, error) {
	out := slices.Clone(d.o.SinkInfo)
	if d.o.Outbox == nil {
		return out, nil
	}
	for _, st := range d.o.Outbox.Status() {
		for i := range out {
			if out[i].Name == st.Sink {
				out[i].Pending, out[i].LastDelivery, out[i].LastError = st.Pending, st.LastSent, st.LastError
				if st.Disabled != "" {
					out[i].LastError = strings.TrimSpace("disabled: " + st.Disabled + " " + out[i].LastError)
				}
			}
		}
	}
	return out, nil
}

// TestSink sends a test message through the named sink, directly (not
// through the outbox: the admin wants to know now whether it arrives).
func (d *UIData) TestSink(ctx context.Context, name, actor string) error {
	i := slices.IndexFunc(d.o.Sinks, func(s sink.Sink) bool { return s.Name() == name })
	if i < 0 {
		return fmt.Errorf("sink %q: %w", name, ui.ErrNotFound)
	}
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	now := time.Now().UTC()
	m := sink.Message{ID: "test/" + hex.EncodeToString(idb[:]), Type: "test", Time: now, Severity: "informational",
		Title: "vigil test delivery, asked for by " + actor, Data: json.RawMessage(`{"test":true}`)}
	if err := d.o.Sinks[i].Deliver(ctx, m); err != nil {
		return fmt.Errorf("sink %q: test delivery: %w", name, err)
	}
	return nil
}

// Collectors returns the collectors' configuration and state.
func (d *UIData) Collectors(context.Context) ([]ui.Collector, error) {
	if d.w == nil {
		return nil, nil
	}
	var out []ui.Collector
	for _, c := range d.w.Collectors() {
		st := c.Status()
		detail := st.State
		if st.LastError != "" {
			detail += ": " + st.LastError
		}
		out = append(out, ui.Collector{Name: c.Tenant() + "/" + c.Name(), Source: st.Source, Configured: true, Detail: detail, LastPoll: st.LastPoll})
	}
	return out, nil
}

// Overview counts records per source and alerts and incidents over time,
// from the hourly counts kept as detection reads the journal.
func (d *UIData) Overview(context.Context) (ui.Overview, error) {
	w, err := d.watcher()
	if err != nil {
		return ui.Overview{}, err
	}
	o := ui.Overview{Events: int64(d.o.Journal.Size())}
	incs := w.IncidentList()
	stats := w.SourceStats()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.o.ReplayClock && !d.last.IsZero() {
		now = d.last
	}
	if !d.first.IsZero() {
		o.Learning = ui.Learning{From: d.first, Until: d.first.Add(d.o.Learning), Done: !d.last.Before(d.first.Add(d.o.Learning))}
		o.Step = max(memdata.StepFor(d.last.Sub(d.first)+time.Second, 96), time.Hour)
		o.SeriesFrom = d.first.Truncate(o.Step)
	}
	n := 0
	if o.Step > 0 {
		n = int(d.last.Sub(o.SeriesFrom)/o.Step) + 1
	}
	bucket := func(hour int64) int { return int(time.Unix(hour*3600, 0).Sub(o.SeriesFrom) / o.Step) }
	series := func(counts map[int64]int) []int {
		s := make([]int, n)
		for h, c := range counts {
			if i := bucket(h); i >= 0 && i < n {
				s[i] += c
			}
		}
		return s
	}
	for _, st := range stats {
		if st.Source == TriageSource || st.Source == RuleSource {
			continue
		}
		h := ui.SourceHealth{Source: st.Source, Records: st.Records, LastRecord: st.LastRecord, Watermark: st.LastRecord}
		var counts []int
		for name, c := range d.hours {
			// Sources are named by the journal entry; events by the decoder
			// ("m365.ual" either way for the built-in formats).
			if name == st.Source {
				counts = series(c)
			}
		}
		if counts != nil {
			o.Ingest = append(o.Ingest, ui.Series{Name: st.Source, Counts: counts})
			h.Gaps = memdata.Gaps(counts, o.SeriesFrom, o.Step)
		}
		if !h.LastRecord.IsZero() {
			h.Lag = now.Sub(h.LastRecord)
		}
		switch {
		case h.LastRecord.IsZero():
			h.Status, h.Detail = "silent", "no record with a time yet"
		case h.Lag > 24*time.Hour:
			h.Status = "silent"
		case h.Lag > 2*time.Hour:
			h.Status = "lagging"
		default:
			h.Status = "ok"
		}
		if d.o.ReplayClock {
			h.Detail = strings.TrimSpace(h.Detail + " lag measured from the newest record (a replayed tenant)")
		}
		o.Sources = append(o.Sources, h)
	}
	for _, c := range w.Collectors() {
		st := c.Status()
		h := ui.SourceHealth{Source: c.Tenant() + "/" + c.Name(), Records: st.Records, Watermark: st.Watermark, Detail: st.State}
		if !st.Watermark.IsZero() {
			h.Lag = time.Since(st.Watermark)
		}
		switch {
		case st.State == "failed" || st.LastError != "":
			h.Status, h.Detail = "error", strings.TrimSpace(st.State+": "+st.LastError)
		case st.Watermark.IsZero():
			h.Status = "silent"
		case h.Lag > 24*time.Hour:
			h.Status = "silent"
		case h.Lag > 2*time.Hour:
			h.Status = "lagging"
		default:
			h.Status = "ok"
		}
		if st.Gaps > 0 {
			h.Detail = strings.TrimSpace(fmt.Sprintf("%s; %d gaps the vendor reported", h.Detail, st.Gaps))
		}
		o.Sources = append(o.Sources, h)
	}
	if n > 0 {
		o.Alerts = series(d.alertHours)
		o.Incidents = make([]int, n)
		for _, inc := range incs {
			if i := bucket(inc.Raised.Unix() / 3600); i >= 0 && i < n {
				o.Incidents[i]++
			}
		}
	}
	return o, nil
}
