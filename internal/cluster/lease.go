package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the KV bucket holding who writes each tenant's journal.
const LeaseBucket = "vigil_leases"

// DefaultLeaseTTL is how long a lease outlives its holder's last renewal:
// how long a tenant's journal waits after its node died before another
// may take it.
const DefaultLeaseTTL = 15 * time.Second

// ErrLeaseHeld: another node writes this tenant's journal.
var ErrLeaseHeld = errors.New("cluster: another node holds the journal lease")

// ErrLeaseLost: the lease could not be renewed (no quorum, or another node
// took it after it expired); the sequencer stopped writing.
var ErrLeaseLost = errors.New("cluster: journal lease lost")

// lease is a tenant's exclusive right to append the stream to a journal,
// kept in a replicated KV bucket whose entries expire: a holder renews it
// every third of the TTL; one that cannot stops before it could expire.
type lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	lost   error // what hold returns (wrapped) when the lease may be lost
	// beforeRenew, when set, runs before every renewal (tests hold it to
	// pause a holder).
	beforeRenew func()

	mu      sync.Mutex
	rev     uint64
	renewed time.Time // when rev was last confirmed by the bucket
}

// leaseKey is a KV-safe key for a journal, named by its sequencer's
// consumer (the tenant, and the replica if any): KV keys allow fewer
// characters than tenant names.
func leaseKey(journal string) string {
	h := sha256.Sum256([]byte(journal))
	return "journal." + hex.EncodeToString(h[:16])
}

// leases opens (creates or updates) a lease bucket. Leases of one kind
// share a bucket because the bucket's TTL is their expiry.
func (c *Conn) leases(ctx context.Context, bucket, what string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "vigil: " + what,
		History:     1,
		TTL:         ttl,
		Replicas:    c.opts.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: lease bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// acquire takes the lease of a tenant's journal (named by its sequencer)
// for holder. A holder may take over its own lease (a restart of the same
// node).
func (c *Conn) acquire(ctx context.Context, tenant, journal, holder string, ttl time.Duration) (*lease, error) {
	return c.acquireKey(ctx, LeaseBucket, "which node writes each tenant's journal", leaseKey(journal), tenant, holder, ttl, ErrLeaseHeld, ErrLeaseLost)
}

// acquireKey takes lease key of bucket for holder; held is the error
// (wrapped) when another holder has it, lost the one hold returns.
func (c *Conn) acquireKey(ctx context.Context, bucket, what, key, tenant, holder string, ttl time.Duration, held, lost error) (*lease, error) {
	kv, err := c.leases(ctx, bucket, what, ttl)
	if err != nil {
		return nil, err
	}
	l := &lease{kv: kv, key: key, holder: holder, ttl: ttl, lost: lost}
	rev, err := kv.Create(ctx, l.key, []byte(holder))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, l.key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			return nil, fmt.Errorf("cluster: lease of tenant %s changed hands while being taken; retry", tenant)
		case gerr != nil:
			return nil, fmt.Errorf("cluster: lease of tenant %s: %w", tenant, gerr)
		case string(e.Value()) != holder:
			return nil, fmt.Errorf("%w of tenant %s: %q (it expires %v after that node stops renewing it)", held, tenant, e.Value(), ttl)
		}
		rev, err = kv.Update(ctx, l.key, []byte(holder), e.Revision())
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: lease of tenant %s: %w", tenant, err)
	}
	l.rev, l.renewed = rev, time.Now()
	return l, nil
}

// hold renews the lease until ctx ends, then releases it. It returns an
// error, having stopped renewing, when the lease may have been lost: the
// caller must stop writing at once.
func (l *lease) hold(ctx context.Context) error {
	wait := l.ttl / 3
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			l.release()
			return nil
		case <-t.C:
		}
		if l.beforeRenew != nil {
			l.beforeRenew()
		}
		err := l.renew(ctx)
		if err == nil {
			wait = l.ttl / 3
			continue
		}
		if ctx.Err() != nil {
			l.release()
			return nil
		}
		if lost := l.lostErr(err); lost != nil {
			return lost
		}
		// Retry quickly until the lease could be lost.
		wait = l.ttl / 15
	}
}

// renew updates the lease if it is still this holder's revision.
func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewLocked(ctx)
}

func (l *lease) renewLocked(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, l.ttl/6)
	defer cancel()
	rev, err := l.kv.Update(rctx, l.key, []byte(l.holder), l.rev)
	if err == nil {
		l.rev, l.renewed = rev, time.Now()
	}
	return err
}

// lostErr is the error a holder stops with after renewing failed with
// err, or nil while the lease cannot have expired yet: another holder
// wrote it, or it was not renewed for half its TTL (given up well before
// it could expire, so that two writers never overlap).
func (l *lease) lostErr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return fmt.Errorf("%w to another node: %v", l.lost, err)
	}
	l.mu.Lock()
	since := time.Since(l.renewed)
	l.mu.Unlock()
	if since > l.ttl/2 {
		return fmt.Errorf("%w: not renewed for %v: %v", l.lost, since.Round(time.Millisecond), err)
	}
	return nil
}

// confirm makes sure the lease is still held before a write: when it was
// last confirmed more than TTL/15 ago (a holder waking from a pause finds
// its renewals long past, whatever its renewal goroutine believes), it is
// renewed first. It returns the lost error when another holder took it or
// it cannot have been held for a while. Confirmations at once (journal
// queries, sink deliveries) wait for one renewal.
func (l *lease) confirm(ctx context.Context) error {
	l.mu.Lock()
	if time.Since(l.renewed) < l.ttl/15 {
		l.mu.Unlock()
		return nil
	}
	err := l.renewLocked(ctx)
	l.mu.Unlock()
	if err == nil || ctx.Err() != nil {
		return err
	}
	if lost := l.lostErr(err); lost != nil {
		return lost
	}
	return nil
}

func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
}
