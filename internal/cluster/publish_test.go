package cluster

import (
	"fmt"
	"sync"
	"testing"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
)

// Concurrent pushes on one connection, together far past the client's
// limit of unacknowledged publishes, queue for room rather than fail:
// nothing is re-sent, and each push's records are stored in its order.
// (The client fails a publish that waits 200 ms for room; here the
// servers answer fast enough that it rarely comes to that, but on a loaded
// machine bench/scale.sh saw hundreds of records stored out of push order
// before the connection bounded its publishes.)
func TestConcurrentPublishesKeepPushOrder(t *testing.T) {
	c := natstest.Start(t, 3)
	conn := connect(t, c, "pushers")
	const pushers, per = 32, 1024 // 32,768 in flight at once, the client takes 2,048
	type result struct {
		res  PublishResult
		acks []journal.Ack
		err  error
	}
	out := make([]result, pushers)
	var wg sync.WaitGroup
	for p := range pushers {
		entries := make([]journal.Entry, per)
		for i := range entries {
			entries[i] = journal.Entry{Source: "m365.ual", Origin: "push", RecordID: fmt.Sprintf("p%d-%d", p, i),
				Raw: fmt.Appendf(nil, `{"Id":"p%d-%d","Operation":"MailItemsAccessed","Pad":"%0512d"}`, p, i, 0)}
		}
		wg.Go(func() {
			acks, res, err := conn.publish(t.Context(), "default", entries)
			out[p] = result{res, acks, err}
		})
	}
	wg.Wait()
	for p, r := range out {
		if r.err != nil {
			t.Fatalf("push %d: %v", p, r.err)
		}
		if r.res.Retries != 0 || r.res.Accepted != per {
			t.Errorf("push %d: %d accepted, %d re-sent", p, r.res.Accepted, r.res.Retries)
		}
		for i := 1; i < len(r.acks); i++ {
			if r.acks[i].Index <= r.acks[i-1].Index {
				t.Fatalf("push %d: record %d stored at %d, before record %d at %d", p, i, r.acks[i].Index, i-1, r.acks[i-1].Index)
			}
		}
	}
}
