package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
)

// DefaultReorder is the reordering window: events may arrive this much
// (in event time) behind the newest one seen and still be processed in
// order.
const DefaultReorder = 10 * time.Minute

// DefaultMaxFuture is how far after the wall clock an event may be dated
// before it is taken as future-dated: sources stamp UTC from synchronised
// clocks, so an hour is clock trouble or forgery, not skew.
const DefaultMaxFuture = time.Hour

// Sink receives what the pipeline finds. Calls come from the goroutine
// that calls Process and Close.
type Sink interface {
	// Alert is called once per alert, when a detector raises it.
	Alert(a *alert.Alert)
	// Incident is called when an incident opens or changes.
	Incident(u Update)
}

// UpdateKind says how an incident changed.
type UpdateKind int

// Incident updates.
const (
	Opened UpdateKind = iota
	Grew
	SeverityChanged
	ImpactChanged
)

func (k UpdateKind) String() string {
	return [...]string{"opened", "grew", "severity changed", "impact changed"}[k]
}

// Update is one change of an incident. Incident is a snapshot the sink
// may keep.
type Update struct {
	Kind     UpdateKind
	Incident *incident.Incident
	// AlertIDs name the incident's alerts (alert.ID) when the update comes
	// from detection on another node, whose incidents travel without
	// their Alerts; nil from a local pipeline.
	AlertIDs []string
}

// Config is what the pipeline runs.
type Config struct {
	Rules      *sigma.Ruleset   // nil: no Sigma rules
	Behaviours *behavior.Engine // nil: no behaviours
	// Incidents groups alerts into incidents and measures their impact;
	// nil for none (a plain Sigma hunt).
	Incidents *incident.Config
	// Reorder is the reordering window (DefaultReorder if zero).
	Reorder time.Duration
	// TempDir holds the access log of the impact pass ("" for the
	// system's temporary directory).
	TempDir string
	// ResultOnly: incidents come from Close alone, no incident updates
	// while the stream runs (alerts still go to the sink as raised).
	// Grouping during the stream regroups every alert so far each hour of
	// event time with a new incident-worthy alert, a cost that grows with
	// the alerts of the run; an offline run that only wants the result
	// does without. A nil sink implies it.
	ResultOnly bool
	// Mute, when it says true, drops an alert as it is raised: the sink
	// never hears of it, it joins no incident and no result (vigil serve:
	// rules an admin disabled). nil drops nothing.
	Mute func(*alert.Alert) bool
	// MaxFuture: an event dated more than this after Now is future-dated
	// and judged by the single-event rules alone (Pipeline.future);
	// DefaultMaxFuture if zero, negative for no check.
	MaxFuture time.Duration
	// Now is the wall clock (time.Now if nil).
	Now func() time.Time
	// Settle is how far before the latest processed event an alert may
	// still be raised dated (late judgements, late logs, hourly checks):
	// the incident groups whose alerts are all older than that and the
	// incident window can gain no alert, so they settle and leave memory
	// (settle.go). Zero: the reordering window plus the behaviours'
	// AlertDelay; negative: nothing settles.
	Settle time.Duration
	// ForgetSettled: the alerts of settled groups leave the pipeline for
	// good, and Close's Result lists only the alerts still held (vigil
	// serve, whose sink keeps every alert). Otherwise they are written to
	// a file under TempDir in sorted runs that the Result's Alerts merge
	// as they are walked (Result.Close removes it).
	ForgetSettled bool
	// Sequential keeps the behaviours on the ordered stage's goroutine in
	// offline runs (RunOffline, RunOrdered), which otherwise give them a
	// goroutine of their own when there is more than one CPU. The result
	// is the same either way.
	Sequential bool
}

// Stats describe the events a pipeline saw.
type Stats struct {
	Events int64
	Late   int64 // arrived behind the reordering window, processed out of order
	// Future events were dated more than Config.MaxFuture after the wall
	// clock: matched by the single-event rules only (DefaultMaxFuture).
	Future  int64
	Sources map[string]int
	// SettledLate alerts were raised dated before a horizon that had
	// already settled groups (an event beyond the reordering window, or a
	// detector later than Config.Settle): grouped with the alerts still
	// held only.
	SettledLate int64
	From        time.Time // event-time range
	To          time.Time
	Reads       incident.Histogram // mail reads over time
}

