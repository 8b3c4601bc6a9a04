package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/sink"
)

// readAll returns every entry of the journal at dir.
func readAll(t *testing.T, j journal.Log) []journal.Entry {
	t.Helper()
	var out []journal.Entry
	err := j.Read(t.Context(), 0, func(_ uint64, e *journal.Entry) error {
		c := *e
		c.Raw = append([]byte(nil), e.Raw...)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestJournalRebuiltFromStream: the journal node's disk is lost (its
// journal directory deleted) while the durable consumer it used is still
// in the cluster; a new journal node on an empty directory fills its
// journal from the stream: the same entries in the same order, hence the
// same Merkle root at the same size, and it verifies; then it appends
// what arrives next.
func TestJournalRebuiltFromStream(t *testing.T) {
	entries := simEntries(t, 10, 1)
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	half := len(entries) / 2
	if _, err := conn.Publish(ctx, tenant, entries[:half]); err != nil {
		t.Fatal(err)
	}
	// Another tenant's records interleave in the same stream.
	if _, err := conn.Publish(ctx, "other", entries[:100]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Publish(ctx, tenant, entries[half:len(entries)-100]); err != nil {
		t.Fatal(err)
	}
	open := func(dir string) *journal.Journal {
		j, err := journal.Open(ctx, dir, journal.Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	q := &memQuarantine{}
	lost := t.TempDir()
	j1 := open(lost)
	s1, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j1, Quarantine: q.keep, Holder: "node-1", Batch: 64, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, s1)
	want := uint64(len(entries) - 100)
	waitFor(t, 30*time.Second, "first journal node caught up", func() error {
		if j1.Size() < want {
			return errorf("journal %d of %d", j1.Size(), want)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	size1, root1 := j1.Root()
	entries1 := readAll(t, j1)
	if err := j1.Close(); err != nil {
		t.Fatal(err)
	}
	// The disk is lost; the durable consumer stays in the cluster.
	if err := os.RemoveAll(lost); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.js.Consumer(ctx, DefaultStream, s1.name); err != nil {
		t.Fatalf("the lost node's consumer: %v", err)
	}

	dir := t.TempDir()
	j2 := open(dir)
	s2, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j2, Quarantine: q.keep, Holder: "node-2", Batch: 64, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop = runSequencer(t, s2)
	waitFor(t, 30*time.Second, "new journal node refilled from the stream", func() error {
		if j2.Size() < size1 {
			return errorf("journal %d of %d (%+v)", j2.Size(), size1, s2.Stats())
		}
		return nil
	})
	root2, err := j2.RootAt(size1)
	if err != nil {
		t.Fatal(err)
	}
	if root2 != root1 {
		t.Fatalf("rebuilt journal's root at %d is %x, the lost one's %x", size1, root2, root1)
	}
	if got := readAll(t, j2); !reflect.DeepEqual(got, entries1) {
		t.Fatalf("rebuilt journal differs from the lost one (%d entries, %d before)", len(got), len(entries1))
	}
	// It goes on with what arrives next.
	if _, err := conn.Publish(ctx, tenant, entries[len(entries)-100:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "new records journaled", func() error {
		if j2.Size() < uint64(len(entries)) {
			return errorf("journal %d of %d", j2.Size(), len(entries))
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Duplicates != 0 || st.Appended != uint64(len(entries)) {
		t.Fatalf("rebuilding sequencer %+v: want %d appended, none repeated", st, len(entries))
	}
	if len(q.list()) != 0 {
		t.Fatalf("quarantined %+v", q.list())
	}
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dir, entries)
}

// TestJournalRebuildRefusesStreamGap: a journal node whose journal ends
// before the stream's first message (the stream's limits discarded what
// it never journaled, here by a purge) refuses to start, naming the
// missing sequences and what to do, and starts once the operator
// accepted the gap.
func TestJournalRebuildRefusesStreamGap(t *testing.T) {
	entries := simEntries(t, 10, 1)[:300]
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := conn.Publish(ctx, tenant, entries[:200]); err != nil {
		t.Fatal(err)
	}
	q := &memQuarantine{}
	j1, err := journal.Open(ctx, t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j1, Quarantine: q.keep, Holder: "node-1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, s1)
	waitFor(t, 30*time.Second, "first journal node caught up", func() error {
		if j1.Size() < 200 {
			return errorf("journal %d of 200", j1.Size())
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	j1.Close()
	// The stream no longer holds its first 150 messages.
	if err := conn.stream.Purge(ctx, jetstream.WithPurgeSequence(151)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Publish(ctx, tenant, entries[200:]); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	j2, err := journal.Open(ctx, dir, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	s2, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j2, Quarantine: q.keep, Holder: "node-2", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err = s2.Run(rctx)
	rcancel()
	if !errors.Is(err, ErrStreamGap) {
		t.Fatalf("sequencer on an empty journal with the stream's start discarded: %v, want ErrStreamGap", err)
	}
	for _, want := range []string{"1 to 150", "backup", "accept"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if j2.Size() != 0 {
		t.Fatalf("the refusing sequencer appended %d entries", j2.Size())
	}

	// Accepted: it journals what the stream still holds.
	s3, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j2, Quarantine: q.keep, Holder: "node-2", AcceptGap: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop = runSequencer(t, s3)
	waitFor(t, 30*time.Second, "journal after the accepted gap", func() error {
		if j2.Size() < 150 {
			return errorf("journal %d of 150", j2.Size())
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s3.Stats(); st.Gap != 150 || j2.Size() != 150 {
		t.Fatalf("after the accepted gap: %+v, journal %d; want the gap at 150 and the 150 records the stream held", st, j2.Size())
	}
}

// TestJournalLeaseFencesStalePausedNode: a journal node pauses with a
// fetched batch not yet committed, its lease renewals paused with it;
// the lease expires and another journal node takes the tenant's journal
// and fills it. When the paused node wakes up it appends nothing more:
// its commit confirms the lease first, finds it taken, and it stops.
func TestJournalLeaseFencesStalePausedNode(t *testing.T) {
	entries := simEntries(t, 10, 1)[:400]
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := conn.Publish(ctx, tenant, entries[:300]); err != nil {
		t.Fatal(err)
	}
	const ttl = 3 * time.Second
	j1, s1, q := node1Sequencer(t, conn, ttl)
	pz := pauseAtCommit(s1)
	defer pz.release()
	done := make(chan error, 1)
	go func() { done <- s1.Run(ctx) }()
	waitFor(t, 30*time.Second, "node-1 journaling", func() error {
		if j1.Size() < 300 {
			return errorf("journal %d of 300", j1.Size())
		}
		return nil
	})
	pz.pauseOn(t, func() error { _, err := conn.Publish(ctx, tenant, entries[300:]); return err })
	// The lease expires while node-1 is paused; node-2 takes it.
	waitLeaseGone(t, conn, s1, 4*ttl)
	dir2 := t.TempDir()
	j2, err := journal.Open(ctx, dir2, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j2, Quarantine: q.keep, Holder: "node-2", LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runSequencer(t, s2)
	waitFor(t, 30*time.Second, "node-2 journaling the stream", func() error {
		if j2.Size() < 400 {
			return errorf("journal %d of 400", j2.Size())
		}
		return nil
	})
	// Node-1 wakes up with its batch; its renewals still wait.
	pz.wakeCommit()
	waitFor(t, 30*time.Second, "node-1's commit refused", func() error {
		if st := s1.Stats(); st.Fenced == 0 {
			return errorf("%+v", st)
		}
		return nil
	})
	pz.wakeRenewals()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "another node") {
			t.Fatalf("node-1 woke up and ended with %v, want its lease lost to another node", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node-1 did not stop after waking up")
	}
	if n := j1.Size(); n != 300 {
		t.Fatalf("node-1 holds %d entries after waking up; it had 300 when it paused", n)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	j2.Close()
	checkExactlyOnce(t, dir2, entries)
}

// recSink records what an outbox delivers to it.
type recSink struct {
	mu  sync.Mutex
	ids []string
}

func (s *recSink) Name() string { return "rec" }
func (s *recSink) Deliver(_ context.Context, m sink.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, m.ID)
	return nil
}
func (s *recSink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// TestJournalLeaseFencesStaleAnswers: a journal node answers the other
// nodes' journal queries and delivers its outbox to its sinks. It pauses
// with a fetched batch not yet committed, its lease renewals paused with
// it; the lease expires and another node takes the tenant's journal. In
// the moments after it wakes up, before its next commit (its sequencer
// and its renewals still held), a journal query reaches it and its
// outbox has a message due: it answers 503 instead of from its journal,
// delivers nothing, and stops.
func TestJournalLeaseFencesStaleAnswers(t *testing.T) {
	entries := simEntries(t, 10, 1)[:400]
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node-1")
	asker := connect(t, c, "ingest")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := asker.Publish(ctx, tenant, entries[:300]); err != nil {
		t.Fatal(err)
	}
	const ttl = 3 * time.Second
	j1, s1, q := node1Sequencer(t, conn, ttl)
	stopQueries, err := conn.ServeJournalQueries(tenant, 10*time.Second, s1.ConfirmLease, func(context.Context, string, string) QueryAnswer {
		return QueryAnswer{Status: 200, Header: http.Header{}, Body: []byte(strconv.FormatUint(j1.Size(), 10))}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopQueries()
	rec := &recSink{}
	outbox, err := sink.NewOutbox(t.TempDir(), []sink.Sink{rec}, sink.OutboxOptions{Ready: s1.ConfirmLease, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	pz := pauseAtCommit(s1)
	defer pz.release()
	done := make(chan error, 1)
	go func() { done <- s1.Run(ctx) }()
	waitFor(t, 30*time.Second, "node-1 journaling", func() error {
		if j1.Size() < 300 {
			return errorf("journal %d of 300", j1.Size())
		}
		return nil
	})
	// While it holds the lease it answers and delivers.
	if a, err := asker.AskJournal(ctx, tenant, "/size", ""); err != nil || a.Status != 200 || string(a.Body) != "300" {
		t.Fatalf("node-1 holding the lease answered %d %q (%v), want 200 300", a.Status, a.Body, err)
	}
	if _, err := outbox.Enqueue(sink.Message{ID: "before", Type: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Flush(ctx); err != nil || !slices.Equal(rec.delivered(), []string{"before"}) {
		t.Fatalf("node-1 holding the lease delivered %v (%v)", rec.delivered(), err)
	}

	pz.pauseOn(t, func() error { _, err := asker.Publish(ctx, tenant, entries[300:]); return err })
	waitLeaseGone(t, conn, s1, 4*ttl)
	j2, err := journal.Open(ctx, t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	s2, err := connect(t, c, "node-2").NewSequencer(SequencerOptions{Tenant: tenant, Journal: j2, Quarantine: q.keep, Holder: "node-2", LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runSequencer(t, s2)
	waitFor(t, 30*time.Second, "node-2 journaling the stream", func() error {
		if j2.Size() < 400 {
			return errorf("journal %d of 400", j2.Size())
		}
		return nil
	})

	// Node-1 wakes up: before its sequencer commits (still held), a query
	// and a due message.
	a, err := asker.AskJournal(ctx, tenant, "/size", "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" || !strings.Contains(string(a.Body), "could not confirm it still holds the journal") {
		t.Fatalf("node-1 after losing its lease answered %d %v %q, want 503 with Retry-After", a.Status, a.Header, a.Body)
	}
	if _, err := outbox.Enqueue(sink.Message{ID: "after", Type: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.delivered(); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("node-1 after losing its lease delivered %v", got)
	}
	if st := outbox.Status(); st[0].Pending != 1 || st[0].Failures != 0 {
		t.Fatalf("outbox %+v, want the message pending, no failed attempt", st[0])
	}
	if st := s1.Stats(); st.Fenced == 0 {
		t.Fatalf("node-1's refusals not counted: %+v", st)
	}
	pz.wakeCommit()
	pz.wakeRenewals()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "another node") {
			t.Fatalf("node-1 ended with %v, want its lease lost to another node", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node-1 did not stop")
	}
	if n := j1.Size(); n != 300 {
		t.Fatalf("node-1 holds %d entries; it had 300 when it paused", n)
	}
	if err := s1.ConfirmLease(ctx); !errors.Is(err, ErrNoLease) {
		t.Fatalf("node-1 stopped: ConfirmLease %v, want ErrNoLease", err)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

// TestJournalGapCheckPerTenant: two tenants share the stream. The quiet
// one is journaled, then only the busy one publishes, and the stream
// discards everything before some of the busy tenant's messages (the
// quiet tenant's among them, all journaled): the quiet tenant's journal
// node starts again without a gap, its mark saying its journal held every
// one of its messages up to past what was discarded. Then that node
// stops, both tenants publish, and the stream discards the quiet
// tenant's new messages before they were journaled: the start is
// refused, naming the sequences from the mark on.
func TestJournalGapCheckPerTenant(t *testing.T) {
	all := simEntries(t, 10, 1)
	const quiet, busy = "quiet.example", "busy.example"
	qEntries := all[:80]
	bEntries := slices.Clone(all[80:380])
	for i := range bEntries {
		bEntries[i].RecordID = "busy/" + bEntries[i].RecordID
	}
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	publish := func(ten string, es []journal.Entry) uint64 {
		t.Helper()
		if _, err := conn.Publish(ctx, ten, es); err != nil {
			t.Fatal(err)
		}
		last, err := streamLastSeq(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	j, err := journal.Open(ctx, t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	q := &memQuarantine{}
	newSequencer := func() *Sequencer {
		s, err := conn.NewSequencer(SequencerOptions{Tenant: quiet, Journal: j, Quarantine: q.keep, Holder: "node-1", Idle: 200 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		s.markEvery = 0
		return s
	}
	caughtUp := func(s *Sequencer, size, through uint64) {
		t.Helper()
		// Caught up and marked so.
		waitFor(t, 30*time.Second, "the quiet tenant's journal caught up", func() error {
			if st := s.Stats(); j.Size() < size || st.Through < through || s.through.Load() < through {
				return errorf("journal %d of %d, %+v, marked through %d, stream at %d", j.Size(), size, st, s.through.Load(), through)
			}
			return nil
		})
	}

	publish(quiet, qEntries[:50])
	publish(busy, bEntries[:100])
	s1 := newSequencer()
	stop := runSequencer(t, s1)
	last := publish(busy, bEntries[100:200])
	caughtUp(s1, 50, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	pos := s1.Stats().Position
	// The stream no longer holds the quiet tenant's messages, nor the
	// busy one's first 150.
	if err := conn.stream.Purge(ctx, jetstream.WithPurgeSequence(201)); err != nil {
		t.Fatal(err)
	}
	s2 := newSequencer()
	stop = runSequencer(t, s2)
	last = publish(quiet, qEntries[50:60])
	caughtUp(s2, 60, last)
	if err := stop(); err != nil {
		t.Fatalf("the quiet tenant's journal node (position %d, the stream starting at 201): %v", pos, err)
	}
	if st := s2.Stats(); st.Gap != 0 || j.Size() != 60 {
		t.Fatalf("after a quiet spell: %+v, journal %d; want no gap and 60 entries", st, j.Size())
	}

	// Its node stopped, the quiet tenant publishes 20 records; the stream
	// discards them before they are journaled.
	through := s2.Stats().Through
	publish(quiet, qEntries[60:80])
	first := publish(busy, bEntries[200:300]) - 99
	if err := conn.stream.Purge(ctx, jetstream.WithPurgeSequence(first)); err != nil {
		t.Fatal(err)
	}
	s3 := newSequencer()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err = s3.Run(rctx)
	rcancel()
	if !errors.Is(err, ErrStreamGap) {
		t.Fatalf("the quiet tenant's messages discarded before they were journaled: %v, want ErrStreamGap", err)
	}
	if want := fmt.Sprintf("%d to %d", through+1, first-1); !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q does not name sequences %s", err, want)
	}
	if j.Size() != 60 {
		t.Fatalf("the refusing sequencer appended %d entries", j.Size()-60)
	}

	// The mark counts only for a journal that holds the marked one: not
	// for another journal of the same size (a restored or forked one).
	other, err := journal.Open(ctx, t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.AppendBatch(ctx, bEntries[200:270]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		j    journal.Log
		want uint64
	}{{"the marked journal", j, through}, {"another journal", other, 0}} {
		s, err := conn.NewSequencer(SequencerOptions{Tenant: quiet, Journal: c.j, Quarantine: q.keep, Holder: "node-1", Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if s.marks, err = conn.openMarks(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := s.loadMark(ctx); err != nil || got != c.want {
			t.Errorf("%s: the mark says complete through %d (%v), want %d", c.name, got, err, c.want)
		}
	}
}

// commitPause holds a sequencer, once armed, before its next commit, and
// its lease renewals from then on, until woken.
type commitPause struct {
	armed                 atomic.Bool
	paused, wake, renew   chan struct{}
	wokeOnce, renewedOnce sync.Once
}

func pauseAtCommit(s *Sequencer) *commitPause {
	p := &commitPause{paused: make(chan struct{}), wake: make(chan struct{}), renew: make(chan struct{})}
	s.beforeCommit = func() {
		if p.armed.CompareAndSwap(true, false) {
			close(p.paused)
			<-p.wake
		}
	}
	s.pauseRenew = func() {
		select {
		case <-p.paused:
			<-p.renew
		default:
		}
	}
	return p
}

// wakeCommit lets the paused commit go on; its renewals still wait.
func (p *commitPause) wakeCommit() { p.wokeOnce.Do(func() { close(p.wake) }) }

// wakeRenewals lets the lease renewals go on.
func (p *commitPause) wakeRenewals() { p.renewedOnce.Do(func() { close(p.renew) }) }

func (p *commitPause) release() { p.wakeCommit(); p.wakeRenewals() }

// pauseOn arms the pause and calls publish, then waits until the
// sequencer has fetched what it published and paused before committing it.
func (p *commitPause) pauseOn(t *testing.T, publish func() error) {
	t.Helper()
	p.armed.Store(true)
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.paused:
	case <-time.After(30 * time.Second):
		t.Fatal("node-1 did not fetch the next records")
	}
}

// waitLeaseGone waits up to d for s's journal lease to expire.
func waitLeaseGone(t *testing.T, conn *Conn, s *Sequencer, d time.Duration) {
	t.Helper()
	kv, err := conn.js.KeyValue(t.Context(), LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, d, "node-1's lease expiring", func() error {
		if _, err := kv.Get(t.Context(), leaseKey(s.name)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return errorf("lease still there: %v", err)
		}
		return nil
	})
}

// node1Sequencer is node-1's journal (closed at the test's end) and its
// sequencer for the tenant, with the lease TTL ttl, quarantining into q.
func node1Sequencer(t *testing.T, conn *Conn, ttl time.Duration) (*journal.Journal, *Sequencer, *memQuarantine) {
	t.Helper()
	q := &memQuarantine{}
	j, err := journal.Open(t.Context(), t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	s, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: q.keep, Holder: "node-1", LeaseTTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return j, s, q
}
