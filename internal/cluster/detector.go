package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// Names of what detection keeps in the cluster.
const (
	// DetectLeaseBucket holds which worker detects each tenant.
	DetectLeaseBucket = "vigil_detect_leases"
	// SnapshotBucket is the object store of the detection snapshots: the
	// one a tenant's holder record names, and while one is written, the
	// next.
	SnapshotBucket = "vigil_detect"
	// AlertStream is where alerts and incident updates go out, on
	// alerts.<tenant>.alert and alerts.<tenant>.incident; the tenant's
	// holder record (fence.go) is on alerts.<tenant>.holder.
	AlertStream = "VIGIL_ALERTS"
	// AlertGuardBucket remembers every alert and incident update sent
	// (first writer wins), past the stream's duplicate window.
	AlertGuardBucket = "vigil_alert_ids"
)

// ErrDetectLeaseHeld: another worker detects this tenant.
var ErrDetectLeaseHeld = errors.New("cluster: another worker holds the detection lease")

// ErrDetectLeaseLost: the detection lease could not be renewed; the
// worker stopped detecting the tenant.
var ErrDetectLeaseLost = errors.New("cluster: detection lease lost")

// DetectorOptions configures a detection worker.
type DetectorOptions struct {
	// Tenants are detected by this worker when it can take their lease.
	Tenants []string
	// Discover adds every tenant with records in the raw stream, looked
	// for every LeaseTTL/3.
	Discover bool
	// NewPipeline builds a tenant's pipeline with sink as its sink. Its
	// TempDir holds the access log (a restored one included). Required.
	NewPipeline func(tenant string, sink detect.Sink) *detect.Pipeline
	// NewDecoder decodes the records (default source.NewDecoder(nil, nil)).
	NewDecoder func() *source.Decoder
	// Holder names this worker in the leases (default the host name and
	// process id: a restarted worker waits for its old lease to expire).
	Holder string
	// LeaseTTL is how long a lease outlives its holder: a tenant whose
	// worker died is taken over after at most this (default 15 s).
	LeaseTTL time.Duration
	// Refresh is the most often incidents are regrouped and measured
	// (default 2 s).
	Refresh time.Duration
	// SnapshotEvery is the least time between periodic snapshots (default
	// 30 s); a takeover replays what came after the last one.
	SnapshotEvery time.Duration
	// Batch is the most messages fetched at once (default 256).
	Batch int
	// Idle is how long one fetch waits for messages (default 1 s).
	Idle   time.Duration
	Logger *slog.Logger
	// Control, when set, is offered every entry of a tenant's stream
	// before it is decoded; it returns true for an operator action it
	// applied to p (vigil serve: a rule switch), which is then not
	// detected as a record. ControlState and RestoreControl carry what
	// the actions set in the tenant's snapshot: RestoreControl gets the
	// bytes ControlState gave when the snapshot was taken, or nil when the
	// tenant is detected from the stream's start. Control runs in stream
	// order, but Pipeline.Prepare has already run on the messages after
	// it: an action must act on ProcessItem or later (a rule switch mutes
	// alerts).
	Control        func(tenant string, p *detect.Pipeline, seq uint64, en *journal.Entry) bool
	ControlState   func(tenant string) ([]byte, error)
	RestoreControl func(tenant string, state []byte) error
}

// TenantStats is what a worker did for one tenant since it took it.
type TenantStats struct {
	Held        bool   // the worker holds the tenant's lease now
	Restored    uint64 // the stream sequence the snapshot it started from was taken at (0: none)
	Position    uint64 // every tenant message at or below this stream sequence is detected
	Refreshed   uint64 // the position at the last refresh (Incidents are as of it)
	Read        uint64 // messages read (restored ones not counted)
	Undecoded   uint64 // messages that are not a decodable journal entry: logged and counted, not detected
	Snapshots   uint64
	SnapshotSeq uint64 // the position of the last snapshot written
	SnapshotLen int64  // its size in bytes
	Alerts      uint64 // alerts sent to the alert stream
	Updates     uint64 // incident updates sent
	Groupings   uint64 // incident lists sent (after a refresh that changed which incidents exist)
	Repeats     uint64 // alerts and updates not sent again (the guard or the stream knew them)
	Batches     uint64 // atomic batches the alerts, updates and lists went out in (the others one at a time)
	Takeovers   uint64 // times the worker took the lease
	RestoreErr  string // the last snapshot that could not be used, and why
	Fenced      uint64 // times a write was refused because another worker had taken the tenant over (the worker then stopped it)
}

// Detector is a detection worker: for every tenant whose lease it holds,
// it reads the tenant's records from the raw stream in stream order into
// a detect.Pipeline, sends what the pipeline finds to the alert stream,
// and snapshots the pipeline with its stream position to the object
// store, from where a worker taking the tenant over goes on.
type Detector struct {
	c   *Conn
	o   DetectorOptions
	log *slog.Logger

	snaps jetstream.ObjectStore
	guard jetstream.KeyValue
	jobs  chan *chunk // to the decode goroutines

	mu        sync.Mutex
	stats     map[string]*TenantStats
	incidents map[string][]*incident.Incident

	// Tests pause a worker with these: pause before a write of a tenant
	// (point "flush": alerts and updates about to be published;
	// "commit": a snapshot written, its holder record not yet), and
	// pauseRenew before its lease renewals.
	pause      func(tenant, point string)
	pauseRenew func(tenant string)
}