// Result is everything a finished run found. Its Alerts may be read
// from a temporary file: Close removes it.
type Result struct {
	Alerts    *Alerts
	Incidents []*incident.Incident
	Stats     Stats
}

// Close removes the temporary file of the result's alerts.
func (r *Result) Close() {
	if r != nil {
		r.Alerts.Close()
	}
}

// Pipeline runs detectors over a stream of events.
type Pipeline struct {
	cfg      Config
	sink     Sink
	buf      reorderBuf
	newest   time.Time // latest event time seen
	released time.Time // latest event time processed
	alerts   []alert.Alert
	fresh    bool // alerts since the last grouping
	counting bool // of which one counts towards an incident
	grouped  time.Time
	open     map[string]incState
	// Settled state (settle.go): the final incidents, the breadth of the
	// actors of the alerts let go, the horizon settled so far, when
	// an offline run last settled, and the settled alerts kept for Close.
	settled   []*incident.Incident
	tally     incident.Tally
	horizon   time.Time
	settledAt time.Time
	alerted   time.Time // the newest alert's time
	spool     *alertSpool
	log       *accessLog
	impact    map[string]int // accesses per incident last reported (Refresh)
	// Refresh's impact measure, carried from one refresh to the next.
	live         *incident.Assessor
	liveIncs     []*incident.Incident
	livePos      logPos
	fullMeasures int // refreshes that read the whole access log
	stats        Stats
	closed       bool
	err          error // a failure where none could be returned (fail)
	// split runs the behaviours on a goroutine of their own (offline
	// runs, split.go); collect then takes the Sigma alerts of the event
	// being run, to be raised in order with the behaviours'.
	split        *split
	collect      *[]alert.Alert
	splitBatches int // sent to the behaviours' goroutine
}

type incState struct {
	alerts   int
	severity alert.Level
}

