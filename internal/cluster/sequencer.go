package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/journal"
)

// Rejected is a stream message the sequencer could not journal: it is
// handed to SequencerOptions.Quarantine, never dropped silently.
type Rejected struct {
	Tenant  string
	Subject string
	Seq     uint64 // stream sequence
	Reason  string
	Data    []byte
}

// SequencerOptions configures a tenant's sequencer.
type SequencerOptions struct {
	Tenant  string
	Journal journal.Log
	// Replica names this copy of the tenant's journal when several nodes
	// each keep one (each gets its own durable consumer); "" for the one
	// journal of the tenant.
	Replica string
	// Quarantine keeps a message that does not decode as a journal entry,
	// or whose source disagrees with its subject; it must be durable
	// when it returns. Required.
	Quarantine func(Rejected) error
	// Batch is the most messages appended in one journal commit (default
	// 256).
	Batch int
	// AckWait is how long the stream waits for an ack before it delivers
	// a message again (default 30 s).
	AckWait time.Duration
	// Idle is how long one fetch waits for messages (default 1 s).
	Idle time.Duration
	// Holder names this node in the tenant's journal lease (default the
	// host name); the same holder may take its lease back after a restart.
	Holder string
	// LeaseTTL is how long the lease outlives its holder (default 15 s).
	LeaseTTL time.Duration
	// OnAppend is called after entries were appended (wakes detection).
	OnAppend func()
	// OnLease, when set, is called with true once Run holds the journal
	// lease and with false when Run gives it up (the journal node answers
	// the cluster's journal queries meanwhile).
	OnLease func(held bool)
	// AcceptGap lets the sequencer start although the stream no longer
	// holds messages after the journal's position (ErrStreamGap): the
	// operator accepts that records among them are missing from the
	// journal. Without it, Run refuses to start.
	AcceptGap bool
	Logger    *slog.Logger
}

// ErrStreamGap: the stream discarded messages after the journal's
// position before they were journaled; Run refuses to start (unless
// SequencerOptions.AcceptGap) rather than leave a silent gap.
var ErrStreamGap = errors.New("cluster: the stream no longer holds what the journal is missing")

// SequencerStats counts what a sequencer did since it was made.
type SequencerStats struct {
	Appended    uint64 // entries new in the journal
	Duplicates  uint64 // messages the journal already held (redeliveries, late repeats)
	Quarantined uint64
	Resets      uint64 // consumer re-created after a lost delivery or a stale ack
	Position    uint64 // every tenant message at or below this stream sequence is journaled
	// Gap is non-zero when the stream had discarded messages past
	// Position before they were journaled (accepted with AcceptGap): the
	// last sequence discarded; records of this tenant may be missing.
	Gap uint64
	// Through: every tenant message at or below this stream sequence is
	// journaled (Position, or past it once the sequencer found nothing
	// more of the tenant in the stream); the gap check starts from it.
	Through uint64
	// Fenced counts commits not made, and journal query answers and sink
	// deliveries refused (ConfirmLease), because the lease, confirmed
	// first, had been lost (a pause outlived it): Run then stopped.
	Fenced uint64
}

// Sequencer appends one tenant's records to its journal in stream order.
// Run it on exactly one node per tenant: the node holding that tenant's
// journal (the journal's directory lock keeps a second process off it).
type Sequencer struct {
	c    *Conn
	o    SequencerOptions
	name string
	log  *slog.Logger
	cons jetstream.Consumer
	// nextDelivery is the consumer sequence the next message must carry;
	// anything else means a delivery was lost and the consumer is reset.
	nextDelivery uint64
	pos          atomic.Uint64
	appended     atomic.Uint64
	dups         atomic.Uint64
	quarantined  atomic.Uint64
	resets       atomic.Uint64
	gap          atomic.Uint64
	fenced       atomic.Uint64
	// fresh: the journal is empty and no consumer of this journal exists,
	// so no record of the stream was ever journaled for it.
	fresh bool
	// lease is the journal lease while Run holds it: every commit confirms
	// it first.
	lease *lease
	// held is the lease and what stops Run, while Run holds it: what
	// ConfirmLease asks from other goroutines.
	held atomic.Pointer[heldLease]
	// through, marks, markedAt, markEvery: the journal's mark (mark.go).
	through   atomic.Uint64
	marks     jetstream.KeyValue
	markedAt  time.Time
	markEvery time.Duration
	// Tests pause a sequencer with these: before a commit, and before its
	// lease renewals.
	beforeCommit, pauseRenew func()
}

