package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// GapSource is the journal source of gap records.
const GapSource = "collector.gap"

// MinHorizon is the shortest dedup horizon: late UAL redelivery has been
// seen five days after first delivery.
const MinHorizon = 8 * 24 * time.Hour

// Options configure a Collector.
type Options struct {
	Tenant  string
	Source  Source
	Journal journal.Log
	// State keeps the collector's state under the source's name
	// (DirStore(<data>/collect/<tenant>) for vigil collect).
	State Store
	Clock Clock
	Skew  *Skew
	// Since is how far back a source with no watermark starts (0: as far
	// back as the API keeps).
	Since time.Duration
	// Horizon is how long record ids are remembered (at least MinHorizon).
	Horizon time.Duration
	Logger  *slog.Logger
	// Clients are the source's API clients, for the status counters.
	Clients []*Client
	// Fault, when set, is called at each step of a poll ("fetched",
	// "appended", "committing", "committed"); an error aborts the poll on
	// the spot, as a crash would. Tests use it.
	Fault func(point string) error
	// MinWake is the least time between the end of a poll and one a Wake
	// starts (default MinWakeInterval).
	MinWake time.Duration
}

// Collector runs one Source: Once polls up to now − settle, Run polls on
// a schedule, Status is a snapshot for summaries and the API.
type Collector struct {
	opts   Options
	src    Source
	pol    Policy
	origin string
	log    *slog.Logger

	runMu sync.Mutex // one poll at a time
	wake  chan struct{}
	st    *state
	dirty bool // st changed since the last commit
	dec   *source.Decoder

	mu     sync.Mutex
	status Status
}

// Status is a snapshot of a collector.
type Status struct {
	Tenant    string    `json:"tenant"`
	Source    string    `json:"source"`
	State     string    `json:"state"` // "new", "polling", "idle", "retrying", "failed"
	Watermark time.Time `json:"watermark,omitzero"`
	LastPoll  time.Time `json:"last_poll,omitzero"`
	// Counts since the collector was created.
	Windows     int64            `json:"windows"`
	Pages       int64            `json:"pages"`
	Records     int64            `json:"records"`    // new records stored
	Duplicates  int64            `json:"duplicates"` // records already stored, skipped
	Undecodable int64            `json:"undecodable"`
	NoID        int64            `json:"no_id"` // deduplicated by content hash
	Gaps        int64            `json:"gaps"`
	GapReasons  map[string]int64 `json:"gap_reasons,omitempty"`
	Requests    int64            `json:"requests"`
	Throttled   int64            `json:"throttled"`
	Retries     int64            `json:"retries"`
	Waited      time.Duration    `json:"waited_ns"` // on throttling, back-off and the token bucket
	Skew        time.Duration    `json:"skew_ns"`
	Wakeups     int64            `json:"wakeups"` // push notifications that asked for a poll
	LastError   string           `json:"last_error,omitempty"`
}

