package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
)

// TestJournalLease: a second node cannot write a tenant's journal while
// the first holds it; it can once the first stops, and a node that died
// without releasing loses the lease after the TTL.
func TestJournalLease(t *testing.T) {
	c := natstest.Start(t, 3)
	a := connect(t, c, "a")
	b := connect(t, c, "b")
	open := func() journal.Log {
		j, err := journal.Open(t.Context(), t.TempDir(), journal.Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		return j
	}
	q := &memQuarantine{}
	seqA, err := a.NewSequencer(SequencerOptions{Tenant: tenant, Journal: open(), Quarantine: q.keep, Holder: "node-a", LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stopA := runSequencer(t, seqA)
	waitFor(t, 20*time.Second, "node-a holds the lease", func() error {
		if seqA.Stats().Resets == 0 {
			return errorf("not started")
		}
		return nil
	})
	seqB, err := b.NewSequencer(SequencerOptions{Tenant: tenant, Journal: open(), Quarantine: q.keep, Holder: "node-b", LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := seqB.Run(ctx); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second writer: %v, want ErrLeaseHeld", err)
	}
	// Another tenant is free.
	seqOther, err := b.NewSequencer(SequencerOptions{Tenant: "other", Journal: open(), Quarantine: q.keep, Holder: "node-b", LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stopOther := runSequencer(t, seqOther)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	stopB := runSequencer(t, seqB)
	waitFor(t, 20*time.Second, "node-b takes the released lease", func() error {
		if seqB.Stats().Resets == 0 {
			return errorf("not started")
		}
		return nil
	})
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	if err := stopOther(); err != nil {
		t.Fatal(err)
	}

	// A holder that vanished without releasing: its lease expires.
	if _, err := a.acquire(ctx, "crashed", "sequencer_crashed", "node-a", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.acquire(ctx, "crashed", "sequencer_crashed", "node-b", 3*time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("lease of a crashed holder taken before its TTL: %v", err)
	}
	waitFor(t, 20*time.Second, "the crashed holder's lease expires", func() error {
		_, err := b.acquire(ctx, "crashed", "sequencer_crashed", "node-b", 3*time.Second)
		return err
	})
}
