package collect

import (
	"context"
	"sync"
	"time"
)

// Limiter is a token bucket shared by every collector of one tenant × API.
// A bucket of Burst tokens refilled one per Every allows at most
// Burst + T/Every requests in any span T: Graph's "five requests per ten
// seconds" is therefore Every 2.5 s with Burst 1.
type Limiter struct {
	clock  Clock
	every  time.Duration
	burst  float64
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewLimiter returns a full bucket.
func NewLimiter(clock Clock, every time.Duration, burst int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{clock: clock, every: every, burst: float64(burst), tokens: float64(burst)}
}

// Wait takes one token, sleeping until one is available. It returns how
// long it waited.
func (l *Limiter) Wait(ctx context.Context) (time.Duration, error) {
	if l == nil || l.every <= 0 {
		return 0, ctx.Err()
	}
	var waited time.Duration
	for {
		l.mu.Lock()
		now := l.clock.Now()
		if !l.last.IsZero() && now.After(l.last) {
			l.tokens = min(l.burst, l.tokens+float64(now.Sub(l.last))/float64(l.every))
		}
		if l.last.IsZero() || now.After(l.last) {
			l.last = now
		}
		if l.tokens >= 1 {
			l.tokens--
			l.mu.Unlock()
			return waited, nil
		}
		need := time.Duration((1 - l.tokens) * float64(l.every))
		l.mu.Unlock()
		if need < time.Millisecond {
			need = time.Millisecond
		}
		if err := l.clock.Sleep(ctx, need); err != nil {
			return waited, err
		}
		waited += need
	}
}
