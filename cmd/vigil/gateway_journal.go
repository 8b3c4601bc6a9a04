package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/journal"
)

// journalSink is the io.Writer token.AuditLog writes to when the gateway
// keeps its audit events in a journal. Each Write is one event (one JSON
// line). Events are appended in the background, in batches, so a request
// never waits for an fsync; Close appends what is queued and closes the
// journal. A full queue blocks writers rather than dropping events.
type journalSink struct {
	j      *journal.Journal
	ch     chan []byte
	done   chan struct{}
	mu     sync.RWMutex // guards closed against concurrent Writes
	closed bool
	errs   atomic.Int64
	log    *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

const journalSinkQueue = 4096

func newJournalSink(ctx context.Context, dir string, logger *slog.Logger) (*journalSink, error) {
	j, err := journal.Open(ctx, dir, journal.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--journal: %w", err)
	}
	s := &journalSink{j: j, ch: make(chan []byte, journalSinkQueue), done: make(chan struct{}), log: logger}
	go s.run()
	return s, nil
}

func (s *journalSink) Write(p []byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errors.New("journal sink closed")
	}
	s.ch <- bytes.Clone(bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func (s *journalSink) run() {
	defer close(s.done)
	batch := make([]journal.Entry, 0, 256)
	for line := range s.ch {
		batch = append(batch[:0], auditEntry(line))
	drain:
		for len(batch) < cap(batch) {
			select {
			case l, ok := <-s.ch:
				if !ok {
					break drain
				}
				batch = append(batch, auditEntry(l))
			default:
				break drain
			}
		}
		if _, err := s.j.AppendBatch(context.Background(), batch); err != nil {
			s.errs.Add(int64(len(batch)))
			s.log.Error("gateway: appending audit events to the journal failed", "events", len(batch), "err", err)
		}
	}
}

// auditEntry makes a journal entry of one token audit event; its id makes
// re-delivered events duplicates.
func auditEntry(line []byte) journal.Entry {
	return journal.Entry{Source: "vigil.token", Origin: "vigil gateway", RecordID: fastjson.GetString(line, "id"), Raw: line}
}

// Close appends the queued events and closes the journal (which signs a
// final checkpoint). It returns how many events could not be appended.
// Later calls return the same.
func (s *journalSink) Close() (int64, error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.ch)
		s.mu.Unlock()
		<-s.done
		s.closeErr = s.j.Close()
	})
	return s.errs.Load(), s.closeErr
}