// NewDetector prepares a worker and the streams and buckets it uses; Run
// starts it.
func (c *Conn) NewDetector(ctx context.Context, o DetectorOptions) (*Detector, error) {
	if o.NewPipeline == nil {
		return nil, errors.New("cluster: a detector needs NewPipeline")
	}
	if o.NewDecoder == nil {
		o.NewDecoder = func() *source.Decoder { return source.NewDecoder(nil, nil) }
	}
	if o.Holder == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("cluster: detection lease holder: %w", err)
		}
		o.Holder = h + ":" + strconv.Itoa(os.Getpid())
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Refresh <= 0 {
		o.Refresh = 2 * time.Second
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	if o.Logger == nil {
		o.Logger = c.opts.Logger
	}
	d := &Detector{c: c, o: o, log: o.Logger, stats: map[string]*TenantStats{}, incidents: map[string][]*incident.Incident{}}
	err := retryUnavailable(ctx, d.log, "detection buckets", func(ctx context.Context) error {
		if err := c.ensureAlertStream(ctx); err != nil {
			return err
		}
		snaps, err := c.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      SnapshotBucket,
			Description: "vigil: detection state per tenant, at a raw stream position",
			Storage:     jetstream.FileStorage,
			Replicas:    c.opts.Replicas,
		})
		if err != nil {
			return fmt.Errorf("snapshot bucket: %w", err)
		}
		// A replay can reach back as far as the raw stream keeps records:
		// the guard remembers that long.
		guard, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      AlertGuardBucket,
			Description: "vigil: alerts and incident updates sent (first writer wins)",
			History:     1,
			TTL:         c.opts.MaxAge,
			Replicas:    c.opts.Replicas,
			Storage:     jetstream.FileStorage,
		})
		if err != nil {
			return fmt.Errorf("alert guard bucket: %w", err)
		}
		d.snaps, d.guard = snaps, guard
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: detector: %w", err)
	}
	return d, nil
}

// retryUnavailable runs fn (each try bounded to 10 s: a request that
// reaches no leader gets no answer) until it succeeds or ctx ends.
func retryUnavailable(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(tctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		log.Warn("cluster: not ready, retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Stats returns what the worker did per tenant it has held.
func (d *Detector) Stats() map[string]TenantStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]TenantStats, len(d.stats))
	for t, s := range d.stats {
		out[t] = *s
	}
	return out
}

// Incidents returns a tenant's incidents as its last refresh grouped
// them, if this worker detects it.
func (d *Detector) Incidents(tenant string) []*incident.Incident {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.incidents[tenant])
}

func (d *Detector) update(tenant string, fn func(*TenantStats)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats[tenant]
	if s == nil {
		s = &TenantStats{}
		d.stats[tenant] = s
	}
	fn(s)
}

// Run detects until ctx ends; each tenant's state is then snapshotted
// and its lease released, so another worker goes on at once.
func (d *Detector) Run(ctx context.Context) error {
	// The decode goroutines serve every tenant: as many as cores, each
	// with a decoder of its own, however many tenants the worker holds.
	d.jobs = make(chan *chunk, 4*runtime.GOMAXPROCS(0))
	var decoders sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		decoders.Go(func() {
			dec := d.o.NewDecoder()
			for c := range d.jobs {
				c.prepare(dec, d.c.opts.Stream)
				c.w.inflight.Done()
				close(c.done)
			}
		})
	}
	defer decoders.Wait()
	defer close(d.jobs) // after every tenant's goroutine ended
	var wg sync.WaitGroup
	started := map[string]bool{}
	start := func(tenant string) {
		if started[tenant] {
			return
		}
		started[tenant] = true
		wg.Go(func() { d.runTenant(ctx, tenant) })
	}
	for _, t := range d.o.Tenants {
		start(t)
	}
	defer wg.Wait()
	if !d.o.Discover {
		<-ctx.Done()
		return nil
	}
	for {
		ts, err := d.discover(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("cluster: listing the stream's tenants failed", "err", err)
		}
		for _, t := range ts {
			start(t)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.o.LeaseTTL / 3):
		}
	}
}

