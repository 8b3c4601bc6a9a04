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
		m.Header.Set(jetstream.MsgIDHeader, MsgID(e.Source, e.RecordID))
		m.Data = journal.EncodeEntry(nil, &e)
		msgs[i] = m
	}
	for start := 0; start < len(msgs); start += maxInFlight {
		if err := c.publishAll(ctx, msgs[start:min(start+maxInFlight, len(msgs))], &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (c *Conn) publishAll(ctx context.Context, pending []*nats.Msg, res *PublishResult) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		type inflight struct {
			m *nats.Msg
			f jetstream.PubAckFuture
		}
		var fs []inflight
		var failed []*nats.Msg
		var lastErr error
		for _, m := range pending {
			f, err := c.js.PublishMsgAsync(m, jetstream.WithExpectStream(c.opts.Stream))
			if err != nil {
				failed, lastErr = append(failed, m), err
				continue
			}
			fs = append(fs, inflight{m, f})
		}
		for _, x := range fs {
			select {
			case ack := <-x.f.Ok():
				if ack.Duplicate {
					res.Duplicates++
				} else {
					res.Accepted++
				}
			case err := <-x.f.Err():
				failed, lastErr = append(failed, x.m), err
			case <-ctx.Done():
				return fmt.Errorf("cluster: publish: %w", ctx.Err())
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if isPermanent(lastErr) {
			return fmt.Errorf("cluster: publish to %s: %w", c.opts.Stream, lastErr)
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
