package cluster

import (
	"context"
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

// publishFenced publishes msgs to the alert stream one at a time, each
// only while the tenant's holder record is still the one at sequence
// fence (the stream checks one conditional write on a subject at a
// time, so they cannot be in flight together). Failures a retry can fix
// are retried (same Nats-Msg-Id) until ctx ends; a moved fence returns
// ErrFenced (wrapped) with what was published before it.
func (c *Conn) publishFenced(ctx context.Context, tenant string, fence uint64, msgs []*nats.Msg, acks []journal.Ack, res *PublishResult) error {
	subj := holderSubject(tenant)
	for i, m := range msgs {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(fence, 10))
		m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, subj)
		backoff := 20 * time.Millisecond
		for attempt := 0; ; attempt++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ack, err := c.js.PublishMsg(pctx, m, jetstream.WithExpectStream(AlertStream))
			cancel()
			if err == nil {
				acks[i] = journal.Ack{Index: ack.Sequence, Duplicate: ack.Duplicate}
				if ack.Duplicate {
					res.Duplicates++
				} else {
					res.Accepted++
				}
				break
			}
			switch code := apiCode(err); {
			case code == codeWrongLastSeq:
				return fmt.Errorf("%w: alert stream refused %s (expected the holder record at sequence %d): %v", ErrFenced, m.Subject, fence, err)
			case isPermanent(err):
				return fmt.Errorf("cluster: publish to %s: %w", AlertStream, err)
			case ctx.Err() != nil:
				return fmt.Errorf("cluster: publish: %w (last error: %v)", ctx.Err(), err)
			case code != codeWrongLastSeqBusy:
				res.Retries++
				if attempt > 0 && attempt%10 == 0 {
					c.opts.Logger.Warn("cluster: alert publish not acknowledged, retrying", "tenant", tenant, "attempt", attempt, "err", err)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
	return nil
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
