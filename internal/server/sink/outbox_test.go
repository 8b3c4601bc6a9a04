package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeSink records deliveries and fails with the errors it is given.
type fakeSink struct {
	name string
	mu   sync.Mutex
	errs []error // returned in turn; nil once exhausted
	got  []string
}

func (f *fakeSink) Name() string { return f.name }
func (f *fakeSink) Deliver(_ context.Context, m Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return err
		}
	}
	f.got = append(f.got, m.ID)
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func msg(id string) Message {
	return Message{ID: id, Type: "incident.opened", Time: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), Severity: "high"}
}

func TestOutboxDedupAndOrder(t *testing.T) {
	dir := t.TempDir()
	s := &fakeSink{name: "a"}
	c := &clock{time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	o, err := NewOutbox(dir, []Sink{s}, OutboxOptions{Logger: quiet, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i1/opened", "i1/opened", "i2/opened"} {
		if _, err := o.Enqueue(msg(id)); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Millisecond)
	}
	if err := o.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.got) != "[i1/opened i2/opened]" {
		t.Fatalf("delivered %v", s.got)
	}
	// Delivered ids are remembered across a restart: no repeat.
	o2, _ := NewOutbox(dir, []Sink{s}, OutboxOptions{Logger: quiet, Now: c.now})
	if n, _ := o2.Enqueue(msg("i1/opened")); n != 0 {
		t.Fatalf("delivered id queued again (%d)", n)
	}
	_ = o2.Flush(t.Context())
	if len(s.got) != 2 {
		t.Fatalf("repeated delivery: %v", s.got)
	}
	// ... until the horizon has passed.
	c.t = c.t.Add(31 * 24 * time.Hour)
	os.Chtimes(filepath.Join(dir, "a", "sent", key("i1/opened")), c.t.Add(-32*24*time.Hour), c.t.Add(-32*24*time.Hour))
	_ = o2.Flush(t.Context())
	if n, _ := o2.Enqueue(msg("i1/opened")); n != 1 {
		t.Fatal("id not forgotten after the horizon: the sent set would grow forever")
	}
}

func TestOutboxRetryLadder(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("connection refused")
	s := &fakeSink{name: "a", errs: []error{boom, &RetryAfterError{After: time.Hour, Err: boom}, boom}}
	c := &clock{time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	ladder := []time.Duration{0, 10 * time.Second, time.Minute, 10 * time.Minute}
	o, _ := NewOutbox(dir, []Sink{s}, OutboxOptions{Logger: quiet, Now: c.now, Ladder: ladder})
	o.Enqueue(msg("x"))
	step := func(advance time.Duration, wantDelivered int) {
		t.Helper()
		c.t = c.t.Add(advance)
		_ = o.Flush(t.Context())
		if len(s.got) != wantDelivered {
			t.Fatalf("after +%s: delivered %d, want %d", advance, len(s.got), wantDelivered)
		}
	}
	step(0, 0)              // first try fails: next in 10 s ± 10 %
	step(5*time.Second, 0)  // not due yet: no try
	step(7*time.Second, 0)  // second try: Retry-After 1 h beats the 1 min step
	step(30*time.Minute, 0) // not due
	step(31*time.Minute, 0) // third try fails: next in 10 min
	step(11*time.Minute, 1) // fourth try succeeds
	if st := o.Status()[0]; st.Delivered != 1 || st.Failures != 3 || st.Pending != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestOutboxKeepsFailedAndDisabled(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("503")
	s := &fakeSink{name: "a", errs: []error{boom, boom}}
	c := &clock{time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	o, _ := NewOutbox(dir, []Sink{s}, OutboxOptions{Logger: quiet, Now: c.now, Ladder: []time.Duration{0, time.Second}})
	o.Enqueue(msg("x"))
	_ = o.Flush(t.Context())
	c.t = c.t.Add(2 * time.Second)
	_ = o.Flush(t.Context())
	if _, err := os.Stat(filepath.Join(dir, "a", "failed", key("x")+".json")); err != nil {
		t.Fatalf("message past the ladder not kept as failed: %v", err)
	}

	gone := &fakeSink{name: "b", errs: []error{fmt.Errorf("410: %w", ErrPermanent)}}
	o, _ = NewOutbox(t.TempDir(), []Sink{gone}, OutboxOptions{Logger: quiet, Now: c.now})
	o.Enqueue(msg("y"))
	o.Enqueue(msg("z"))
	_ = o.Flush(t.Context())
	st := o.Status()[0]
	if st.Disabled == "" || st.Pending != 2 {
		t.Fatalf("after 410: %+v, want disabled with both messages still pending", st)
	}
	_ = o.Flush(t.Context())
	if len(gone.got) != 0 {
		t.Fatal("a disabled sink was tried again")
	}
	if err := o.Enable("b"); err != nil {
		t.Fatal(err)
	}
	_ = o.Flush(t.Context())
	if len(gone.got) != 2 {
		t.Fatalf("after enabling: delivered %v", gone.got)
	}
}

func TestOutboxRunWakesOnEnqueue(t *testing.T) {
	s := &fakeSink{name: "a"}
	o, _ := NewOutbox(t.TempDir(), []Sink{s}, OutboxOptions{Logger: quiet})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	o.Enqueue(msg("live"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.got)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not deliver an enqueued message")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

var quiet = slog.New(slog.DiscardHandler)

// TestOutboxWaitsForReady: while Ready fails (a cluster's journal node
// that does not hold the journal lease) nothing is delivered and no
// attempt is counted; once it succeeds the messages go out in order.
func TestOutboxWaitsForReady(t *testing.T) {
	s := &fakeSink{name: "a"}
	c := &clock{time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	var notReady error = errors.New("no lease")
	o, err := NewOutbox(t.TempDir(), []Sink{s}, OutboxOptions{Logger: quiet, Now: c.now,
		Ready: func(context.Context) error { return notReady }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i1/opened", "i2/opened"} {
		if _, err := o.Enqueue(msg(id)); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Millisecond)
	}
	next, err := o.deliverDue(t.Context(), s)
	if err != nil || len(s.got) != 0 {
		t.Fatalf("delivered %v (%v) while not ready", s.got, err)
	}
	if want := c.t.Add(ReadyRetry); !next.Equal(want) {
		t.Fatalf("next try at %v, want %v", next, want)
	}
	if st := o.Status()[0]; st.Pending != 2 || st.Failures != 0 {
		t.Fatalf("status %+v, want 2 pending and no failure", st)
	}
	notReady = nil
	if err := o.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.got) != "[i1/opened i2/opened]" {
		t.Fatalf("delivered %v once ready", s.got)
	}
}
