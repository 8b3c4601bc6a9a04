package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
)

const tenant = "acme.example"

// TestLeaderKillMidPublish is the ingest test: a simulated tenant
// is pushed while the stream leader is killed and the journal writer
// (sequencer) is stopped and replaced mid-stream; every acknowledged
// record ends up in the tenant's journal exactly once and the journal
// verifies.
func TestLeaderKillMidPublish(t *testing.T) {
	entries := simEntries(t, 10, 2)
	t.Logf("%d records", len(entries))
	c := natstest.Start(t, 3)
	connect(t, c, "admin") // creates the stream
	// Ingest and sequencer both connect through the stream leader, so
	// killing it also cuts their connections mid-request.
	leader := c.WaitStreamLeader(DefaultStream, 10*time.Second)
	ingest := connect(t, c, "ingest", c.URL(leader))
	seqConn := connect(t, c, "sequencer", c.URL(leader))

	dir := t.TempDir()
	j, err := journal.Open(t.Context(), dir, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	q := &memQuarantine{}
	seq, err := seqConn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: q.keep, Batch: 64, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, seq)
	waitFor(t, 20*time.Second, "sequencer consuming", func() error {
		if seq.Stats().Resets == 0 {
			return errorf("no consumer yet")
		}
		return nil
	})

	// Publish in pushes of 50 records from another goroutine; the stream
	// leader is killed while the pushes after the first third are in
	// flight.
	var ackedN atomic.Int64
	third := make(chan struct{})
	pubDone := make(chan error, 1)
	var res PublishResult
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		for i := 0; i < len(entries); i += 50 {
			if i >= len(entries)/3 && third != nil {
				close(third)
				third = nil
			}
			r, err := ingest.Publish(ctx, tenant, entries[i:min(i+50, len(entries))])
			res.Accepted += r.Accepted
			res.Duplicates += r.Duplicates
			res.Retries += r.Retries
			if err != nil {
				pubDone <- err
				return
			}
			ackedN.Store(int64(min(i+50, len(entries))))
		}
		pubDone <- nil
	}()
	<-third
	if now := c.StreamLeader(DefaultStream); now != leader {
		t.Fatalf("stream leader moved from %s to %s before the kill", leader, now)
	}
	c.Kill(leader)
	t.Logf("killed stream leader %s after %d acknowledged records, %d journaled", leader, ackedN.Load(), seq.Stats().Position)
	// The journal writer dies mid-stream too; its successor (the same
	// node restarted) takes over while records still arrive.
	if err := stop(); err != nil {
		t.Fatalf("sequencer: %v", err)
	}
	first := seq.Stats()
	t.Logf("first sequencer stopped: %+v", first)
	seq, err = seqConn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: q.keep, Batch: 64, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop = runSequencer(t, seq)
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("publish: %+v", res)
	c.Restart(leader)

	// Stream requests fail while the restarted node rejoins; ask again.
	var last uint64
	waitFor(t, 20*time.Second, "stream info", func() (err error) {
		last, err = streamLastSeq(t.Context(), ingest)
		return err
	})
	waitFor(t, 40*time.Second, "sequencer caught up with the stream", func() error {
		if st := seq.Stats(); st.Position < last {
			return errorf("position %d of %d (%+v)", st.Position, last, st)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("sequencer: %v", err)
	}
	t.Logf("second sequencer: %+v", seq.Stats())
	if first.Appended+seq.Stats().Appended != uint64(len(entries)) {
		t.Fatalf("the two sequencers appended %d + %d, want %d", first.Appended, seq.Stats().Appended, len(entries))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if len(q.list()) != 0 {
		t.Fatalf("quarantined %+v", q.list())
	}
	if seq.Stats().Gap != 0 {
		t.Fatalf("sequencer reports a gap at %d", seq.Stats().Gap)
	}
	checkExactlyOnce(t, dir, entries)
}

// crashAfterCommit commits the n-th batch to the journal, then reports a
// failure, as a process dying between the journal commit and the acks.
type crashAfterCommit struct {
	journal.Log
	n, calls int
}

func (c *crashAfterCommit) AppendBatch(ctx context.Context, es []journal.Entry) ([]journal.Ack, error) {
	acks, err := c.Log.AppendBatch(ctx, es)
	c.calls++
	if err == nil && c.calls == c.n {
		return nil, errorf("simulated crash after the commit of batch %d", c.n)
	}
	return acks, err
}

// TestSequencerResumesWithoutDuplicates: a sequencer that dies after a
// journal commit and before its acks, and whose durable consumer is then
// lost as well, resumes from the position the journal recorded: nothing
// is appended twice and nothing is missed.
func TestSequencerResumesWithoutDuplicates(t *testing.T) {
	entries := simEntries(t, 10, 1)
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	if _, err := conn.Publish(ctx, tenant, entries); err != nil {
		t.Fatal(err)
	}
	// Another tenant's records interleave in the same stream.
	if _, err := conn.Publish(ctx, "other", entries[:100]); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	j, err := journal.Open(ctx, dir, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	q := &memQuarantine{}
	crashing := &crashAfterCommit{Log: j, n: 3}
	s1, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: crashing, Quarantine: q.keep, Batch: 40, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Run(ctx); err == nil {
		t.Fatal("sequencer did not report the journal failure")
	}
	if got := j.Size(); got != 120 {
		t.Fatalf("journal holds %d entries after the crash, want the 3 batches of 40 committed", got)
	}
	if st := s1.Stats(); st.Position != 80 {
		t.Fatalf("position %d after the crash, want 80: the third batch was never acknowledged", st.Position)
	}
	if err := conn.js.DeleteConsumer(ctx, conn.opts.Stream, s1.name); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = journal.Open(ctx, dir, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: q.keep, Batch: 40, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, s2)
	waitFor(t, 30*time.Second, "sequencer caught up", func() error {
		if st := s2.Stats(); j.Size() < uint64(len(entries)) {
			return errorf("journal %d of %d (%+v)", j.Size(), len(entries), st)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Duplicates != 0 || st.Appended != uint64(len(entries)-120) {
		t.Fatalf("resumed sequencer %+v: want %d appended, none repeated (it starts after the recorded position)", st, len(entries)-120)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dir, entries)
}

// TestSequencerQuarantinesMalformed: a message that is not a journal
// entry, or whose source disagrees with its subject, is kept aside with
// its stream sequence and the records after it are still journaled.
func TestSequencerQuarantinesMalformed(t *testing.T) {
	entries := simEntries(t, 10, 1)[:30]
	c := natstest.Start(t, 3)
	conn := connect(t, c, "node")
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	if _, err := conn.Publish(ctx, tenant, entries[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.js.Publish(ctx, Subject(tenant, "m365.ual"), []byte(`{"not":"an entry"}`)); err != nil {
		t.Fatal(err)
	}
	wrong := entries[10]
	wrong.Source = "forged.source"
	if _, err := conn.js.Publish(ctx, Subject(tenant, "m365.ual"), journal.EncodeEntry(nil, &wrong)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Publish(ctx, tenant, entries[10:]); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	j, err := journal.Open(ctx, dir, journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	q := &memQuarantine{}
	s, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: q.keep, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, s)
	waitFor(t, 30*time.Second, "sequencer caught up", func() error {
		if st := s.Stats(); st.Position < 32 {
			return errorf("%+v", st)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := q.list()
	if len(got) != 2 || got[0].Seq != 11 || got[1].Seq != 12 || got[0].Subject != Subject(tenant, "m365.ual") {
		t.Fatalf("quarantined %+v, want stream sequences 11 and 12", got)
	}
	if s.Stats().Quarantined != 2 {
		t.Fatalf("stats %+v", s.Stats())
	}
	j.Close()
	checkExactlyOnce(t, dir, entries)
}
