package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Ladder is the Standard Webhooks retry schedule: the wait before each
// try. After the last step a message is kept as failed.
var Ladder = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// Outbox persists messages per sink and delivers them in the background.
//
// On disk, per sink: DIR/<sink>/pending/<key>.json (message + attempts +
// next try), DIR/<sink>/sent/<key> (empty marker: the id was delivered;
// markers older than the dedup horizon are pruned), DIR/<sink>/failed/
// (messages past the ladder), DIR/<sink>/disabled (why the sink stopped).
type Outbox struct {
	dir     string
	sinks   []Sink
	ladder  []time.Duration
	horizon time.Duration
	now     func() time.Time
	log     *slog.Logger
	ready   func(context.Context) error

	mu    sync.Mutex
	wake  map[string]chan struct{}
	stats map[string]*Status
	// held names the sinks whose deliveries wait for ready.
	held map[string]bool
}

// Status is one sink's delivery state.
type Status struct {
	Sink      string    `json:"sink"`
	Pending   int       `json:"pending"`
	Delivered int64     `json:"delivered"`
	Failures  int64     `json:"failures"`
	Failed    int       `json:"failed"`
	Disabled  string    `json:"disabled,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	LastSent  time.Time `json:"last_sent,omitzero"`
}

// OutboxOptions tunes an Outbox; zero values take the defaults.
type OutboxOptions struct {
	Ladder  []time.Duration  // default Ladder
	Horizon time.Duration    // how long delivered ids are remembered; default 30 days
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger
	// Ready, when set, is asked before every delivery: while it fails,
	// messages stay pending (no attempt counted) and are tried again
	// after ReadyRetry. A cluster's journal node delivers only while it
	// holds the journal lease.
	Ready func(context.Context) error
}

// ReadyRetry is how long deliveries wait after OutboxOptions.Ready failed.
const ReadyRetry = time.Second

type queued struct {
	Message  Message   `json:"message"`
	Attempts int       `json:"attempts"`
	Next     time.Time `json:"next"`
	LastErr  string    `json:"last_error,omitempty"`
}

// NewOutbox opens (creating) the outbox directory for sinks.
func NewOutbox(dir string, sinks []Sink, opt OutboxOptions) (*Outbox, error) {
	o := &Outbox{dir: dir, sinks: sinks, ladder: opt.Ladder, horizon: opt.Horizon, now: opt.Now, log: opt.Logger, ready: opt.Ready,
		wake: map[string]chan struct{}{}, stats: map[string]*Status{}, held: map[string]bool{}}
	if len(o.ladder) == 0 {
		o.ladder = Ladder
	}
	if o.horizon <= 0 {
		o.horizon = 30 * 24 * time.Hour
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	seen := map[string]bool{}
	for _, s := range sinks {
		n := s.Name()
		if n == "" || strings.ContainsAny(n, `/\`) || n == "." || n == ".." || seen[n] {
			return nil, fmt.Errorf("outbox: sink name %q is empty, repeated or not a plain name", n)
		}
		seen[n] = true
		for _, sub := range []string{"pending", "sent", "failed"} {
			if err := os.MkdirAll(filepath.Join(dir, n, sub), 0o700); err != nil {
				return nil, fmt.Errorf("outbox: %w", err)
			}
		}
		o.wake[n] = make(chan struct{}, 1)
		st := &Status{Sink: n}
		if b, err := os.ReadFile(filepath.Join(dir, n, "disabled")); err == nil {
			st.Disabled = strings.TrimSpace(string(b))
		}
		o.stats[n] = st
	}
	return o, nil
}

func key(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}

// Enqueue stores m for every sink, durably, unless its id is already
// queued or was delivered. It returns how many sinks queued it.
func (o *Outbox) Enqueue(m Message) (int, error) {
	if m.ID == "" {
		return 0, errors.New("outbox: message without id")
	}
	k := key(m.ID)
	n := 0
	for _, s := range o.sinks {
		base := filepath.Join(o.dir, s.Name())
		if exists(filepath.Join(base, "pending", k+".json")) || exists(filepath.Join(base, "sent", k)) ||
			exists(filepath.Join(base, "failed", k+".json")) {
			continue
		}
		q := queued{Message: m, Next: o.now()}
		if err := writeJSON(filepath.Join(base, "pending", k+".json"), q); err != nil {
			return n, fmt.Errorf("outbox %s: %w", s.Name(), err)
		}
		n++
		select {
		case o.wake[s.Name()] <- struct{}{}:
		default:
		}
	}
	return n, nil
}

// Run delivers in the background until ctx ends, one goroutine per sink.
func (o *Outbox) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range o.sinks {
		wg.Go(func() { o.loop(ctx, s) })
	}
	wg.Wait()
}

func (o *Outbox) loop(ctx context.Context, s Sink) {
	for {
		next, _ := o.deliverDue(ctx, s)
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(max(next.Sub(o.now()), 0))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-o.wake[s.Name()]:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Flush tries every message that is due now, once, for every sink (used at
// shutdown and by tests). It returns the first delivery error.
func (o *Outbox) Flush(ctx context.Context) error {
	var first error
	for _, s := range o.sinks {
		if _, err := o.deliverDue(ctx, s); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// deliverDue tries the due messages of s in time order and returns when
// the next one is due (zero: none pending).
func (o *Outbox) deliverDue(ctx context.Context, s Sink) (time.Time, error) {
	base := filepath.Join(o.dir, s.Name())
	o.mu.Lock()
	disabled := o.stats[s.Name()].Disabled
	o.mu.Unlock()
	o.prune(base)
	names, _ := filepath.Glob(filepath.Join(base, "pending", "*.json"))
	var items []struct {
		path string
		q    queued
	}
	for _, p := range names {
		var q queued
		b, err := os.ReadFile(p)
		if err != nil || json.Unmarshal(b, &q) != nil {
			// A damaged entry is moved aside, not retried forever nor deleted.
			_ = os.Rename(p, filepath.Join(base, "failed", filepath.Base(p)))
			continue
		}
		items = append(items, struct {
			path string
			q    queued
		}{p, q})
	}
	o.setPending(s.Name(), len(items))
	if disabled != "" {
		return time.Time{}, nil
	}
	sort.Slice(items, func(i, j int) bool { return items[i].q.Next.Before(items[j].q.Next) })
	var firstErr error
	for i, it := range items {
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		now := o.now()
		if it.q.Next.After(now) {
			return it.q.Next, firstErr
		}
		if !o.isReady(ctx, s.Name(), len(items)-i) {
			return now.Add(ReadyRetry), firstErr
		}
		err := s.Deliver(ctx, it.q.Message)
		if err == nil {
			_ = os.WriteFile(filepath.Join(base, "sent", strings.TrimSuffix(filepath.Base(it.path), ".json")), nil, 0o600)
			_ = os.Remove(it.path)
			o.mu.Lock()
			st := o.stats[s.Name()]
			st.Delivered++
			st.LastSent = now
			st.Pending = len(items) - i - 1
			o.mu.Unlock()
			continue
		}
		if firstErr == nil {
			firstErr = err
		}
		o.mu.Lock()
		st := o.stats[s.Name()]
		st.Failures++
		st.LastError = err.Error()
		o.mu.Unlock()
		o.log.Warn("sink delivery failed", "sink", s.Name(), "id", it.q.Message.ID, "attempt", it.q.Attempts+1, "err", err)
		if errors.Is(err, ErrPermanent) {
			reason := err.Error()
			_ = os.WriteFile(filepath.Join(base, "disabled"), []byte(reason+"\n"), 0o600)
			o.mu.Lock()
			st.Disabled = reason
			o.mu.Unlock()
			return time.Time{}, err
		}
		it.q.Attempts++
		it.q.LastErr = err.Error()
		if it.q.Attempts >= len(o.ladder) {
			_ = writeJSON(filepath.Join(base, "failed", filepath.Base(it.path)), it.q)
			_ = os.Remove(it.path)
			o.mu.Lock()
			st.Failed++
			o.mu.Unlock()
			continue
		}
		wait := jitter(o.ladder[it.q.Attempts])
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > wait {
			wait = ra.After
		}
		it.q.Next = now.Add(wait)
		_ = writeJSON(it.path, it.q)
		// Keep order: later messages wait behind a failing receiver.
		return it.q.Next, firstErr
	}
	return time.Time{}, firstErr
}

// isReady asks OutboxOptions.Ready before a delivery to sink, logging
// when deliveries start and stop waiting for it.
func (o *Outbox) isReady(ctx context.Context, sink string, pending int) bool {
	if o.ready == nil {
		return true
	}
	err := o.ready(ctx)
	o.mu.Lock()
	was := o.held[sink]
	o.held[sink] = err != nil
	o.mu.Unlock()
	switch {
	case err != nil && !was:
		o.log.Warn("sink deliveries wait: this node may not deliver now", "sink", sink, "pending", pending, "err", err)
	case err == nil && was:
		o.log.Info("sink deliveries resume", "sink", sink, "pending", pending)
	}
	return err == nil
}

// prune forgets delivered ids older than the horizon, so the dedup set is
// bounded by the horizon, not by how long vigil runs.
func (o *Outbox) prune(base string) {
	ents, err := os.ReadDir(filepath.Join(base, "sent"))
	if err != nil {
		return
	}
	cut := o.now().Add(-o.horizon)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.ModTime().Before(cut) {
			_ = os.Remove(filepath.Join(base, "sent", e.Name()))
		}
	}
}

func (o *Outbox) setPending(name string, n int) {
	o.mu.Lock()
	o.stats[name].Pending = n
	o.mu.Unlock()
}

// Enable clears a sink's disabled state (after the receiver was fixed).
func (o *Outbox) Enable(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.stats[name]
	if !ok {
		return fmt.Errorf("outbox: no sink %q", name)
	}
	st.Disabled = ""
	if err := os.Remove(filepath.Join(o.dir, name, "disabled")); err != nil && !os.IsNotExist(err) {
		return err
	}
	select {
	case o.wake[name] <- struct{}{}:
	default:
	}
	return nil
}

// Status returns every sink's state, by name.
func (o *Outbox) Status() []Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Status
	for _, st := range o.stats {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Sink, b.Sink) })
	return out
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	// ±10 %, so many vigils do not retry one receiver in lock step.
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writeJSON writes atomically: temp file, fsync, rename, fsync dir.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