// NewSequencer prepares the sequencer of opts.Tenant; Run starts it.
func (c *Conn) NewSequencer(opts SequencerOptions) (*Sequencer, error) {
	if opts.Journal == nil || opts.Quarantine == nil {
		return nil, errors.New("cluster: a sequencer needs a journal and a quarantine")
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.Idle <= 0 {
		opts.Idle = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = c.opts.Logger
	}
	if opts.Holder == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("cluster: lease holder: %w", err)
		}
		opts.Holder = h
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	name := "sequencer_" + token(opts.Tenant)
	if opts.Replica != "" {
		name += "_" + token(opts.Replica)
	}
	return &Sequencer{c: c, o: opts, name: name, markEvery: defaultMarkEvery,
		log: opts.Logger.With("tenant", opts.Tenant)}, nil
}

// Stats returns the sequencer's counters.
func (s *Sequencer) Stats() SequencerStats {
	return SequencerStats{Appended: s.appended.Load(), Duplicates: s.dups.Load(), Quarantined: s.quarantined.Load(),
		Resets: s.resets.Load(), Position: s.pos.Load(), Through: max(s.pos.Load(), s.through.Load()), Gap: s.gap.Load(), Fenced: s.fenced.Load()}
}

// originSuffix marks a journal entry with the stream sequence it came
// from, so the journal itself says how far the stream was applied.
func (s *Sequencer) originSuffix(seq uint64) string {
	return " @" + s.c.opts.Stream + ":" + strconv.FormatUint(seq, 10)
}

// recorded is the stream sequence recorded in the journal's last entry
// that came from this stream (entries the node wrote itself, such as
// triage notes, carry none), 0 when it has none.
func (s *Sequencer) recorded(ctx context.Context) (uint64, error) {
	mark := " @" + s.c.opts.Stream + ":"
	for i := s.o.Journal.Size(); i > 0; i-- {
		var seq uint64
		found := false
		err := s.o.Journal.Read(ctx, i-1, func(index uint64, e *journal.Entry) error {
			if index != i-1 {
				return errStopRead
			}
			if k := strings.LastIndex(e.Origin, mark); k >= 0 {
				n, err := strconv.ParseUint(e.Origin[k+len(mark):], 10, 64)
				if err != nil {
					return fmt.Errorf("entry %d: origin %q: %w", index, e.Origin, err)
				}
				seq, found = n, true
			}
			return errStopRead
		})
		if err != nil && !errors.Is(err, errStopRead) {
			return 0, fmt.Errorf("cluster: reading the journal's position: %w", err)
		}
		if found {
			return seq, nil
		}
	}
	return 0, nil
}

// errStopRead ends a journal Read after the entry wanted.
var errStopRead = errors.New("stop")

// Run appends the tenant's records until ctx ends, the journal fails or
// the tenant's journal lease is lost. It returns nil when ctx ends, and
// ErrLeaseHeld (wrapped) at once when another node writes the tenant's
// journal.
func (s *Sequencer) Run(ctx context.Context) error {
	l, err := s.takeLease(ctx)
	if err != nil {
		return nilOnDone(ctx, err)
	}
	l.beforeRenew = s.pauseRenew
	s.lease = l
	if s.o.OnLease != nil {
		s.o.OnLease(true)
		defer s.o.OnLease(false)
	}
	parent := ctx
	ctx, stop := context.WithCancelCause(ctx)
	s.held.Store(&heldLease{l: l, stop: stop})
	defer s.held.Store(nil)
	held := make(chan error, 1)
	go func() {
		err := l.hold(ctx)
		if err != nil {
			stop(err)
		}
		held <- err
	}()
	err = s.run(ctx)
	stop(nil)
	if lerr := <-held; lerr != nil {
		return lerr
	}
	// ConfirmLease found the lease lost.
	if cause := context.Cause(ctx); parent.Err() == nil && errors.Is(cause, ErrLeaseLost) {
		return cause
	}
	return err
}

