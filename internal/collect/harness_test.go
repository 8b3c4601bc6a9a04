package collect_test

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/auth"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// t0 is the simulations' start.
var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

const (
	tenantID = "6f1b4a2e-0000-4000-8000-00000000c0de"
	clientID = "0b9d3c1a-0000-4000-8000-0000000a9915"
	secret   = "s3cr3t-value-never-logged"
)

// countingLog wraps the journal: it counts entries the journal
// acknowledged as duplicates (the collector must never send one) and can
// fail an append after storing only part of the batch, as a crash would.
type countingLog struct {
	journal.Log
	mu        sync.Mutex
	dupAcks   int
	failAfter func(n int) int // entries to store before failing; -1: no failure
}

var errCrash = errors.New("simulated crash")

func (l *countingLog) AppendBatch(ctx context.Context, es []journal.Entry) ([]journal.Ack, error) {
	if l.failAfter != nil {
		if k := l.failAfter(len(es)); k >= 0 {
			if k > 0 {
				if _, err := l.Log.AppendBatch(ctx, es[:k]); err != nil {
					return nil, err
				}
			}
			return nil, errCrash
		}
	}
	acks, err := l.Log.AppendBatch(ctx, es)
	l.mu.Lock()
	for _, a := range acks {
		if a.Duplicate {
			l.dupAcks++
		}
	}
	l.mu.Unlock()
	return acks, err
}

type env struct {
	t     *testing.T
	clock *fake.Clock
	srv   *fake.Server
	j     journal.Log
	log   *countingLog
	dir   string
	skew  *collect.Skew
	local collect.Clock // the collectors' clock (may be wrong)
	logs  *syncBuffer
	store collect.Store
	gkey  *rsa.PrivateKey // the Workspace service account's key
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b = append(s.b, p...)
	s.mu.Unlock()
	return len(p), nil
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return string(s.b) }

// newEnv starts a fake API server and a journal: the real one when real
// is set, else an in-memory one.
func newEnv(t *testing.T, seed uint64, real bool) *env {
	t.Helper()
	clock := fake.NewClock(t0)
	srv := fake.NewServer(clock, seed)
	t.Cleanup(srv.Close)
	srv.TenantID, srv.ClientID, srv.Secret = tenantID, clientID, secret
	dir := t.TempDir()
	var j journal.Log = &memLog{}
	var store collect.Store = &collect.MemStore{}
	if real {
		store = collect.DirStore(filepath.Join(dir, "collect", "contoso"))
		jj, err := journal.Open(t.Context(), dir, journal.Options{Now: clock.Now, CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = jj.Close() })
		j = jj
	}
	return &env{t: t, clock: clock, srv: srv, j: j, log: &countingLog{Log: j}, dir: dir, skew: &collect.Skew{}, local: clock, logs: &syncBuffer{}, store: store}
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *env) client(l *collect.Limiter, tokens collect.TokenSource) *collect.Client {
	return &collect.Client{Clock: e.local, Limiter: l, Tokens: tokens, Skew: e.skew, Logger: e.logger()}
}

func (e *env) entra() *auth.Entra {
	return &auth.Entra{LoginURL: e.srv.URL, TenantID: tenantID, ClientID: clientID, Secret: secret, Clock: e.local, Client: e.client(nil, nil)}
}

func (e *env) collector(src collect.Source, fault func(string) error, clients ...*collect.Client) *collect.Collector {
	e.t.Helper()
	c, err := collect.New(collect.Options{
		Tenant: "contoso", Source: src, Journal: e.log, State: e.store,
		Clock: e.local, Skew: e.skew, Logger: e.logger(), Clients: clients, Fault: fault,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// stored reads the journal: records by key (via keyOf) and gap records.
type stored struct {
	count map[string]int
	gaps  []gapRec
}

type gapRec struct {
	Collector string `json:"collector"`
	Reason    string `json:"reason"`
	Start     string `json:"window_start"`
	End       string `json:"window_end"`
	Detail    string `json:"detail"`
}

func (g gapRec) covers(t time.Time) bool {
	s, _ := time.Parse(time.RFC3339, g.Start)
	e, _ := time.Parse(time.RFC3339, g.End)
	return !t.Before(s) && !t.After(e)
}

// readJournal decodes every entry with the decoders hunt uses, failing
// on any record they would quarantine.
func (e *env) readJournal(keyOf func(raw []byte) string) stored {
	e.t.Helper()
	st := stored{count: map[string]int{}}
	dec := source.NewDecoder(nil, nil)
	err := e.j.Read(e.t.Context(), 0, func(i uint64, en *journal.Entry) error {
		evs, err := dec.Decode(en.Raw, event.Origin{File: "journal", Index: int(i)})
		if err != nil || len(evs) == 0 {
			e.t.Errorf("journal entry %d (%s) does not decode: %v", i, en.Source, err)
			return nil
		}
		if en.Source == collect.GapSource {
			var g gapRec
			if err := json.Unmarshal(en.Raw, &g); err != nil {
				e.t.Errorf("gap entry %d: %v", i, err)
			}
			st.gaps = append(st.gaps, g)
			return nil
		}
		st.count[keyOf(en.Raw)]++
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func field(name string) func(raw []byte) string {
	return func(raw []byte) string {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		s, _ := m[name].(string)
		return s
	}
}

// memLog is an in-memory journal.Log with the journal's dedup rule
// (Source, RecordID), for the long simulations: the real journal's
// fsyncs would make ten simulated days take minutes. The restart and
// hunt tests use the real journal.
type memLog struct {
	mu      sync.Mutex
	entries []journal.Entry
	ids     map[[2]string]uint64
}

func (m *memLog) AppendBatch(_ context.Context, es []journal.Entry) ([]journal.Ack, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[[2]string]uint64{}
	}
	acks := make([]journal.Ack, len(es))
	for i, e := range es {
		k := [2]string{e.Source, e.RecordID}
		if idx, ok := m.ids[k]; ok && e.RecordID != "" {
			acks[i] = journal.Ack{Index: idx, Duplicate: true}
			continue
		}
		e.Raw = append([]byte(nil), e.Raw...)
		m.entries = append(m.entries, e)
		m.ids[k] = uint64(len(m.entries) - 1)
		acks[i] = journal.Ack{Index: uint64(len(m.entries) - 1)}
	}
	return acks, nil
}

func (m *memLog) Size() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return uint64(len(m.entries)) }

func (m *memLog) Read(ctx context.Context, from uint64, fn func(uint64, *journal.Entry) error) error {
	m.mu.Lock()
	es := m.entries[min(int(from), len(m.entries)):]
	m.mu.Unlock()
	for i := range es {
		if err := fn(from+uint64(i), &es[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) Checkpoint(context.Context) (journal.Checkpoint, error) {
	return journal.Checkpoint{}, nil
}
func (m *memLog) Close() error { return nil }

// checkOnlySilentAfter fails on any gap but a "silent" one starting after
// quiet (when the fake stopped publishing).
func checkOnlySilentAfter(t *testing.T, gaps []gapRec, quiet time.Time) {
	t.Helper()
	for _, g := range gaps {
		start, _ := time.Parse(time.RFC3339, g.Start)
		if g.Reason != collect.GapSilent || start.Before(quiet) {
			t.Errorf("gap recorded for a source that lost nothing: %+v", g)
		}
	}
}