// New returns a pipeline; sink may be nil.
func New(cfg Config, sink Sink) *Pipeline {
	if cfg.Reorder <= 0 {
		cfg.Reorder = DefaultReorder
	}
	if cfg.MaxFuture == 0 {
		cfg.MaxFuture = DefaultMaxFuture
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if sink == nil {
		sink = nopSink{}
		cfg.ResultOnly = true
	}
	return &Pipeline{cfg: cfg, sink: sink, open: map[string]incState{}, stats: Stats{Sources: map[string]int{}}}
}

type nopSink struct{}

func (nopSink) Alert(*alert.Alert) {}
func (nopSink) Incident(Update)    {}

// Item is an event with the work done that needs no detection state
// (Prepare): its Sigma matches and its mail access. Items are what the
// ordered stage processes.
type Item struct {
	Ev    *event.Event
	read  bool              // a mail access
	acc   *event.MailAccess // its facts, when a detector needs them (&accv)
	accv  event.MailAccess  // held in the item: one allocation, not two
	enc   []byte            // acc as the access log keeps it
	sigma sigma.Matches
}

// Prepare does the stateless part of detection for ev: the Sigma rules'
// matching and the reduction of a mail access. It is safe to call from
// many goroutines at once, ahead of ProcessItem, which is not.
func (p *Pipeline) Prepare(ev *event.Event) *Item {
	it := &Item{Ev: ev, read: event.IsMailAccess(ev)}
	if it.read {
		switch {
		case p.cfg.Incidents != nil:
			it.accv, _ = event.MailAccessOf(ev)
			it.acc = &it.accv
			it.enc = appendAccess(nil, it.acc)
		case p.cfg.Behaviours != nil:
			it.accv, _ = event.MailAccessHeader(ev)
			it.acc = &it.accv
		}
	}
	if p.cfg.Rules != nil {
		it.sigma = p.cfg.Rules.Detect(ev)
	}
	return it
}

// Process feeds one event, in any order within the reordering window.
// The pipeline keeps the event until it is released in order.
func (p *Pipeline) Process(ev *event.Event) error { return p.ProcessItem(p.Prepare(ev)) }

// ProcessItem is Process for an event Prepare has seen.
func (p *Pipeline) ProcessItem(it *Item) error {
	if p.closed {
		return errors.New("detect: Process after Close")
	}
	ev := it.Ev
	if ev.Time.IsZero() {
		p.run(it) // no place in time: the behaviours skip it, rules still match
		return nil
	}
	if p.cfg.MaxFuture > 0 && ev.Time.After(p.cfg.Now().Add(p.cfg.MaxFuture)) {
		p.future(it)
		return nil
	}
	if ev.Time.After(p.newest) {
		p.newest = ev.Time
	}
	if !p.released.IsZero() && ev.Time.Before(p.released) {
		p.stats.Late++
		p.run(it)
		return nil
	}
	p.buf.push(it)
	edge := p.newest.Add(-p.cfg.Reorder)
	for p.buf.Len() > 0 && !p.buf.peek().Ev.Time.After(edge) {
		p.run(p.buf.pop())
	}
	return nil
}

// Drain processes every buffered event, as if the stream had moved past
// the reordering window, and raises every alert they make.
func (p *Pipeline) Drain() {
	for p.buf.Len() > 0 {
		p.run(p.buf.pop())
	}
	p.syncSplit()
}

func (p *Pipeline) run(it *Item) {
	ev := it.Ev
	st := &p.stats
	st.Events++
	st.Sources[ev.Source]++
	if t := ev.Time; !t.IsZero() {
		if st.From.IsZero() || t.Before(st.From) {
			st.From = t
		}
		if t.After(st.To) {
			st.To = t
		}
		if t.After(p.released) {
			p.released = t
		}
	}
	if it.read {
		st.Reads.Add(ev.Time)
		if p.cfg.Incidents != nil {
			p.logAccess(it.enc)
		}
	}
	if s := p.split; s != nil {
		e := s.entry()
		e.it, e.released, e.check = it, p.released, true
		if p.cfg.Rules != nil {
			p.collect = &e.sigma
			p.cfg.Rules.Apply(ev, it.sigma, p.sigma)
			p.collect = nil
		}
		if s.full() {
			p.sendSplit()
		}
		return
	}
	if p.cfg.Rules != nil {
		p.cfg.Rules.Apply(ev, it.sigma, p.sigma)
	}
	if b := p.cfg.Behaviours; b != nil {
		b.ProcessAccess(ev, it.acc)
		for _, a := range b.Alerts() {
			p.raise(a)
		}
	}
	p.maybeRegroup(p.released)
}

// maybeRegroup regroups if it is time to, after an event released at
// released. Regrouping costs the alerts so far: at most hourly in event
// time when an alert that can open or change an incident came, daily for
// alerts that only enrich.
func (p *Pipeline) maybeRegroup(released time.Time) {
	if since := released.Sub(p.grouped); p.fresh && !p.cfg.ResultOnly && (p.counting && since >= time.Hour || since >= 24*time.Hour) {
		p.regroup(released)
		return
	}
	if p.cfg.ResultOnly && p.cfg.Incidents != nil && p.settleAfter() >= 0 && released.Sub(p.settledAt) >= 24*time.Hour {
		// An offline run groups once, at Close; settling daily keeps
		// what it holds to the alerts of the last days.
		p.settledAt = released
		if _, err := p.group(released); err != nil {
			p.fail(err)
		}
	}
}

// future takes an event dated after the wall clock (beyond MaxFuture): a
// source's clock gone wrong, or a forged record. Its single-event rules
// match, but it stays out of the reordering window, the correlations, the
// behaviours and the access log: its date would move their clocks ahead,
// judging every access waiting for a sign-in at once and pruning every
// baseline as if its time had passed.
func (p *Pipeline) future(it *Item) {
	st := &p.stats
	st.Events++
	st.Future++
	st.Sources[it.Ev.Source]++
	if p.cfg.Rules == nil {
		return
	}
	if s := p.split; s != nil {
		// In line with the events released before it.
		e := s.entry()
		p.collect = &e.sigma
		it.sigma.EmitSingle(p.sigma)
		p.collect = nil
		if s.full() {
			p.sendSplit()
		}
		return
	}
	it.sigma.EmitSingle(p.sigma)
}

func (p *Pipeline) sigma(d sigma.Detection) {
	if p.collect != nil {
		*p.collect = append(*p.collect, sigmaAlert(d))
		return
	}
	p.raise(sigmaAlert(d))
}

func (p *Pipeline) raise(a alert.Alert) {
	if p.cfg.Mute != nil && p.cfg.Mute(&a) {
		return
	}
	if !p.horizon.IsZero() && a.Time.Before(p.horizon) {
		p.stats.SettledLate++
	}
	if a.Time.After(p.alerted) && !a.Time.After(p.newest) {
		p.alerted = a.Time // future-dated alerts aside (Pipeline.future)
	}
	p.alerts = append(p.alerts, a)
	p.fresh = true
	if c := p.cfg.Incidents; c != nil && c.Counts(&a) {
		p.counting = true
	}
	p.sink.Alert(&p.alerts[len(p.alerts)-1])
}

// regroup groups the alerts so far and reports what opened or changed;
// at is the event time it is as of.
func (p *Pipeline) regroup(at time.Time) []*incident.Incident {
	p.fresh, p.counting, p.grouped = false, false, at
	if p.cfg.Incidents == nil {
		return nil
	}
	incs, err := p.group(at)
	if err != nil {
		p.fail(err)
	}
	for _, inc := range incs {
		old, ok := p.open[inc.ID]
		now := incState{alerts: inc.AlertCount, severity: inc.Severity}
		switch {
		case !ok:
			p.sink.Incident(Update{Kind: Opened, Incident: inc})
		case now.severity != old.severity:
			p.sink.Incident(Update{Kind: SeverityChanged, Incident: inc})
		case now.alerts != old.alerts:
			p.sink.Incident(Update{Kind: Grew, Incident: inc})
		}
		p.open[inc.ID] = now
	}
	return incs
}

// SaveState drains the buffer and writes the behaviours' state, so a
// later run that loads it continues where this one stopped. Call it
// after the last event and before Close.
func (p *Pipeline) SaveState(w io.Writer) error {
	p.Drain()
	if p.cfg.Behaviours == nil {
		return errors.New("detect: no behaviours to save")
	}
	return p.cfg.Behaviours.Save(w)
}

// LoadState restores state written by SaveState, before the first event.
func (p *Pipeline) LoadState(r io.Reader) error {
	if p.cfg.Behaviours == nil {
		return errors.New("detect: no behaviours to load into")
	}
	return p.cfg.Behaviours.Load(r)
}

// Close ends the input: buffered events are processed, detectors
// flushed, the final incidents grouped and their impact measured by
// reading the access log back once.
func (p *Pipeline) Close(ctx context.Context) (*Result, error) {
	if p.closed {
		return nil, errors.New("detect: Close twice")
	}
	done := false
	defer func() {
		if !done {
			p.spool.remove()
		}
	}()
	p.Drain()
	p.closed = true
	if p.cfg.Rules != nil {
		p.cfg.Rules.Flush(p.sigma)
	}
	if b := p.cfg.Behaviours; b != nil {
		b.Flush()
		for _, a := range b.Alerts() {
			p.raise(a)
		}
		if err := b.Err(); err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
	}
	incs := p.regroup(time.Time{}) // the end: nothing more can come
	if p.err != nil {
		return nil, p.err
	}
	res := &Result{Stats: p.stats}
	if err := p.assess(ctx, incs); err != nil {
		return nil, err
	}
	for _, inc := range incs {
		if inc.Impact.Accesses > 0 {
			p.sink.Incident(Update{Kind: ImpactChanged, Incident: inc})
		}
	}
	// The result owns the spool from here: its alerts are read back as
	// they are walked, not all at once.
	res.Alerts, res.Incidents = &Alerts{spool: p.spool, held: p.alerts}, incs
	p.spool, p.alerts = nil, nil
	done = true
	return res, nil
}

func (p *Pipeline) logAccess(enc []byte) {
	if p.log == nil {
		p.log = &accessLog{dir: p.cfg.TempDir}
	}
	p.log.addEncoded(enc)
}

// assess measures the incidents' impact from the access log, then
// removes the log.
func (p *Pipeline) assess(ctx context.Context, incs []*incident.Incident) error {
	if p.log != nil {
		defer p.log.close()
	}
	return p.measure(ctx, incs)
}

// measure reads the access log back once and fills in the incidents'
// impact; the log stays open for more accesses.
func (p *Pipeline) measure(ctx context.Context, incs []*incident.Incident) error {
	as := incident.NewAssessor(incs)
	if p.log != nil {
		if err := p.log.replay(ctx, as.Add); err != nil {
			return fmt.Errorf("detect: impact pass: %w", err)
		}
	}
	as.Finish()
	return nil
}

// evHeap orders events by time, then by what they are, so that events
// with equal times come out the same whatever order they came in.
type evHeap []*Item

func (h evHeap) Len() int           { return len(h) }
func (h evHeap) Less(i, j int) bool { return eventLess(h[i].Ev, h[j].Ev) }
func (h evHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)        { *h = append(*h, x.(*Item)) }
func (h *evHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
