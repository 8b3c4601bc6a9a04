package collect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type stepClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *stepClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	return nil
}

// TestClientHonoursRetryAfter: a 429 with Retry-After: 7 and a 403 AF429
// with an HTTP-date Retry-After are waited out exactly; throttling without
// Retry-After backs off with jitter, never longer than 5 minutes.
func TestClientHonoursRetryAfter(t *testing.T) {
	clock := &stepClock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	replies := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { w.Header().Set("Retry-After", "7"); w.WriteHeader(429) },
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", clock.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"error":{"code":"AF429","message":"Too many requests"}}`))
		},
		func(w http.ResponseWriter) { w.WriteHeader(503) },
		func(w http.ResponseWriter) { _, _ = w.Write([]byte(`[]`)) },
	}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { replies[n](w); n++ }))
	defer srv.Close()
	classify := func(status int, body []byte) (Verdict, string) {
		if status == 403 && strings.Contains(string(body), "AF429") {
			return Throttled, "AF429"
		}
		return DefaultClassify(status, body)
	}
	c := &Client{Clock: clock, Classify: classify}
	resp, err := c.Do(t.Context(), "GET", srv.URL, nil, nil)
	if err != nil || string(resp.Body) != "[]" {
		t.Fatalf("Do: %v", err)
	}
	if len(clock.slept) != 3 || clock.slept[0] != 7*time.Second || clock.slept[1] != 90*time.Second {
		t.Errorf("slept %v; want 7s, 90s, then a back-off", clock.slept)
	}
	if b := clock.slept[2]; b < 500*time.Millisecond || b > 5*time.Minute {
		t.Errorf("back-off %s out of [0.5s, 5m]", b)
	}
	if c.Counters.Throttled.Load() != 2 || c.Counters.Retries.Load() != 3 {
		t.Errorf("counters: throttled %d retries %d", c.Counters.Throttled.Load(), c.Counters.Retries.Load())
	}
}

// TestClientGivesUp: a server that always fails costs MaxAttempts
// requests and a bounded wait, then an error; a 400 is not retried.
func TestClientGivesUp(t *testing.T) {
	clock := &stepClock{now: time.Unix(0, 0)}
	var hits int
	status := 500
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits++; w.WriteHeader(status) }))
	defer srv.Close()
	c := &Client{Clock: clock, MaxAttempts: 6}
	if _, err := c.Do(t.Context(), "GET", srv.URL, nil, nil); err == nil || !strings.Contains(err.Error(), "gave up after 6 attempts") {
		t.Errorf("err = %v", err)
	}
	if hits != 6 {
		t.Errorf("%d requests; want 6", hits)
	}
	var total time.Duration
	for _, d := range clock.slept {
		if d > 5*time.Minute {
			t.Errorf("one back-off of %s", d)
		}
		total += d
	}
	if total == 0 {
		t.Error("retried without waiting")
	}
	hits, status = 0, 400
	if _, err := c.Do(t.Context(), "GET", srv.URL, nil, nil); err == nil || hits != 1 {
		t.Errorf("400: err %v after %d requests; want one request", err, hits)
	}
}

// TestLimiter: a bucket of 1 refilled every 2.5 s never allows more than
// five requests in any ten seconds.
func TestLimiter(t *testing.T) {
	clock := &stepClock{now: time.Unix(0, 0)}
	l := NewLimiter(clock, 2500*time.Millisecond, 1)
	var at []time.Time
	for range 40 {
		if _, err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		at = append(at, clock.Now())
	}
	for i := range at {
		n := 0
		for _, b := range at[i:] {
			if b.Sub(at[i]) < 10*time.Second {
				n++
			}
		}
		if n > 5 {
			t.Fatalf("%d requests in the 10 s from %s", n, at[i])
		}
	}
}

// TestStateRoundTrip: the header survives a save and load, ids are
// appended per day and come back, days past the horizon are dropped, a
// torn last id is ignored, and a flipped bit in the header is caught.
func TestStateRoundTrip(t *testing.T) {
	store := &MemStore{}
	day := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s := &state{Watermark: day, JournalSize: 42, Extra: map[string]string{"checked": "x"}}
	s.seen.add(keyOf("old"), day.Unix())
	if err := saveState(store, "src", s, day.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	later := day.Add(9 * 24 * time.Hour)
	s.seen.add(keyOf("a"), later.Unix())
	s.seen.add(keyOf("b"), later.Unix())
	cut := later.Add(-8 * 24 * time.Hour)
	if err := saveState(store, "src", s, cut); err != nil {
		t.Fatal(err)
	}
	if days, _ := store.List("src.seen."); len(days) != 1 {
		t.Errorf("day files %v; the one past the horizon should be gone", days)
	}
	store.m["src.seen.20261110"] = append(store.m["src.seen.20261110"], 1, 2, 3) // a torn append
	got, err := loadState(store, "src", cut)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Watermark.Equal(day) || got.JournalSize != 42 || got.Extra["checked"] != "x" || len(got.seen.m) != 2 || !got.seen.has(keyOf("b")) || got.seen.has(keyOf("old")) {
		t.Fatalf("round trip: %+v", got)
	}
	b, _ := store.Load("src")
	b[len(b)/2] ^= 1
	if _, err := decodeState(b); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a flipped bit: %v; want a checksum error", err)
	}
}

func FuzzDecodeState(f *testing.F) {
	s := &state{Watermark: time.Unix(1700000000, 0)}
	b, _ := s.encode()
	f.Add(b)
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := decodeState(b); err == nil && st == nil {
			t.Error("nil state without an error")
		}
	})
}