// discover lists the tenants with records in the raw stream.
func (d *Detector) discover(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := d.c.stream.Info(ctx, jetstream.WithSubjectFilter("raw.>"))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for subj := range info.State.Subjects {
		parts := strings.Split(subj, ".")
		if len(parts) != 3 {
			continue
		}
		t, ok := untoken(parts[1])
		if !ok || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}

// untoken reverses token.
func untoken(s string) (string, bool) {
	if s == "%" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// detectLeaseKey is the KV key of a tenant's detection lease.
func detectLeaseKey(tenant string) string {
	h := sha256.Sum256([]byte(tenant))
	return "detect." + hex.EncodeToString(h[:16])
}

// runTenant takes the tenant's lease whenever it is free and detects
// while holding it, until ctx ends.
func (d *Detector) runTenant(ctx context.Context, tenant string) {
	log := d.log.With("tenant", tenant)
	for ctx.Err() == nil {
		l, err := d.c.acquireKey(ctx, DetectLeaseBucket, "which worker detects each tenant", detectLeaseKey(tenant),
			tenant, d.o.Holder, d.o.LeaseTTL, ErrDetectLeaseHeld, ErrDetectLeaseLost)
		if err != nil {
			if !errors.Is(err, ErrDetectLeaseHeld) && ctx.Err() == nil {
				log.Warn("cluster: detection lease not available", "err", err)
			}
			// Standby: try again a few times per TTL.
			select {
			case <-ctx.Done():
				return
			case <-time.After(d.o.LeaseTTL / 5):
			}
			continue
		}
		if d.pauseRenew != nil {
			l.beforeRenew = func() { d.pauseRenew(tenant) }
		}
		d.update(tenant, func(s *TenantStats) { s.Held = true; s.Takeovers++ })
		err = d.hold(ctx, l, tenant, log)
		d.update(tenant, func(s *TenantStats) { s.Held = false })
		if err != nil && ctx.Err() == nil {
			log.Error("cluster: stopped detecting the tenant", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d.o.LeaseTTL / 5):
			}
		}
	}
}

// hold detects the tenant while l is held. When ctx ends it snapshots
// before releasing the lease; when the lease is lost it stops at once,
// without a snapshot (another worker may already go on).
func (d *Detector) hold(ctx context.Context, l *lease, tenant string, log *slog.Logger) error {
	// The lease outlives ctx by the final snapshot.
	holdCtx, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var lost atomic.Bool
	held := make(chan error, 1)
	go func() {
		err := l.hold(holdCtx)
		if err != nil {
			lost.Store(true)
			stopWork()
		}
		held <- err
	}()
	w := &tenantWorker{d: d, tenant: tenant, log: log, lease: l}
	err := w.run(wctx)
	if errors.Is(err, ErrFenced) {
		d.update(tenant, func(s *TenantStats) { s.Fenced++ })
		stopWork()
	}
	if ctx.Err() != nil && !lost.Load() && w.p != nil && w.pos > w.snap {
		// A graceful stop: what was read is kept, so the next holder
		// reads on from here. The lease is renewed meanwhile; the bound
		// is for a cluster that stopped answering.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if serr := w.checkpoint(sctx); serr != nil {
			log.Error("cluster: detection snapshot at stop failed; the next holder replays from the last one", "err", serr)
		}
		cancel()
	}
	w.close()
	release()
	if lerr := <-held; lerr != nil {
		return lerr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// tenantWorker is one tenant's detection while its lease is held.
type tenantWorker struct {
	d      *Detector
	tenant string
	log    *slog.Logger
	p      *detect.Pipeline
	out    *alertOut
	pos    uint64 // stream sequence of the last message detected
	snap   uint64 // position of the last snapshot
	// holding names this holding of the tenant; listed is the incident list
	// last sent in it (nil before the first).
	holding string
	listed  []string
	lists   int
	// holder is the tenant's holder record this worker wrote last: its
	// snapshot is the one a successor restores; snaps counts the
	// snapshots written in this holding (their object names).
	holder holderRecord
	snaps  int
	// lease is the tenant's detection lease, confirmed before the claim.
	lease *lease
	// inflight counts the chunks handed to the decode goroutines and not
	// prepared yet: the pipeline outlives them.
	inflight sync.WaitGroup
}

// run restores the tenant's snapshot and detects from the stream after
// it until ctx ends. Three stages overlap: the reader fetches the next
// batch while earlier ones are detected, decode goroutines decode and
// prepare chunks of messages (the stateless half of detection) on every
// core, and this goroutine feeds them to the pipeline in stream order.
func (w *tenantWorker) run(ctx context.Context) error {
	d := w.d
	w.out = &alertOut{d: d, tenant: w.tenant}
	var nonce [8]byte
	rand.Read(nonce[:])
	w.holding = hex.EncodeToString(nonce[:])
	// The holder record first: from here on a worker that held the tenant
	// before can write nothing more for it.
	if err := w.claim(ctx); err != nil {
		return nilOnDone(ctx, err)
	}
	if err := w.restore(ctx); err != nil {
		return err
	}
	w.removeStale(ctx)
	rd := &tenantReader{w: w, name: "detect_" + token(w.tenant) + "_" + w.holding}
	defer rd.delete()
	if err := rd.reset(ctx); err != nil {
		return nilOnDone(ctx, err)
	}
	// Up to about two fetches ahead of detection: memory stays bounded
	// by the batch size, whatever the backlog.
	ahead := max(2*d.o.Batch/chunkLen, 4)
	var order chan *chunk
	var stopFetch context.CancelFunc
	startFetch := func() {
		var fctx context.Context
		fctx, stopFetch = context.WithCancel(ctx)
		order = make(chan *chunk, ahead)
		go rd.fetch(fctx, w.pos, order)
	}
	stop := func() {
		stopFetch()
		for range order { // until the reader is gone
		}
	}
	defer func() {
		stop()
		w.inflight.Wait()
	}()
	startFetch()

	var lastRefresh, lastSnap time.Time
	// A restored state's incidents are known after a first refresh.
	dirty := w.pos > 0
	idle := time.NewTimer(d.o.Idle)
	defer idle.Stop()
	for ctx.Err() == nil {
		var c *chunk
		select {
		case m, ok := <-order:
			if c = m; !ok {
				c = &chunk{reset: errors.New("the stream reader stopped")}
			}
		case <-idle.C:
		case <-ctx.Done():
			return nil
		}
		idle.Reset(d.o.Idle)
		switch {
		case c == nil:
		case c.reset != nil:
			// Everything before the reset is detected: the reader goes
			// on from the position.
			if ctx.Err() == nil {
				w.log.Warn("cluster: re-creating the detection consumer", "err", c.reset)
			}
			stop()
			if err := rd.reset(ctx); err != nil {
				return nilOnDone(ctx, err)
			}
			startFetch()
		default:
			<-c.done
			if n := w.consume(c); n > 0 {
				dirty = true
				d.update(w.tenant, func(s *TenantStats) { s.Position = w.pos; s.Read += uint64(n) })
			}
		}
		// Alerts go out as raised, before anything that depends on them:
		// at once when the worker is caught up, at least every flushEvery
		// while it reads a backlog.
		if o := w.out; len(o.pending) > 0 && (len(order) == 0 || time.Since(o.since) >= flushEvery) {
			if err := o.flush(ctx); err != nil {
				return nilOnDone(ctx, err)
			}
		}
		if dirty && time.Since(lastRefresh) >= d.o.Refresh {
			if err := w.refresh(ctx); err != nil {
				return nilOnDone(ctx, err)
			}
			lastRefresh, dirty = time.Now(), false
		}
		if w.pos > w.snap && time.Since(lastSnap) >= d.o.SnapshotEvery {
			if err := w.checkpoint(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				if errors.Is(err, ErrFenced) {
					return err
				}
				w.log.Error("cluster: detection snapshot failed", "err", err)
			}
			lastSnap, lastRefresh, dirty = time.Now(), time.Now(), false
		}
	}
	return nil
}

// flushEvery is the longest alerts wait for the stream while a worker
// reads a backlog (a caught-up worker sends them at once).
const flushEvery = 100 * time.Millisecond

// tenantReader delivers a tenant's stream messages after the worker's
// position, in stream order, through a consumer of its own (no acks: the
// position is the snapshot's). A gap in the delivery sequence, a failed
// fetch or a fetch that does not end re-creates the consumer from the
// position. (The client's ordered consumer does this too, but lost the
// first pull of a new consumer under load and then waited for missed
// heartbeats; its Fetch re-creates the consumer on every call.)
type tenantReader struct {
	w            *tenantWorker
	name         string
	cons         jetstream.Consumer
	nextDelivery uint64
}

func (r *tenantReader) reset(ctx context.Context) error {
	w, d := r.w, r.w.d
	return retryUnavailable(ctx, w.log, "detection consumer", func(ctx context.Context) error {
		info, err := d.c.stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		if first := info.State.FirstSeq; w.pos > 0 && first > w.pos+1 {
			w.log.Error("cluster: the stream expired records detection had not read; verdicts may miss them",
				"position", w.pos, "stream_first", first)
		}
		if err := d.c.js.DeleteConsumer(ctx, d.c.opts.Stream, r.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", r.name, err)
		}
		cons, err := d.c.js.CreateConsumer(ctx, d.c.opts.Stream, jetstream.ConsumerConfig{
			Name:          r.name,
			Description:   "vigil: detection of tenant " + w.tenant,
			FilterSubject: TenantFilter(w.tenant),
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   w.pos + 1,
			AckPolicy:     jetstream.AckNonePolicy,
			MemoryStorage: true,
			Replicas:      1,
			// A worker that dies leaves it behind for this long.
			InactiveThreshold: time.Minute,
		})
		if err != nil {
			return fmt.Errorf("create consumer %s: %w", r.name, err)
		}
		r.cons, r.nextDelivery = cons, 1
		return nil
	})
}

func (r *tenantReader) delete() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.w.d.c.js.DeleteConsumer(ctx, r.w.d.c.opts.Stream, r.name)
}

// chunkLen is the most messages decoded together on one goroutine.
const chunkLen = 64

// chunk is a run of consecutive messages of a tenant's stream, decoded
// and prepared on a decode goroutine, then detected in order; or, when
// reset is set, where the reader stopped and must be re-created from the
// worker's position.
type chunk struct {
	w     *tenantWorker
	msgs  []streamMsg
	reset error
	done  chan struct{} // closed when msgs are decoded and prepared
}

type streamMsg struct {
	seq     uint64
	subject string
	data    []byte
	// en is the message's journal entry, kept for DetectorOptions.Control,
	// which is offered it in stream order.
	en    *journal.Entry
	items []*detect.Item
	err   error // not a decodable journal entry
}

// prepare decodes the chunk's messages and runs the stateless half of
// detection on their events (Pipeline.Prepare is safe on many
// goroutines); it runs beside the pipeline.
func (c *chunk) prepare(dec *source.Decoder, stream string) {
	p, control := c.w.p, c.w.d.o.Control != nil
	for i := range c.msgs {
		m := &c.msgs[i]
		en, err := entryOf(m.subject, m.data)
		if err != nil {
			m.err = err
			continue
		}
		if control {
			m.en = &en
		}
		evs, err := decodeRecord(dec, stream, m.seq, &en)
		if err != nil {
			m.err = err
			continue
		}
		m.items = make([]*detect.Item, len(evs))
		for k, e := range evs {
			m.items[k] = p.Prepare(e)
		}
		m.data = nil
	}
}

// fetch reads the tenant's messages after the stream sequence after,
// fetch after fetch (the next is asked for as soon as the last one's
// messages are handed on, while they are detected), and hands them on
// in chunks: each to a decode goroutine, and in order to
// the worker through order. A chunk goes as soon as no further message
// is waiting, so a caught-up tenant's records are detected as they come.
// It ends when ctx does, or after sending a chunk that asks for a reset
// (a failed fetch, a gap in the delivery sequence, a fetch that does not
// end); it closes order when it returns.
func (r *tenantReader) fetch(ctx context.Context, after uint64, order chan<- *chunk) {
	defer close(order)
	d := r.w.d
	var blocked time.Duration // time spent waiting for room downstream
	send := func(c *chunk) bool {
		t0 := time.Now()
		defer func() { blocked += time.Since(t0) }()
		if c.reset == nil {
			r.w.inflight.Add(1)
			select {
			case d.jobs <- c:
			case <-ctx.Done():
				r.w.inflight.Done()
				return false
			}
		}
		select {
		case order <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	newChunk := func() *chunk { return &chunk{w: r.w, msgs: make([]streamMsg, 0, chunkLen), done: make(chan struct{})} }
	fail := func(cur *chunk, err error) {
		if len(cur.msgs) > 0 && !send(cur) {
			return
		}
		send(&chunk{reset: err})
	}
	for ctx.Err() == nil {
		batch, err := r.cons.Fetch(d.o.Batch, jetstream.FetchMaxWait(d.o.Idle))
		if err != nil {
			fail(newChunk(), fmt.Errorf("fetch failed: %w", err))
			return
		}
		// The client ends a fetch at its wait plus a second; one that
		// runs well past that (not counting the time the detection
		// took to take its messages) is abandoned.
		start := time.Now()
		blocked = 0
		msgs := batch.Messages()
		cur := newChunk()
		for {
			var m jetstream.Msg
			var ok bool
			select {
			case m, ok = <-msgs:
			default:
				// Nothing more waiting: what is here goes on now.
				if len(cur.msgs) > 0 {
					if !send(cur) {
						return
					}
					cur = newChunk()
				}
				stuck := time.NewTimer(time.Until(start.Add(d.o.Idle + 10*time.Second + blocked)))
				select {
				case m, ok = <-msgs:
				case <-stuck.C:
					fail(cur, errors.New("fetch did not end"))
					return
				case <-ctx.Done():
					stuck.Stop()
					return
				}
				stuck.Stop()
			}
			if !ok {
				break
			}
			md, err := m.Metadata()
			if err == nil && md.Sequence.Consumer != r.nextDelivery {
				err = fmt.Errorf("delivery %d, expected %d", md.Sequence.Consumer, r.nextDelivery)
			}
			if err != nil {
				// A delivery went missing: detecting past it would change
				// the order.
				fail(cur, fmt.Errorf("delivery out of sequence: %w", err))
				return
			}
			r.nextDelivery++
			if md.Sequence.Stream <= after {
				continue
			}
			after = md.Sequence.Stream
			// The message's data is its own (the client copies every
			// payload out of its read buffer): the events keep it.
			cur.msgs = append(cur.msgs, streamMsg{seq: after, subject: m.Subject(), data: m.Data()})
			if len(cur.msgs) == chunkLen {
				if !send(cur) {
					return
				}
				cur = newChunk()
			}
		}
		if len(cur.msgs) > 0 && !send(cur) {
			return
		}
		ferr := batch.Error()
		switch {
		case ferr == nil || errors.Is(ferr, context.DeadlineExceeded) || isTimeout(ferr) || ctx.Err() != nil:
		case errors.Is(ferr, nats.ErrNoResponders):
			// A new consumer's first pull may reach it before it is ready;
			// the next fetch goes on.
			r.w.log.Debug("cluster: detection fetch found no consumer yet", "err", ferr)
		default:
			fail(newChunk(), fmt.Errorf("fetch ended with an error: %w", ferr))
			return
		}
	}
}

// consume feeds a prepared chunk to the pipeline, in stream order, and
// returns how many messages it detected. A message that is not a
// decodable journal entry is logged and counted (the sequencer
// quarantines it on the journal node).
func (w *tenantWorker) consume(c *chunk) int {
	n := 0
	for i := range c.msgs {
		m := &c.msgs[i]
		if m.seq <= w.pos {
			continue
		}
		w.pos = m.seq
		n++
		// An operator action (a rule switch) applies where it stands: after
		// the messages before it, before those after it.
		if ctl := w.d.o.Control; ctl != nil && m.en != nil && ctl(w.tenant, w.p, m.seq, m.en) {
			continue
		}
		if m.err != nil {
			w.d.update(w.tenant, func(s *TenantStats) { s.Undecoded++ })
			w.log.Warn("cluster: stream message not detected", "seq", m.seq, "subject", m.subject, "err", m.err)
			continue
		}
		for _, it := range m.items {
			_ = w.p.ProcessItem(it)
		}
	}
	return n
}

// decodeMessage decodes a raw stream message into events, with the
// origin the journal node's detection gives them (the entry's origin and
// its stream sequence), so alerts name the same place either way.
func decodeMessage(dec *source.Decoder, stream string, seq uint64, subject string, data []byte) ([]*event.Event, error) {
	en, err := entryOf(subject, data)
	if err != nil {
		return nil, err
	}
	return decodeRecord(dec, stream, seq, &en)
}

// entryOf decodes a raw stream message's journal entry, whose source must
// be its subject's.
func entryOf(subject string, data []byte) (journal.Entry, error) {
	en, err := journal.DecodeEntry(data)
	if err != nil {
		return en, err
	}
	if token(en.Source) != sourceToken(subject) {
		return en, fmt.Errorf("entry source %q does not match subject %s", en.Source, subject)
	}
	return en, nil
}

// decodeRecord decodes the record of the entry at stream sequence seq.
// The events keep en.Raw, the message's own bytes (the client copies
// every payload out of its read buffer).
func decodeRecord(dec *source.Decoder, stream string, seq uint64, en *journal.Entry) ([]*event.Event, error) {
	dec.SetObserved(en.Received)
	return dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin + " @" + stream + ":" + strconv.FormatUint(seq, 10), Index: int(seq)})
}

// refresh regroups and measures the incidents and sends their updates,
// then, once the stream holds them, the list of incidents when it changed.
func (w *tenantWorker) refresh(ctx context.Context) error {
	incs, err := w.p.Refresh(ctx)
	if err != nil {
		return fmt.Errorf("cluster: detection refresh: %w", err)
	}
	if err := w.out.flush(ctx); err != nil {
		return err
	}
	ids := make([]string, 0, len(incs))
	for _, inc := range incs {
		ids = append(ids, inc.ID)
	}
	slices.Sort(ids)
	// An incident that merged or dissolved gets no update of its own: the
	// list says which exist. The first of a holding is always sent: what
	// a crashed predecessor sent after its snapshot is unknown here. Its
	// id is this holding's, so no guard or duplicate window drops it; a
	// reader applying a list twice ends the same.
	if w.listed == nil || !slices.Equal(ids, w.listed) {
		w.lists++
		id := fmt.Sprintf("incidents/%s/%d", w.holding, w.lists)
		w.out.add(outMsg{id: id, kind: "incident", unguarded: true,
			body: AlertMessage{Tenant: w.tenant, ID: id, Type: GroupingType, IncidentIDs: ids}})
		if err := w.out.flush(ctx); err != nil {
			return err
		}
		w.listed = ids
	}
	w.d.mu.Lock()
	w.d.incidents[w.tenant] = incs
	w.d.mu.Unlock()
	w.d.update(w.tenant, func(s *TenantStats) { s.Refreshed = w.pos })
	return nil
}

func (w *tenantWorker) close() {
	if w.p == nil {
		return
	}
	// The pipeline is dropped, its access log with it: the snapshot holds
	// a copy.
	for _, f := range w.p.AccessLogFiles() {
		os.Remove(f)
	}
	w.p = nil
}

// snapHeader starts a snapshot object, before the pipeline's portable
// snapshot.
type snapHeader struct {
	Version int       `json:"version"`
	Tenant  string    `json:"tenant"`
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"` // the last stream message the state includes
	Holder  string    `json:"holder"`
	Taken   time.Time `json:"taken"`
	// Control is what operator actions set (DetectorOptions.ControlState).
	Control json.RawMessage `json:"control,omitempty"`
}

// legacySnapName is where snapshots were written before holder records:
// a worker without a holder record to go by restores it once.
func legacySnapName(tenant string) string { return "tenant/" + tenant }

// checkpoint refreshes (so everything the state holds has been sent),
// then writes the snapshot with the stream position.
func (w *tenantWorker) checkpoint(ctx context.Context) error {
	if err := w.refresh(ctx); err != nil {
		return err
	}
	h := snapHeader{Version: 1, Tenant: w.tenant, Stream: w.d.c.opts.Stream, Seq: w.pos, Holder: w.d.o.Holder, Taken: time.Now().UTC()}
	if cs := w.d.o.ControlState; cs != nil {
		b, err := cs(w.tenant)
		if err != nil {
			return fmt.Errorf("cluster: detection snapshot: %w", err)
		}
		h.Control = b
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := pw.Write(append(hdr, '\n'))
		if err == nil {
			// The pipeline goroutine waits in Put meanwhile.
			err = w.p.SnapshotPortable(pw)
		}
		pw.CloseWithError(err)
	}()
	w.snaps++
	name := snapObject(w.tenant, w.holding, w.snaps)
	info, err := w.d.snaps.Put(ctx, jetstream.ObjectMeta{Name: name,
		Metadata: map[string]string{"seq": strconv.FormatUint(w.pos, 10)}}, pr)
	pr.CloseWithError(errors.New("snapshot not stored"))
	if err != nil {
		return fmt.Errorf("cluster: detection snapshot: %w", err)
	}
	if p := w.d.pause; p != nil {
		p(w.tenant, "commit")
	}
	// The snapshot counts once the holder record names it, which the
	// stream accepts only while this worker's record is the last.
	rec := holderRecord{Tenant: w.tenant, Holder: w.d.o.Holder, Holding: w.holding, Snapshot: name, Seq: w.pos, At: time.Now().UTC()}
	fence, err := w.d.c.writeHolder(ctx, rec, w.out.fence)
	if err != nil {
		w.deleteSnap(name, true)
		return fmt.Errorf("cluster: detection snapshot at %d not committed: %w", w.pos, err)
	}
	prev := w.holder.Snapshot
	w.holder, w.out.fence = rec, fence
	if prev != "" && prev != name {
		w.deleteSnap(prev, true)
	}
	w.snap = w.pos
	w.d.update(w.tenant, func(s *TenantStats) { s.Snapshots++; s.SnapshotSeq = w.pos; s.SnapshotLen = int64(info.Size) })
	return nil
}

// deleteSnap removes a snapshot object no holder record names (any more);
// one left behind by a failure is removed at the next takeover. written:
// this worker knows it exists (it has just stored it, or its holder
// record named it). The object store reads an object's metadata with a
// direct get, which any replica answers, so one that has not caught up
// with the write yet says the object does not exist: then the delete is
// tried again.
func (w *tenantWorker) deleteSnap(name string, written bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := w.d.snaps.Delete(ctx, name)
		if err == nil || (errors.Is(err, jetstream.ErrObjectNotFound) && !written) {
			return
		}
		if !errors.Is(err, jetstream.ErrObjectNotFound) || ctx.Err() != nil {
			w.log.Warn("cluster: removing a detection snapshot no holder record names failed", "object", name, "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// claim publishes this holding's holder record after the tenant's last
// one, keeping the snapshot it names: the writes of a worker that held
// the tenant before are refused from here on.
func (w *tenantWorker) claim(ctx context.Context) error {
	var lost error
	err := retryUnavailable(ctx, w.log, "holder record", func(ctx context.Context) error {
		// A worker that paused between taking the lease and this claim
		// must not fence out the one that took the lease meanwhile.
		if w.lease != nil {
			if err := w.lease.confirm(ctx); err != nil {
				if errors.Is(err, ErrDetectLeaseLost) {
					lost = err
					return nil
				}
				return err
			}
		}
		prev, seq, err := w.d.c.lastHolder(ctx, w.tenant)
		if err != nil {
			return err
		}
		rec := prev
		rec.Tenant, rec.Holder, rec.Holding, rec.At = w.tenant, w.d.o.Holder, w.holding, time.Now().UTC()
		fence, err := w.d.c.writeHolder(ctx, rec, seq)
		if err != nil {
			return err
		}
		w.holder, w.out.fence = rec, fence
		if prev.Holding != "" {
			w.log.Info("cluster: took the tenant over", "previous_holder", prev.Holder, "holder_record", fence)
		}
		return nil
	})
	if lost != nil {
		return lost
	}
	return err
}

// removeStale deletes the tenant's snapshot objects its holder record does
// not name: what a stale or crashed worker wrote and could not commit.
func (w *tenantWorker) removeStale(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	objs, err := w.d.snaps.List(lctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoObjectsFound) {
			w.log.Warn("cluster: listing detection snapshots failed", "err", err)
		}
		return
	}
	for _, o := range objs {
		if isSnapOf(w.tenant, o.Name) && o.Name != w.holder.Snapshot {
			w.deleteSnap(o.Name, false)
		}
	}
}

// restore builds the pipeline from the tenant's snapshot, or empty when
// there is none or it cannot be used (logged, and the stream is then read
// from its first message: the guard keeps alerts from going out twice).
func (w *tenantWorker) restore(ctx context.Context) error {
	d := w.d
	w.p = d.o.NewPipeline(w.tenant, w.out)
	// Operator actions start over with the stream, or come back with the
	// snapshot.
	restoreControl := func(b []byte) error {
		if rc := d.o.RestoreControl; rc != nil {
			if err := rc(w.tenant, b); err != nil {
				return fmt.Errorf("cluster: detection snapshot: %w", err)
			}
		}
		return nil
	}
	var seq uint64
	var ctl json.RawMessage
	backoff := 100 * time.Millisecond
	for {
		var err error
		seq, ctl, err = d.c.restoreDetectionHeader(ctx, d.snaps, w.tenant, w.holder.Snapshot, w.p)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoSnapshot) {
			w.log.Info("cluster: no detection snapshot; detecting from the stream's first record")
			return restoreControl(nil)
		}
		var bad *badSnapshotError
		if errors.As(err, &bad) {
			w.log.Error("cluster: detection snapshot not usable; detecting from the stream's first record", "err", err)
			d.update(w.tenant, func(s *TenantStats) { s.RestoreErr = err.Error() })
			w.close()
			w.p = d.o.NewPipeline(w.tenant, w.out)
			return restoreControl(nil)
		}
		w.log.Warn("cluster: detection snapshot not readable yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	if err := restoreControl(ctl); err != nil {
		return err
	}
	w.pos, w.snap = seq, seq
	d.update(w.tenant, func(s *TenantStats) { s.Restored = seq; s.Position = seq })
	w.log.Info("cluster: detection resumes from its snapshot", "seq", seq)
	return nil
}

// ErrNoSnapshot: the tenant has no detection snapshot yet.
var ErrNoSnapshot = errors.New("cluster: no detection snapshot")

// badSnapshotError: the snapshot was read and cannot be used (damaged,
// of another tenant or stream, another version).
type badSnapshotError struct{ err error }

func (e *badSnapshotError) Error() string { return "cluster: detection snapshot: " + e.err.Error() }
func (e *badSnapshotError) Unwrap() error { return e.err }

// RestoreDetection loads the tenant's latest detection snapshot (the one
// its holder record names) into p, a new pipeline, and returns the stream
// sequence it was taken at; it returns ErrNoSnapshot when there is none.
func (c *Conn) RestoreDetection(ctx context.Context, tenant string, p *detect.Pipeline) (uint64, error) {
	snaps, err := c.js.ObjectStore(ctx, SnapshotBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, ErrNoSnapshot
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshot bucket: %w", err)
	}
	rec, _, err := c.lastHolder(ctx, tenant)
	if err != nil {
		return 0, err
	}
	seq, _, err := c.readSnapshot(ctx, snaps, tenant, rec.Snapshot, p)
	return seq, err
}

// restoreDetectionHeader loads the snapshot object name ("": the one
// written before holder records, if any) into p, also returning what the
// operator actions had set (the header's Control).
func (c *Conn) restoreDetectionHeader(ctx context.Context, snaps jetstream.ObjectStore, tenant, name string, p *detect.Pipeline) (uint64, json.RawMessage, error) {
	seq, hdr, err := c.readSnapshot(ctx, snaps, tenant, name, p)
	return seq, hdr.Control, err
}

func (c *Conn) readSnapshot(ctx context.Context, snaps jetstream.ObjectStore, tenant, name string, p *detect.Pipeline) (uint64, snapHeader, error) {
	var none snapHeader
	if name == "" {
		name = legacySnapName(tenant)
	}
	// The object streams in over ctx: no per-try timeout here.
	obj, err := snaps.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		if name != legacySnapName(tenant) {
			// The holder record names it: it was committed after it was
			// stored, so it was deleted since.
			return 0, none, &badSnapshotError{fmt.Errorf("object %s, named by the holder record, is missing", name)}
		}
		return 0, none, ErrNoSnapshot
	}
	if err != nil {
		return 0, none, fmt.Errorf("cluster: detection snapshot: %w", err)
	}
	defer obj.Close()
	var hdr snapHeader
	br := bufio.NewReader(obj)
	line, err := br.ReadSlice('\n')
	if err != nil {
		if ctx.Err() != nil {
			return 0, none, err
		}
		return 0, none, &badSnapshotError{fmt.Errorf("header: %w", err)}
	}
	if err := json.Unmarshal(line, &hdr); err != nil {
		return 0, none, &badSnapshotError{fmt.Errorf("header: %w", err)}
	}
	switch {
	case hdr.Version != 1:
		return 0, none, &badSnapshotError{fmt.Errorf("version %d", hdr.Version)}
	case hdr.Tenant != tenant || hdr.Stream != c.opts.Stream:
		return 0, none, &badSnapshotError{fmt.Errorf("taken of tenant %q on stream %s", hdr.Tenant, hdr.Stream)}
	}
	if err := p.RestorePortable(br); err != nil {
		if ctx.Err() != nil {
			return 0, none, err
		}
		return 0, none, &badSnapshotError{err}
	}
	// The object store checks the digest at the end.
	if _, err := io.Copy(io.Discard, br); err != nil {
		if ctx.Err() != nil {
			return 0, none, err
		}
		return 0, none, &badSnapshotError{err}
	}
	return hdr.Seq, hdr, nil
}

// alertOut sends a tenant's alerts and incident updates to the alert
// stream, each once: the message id is stable (a replay raises the same
// alert, reaches the same incident state), the stream drops a repeat
// within its duplicate window, and the guard bucket, written after the
// stream acknowledged, drops it after.
type alertOut struct {
	d      *Detector
	tenant string
	// fence is the alert stream sequence of this worker's holder record:
	// every publish expects it to be the tenant's last.
	fence   uint64
	pending []outMsg
	since   time.Time // when the oldest pending message was raised
}

func (o *alertOut) add(m outMsg) {
	if len(o.pending) == 0 {
		o.since = time.Now()
	}
	o.pending = append(o.pending, m)
}

type outMsg struct {
	id   string // what the message is: alert/<key>, incident/<id>/<state>, incidents/<holding>/<n>
	kind string // "alert" or "incident"
	body any
	// unguarded: the id is never sent by another worker (an incident
	// list), so the guard is not asked or written.
	unguarded bool
}

// GroupingType is the AlertMessage.Type of an incident list.
const GroupingType = "incidents"

// AlertMessage is the body of an alert stream message (JSON).
type AlertMessage struct {
	Tenant string `json:"tenant"`
	// ID is the message's identity: "alert/" and the alert's key, or
	// "incident/<id>/<kind>/<alerts>/<severity>/<accesses>" for the
	// incident state reached. The Nats-Msg-Id header is its hash.
	ID       string             `json:"id"`
	Type     string             `json:"type"` // "alert", or "incident." and the change
	Alert    *alert.Alert       `json:"alert,omitempty"`
	Incident *incident.Incident `json:"incident,omitempty"`
	// AlertIDs name the incident's alerts (alert.ID), which its JSON
	// leaves out: a reader tells from them which incidents merged.
	AlertIDs []string `json:"alert_ids,omitempty"`
	// IncidentIDs, in a message of GroupingType, name every incident of
	// the grouping at a refresh (sorted, none for an empty list), sent
	// after that refresh's updates: the others merged or dissolved.
	IncidentIDs []string `json:"incident_ids,omitempty"`
}

// Alert implements detect.Sink.
func (o *alertOut) Alert(a *alert.Alert) {
	c := *a
	o.add(outMsg{id: "alert/" + a.Key(), kind: "alert",
		body: AlertMessage{Tenant: o.tenant, ID: "alert/" + a.Key(), Type: "alert", Alert: &c}})
}

// Incident implements detect.Sink.
func (o *alertOut) Incident(u detect.Update) {
	inc := u.Incident
	kind := strings.ReplaceAll(u.Kind.String(), " ", "_")
	id := fmt.Sprintf("incident/%s/%s/%d/%s/%d", inc.ID, kind, inc.AlertCount, inc.Severity, inc.Impact.Accesses)
	ids := make([]string, len(inc.Alerts))
	for i := range inc.Alerts {
		ids[i] = inc.Alerts[i].ID()
	}
	o.add(outMsg{id: id, kind: "incident",
		body: AlertMessage{Tenant: o.tenant, ID: id, Type: "incident." + kind, Incident: inc, AlertIDs: ids}})
}

// guardKey is the KV key and Nats-Msg-Id of a message.
func (o *alertOut) guardKey(id string) string {
	h := sha256.New()
	h.Write([]byte(o.tenant))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil))
}

