// Package fake implements, in process, the APIs vigil collects from — the
// Entra and Google token endpoints, the Office 365 Management Activity API,
// Microsoft Graph audit lists and the Google Reports API — after their
// documented contracts, with fault injection (throttling, server errors,
// empty and short pages, late and duplicated records, expired content,
// clock skew), and a fake clock so tests can run days of polling at once.
// It is for tests only; it listens on 127.0.0.1.
package fake

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
)

// Clock is a clock that moves only when told or slept on: Sleep advances
// it at once.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the clock by d.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Offset is a clock that reads By off another: a local clock that is wrong.
type Offset struct {
	Clock collect.Clock
	By    time.Duration
}

// Now returns the wrong time.
func (o Offset) Now() time.Time { return o.Clock.Now().Add(o.By) }

// Sleep sleeps on the underlying clock.
func (o Offset) Sleep(ctx context.Context, d time.Duration) error { return o.Clock.Sleep(ctx, d) }
