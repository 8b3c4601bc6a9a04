package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesLeaderKill: an R3 stream keeps accepting and
// serving messages while its leader is down, and the restarted node
// catches up.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	c := Start(t, 3)
	js := c.JetStream(nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		for {
			// A request sent while the leader is gone gets no answer: each
			// attempt has its own deadline.
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(actx, "t.x", fmt.Appendf(nil, "%d", i), jetstream.WithMsgID(fmt.Sprint(i)))
			acancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	for i := range 10 {
		publish(i)
	}
	old := c.WaitStreamLeader("T", 20*time.Second)
	c.Kill(old)
	for i := 10; i < 20; i++ {
		publish(i)
	}
	if now := c.WaitStreamLeader("T", 20*time.Second); now == old {
		t.Fatalf("leader is still the killed node %s", old)
	}
	c.Restart(old)
	c.WaitMetaLeader(20 * time.Second)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Fatalf("stream holds %d messages, want 20", info.State.Msgs)
	}
	if len(info.Cluster.Replicas) != 2 {
		t.Fatalf("replicas %+v, want 2 besides the leader", info.Cluster.Replicas)
	}
}
