package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/incident"
)

// recorded is what a detect node would send: the pipeline's sink calls,
// the incidents as JSON (without their alerts) and their alert ids.
type recorded struct {
	alert  *alert.Alert
	update *detect.Update
}

// wire passes a message through JSON as the alert stream carries it.
func (m recorded) wire(t *testing.T) RemoteDetection {
	t.Helper()
	if m.alert != nil {
		b, _ := json.Marshal(m.alert)
		var a alert.Alert
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return RemoteDetection{Alert: &a}
	}
	b, _ := json.Marshal(m.update.Incident)
	var inc incident.Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(m.update.Incident.Alerts))
	for i := range m.update.Incident.Alerts {
		ids[i] = m.update.Incident.Alerts[i].ID()
	}
	return RemoteDetection{Update: &detect.Update{Kind: m.update.Kind, Incident: &inc, AlertIDs: ids}}
}

// sliceFeed delivers msgs[after:upTo] (positions from 1), then waits.
func sliceFeed(msgs []RemoteDetection, upTo int, starts *[]uint64) AlertFeed {
	return func(ctx context.Context, after uint64, deliver func(RemoteDetection) error) error {
		*starts = append(*starts, after)
		for i := int(after); i < upTo; i++ {
			d := msgs[i]
			d.Seq = uint64(i + 1)
			if err := deliver(d); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return nil
	}
}

// A server whose detection runs on a cluster's detect nodes serves their
// incidents (merges followed), sends each update to its sinks once, keeps
// reading the journal for its views, and resumes the feed where its
// snapshot stands.
func TestWatcherFedFromElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	r := newWatchRig(t)
	r.appendHalf(t, 0)
	r.appendHalf(t, 1)
	// The detection a detect node runs, recorded as it would send it.
	var sent []recorded
	if err := os.MkdirAll(r.state, 0o700); err != nil {
		t.Fatal(err)
	}
	local := NewWatcher(r.j, WatcherOptions{NewPipeline: newTestPipeline(t, r), Logger: slog.New(slog.DiscardHandler),
		Refresh: 50 * time.Millisecond,
		OnAlert: func(a *alert.Alert) { c := *a; sent = append(sent, recorded{alert: &c}) },
		OnIncident: func(u detect.Update) {
			c := *u.Incident
			c.Alerts = slices.Clone(u.Incident.Alerts)
			sent = append(sent, recorded{update: &detect.Update{Kind: u.Kind, Incident: &c}})
		}})
	want := runUntil(t, local, func() bool { return local.Ready() == nil && local.Lag() == 0 })
	var msgs []RemoteDetection
	updates := 0
	for _, m := range sent {
		msgs = append(msgs, m.wire(t))
		if m.update != nil {
			updates++
		}
	}
	if len(want) == 0 || updates <= len(want) {
		t.Fatalf("the local detection gives %d incidents from %d updates: nothing to merge", len(want), updates)
	}
	// A message the feed could not read is counted, not a reason to stop.
	bad := len(msgs) / 3
	msgs = slices.Insert(msgs, bad, RemoteDetection{Err: errors.New("alert stream message 7: unexpected end of JSON input")})

	fed := func(upTo int, starts *[]uint64) *Watcher {
		return NewWatcher(r.j, WatcherOptions{Feed: sliceFeed(msgs, upTo, starts), Outbox: r.outbox,
			Logger: slog.New(slog.DiscardHandler), StateDir: r.state, Refresh: 50 * time.Millisecond, SnapshotEvery: time.Nanosecond})
	}
	var starts []uint64
	half := len(msgs) / 2
	w1 := fed(half, &starts)
	runUntil(t, w1, func() bool { return w1.remoteSeq() == uint64(half) && w1.Lag() == 0 })
	if w1.Read() != r.j.Size() {
		t.Fatalf("the views read %d of %d journal entries", w1.Read(), r.j.Size())
	}
	w2 := fed(len(msgs), &starts)
	got := runUntil(t, w2, func() bool { return w2.remoteSeq() == uint64(len(msgs)) })
	if !slices.Equal(starts, []uint64{0, uint64(half)}) {
		t.Fatalf("the feed was read from %v; want from 0, then from the snapshot's %d", starts, half)
	}
	if w2.Read() != 0 || w2.Resumed() != r.j.Size() {
		t.Fatalf("the restart read %d journal entries again (resumed at %d of %d)", w2.Read(), w2.Resumed(), r.j.Size())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fed from elsewhere, %d incidents:\n%s\ndetected here, %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	if w2.remote.errors != 1 || !strings.Contains(w1.lastErr, "message 7") {
		t.Fatalf("unreadable messages counted %d (across the restart), error %q", w2.remote.errors, w1.lastErr)
	}
	// The sinks had every incident state once, as from local detection.
	if err := r.outbox.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	ids := r.deliveries(t)
	unique(t, ids)
	if len(ids) != updates {
		t.Fatalf("%d messages delivered for %d incident updates", len(ids), updates)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "INC-") {
			t.Fatalf("delivered %q", id)
		}
	}
	alerts, err := w2.Alerts(time.Time{})
	if err != nil || len(alerts) != len(sent)-updates {
		t.Fatalf("alerts served: %d (%v); the feed had %d", len(alerts), err, len(sent)-updates)
	}
}

// newTestPipeline is the rig's pipeline (rules, behaviours, incidents).
func newTestPipeline(t *testing.T, r *watchRig) func(detect.Sink) *detect.Pipeline {
	return func(s detect.Sink) *detect.Pipeline { return r.pipeline(t, s) }
}
