package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

// Log stands in for the local journal in ingest paths (push ingest,
// collectors, gateway): appends go to the replicated stream and are
// acknowledged with its quorum; reads, size and checkpoints are the local
// journal's, which this node's Sequencer fills from the stream. So the
// code that appends and the code that detects need not know about the
// cluster.
type Log struct {
	c       *Conn
	tenant  string
	local   journal.Log
	timeout time.Duration
}

var _ journal.Log = (*Log)(nil)

// DefaultPublishTimeout bounds one AppendBatch through a Log: collectors
// append with a context that is never cancelled, and a cluster that
// stays unreachable must surface as an error, not a hang.
const DefaultPublishTimeout = 2 * time.Minute

// Log returns a journal.Log that publishes tenant's entries and reads the
// local journal.
func (c *Conn) Log(tenant string, local journal.Log) *Log {
	return &Log{c: c, tenant: tenant, local: local, timeout: DefaultPublishTimeout}
}

// AppendBatch publishes entries and returns once the stream acknowledged
// all of them. An Ack's Index is the stream sequence, not a journal
// index: the sequencer assigns that when it appends. Duplicate is set for
// repeats within the stream's duplicate window; older repeats are
// absorbed by the journal's dedupe when the sequencer appends.
func (l *Log) AppendBatch(ctx context.Context, entries []journal.Entry) ([]journal.Ack, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	acks, _, err := l.c.publish(ctx, l.tenant, entries)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", l.tenant, err)
	}
	return acks, nil
}

// Size is the local journal's: what the sequencer has appended so far.
func (l *Log) Size() uint64 { return l.local.Size() }

// Read reads the local journal.
func (l *Log) Read(ctx context.Context, from uint64, fn func(index uint64, e *journal.Entry) error) error {
	return l.local.Read(ctx, from, fn)
}

// Checkpoint signs the local journal.
func (l *Log) Checkpoint(ctx context.Context) (journal.Checkpoint, error) {
	return l.local.Checkpoint(ctx)
}

// Close closes the local journal; the connection is the caller's.
func (l *Log) Close() error { return l.local.Close() }