type heldLease struct {
	l    *lease
	stop context.CancelCauseFunc
}

// ErrNoLease: this node does not hold the tenant's journal lease now (Run
// has not taken it yet, or gave it up).
var ErrNoLease = errors.New("cluster: this node does not hold the journal lease")

// ConfirmLease makes sure this node still holds the tenant's journal
// lease before it speaks for the journal outside a commit: an answer to
// another node's journal query, a delivery to a sink. It is the check a
// commit makes (renewed first when the last renewal is more than TTL/15
// old), so a node waking from a pause that outlived its lease answers
// and delivers nothing from its stale journal. It returns ErrLeaseLost
// (wrapped) when the lease was lost, and Run then stops; ErrNoLease when
// Run does not hold it.
func (s *Sequencer) ConfirmLease(ctx context.Context) error {
	h := s.held.Load()
	if h == nil {
		return ErrNoLease
	}
	err := h.l.confirm(ctx)
	if errors.Is(err, ErrLeaseLost) {
		s.fenced.Add(1)
		s.log.Error("cluster: the journal lease was lost while this node was not renewing it; not answering for the journal", "err", err)
		h.stop(err)
	}
	return err
}

// takeLease acquires the journal lease, retrying while the cluster cannot
// answer (no quorum, a leader election); another holder is final.
func (s *Sequencer) takeLease(ctx context.Context) (*lease, error) {
	backoff := 100 * time.Millisecond
	for {
		// A request that reaches no leader gets no answer: bound each try.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err := s.c.acquire(actx, s.o.Tenant, s.name, s.o.Holder, s.o.LeaseTTL)
		cancel()
		if err == nil || errors.Is(err, ErrLeaseHeld) || ctx.Err() != nil {
			return l, err
		}
		s.log.Warn("cluster: journal lease not available yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Sequencer) run(ctx context.Context) error {
	pos, err := s.recorded(ctx)
	if err != nil {
		return err
	}
	// The mark says how far past its position the journal is complete
	// (mark.go); without the bucket the check starts at the position.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if s.marks, err = s.c.openMarks(lctx); err != nil {
		s.log.Warn("cluster: journal marks unavailable; the stream gap check starts at the journal's position", "err", err)
	} else if t, err := s.loadMark(lctx); err != nil {
		s.log.Warn("cluster: journal mark unreadable; the stream gap check starts at the journal's position", "err", err)
	} else {
		s.through.Store(t)
	}
	cancel()
	// The journal's own position, never the durable consumer's ack floor:
	// the consumer outlives a lost journal, and a journal rebuilt on an
	// empty disk must read the stream from its beginning.
	// A consumer that cannot answer now (no leader after a node loss) is
	// re-created below anyway: only the gap check's exemption for a first
	// journal depends on it, and it is then not granted.
	lctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	cons, err := s.c.js.Consumer(lctx, s.c.opts.Stream, s.name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		// No journal of this tenant was written from this stream before
		// (the consumer is created with the first one).
		s.fresh = pos == 0
	case err != nil:
		s.log.Warn("cluster: the sequencer's consumer did not answer; re-creating it", "consumer", s.name, "err", err)
	default:
		if info, err := cons.Info(lctx); err == nil && info.AckFloor.Stream > max(pos, s.through.Load()) {
			s.log.Warn("cluster: the journal ends before what the stream's consumer acknowledged; reading the stream again from the journal's position",
				"journal_position", pos, "acknowledged", info.AckFloor.Stream)
		}
	}
	cancel()
	s.pos.Store(pos)
	s.log.Info("cluster: sequencer starting", "stream", s.c.opts.Stream, "position", pos, "complete_through", s.through.Load())
	if err := s.reset(ctx); err != nil {
		return nilOnDone(ctx, err)
	}
	for ctx.Err() == nil {
		batch, err := s.cons.Fetch(s.o.Batch, jetstream.FetchMaxWait(s.o.Idle))
		if err != nil {
			s.log.Warn("cluster: fetch failed; re-creating the consumer", "err", err)
			if err := s.reset(ctx); err != nil {
				return nilOnDone(ctx, err)
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		fetchErr := batch.Error()
		ok, err := s.apply(ctx, msgs)
		if err != nil {
			return nilOnDone(ctx, err)
		}
		stale := false
		if ok && len(msgs) == 0 {
			// The stream's last sequence before the consumer says nothing
			// is left: every tenant message up to it is then journaled.
			var last uint64
			if time.Since(s.markedAt) >= s.markEvery {
				if si, err := s.c.stream.Info(ctx); err == nil {
					last = si.State.LastSeq
				}
			}
			// Nothing came: deliveries acknowledged by no one (lost in a
			// disconnect) would hold the consumer until AckWait.
			if info, err := s.cons.Info(ctx); err == nil {
				switch {
				case info.NumAckPending > 0:
					stale = true
				case info.NumPending == 0 && last > 0:
					s.mark(ctx, last)
				}
			}
		}
		if !ok || stale || (fetchErr != nil && !errors.Is(fetchErr, context.DeadlineExceeded) && !isTimeout(fetchErr)) {
			if fetchErr != nil {
				s.log.Warn("cluster: fetch ended with an error; re-creating the consumer", "err", fetchErr)
			}
			if err := s.reset(ctx); err != nil {
				return nilOnDone(ctx, err)
			}
		}
	}
	return nil
}

// isTimeout: a fetch that ended without messages, not a failure.
func isTimeout(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages)
}

func nilOnDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// reset re-creates the durable consumer so that it delivers, in order,
// every tenant message after the position.
func (s *Sequencer) reset(ctx context.Context) error {
	s.resets.Add(1)
	backoff := 100 * time.Millisecond
	for {
		err := s.recreate(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrStreamGap) {
			return err
		}
		s.log.Warn("cluster: sequencer consumer not ready, retrying", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Sequencer) recreate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pos := s.pos.Load()
	info, err := s.c.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("cluster: stream info: %w", err)
	}
	if err := s.checkGap(pos, info.State.FirstSeq, info.State.LastSeq); err != nil {
		return err
	}
	if err := s.c.js.DeleteConsumer(ctx, s.c.opts.Stream, s.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("cluster: delete consumer %s: %w", s.name, err)
	}
	cons, err := s.c.js.CreateConsumer(ctx, s.c.opts.Stream, jetstream.ConsumerConfig{
		Durable:       s.name,
		Description:   "vigil: appends tenant " + s.o.Tenant + " to its journal",
		FilterSubject: TenantFilter(s.o.Tenant),
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   pos + 1,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.o.Batch,
	})
	if err != nil {
		return fmt.Errorf("cluster: create consumer %s: %w", s.name, err)
	}
	s.cons = cons
	s.nextDelivery = 1
	s.fresh = false
	return nil
}

// checkGap refuses to read the stream when it no longer holds messages
// after the journal's position pos (first is the stream's first
// sequence, last its last): records of the tenant among them would be
// missing from the journal without a trace. A journal that was never
// written from this stream starts wherever the stream starts; an operator
// accepts a gap with AcceptGap.
func (s *Sequencer) checkGap(pos, first, last uint64) error {
	// A journal complete past its position (its tenant was quiet while
	// other tenants' messages went by) is checked from there, unless the
	// stream is not the one marked.
	journalPos := pos
	if t := s.through.Load(); t > pos && t <= last {
		pos = t
	}
	if journalPos > last {
		return fmt.Errorf("%w: the journal recorded stream %s sequence %d, but the stream ends at %d: it is not the stream this journal was filled from (was it deleted and created again?); restore the stream or start the journal node on an empty data directory",
			ErrStreamGap, s.c.opts.Stream, journalPos, last)
	}
	if first <= pos+1 {
		return nil
	}
	missing := fmt.Sprintf("%d to %d", pos+1, first-1)
	if pos+1 == first-1 {
		missing = strconv.FormatUint(pos+1, 10)
	}
	switch {
	case s.fresh:
		s.log.Warn("cluster: the tenant's first journal starts where the stream starts; no journal of it was written from the messages the stream no longer holds",
			"discarded", missing, "stream_first", first)
		return nil
	case s.o.AcceptGap:
		if s.gap.Load() != first-1 {
			s.gap.Store(first - 1)
			s.log.Error("cluster: the stream no longer holds messages this journal has not recorded; accepted: records of this tenant among them are missing from the journal",
				"missing", missing, "position", pos, "stream_first", first)
		}
		return nil
	}
	return fmt.Errorf("%w: stream %s no longer holds sequences %s (its limits discarded them; it starts at %d) and tenant %s's journal holds its messages up to sequence %d: records among them would be missing from the journal. Restore the journal directory from a backup that reaches sequence %d or later and start again; or, to accept that those records are missing, start once with --accept-stream-gap",
		ErrStreamGap, s.c.opts.Stream, missing, first, s.o.Tenant, pos, first-1)
}

// apply journals msgs (one fetch) in order. ok is false when a delivery
// was missing: what came before it is applied and the caller resets.
func (s *Sequencer) apply(ctx context.Context, msgs []jetstream.Msg) (ok bool, err error) {
	pos := s.pos.Load()
	var entries []journal.Entry
	var done []jetstream.Msg
	last := pos
	ok = true
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			ok = false
			break
		}
		if md.Sequence.Consumer != s.nextDelivery {
			// A delivery before this one never arrived: applying this one
			// would put the journal out of stream order.
			ok = false
			break
		}
		s.nextDelivery++
		seq := md.Sequence.Stream
		done = append(done, m)
		if seq <= pos {
			s.dups.Add(1) // delivered again after its ack was lost
			continue
		}
		last = seq
		e, err := journal.DecodeEntry(m.Data())
		if err == nil && token(e.Source) != sourceToken(m.Subject()) {
			err = fmt.Errorf("entry source %q does not match subject %s", e.Source, m.Subject())
		}
		if err != nil {
			if qerr := s.o.Quarantine(Rejected{Tenant: s.o.Tenant, Subject: m.Subject(), Seq: seq, Reason: err.Error(), Data: m.Data()}); qerr != nil {
				return false, fmt.Errorf("cluster: quarantine: %w", qerr)
			}
			s.quarantined.Add(1)
			continue
		}
		e.Origin += s.originSuffix(seq)
		// Raw aliases the message; the journal copies it on append.
		entries = append(entries, e)
	}
	if len(entries) > 0 {
		if s.beforeCommit != nil {
			s.beforeCommit()
		}
		// A node that paused long enough to lose its lease (another may
		// write the tenant's journal now) appends nothing more.
		if s.lease != nil {
			if err := s.lease.confirm(ctx); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					s.fenced.Add(1)
					s.log.Error("cluster: the journal lease was lost while this node was not renewing it; not appending", "entries", len(entries), "err", err)
				}
				return false, err
			}
		}
		// A stop must not leave a commit whose outcome is unknown: the
		// append finishes, then its messages are acked.
		acks, err := s.o.Journal.AppendBatch(context.WithoutCancel(ctx), entries)
		if err != nil {
			return false, fmt.Errorf("cluster: journal append: %w", err)
		}
		var n uint64
		for _, a := range acks {
			if a.Duplicate {
				s.dups.Add(1)
			} else {
				n++
			}
		}
		s.appended.Add(n)
		if n > 0 && s.o.OnAppend != nil {
			s.o.OnAppend()
		}
	}
	s.pos.Store(last)
	// Acks are best effort: a lost one means a redelivery the position
	// (or the journal's dedupe) absorbs. The last is confirmed so that the
	// durable consumer's ack floor keeps up.
	for i, m := range done {
		if i == len(done)-1 {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.DoubleAck(actx); err != nil {
				s.log.Debug("cluster: ack not confirmed", "err", err)
			}
			cancel()
			continue
		}
		_ = m.Ack()
	}
	return ok, nil
}

// sourceToken is the source token of a raw.<tenant>.<source> subject.
func sourceToken(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return ""
}
