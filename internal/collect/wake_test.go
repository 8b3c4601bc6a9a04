package collect_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
)

// countingSource finds nothing and counts the polls (Prepare runs once
// before each).
type countingSource struct{ polls atomic.Int64 }

func (s *countingSource) Name() string { return "audit.exchange" }
func (s *countingSource) Policy() collect.Policy {
	return collect.Policy{MaxWindow: time.Hour, MaxAge: 24 * time.Hour, Poll: time.Hour}
}
func (s *countingSource) Prepare(context.Context, collect.Sink) error { s.polls.Add(1); return nil }
func (s *countingSource) Fetch(context.Context, collect.Window, collect.Sink) error {
	return nil
}
func (s *countingSource) Key([]byte) (string, error) { return "", nil }

// A Wake starts a poll long before the poll interval ends; the collector
// keeps polling on its schedule either way (the interval here is an hour).
func TestWakeStartsAPoll(t *testing.T) {
	src := &countingSource{}
	c, err := collect.New(collect.Options{Tenant: "contoso", Source: src, Journal: &memLog{}, State: &collect.MemStore{},
		Skew: &collect.Skew{}, Since: time.Hour, MinWake: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for src.polls.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d polls, want %d", src.polls.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	for i := int64(2); i <= 3; i++ {
		c.Wake()
		waitFor(i)
	}
	if st := c.Status(); st.Wakeups != 2 {
		t.Errorf("status counts %d wake-ups, want 2", st.Wakeups)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
