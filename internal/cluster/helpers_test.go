package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// testLogger shows warnings and errors in the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = tlogWriter{}

// simEntries simulates a small tenant with a forged-token intrusion and
// decodes it into journal entries, as push ingest would.
func simEntries(t testing.TB, users, days int) []journal.Entry {
	t.Helper()
	es, _ := simTenant(t, users, days)
	return es
}

// simTenant is simEntries, with the directory of the simulation's files
// (its networks table among them).
func simTenant(t testing.TB, users, days int) ([]journal.Entry, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := simulate.Run(t.Context(), simulate.Config{Users: users, Days: days, Seed: 7,
		Campaigns: []string{simulate.CampaignForgedToken}}, dir); err != nil {
		t.Fatal(err)
	}
	var out []journal.Entry
	var prev *event.Event
	_, err := source.ReadPaths(t.Context(), []string{dir}, source.Options{Workers: 1}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		en := source.Entry(e)
		en.Raw = append([]byte(nil), en.Raw...)
		out = append(out, en)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, dir
}

// connect connects to the cluster through urls (default: every node; the
// client learns the others from the first it reaches).
func connect(t *testing.T, c *natstest.Cluster, name string, urls ...string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if len(urls) == 0 {
		urls = strings.Split(c.URLs(), ",")
	}
	conn, err := Connect(ctx, Options{URLs: urls, Name: name, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// memQuarantine keeps rejected messages for assertions.
type memQuarantine struct {
	mu  sync.Mutex
	got []Rejected
}

func (q *memQuarantine) keep(r Rejected) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.got = append(q.got, r)
	return nil
}

func (q *memQuarantine) list() []Rejected {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Rejected(nil), q.got...)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runSequencer runs s until the test ends or stop is called; stop returns
// Run's error.
func runSequencer(t *testing.T, s *Sequencer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := s.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.Errorf("sequencer stopped on its own: %v", err)
		}
		done <- err
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// journalKeys counts each (source, record id) in the journal at dir.
func journalKeys(t *testing.T, dir string) (map[string]int, uint64) {
	t.Helper()
	keys := map[string]int{}
	var n uint64
	err := journal.Replay(t.Context(), dir, 0, func(_ uint64, e *journal.Entry) error {
		keys[e.Source+"\x00"+e.RecordID]++
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, n
}

func keyOf(e journal.Entry) string { return e.Source + "\x00" + e.RecordID }

// checkExactlyOnce: every acknowledged entry is in the journal once, and
// nothing else is.
func checkExactlyOnce(t *testing.T, dir string, acked []journal.Entry) {
	t.Helper()
	want := map[string]bool{}
	for _, e := range acked {
		want[keyOf(e)] = true
	}
	got, n := journalKeys(t, dir)
	if n != uint64(len(want)) {
		t.Errorf("journal holds %d entries, want %d (the distinct acknowledged records)", n, len(want))
	}
	var missing, repeated int
	for k := range want {
		switch got[k] {
		case 0:
			missing++
		case 1:
		default:
			repeated++
		}
	}
	if missing > 0 || repeated > 0 {
		t.Errorf("acknowledged records: %d missing from the journal, %d stored more than once", missing, repeated)
	}
	res, err := journal.Verify(t.Context(), dir, journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("journal does not verify: %v", err)
	}
	if res.Entries != n {
		t.Fatalf("verified %d entries, replayed %d", res.Entries, n)
	}
}

func streamLastSeq(ctx context.Context, c *Conn) (uint64, error) {
	info, err := c.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

func splitURLs(s string) []string { return strings.Split(s, ",") }
