package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/journal"
)

// Fencing. A lease alone cannot keep a paused worker (a GC pause, a
// partition) from writing after its lease expired and another worker took
// the tenant: it may wake up believing it still holds it. So every write
// a worker makes for a tenant is conditional on the tenant's holder record,
// the last message on alerts.<tenant>.holder in the alert stream: a new
// holder first publishes its own record there, and every alert, incident
// update and snapshot commit of a worker expects the record it published
// last to still be the subject's last message
// (Nats-Expected-Last-Subject-Sequence). Once another worker published
// its record, the stream refuses the stale worker's writes, and it stops
// the tenant.

// ErrFenced: another worker took the tenant over; the stream refused this
// worker's write, and it stopped detecting the tenant.
var ErrFenced = errors.New("cluster: another worker took the tenant over; this worker's writes are refused")

// holderSubject is the subject of a tenant's holder records.
func holderSubject(tenant string) string { return "alerts." + token(tenant) + ".holder" }

// holderRecord is a message on holderSubject: who holds the tenant (this
// holding of it) and which snapshot a taking-over worker restores.
type holderRecord struct {
	Tenant  string `json:"tenant"`
	Holder  string `json:"holder"`
	Holding string `json:"holding"`
	// Snapshot is the object in SnapshotBucket holding the state at
	// stream sequence Seq; "" before the first snapshot.
	Snapshot string    `json:"snapshot,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	At       time.Time `json:"at"`
}

// Error codes of the alert stream's refusals of a conditional publish.
const (
	// codeWrongLastSeq: the subject's last message is another one: the
	// fence moved.
	codeWrongLastSeq = 10071
	// codeWrongLastSeqBusy: another conditional write on the subject is
	// in flight (a clustered stream checks one at a time): try again.
	codeWrongLastSeqBusy = 10164
)

func apiCode(err error) int {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return int(apiErr.ErrorCode)
	}
	return 0
}

// lastHolder returns the tenant's holder record and its stream sequence
// (0 and a zero record when there is none).
func (c *Conn) lastHolder(ctx context.Context, tenant string) (holderRecord, uint64, error) {
	var rec holderRecord
	s, err := c.js.Stream(ctx, AlertStream)
	if err != nil {
		return rec, 0, fmt.Errorf("cluster: alert stream: %w", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, holderSubject(tenant))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("cluster: holder record of tenant %s: %w", tenant, err)
	}
	if err := json.Unmarshal(m.Data, &rec); err != nil || rec.Tenant != tenant {
		return rec, 0, fmt.Errorf("cluster: holder record of tenant %s at alert stream sequence %d does not decode or names another tenant (%q): %v", tenant, m.Sequence, rec.Tenant, err)
	}
	return rec, m.Sequence, nil
}

// writeHolder publishes rec as the tenant's holder record if the record at
// stream sequence expect (0: none) is still the last, and returns the new
// record's sequence. It returns ErrFenced (wrapped) when another was
// written since. Failures a retry can fix are retried until ctx ends.
func (c *Conn) writeHolder(ctx context.Context, rec holderRecord, expect uint64) (uint64, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	subj := holderSubject(rec.Tenant)
	backoff := 50 * time.Millisecond
	for {
		m := nats.NewMsg(subj)
		m.Data = data
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
		// Only the latest record is kept, and it outlives the stream's
		// max_age: a tenant left alone for longer still has its snapshot.
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		m.Header.Set(jetstream.MsgTTLHeader, "never")
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.js.PublishMsg(pctx, m, jetstream.WithExpectStream(AlertStream))
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if apiCode(err) == codeWrongLastSeq {
			// A retry whose first try was stored (its acknowledgement
			// lost) finds its own record.
			last, seq, lerr := c.lastHolder(ctx, rec.Tenant)
			if lerr == nil && last.Holding == rec.Holding && last.Snapshot == rec.Snapshot && last.Seq == rec.Seq && last.At.Equal(rec.At) {
				return seq, nil
			}
			return 0, fmt.Errorf("%w: its holder record is at alert stream sequence %d (%s, holding %s), this worker expected %d", ErrFenced, seq, last.Holder, last.Holding, expect)
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("cluster: holder record of tenant %s: %w (last error: %v)", rec.Tenant, ctx.Err(), err)
		}
		if isPermanent(err) {
			return 0, fmt.Errorf("cluster: holder record of tenant %s: %w", rec.Tenant, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Atomic batches. A clustered stream checks one conditional write on a
// subject at a time: while one expecting the holder record is proposed
// and not yet applied, the next is refused as busy (10164), so single
// publishes expecting the holder record cannot be in flight together;
// one at a time, a flush costs a round trip through the stream's quorum
// per message. An atomic batch (nats-server 2.12+, the stream's
// allow_atomic) is checked as a whole at its commit and proposed as one:
// every message in it expects the holder record, so a stale holder's
// batch is refused whole, and a flush costs one round trip per batch.
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
	// maxBatch is the most messages in one atomic batch (the server's
	// default limit is 1,000).
	maxBatch = 256
	// codeBatchDuplicate: a message of the batch is already in the
	// stream (its Nats-Msg-Id within the duplicate window): the whole
	// batch is refused.
	codeBatchDuplicate = 10201
	// codeDuplicateInProcess: a message with the same id is proposed, not
	// yet applied (an earlier try of the same batch): try again.
	codeDuplicateInProcess = 10158
	// codeAtomicDisabled and codeBatchTooLarge: the stream does not take
	// atomic batches (a server older than 2.12, or allow_atomic off), or
	// not this large (the server's max_batch_size).
	codeAtomicDisabled = 10174
	codeBatchTooLarge  = 10199
)

// publishFenced publishes msgs to the alert stream in order, each only
// while the tenant's holder record is still the one at sequence fence:
// in atomic batches of up to maxBatch, one at a time where a batch cannot
// be used (a single message; a batch refused because it holds a message
// already stored, which one at a time tells apart; a stream that takes
// no batches). Failures a retry can fix are retried (same Nats-Msg-Id)
// until ctx ends; a moved fence returns ErrFenced (wrapped) with what was
// published before it.
func (c *Conn) publishFenced(ctx context.Context, tenant string, fence uint64, msgs []*nats.Msg, acks []journal.Ack, res *PublishResult) error {
	subj := holderSubject(tenant)
	for _, m := range msgs {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(fence, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, subj)
	}
	done := 0
	for len(msgs)-done > 1 && !c.noBatches.Load() {
		n := min(len(msgs)-done, maxBatch)
		ok, err := c.publishBatch(ctx, tenant, fence, msgs[done:done+n], acks[done:done+n], res)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		done += n
	}
	for i := done; i < len(msgs); i++ {
		if err := c.publishOneFenced(ctx, tenant, fence, msgs[i], &acks[i], res); err != nil {
			return err
		}
	}
	return nil
}

// publishOneFenced publishes m alone, retrying until the stream answers.
func (c *Conn) publishOneFenced(ctx context.Context, tenant string, fence uint64, m *nats.Msg, ack *journal.Ack, res *PublishResult) error {
	r := retrier{backoff: 20 * time.Millisecond}
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pa, err := c.js.PublishMsg(pctx, m, jetstream.WithExpectStream(AlertStream))
		cancel()
		if err == nil {
			*ack = journal.Ack{Index: pa.Sequence, Duplicate: pa.Duplicate}
			if pa.Duplicate {
				res.Duplicates++
			} else {
				res.Accepted++
			}
			return nil
		}
		code := apiCode(err)
		if code == codeWrongLastSeq {
			return fmt.Errorf("%w: alert stream refused %s (expected the holder record at sequence %d): %v", ErrFenced, m.Subject, fence, err)
		}
		if err := r.wait(ctx, c, err, code == codeWrongLastSeqBusy, "cluster: alert publish not acknowledged, retrying", tenant, res); err != nil {
			return err
		}
	}
}

// retrier paces the retries of a fenced publish, once the caller has
// handled the answers particular to what it sent.
type retrier struct {
	backoff time.Duration
	attempt int
}

// wait ends the attempts on a permanent error or a cancelled context;
// otherwise it counts the retry (unless busy: the stream clears that by
// itself), warns every tenth attempt, and backs off.
func (r *retrier) wait(ctx context.Context, c *Conn, err error, busy bool, warning, tenant string, res *PublishResult) error {
	switch {
	case isPermanent(err):
		return fmt.Errorf("cluster: publish to %s: %w", AlertStream, err)
	case ctx.Err() != nil:
		return fmt.Errorf("cluster: publish: %w (last error: %v)", ctx.Err(), err)
	case !busy:
		res.Retries++
		if r.attempt > 0 && r.attempt%10 == 0 {
			c.opts.Logger.Warn(warning, "tenant", tenant, "attempt", r.attempt, "err", err)
		}
	}
	r.attempt++
	select {
	case <-ctx.Done():
	case <-time.After(r.backoff):
	}
	r.backoff = min(2*r.backoff, 2*time.Second)
	return nil
}

// batchAck is the stream's answer to a batch's commit.
type batchAck struct {
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Batch  string              `json:"batch"`
	Count  int                 `json:"count"`
	Error  *jetstream.APIError `json:"error"`
}

// publishBatch publishes msgs (at least two) as one atomic batch, stored
// whole or not at all, retrying what a retry can fix with a new batch id.
// It returns false, and nothing stored, when the stream refused the batch
// for a message it already holds or takes no batches: the caller sends
// them one at a time.
func (c *Conn) publishBatch(ctx context.Context, tenant string, fence uint64, msgs []*nats.Msg, acks []journal.Ack, res *PublishResult) (bool, error) {
	// The batch headers go before the messages are sent one at a time.
	defer func() {
		for _, m := range msgs {
			m.Header.Del(batchIDHeader)
			m.Header.Del(batchSeqHeader)
			m.Header.Del(batchCommitHeader)
			m.Header.Del(jetstream.ExpectedStreamHeader)
		}
	}()
	r := retrier{backoff: 20 * time.Millisecond}
	for {
		ack, err := c.sendBatch(ctx, msgs)
		if err == nil {
			first := ack.Seq + 1 - uint64(len(msgs))
			for i := range acks {
				acks[i] = journal.Ack{Index: first + uint64(i)}
			}
			res.Accepted += int64(len(msgs))
			res.Batches++
			return true, nil
		}
		code := apiCode(err)
		switch {
		case code == codeWrongLastSeq:
			return false, fmt.Errorf("%w: alert stream refused a batch of %d messages (expected the holder record at sequence %d): %v", ErrFenced, len(msgs), fence, err)
		case code == codeBatchDuplicate:
			return false, nil
		case code == codeAtomicDisabled || code == codeBatchTooLarge:
			if c.noBatches.CompareAndSwap(false, true) {
				c.opts.Logger.Warn("cluster: the alert stream takes no atomic batches of this size; alerts go out one at a time (upgrade the NATS servers to 2.12 or later, or raise max_batch_size)",
					"stream", AlertStream, "batch", len(msgs), "err", err)
			}
			return false, nil
		}
		busy := code == codeWrongLastSeqBusy || code == codeDuplicateInProcess
		if err := r.wait(ctx, c, err, busy, "cluster: alert batch not acknowledged, retrying", tenant, res); err != nil {
			return false, err
		}
	}
}

// sendBatch sends msgs as an atomic batch with a new id: all but the last
// without waiting (the stream leader stages them; one lost makes the
// commit fail as incomplete), the last as the commit, whose answer it
// returns.
func (c *Conn) sendBatch(ctx context.Context, msgs []*nats.Msg) (batchAck, error) {
	var ack batchAck
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return ack, fmt.Errorf("cluster: batch id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	for i, m := range msgs {
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedStreamHeader, AlertStream)
		m.Header.Del(batchCommitHeader)
	}
	last := msgs[len(msgs)-1]
	last.Header.Set(batchCommitHeader, "1")
	for _, m := range msgs[:len(msgs)-1] {
		if err := c.nc.PublishMsg(m); err != nil {
			return ack, fmt.Errorf("cluster: batch %s: %w", id, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.nc.RequestMsgWithContext(rctx, last)
	if err != nil {
		return ack, fmt.Errorf("cluster: batch %s: %w", id, err)
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return ack, fmt.Errorf("cluster: batch %s: answer %q: %w", id, resp.Data, err)
	}
	if ack.Error != nil {
		return ack, fmt.Errorf("cluster: batch %s: %w", id, ack.Error)
	}
	if ack.Stream != AlertStream || ack.Batch != id || ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)) {
		return ack, fmt.Errorf("cluster: batch %s of %d messages: the stream acknowledged %q", id, len(msgs), resp.Data)
	}
	return ack, nil
}

// snapPrefix starts the names of a tenant's snapshot objects.
func snapPrefix(tenant string) string { return "tenant/" + token(tenant) + "/" }

// snapObject names a snapshot: every write gets a name of its own, so a
// stale worker's write never replaces the one a holder record names.
func snapObject(tenant, holding string, n int) string {
	return snapPrefix(tenant) + holding + "-" + strconv.Itoa(n)
}

// isSnapOf: name is one of the tenant's snapshot objects.
func isSnapOf(tenant, name string) bool { return strings.HasPrefix(name, snapPrefix(tenant)) }