// guardConcurrency is the most guard lookups or writes a flush has in
// flight at once.
const guardConcurrency = 32

// flush sends what is pending and returns once the stream acknowledged
// all of it and the guard recorded it. The guard's lookups, and then its
// writes, are in flight together: each is a round trip of its own.
func (o *alertOut) flush(ctx context.Context) error {
	if len(o.pending) == 0 {
		return nil
	}
	d := o.d
	keys := make([]string, len(o.pending))
	known := make([]bool, len(o.pending))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(guardConcurrency)
	for i, m := range o.pending {
		keys[i] = o.guardKey(m.id)
		if m.unguarded {
			continue
		}
		g.Go(func() error {
			_, err := d.guard.Get(gctx, keys[i])
			switch {
			case err == nil:
				known[i] = true
			case !errors.Is(err, jetstream.ErrKeyNotFound):
				return fmt.Errorf("cluster: alert guard: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var msgs []*nats.Msg
	var sent []int // indexes into pending of msgs
	var repeats uint64
	for i, m := range o.pending {
		if known[i] {
			repeats++
			continue
		}
		data, err := json.Marshal(m.body)
		if err != nil {
			return fmt.Errorf("cluster: alert %s: %w", m.id, err)
		}
		nm := nats.NewMsg("alerts." + token(o.tenant) + "." + m.kind)
		nm.Header.Set(jetstream.MsgIDHeader, keys[i])
		nm.Data = data
		msgs = append(msgs, nm)
		sent = append(sent, i)
	}
	if p := d.pause; p != nil && len(msgs) > 0 {
		p(o.tenant, "flush")
	}
	var res PublishResult
	acks := make([]journal.Ack, len(msgs))
	if err := d.c.publishFenced(ctx, o.tenant, o.fence, msgs, acks, &res); err != nil {
		return err
	}
	// Recorded only once the stream holds every message: a crash before
	// leaves them unguarded, and the replay sends them again (the stream
	// drops them within its duplicate window).
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(guardConcurrency)
	for _, i := range sent {
		if o.pending[i].unguarded {
			continue
		}
		g.Go(func() error {
			if _, err := d.guard.Create(gctx, keys[i], []byte("sent")); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				return fmt.Errorf("cluster: alert guard: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var alerts, updates, lists uint64
	for k, i := range sent {
		switch {
		case acks[k].Duplicate:
		case o.pending[i].kind == "alert":
			alerts++
		case o.pending[i].unguarded:
			lists++
		default:
			updates++
		}
	}
	clear(o.pending)
	o.pending = o.pending[:0]
	d.update(o.tenant, func(s *TenantStats) {
		s.Repeats += repeats + uint64(res.Duplicates)
		s.Alerts += alerts
		s.Updates += updates
		s.Groupings += lists
		s.Batches += uint64(res.Batches)
	})
	return nil
}