// New returns a collector; its state is read on the first poll.
func New(opts Options) (*Collector, error) {
	if opts.Source == nil || opts.Journal == nil || opts.State == nil {
		return nil, errors.New("collect: Source, Journal and State are required")
	}
	pol := opts.Source.Policy()
	if err := pol.check(); err != nil {
		return nil, fmt.Errorf("collect %s: %w", opts.Source.Name(), err)
	}
	if pol.MaxWindow <= pol.Overlap {
		return nil, fmt.Errorf("collect %s: window %s must exceed overlap %s", opts.Source.Name(), pol.MaxWindow, pol.Overlap)
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.MinWake <= 0 {
		opts.MinWake = MinWakeInterval
	}
	if opts.Horizon < MinHorizon {
		opts.Horizon = MinHorizon
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	name := opts.Source.Name()
	c := &Collector{
		opts:   opts,
		src:    opts.Source,
		pol:    pol,
		origin: "collect:" + opts.Tenant + "/" + name,
		log:    opts.Logger.With("tenant", opts.Tenant, "source", name),
		dec:    source.NewDecoder(nil, nil),
		wake:   make(chan struct{}, 1),
	}
	c.status = Status{Tenant: opts.Tenant, Source: name, State: "new", GapReasons: map[string]int64{}}
	return c, nil
}

// Name is the source's name.
func (c *Collector) Name() string { return c.src.Name() }

// Source is what the collector polls.
func (c *Collector) Source() Source { return c.src }

// Tenant is the tenant's name.
func (c *Collector) Tenant() string { return c.opts.Tenant }

// Status returns a snapshot.
func (c *Collector) Status() Status {
	c.mu.Lock()
	s := c.status
	s.GapReasons = maps.Clone(c.status.GapReasons)
	c.mu.Unlock()
	for _, cl := range c.opts.Clients {
		s.Requests += cl.Counters.Requests.Load()
		s.Throttled += cl.Counters.Throttled.Load()
		s.Retries += cl.Counters.Retries.Load()
		s.Waited += time.Duration(cl.Counters.ThrottleWait.Load())
	}
	s.Skew = c.opts.Skew.Offset()
	return s
}

func (c *Collector) update(fn func(s *Status)) {
	c.mu.Lock()
	fn(&c.status)
	c.mu.Unlock()
}

// Now is the current time on the API's clock.
func (c *Collector) Now() time.Time { return c.opts.Skew.Correct(c.opts.Clock.Now()) }

func (c *Collector) fault(point string) error {
	if c.opts.Fault == nil {
		return nil
	}
	return c.opts.Fault(point)
}

// Run polls until ctx is done or the source fails permanently. A
// transient failure is retried at the next poll; nothing is skipped.
func (c *Collector) Run(ctx context.Context) error {
	for {
		err := c.Once(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if IsPermanent(err) {
			return err
		}
		wait := c.pol.Poll
		if err != nil {
			wait = min(wait, 5*time.Minute)
		}
		c.sleep(ctx, wait)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// MinWakeInterval is the default least time before a poll a Wake starts:
// notifications come in bursts, and the windows need time to settle.
const MinWakeInterval = 10 * time.Second

// Wake asks for a poll now (a vendor's push notification said there is
// news) instead of at the end of the poll interval; wake-ups closer than
// MinWakeInterval to the end of the last poll wait for it. Polling on the schedule
// continues regardless: a notification is a hint, never the only path.
func (c *Collector) Wake() {
	c.update(func(s *Status) { s.Wakeups++ })
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sleep waits for d, or for a Wake once Options.MinWake has passed.
func (c *Collector) sleep(ctx context.Context, d time.Duration) {
	start := c.opts.Clock.Now()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.opts.Clock.Sleep(sctx, d)
	}()
	for {
		select {
		case <-done:
			return
		case <-c.wake:
			if rest := c.opts.MinWake - c.opts.Clock.Now().Sub(start); rest > 0 {
				if c.opts.Clock.Sleep(sctx, rest) != nil {
					<-done
					return
				}
			}
			cancel()
			<-done
			return
		}
	}
}

// Once reads every window up to now − settle, committing the watermark
// after each. It returns the first error; the status says what happened.
func (c *Collector) Once(ctx context.Context) error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	c.update(func(s *Status) { s.State = "polling"; s.LastPoll = c.opts.Clock.Now() })
	err := c.poll(ctx)
	c.update(func(s *Status) {
		switch {
		case err == nil:
			s.State, s.LastError = "idle", ""
		case IsPermanent(err):
			s.State, s.LastError = "failed", err.Error()
		default:
			s.State, s.LastError = "retrying", err.Error()
		}
		if c.st != nil {
			s.Watermark = c.st.Watermark
		}
	})
	if err != nil {
		return fmt.Errorf("%s/%s: %w", c.opts.Tenant, c.src.Name(), err)
	}
	return nil
}

func (c *Collector) poll(ctx context.Context) error {
	if c.st == nil {
		if err := c.load(ctx); err != nil {
			return Permanent(err, "")
		}
	}
	if err := c.src.Prepare(ctx, c); err != nil {
		return err
	}
	now := c.Now()
	end := now.Add(-c.pol.Settle).Truncate(time.Second)
	floor := now.Add(-c.pol.MaxAge).Truncate(time.Second).Add(time.Second)
	var start time.Time
	if wm := c.st.Watermark; wm.IsZero() {
		since := c.opts.Since
		if since <= 0 {
			since = c.pol.MaxAge
		}
		start = now.Add(-since).Truncate(time.Second)
		if start.Before(floor) {
			if c.opts.Since > 0 {
				if err := c.Gap(ctx, Gap{Reason: GapClamped, Window: Window{start, floor},
					Detail: fmt.Sprintf("--since %s reaches past the %s the API keeps", c.opts.Since, c.pol.MaxAge)}); err != nil {
					return err
				}
			}
			start = floor
		}
	} else {
		start = wm.Add(-c.pol.Overlap)
		if wm.Before(floor) {
			if err := c.Gap(ctx, Gap{Reason: GapClamped, Window: Window{wm, floor},
				Detail: fmt.Sprintf("the watermark is older than the %s the API keeps (vigil was not polling)", c.pol.MaxAge)}); err != nil {
				return err
			}
		}
		if start.Before(floor) {
			start = floor
		}
	}
	newBefore := c.Status().Records
	for s := start; s.Before(end); {
		e := s.Add(c.pol.MaxWindow)
		if e.After(end) {
			e = end
		}
		w := Window{s, e}
		if err := c.src.Fetch(ctx, w, c); err != nil {
			return fmt.Errorf("window %s: %w", w, err)
		}
		c.update(func(st *Status) { st.Windows++ })
		if e.After(c.st.Watermark) {
			c.st.Watermark = e
		}
		if err := c.commit(); err != nil {
			return err
		}
		s = e
	}
	if err := c.heartbeat(ctx, now, end, c.Status().Records-newBefore); err != nil {
		return err
	}
	if !c.dirty {
		return nil
	}
	return c.commit()
}

// heartbeat records a gap when a source that brought records regularly
// has brought none for max(2 h, 3 × its usual interval) (B9: a "success"
// that returns nothing is as bad as an error).
func (c *Collector) heartbeat(ctx context.Context, now, end time.Time, fresh int64) error {
	st := c.st
	if fresh > 0 {
		c.dirty = true
		if !st.LastNew.IsZero() {
			d := now.Sub(st.LastNew)
			if st.MeanGap == 0 {
				st.MeanGap = d
			} else {
				st.MeanGap = (3*st.MeanGap + d) / 4
			}
		}
		st.LastNew, st.SilentFrom = now, time.Time{}
		return nil
	}
	if st.LastNew.IsZero() || st.MeanGap == 0 || !st.SilentFrom.IsZero() {
		return nil
	}
	limit := max(2*time.Hour, 3*st.MeanGap)
	if quiet := now.Sub(st.LastNew); quiet > limit {
		c.dirty = true
		st.SilentFrom = st.LastNew
		return c.Gap(ctx, Gap{Reason: GapSilent, Window: Window{st.LastNew.Add(-c.pol.Settle), end},
			Detail: fmt.Sprintf("no new records for %s; usually every %s", quiet.Round(time.Minute), st.MeanGap.Round(time.Minute))})
	}
	return nil
}

// load reads the state and remembers the ids of this collector's entries
// appended after its last commit (a run killed before committing).
func (c *Collector) load(ctx context.Context) error {
	st, err := loadState(c.opts.State, c.src.Name(), c.opts.Clock.Now().Add(-c.opts.Horizon))
	if err != nil {
		return err
	}
	if st.fresh {
		// Nothing of this source is in the journal yet: commit its size
		// now, so recovering from a crash in the first window reads only
		// what came after, not the whole journal.
		c.st = st
		return c.commit()
	}
	var n int
	err = c.opts.Journal.Read(ctx, st.JournalSize, func(_ uint64, e *journal.Entry) error {
		if e.Origin != c.origin {
			return nil
		}
		var k string
		if e.Source == GapSource {
			k = e.RecordID
		} else {
			k = c.recordKey(e.Raw)
		}
		st.seen.add(keyOf(k), e.Received.Unix())
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("re-reading the journal after the last commit: %w", err)
	}
	if n > 0 {
		c.log.Info("recovered entries appended after the last commit", "entries", n)
	}
	c.st = st
	c.update(func(s *Status) { s.Watermark = st.Watermark })
	return nil
}

func (c *Collector) recordKey(raw []byte) string {
	k, err := c.src.Key(raw)
	if err != nil || k == "" {
		// The same content id vigil ingest gives records without an id.
		return journal.ContentID(raw)
	}
	return k
}

func (c *Collector) commit() error {
	if err := c.fault("committing"); err != nil {
		return err
	}
	c.st.JournalSize = c.opts.Journal.Size()
	if err := saveState(c.opts.State, c.src.Name(), c.st, c.opts.Clock.Now().Add(-c.opts.Horizon)); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	c.dirty = false
	c.update(func(s *Status) { s.Watermark = c.st.Watermark })
	return c.fault("committed")
}

// Done implements Sink.
func (c *Collector) Done(unit string) bool {
	return c.st.seen.has(keyOf("unit:" + unit))
}

// Extra returns a value of the source's own small state (Sink users such
// as o365 keep subscription times there); SetExtra changes it, committed
// with the next window.
func (c *Collector) Extra(k string) string { return c.st.Extra[k] }

// SetExtra sets a value of the source's own state.
func (c *Collector) SetExtra(k, v string) {
	if c.st.Extra == nil {
		c.st.Extra = map[string]string{}
	}
	if old, ok := c.st.Extra[k]; !ok && v == "" || old == v && ok {
		return
	}
	if v == "" {
		delete(c.st.Extra, k)
	} else {
		c.st.Extra[k] = v
	}
	c.dirty = true
}

// Records implements Sink: it deduplicates a page against the ids seen
// within the horizon and appends the rest, durably, to the journal.
func (c *Collector) Records(ctx context.Context, raws [][]byte, unit string) error {
	if err := c.fault("fetched"); err != nil {
		return err
	}
	var (
		entries         []journal.Entry
		keys            []seenKey
		dups, noid, bad int64
		batch           = map[seenKey]bool{}
	)
	for i, raw := range raws {
		k, err := c.src.Key(raw)
		if err != nil || k == "" {
			noid++
			k = c.recordKey(raw)
		}
		sk := keyOf(k)
		if c.st.seen.has(sk) || batch[sk] {
			dups++
			continue
		}
		batch[sk] = true
		// The journal source is the decoders' (so hunt and ingest agree);
		// the record id is the source's own full key (a Workspace
		// uniqueQualifier alone repeats across times).
		e := journal.Entry{Source: c.pol.Journal, Origin: c.origin, RecordID: k, Raw: raw}
		evs, err := c.dec.Decode(raw, event.Origin{File: c.origin, Index: i})
		if err != nil || len(evs) == 0 {
			bad++
			c.log.Warn("record the decoders do not recognise; stored verbatim", "key", k, "error", fmt.Sprint(err))
		} else {
			e.Source = evs[0].Source
		}
		entries = append(entries, e)
		keys = append(keys, sk)
	}
	var stored int64
	if len(entries) > 0 {
		// A cancel must not tear a write in half: the append finishes.
		acks, err := c.opts.Journal.AppendBatch(context.WithoutCancel(ctx), entries)
		if err != nil {
			return fmt.Errorf("journal append: %w", err)
		}
		for _, a := range acks {
			if a.Duplicate {
				dups++
			} else {
				stored++
			}
		}
	}
	if err := c.fault("appended"); err != nil {
		return err
	}
	c.dirty = true
	now := c.opts.Clock.Now().Unix()
	for _, k := range keys {
		c.st.seen.add(k, now)
	}
	if unit != "" {
		c.st.seen.add(keyOf("unit:"+unit), now)
	}
	c.update(func(s *Status) {
		s.Pages++
		s.Records += stored
		s.Duplicates += dups
		s.NoID += noid
		s.Undecodable += bad
	})
	return nil
}

// Gap implements Sink: it appends a collector.gap record (once per gap
// key) and counts it.
func (c *Collector) Gap(ctx context.Context, g Gap) error {
	key := g.Key
	if key == "" {
		key = g.Reason + "|" + g.Window.Start.UTC().Format(time.RFC3339)
	}
	id := "gap:" + c.opts.Tenant + "/" + c.src.Name() + "|" + key
	sk := keyOf(id)
	if c.st.seen.has(sk) {
		return nil
	}
	now := c.Now().UTC()
	raw, err := json.Marshal(gapRecord{
		Time: now.Format(time.RFC3339Nano), Source: GapSource, Operation: GapSource, Tenant: c.opts.Tenant,
		Collector: c.src.Name(), Reason: g.Reason, Start: g.Window.Start.UTC().Format(time.RFC3339),
		End: g.Window.End.UTC().Format(time.RFC3339), Detail: g.Detail, ID: id,
	})
	if err != nil {
		return err
	}
	if _, err := c.opts.Journal.AppendBatch(context.WithoutCancel(ctx), []journal.Entry{{Source: GapSource, Origin: c.origin, RecordID: id, Raw: raw}}); err != nil {
		return fmt.Errorf("journal append (gap): %w", err)
	}
	c.st.seen.add(sk, c.opts.Clock.Now().Unix())
	c.dirty = true
	c.log.Warn("gap recorded", "reason", g.Reason, "window", g.Window.String(), "detail", g.Detail)
	c.update(func(s *Status) { s.Gaps++; s.GapReasons[g.Reason]++ })
	return nil
}

// gapRecord is the JSON of a collector.gap journal record; the generic
// decoder reads it by its vigil field names (time, source, operation,
// tenant, id).
type gapRecord struct {
	Time      string `json:"time"`
	Source    string `json:"source"`
	Operation string `json:"operation"`
	Tenant    string `json:"tenant"`
	Collector string `json:"collector"`
	Reason    string `json:"reason"`
	Start     string `json:"window_start"`
	End       string `json:"window_end"`
	Detail    string `json:"detail,omitempty"`
	ID        string `json:"id"`
}

// String is a one-line summary.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s: %s, %d windows, %d pages, %d records, %d duplicates, %d gaps", s.Tenant, s.Source, s.State, s.Windows, s.Pages, s.Records, s.Duplicates, s.Gaps)
	return b.String()
}
