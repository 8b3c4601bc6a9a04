package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/journal"
)

// PublishResult counts what one Publish stored.
type PublishResult struct {
	// Accepted entries are new in the stream.
	Accepted int64
	// Duplicates were already in the stream within the duplicate window
	// (the journal catches older repeats when it appends).
	Duplicates int64
	// Retries counts publishes sent again after a failure or a missing
	// acknowledgement (leader change, lost connection).
	Retries int64
	// Batches counts atomic batches stored (alert publishes).
	Batches int64
}

// maxInFlight bounds unacknowledged publishes per Publish call, so a large
// push holds a bounded number of futures.
const maxInFlight = 512

// Publish stores a tenant's entries in the raw stream and returns once
// every one is acknowledged by the stream (a quorum of its replicas). A
// publish that fails or is not acknowledged in time is sent again with the
// same Nats-Msg-Id until ctx ends, so a leader change costs time, not
// records, and never stores one twice within the duplicate window. On
// error, some entries may be stored: the caller's retry is deduplicated.
func (c *Conn) Publish(ctx context.Context, tenant string, entries []journal.Entry) (PublishResult, error) {
	_, res, err := c.publish(ctx, tenant, entries)
	return res, err
}

// publish is Publish with one Ack per entry: Index is the entry's stream
// sequence (its journal index is assigned later, by the sequencer).
func (c *Conn) publish(ctx context.Context, tenant string, entries []journal.Entry) ([]journal.Ack, PublishResult, error) {
	var res PublishResult
	now := time.Now().UTC()
	msgs := make([]*nats.Msg, len(entries))
	for i := range entries {
		e := entries[i]
		if e.RecordID == "" {
			// The journal would store it without dedupe; give it the
			// content id, as every ingest path does.
			e.RecordID = journal.ContentID(e.Raw)
		}
		if e.Received.IsZero() {
			e.Received = now
		}
		m := nats.NewMsg(Subject(tenant, e.Source))
		m.Header.Set(jetstream.MsgIDHeader, MsgID(tenant, e.Source, e.RecordID))
		m.Data = journal.EncodeEntry(nil, &e)
		msgs[i] = m
	}
	acks := make([]journal.Ack, len(entries))
	for start := 0; start < len(msgs); start += maxInFlight {
		end := min(start+maxInFlight, len(msgs))
		if err := c.publishAll(ctx, msgs[start:end], acks[start:end], &res); err != nil {
			return nil, res, err
		}
	}
	return acks, res, nil
}

func (c *Conn) publishAll(ctx context.Context, msgs []*nats.Msg, acks []journal.Ack, res *PublishResult) error {
	return c.publishTo(ctx, c.opts.Stream, msgs, acks, res)
}

// publishTo publishes msgs to stream until each is acknowledged (see
// Publish).
func (c *Conn) publishTo(ctx context.Context, stream string, msgs []*nats.Msg, acks []journal.Ack, res *PublishResult) error {
	backoff := 50 * time.Millisecond
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; ; attempt++ {
		var failed []int
		var lastErr error
		for start := 0; start < len(pending); start += maxInFlight {
			chunk := pending[start:min(start+maxInFlight, len(pending))]
			f, ferr, err := c.publishChunk(ctx, stream, msgs, chunk, acks, res)
			if err != nil {
				return err
			}
			if len(f) > 0 {
				failed, lastErr = append(failed, f...), ferr
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if isPermanent(lastErr) {
			return fmt.Errorf("cluster: publish to %s: %w", stream, lastErr)
		}
		res.Retries += int64(len(failed))
		c.opts.Logger.Warn("cluster: publishes not acknowledged, retrying", "count", len(failed), "attempt", attempt+1, "err", lastErr)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: publish: %d not acknowledged: %w (last error: %v)", len(failed), ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		pending = failed
	}
}

// publishChunk publishes msgs[i] for i in chunk (at most maxInFlight)
// and waits for their acknowledgements, holding that many of the
// connection's slots meanwhile: the publishes of concurrent pushes queue
// for room instead of failing past the client's limit. It returns the
// ones that failed, with the last of their errors; err ends the publish.
func (c *Conn) publishChunk(ctx context.Context, stream string, msgs []*nats.Msg, chunk []int, acks []journal.Ack, res *PublishResult) (failed []int, lastErr, err error) {
	if err := c.slots.Acquire(ctx, int64(len(chunk))); err != nil {
		return nil, nil, fmt.Errorf("cluster: publish: %w", err)
	}
	defer c.slots.Release(int64(len(chunk)))
	type inflight struct {
		i int
		f jetstream.PubAckFuture
	}
	fs := make([]inflight, 0, len(chunk))
	for _, i := range chunk {
		f, err := c.js.PublishMsgAsync(msgs[i], jetstream.WithExpectStream(stream))
		if err != nil {
			failed, lastErr = append(failed, i), err
			continue
		}
		fs = append(fs, inflight{i, f})
	}
	for _, x := range fs {
		select {
		case ack := <-x.f.Ok():
			acks[x.i] = journal.Ack{Index: ack.Sequence, Duplicate: ack.Duplicate}
			if ack.Duplicate {
				res.Duplicates++
			} else {
				res.Accepted++
			}
		case err := <-x.f.Err():
			failed, lastErr = append(failed, x.i), err
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("cluster: publish: %w", ctx.Err())
		}
	}
	return failed, lastErr, nil
}

// isPermanent: errors a retry cannot fix: a message over the payload
// limit (10054, or refused by the client), storage exhausted (10047) or a
// store that refuses new messages (10077: with DiscardNew, a full stream).
func isPermanent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10054, 10047, 10077:
			return true
		}
	}
	return errors.Is(err, nats.ErrMaxPayload)
}
