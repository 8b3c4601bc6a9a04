package server

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// watchRig is a journal, an outbox with a file sink and the state
// directory of a watcher, as vigil serve wires them.
type watchRig struct {
	dir, state, alerts string
	j                  *journal.Journal
	outbox             *sink.Outbox
	nets               behavior.Networks
	halves             [2][]journal.Entry
	det                *DetectionIndex // nil: detection writes no index
	handoff            *Handoff        // nil: detection reads every entry from the journal
}

func newWatchRig(t *testing.T) *watchRig { return newWatchRigArrival(t, 0) }

// newWatchRigArrival is newWatchRig with the tenant's sign-ins reaching
// the journal signInDelay after the other logs (a slower collector).
func newWatchRigArrival(t *testing.T, signInDelay time.Duration) *watchRig {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	truth, err := simulate.Run(t.Context(), simulate.Config{Users: 15, Days: 14, Seed: 3,
		Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs)
	if err != nil {
		t.Fatal(err)
	}
	paths := truth.LogPaths(logs)
	var evs []*event.Event
	var prev *event.Event
	if _, err := source.ReadPaths(t.Context(), paths, source.Options{}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		evs = append(evs, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	arrival := func(e *event.Event) time.Time {
		if e.Source == "entra.signin" {
			return e.Time.Add(signInDelay)
		}
		return e.Time
	}
	slices.SortStableFunc(evs, func(a, b *event.Event) int { return arrival(a).Compare(arrival(b)) })
	r := &watchRig{dir: dir, state: filepath.Join(dir, "detect"), alerts: filepath.Join(dir, "alerts.jsonl")}
	for i, e := range evs {
		en := source.Entry(e)
		en.Origin = "test"
		r.halves[min(i*2/len(evs), 1)] = append(r.halves[min(i*2/len(evs), 1)], en)
	}
	if r.nets, err = behavior.LoadNetTableFile(filepath.Join(logs, simulate.NetworksFile)); err != nil {
		t.Fatal(err)
	}
	if r.j, err = journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.j.Close() })
	fs, err := sink.NewFile("file", r.alerts)
	if err != nil {
		t.Fatal(err)
	}
	if r.outbox, err = sink.NewOutbox(filepath.Join(dir, "outbox"), []sink.Sink{fs}, sink.OutboxOptions{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *watchRig) appendHalf(t *testing.T, i int) {
	t.Helper()
	for es := r.halves[i]; len(es) > 0; {
		n := min(len(es), 4096)
		if _, err := r.j.AppendBatch(t.Context(), es[:n]); err != nil {
			t.Fatal(err)
		}
		es = es[n:]
	}
}

// pipeline is the detection vigil serve runs: the built-in rules, the
// behaviours and incidents, its temporary files in the state directory.
func (r *watchRig) pipeline(t *testing.T, s detect.Sink) *detect.Pipeline {
	rs, _, err := sigma.Load(rules.FS, sigma.Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	ic := behavior.DefaultConfig().IncidentConfig()
	return detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: r.nets, TempDir: r.state}),
		Incidents: &ic, TempDir: r.state}, s)
}

// run starts a watcher on the rig, waits until it has caught up with the
// journal as it is, stops it gracefully (final snapshot) and delivers
// what it queued. It returns the watcher and the incidents it served.
func (r *watchRig) run(t *testing.T) (*Watcher, []string) {
	t.Helper()
	w := NewWatcher(r.j, WatcherOptions{
		NewPipeline: func(s detect.Sink) *detect.Pipeline { return r.pipeline(t, s) },
		Outbox:      r.outbox, Logger: slog.New(slog.DiscardHandler), StateDir: r.state,
		Refresh: 50 * time.Millisecond, SnapshotEvery: time.Nanosecond,
		OnAlert: r.det.Alert, OnIncident: r.det.Incident, Handoff: r.handoff,
	})
	out := runUntil(t, w, func() bool { return w.Ready() == nil && w.Lag() == 0 })
	if err := r.outbox.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return w, out
}

// runUntil runs w until done, stops it gracefully and returns the
// incidents it served (JSON, newest first).
func runUntil(t *testing.T, w *Watcher, done func() bool) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !done() {
		select {
		case err := <-stopped:
			t.Fatalf("watcher stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher did not get there: %v, lag %d", w.Ready(), w.Lag())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One more refresh round, so what arrived last is grouped.
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-stopped; err != context.Canceled {
		t.Fatalf("watcher stopped with %v", err)
	}
	incs, err := w.Incidents(time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, inc := range incs {
		out = append(out, string(inc))
	}
	return out
}

// deliveries reads the file sink: message ids in delivery order.
func (r *watchRig) deliveries(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(r.alerts)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

func unique(t *testing.T, ids []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("message %s delivered twice", id)
		}
		seen[id] = true
	}
}

// A restart after a graceful stop resumes from the snapshot's offset: it
// reads no entry twice, serves the same incidents, and reads on from
// there.
func TestWatcherResumesAfterGracefulStop(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	r := newWatchRig(t)
	r.appendHalf(t, 0)
	// Files a crashed run left in the state directory.
	stale := func(names ...string) []string {
		var out []string
		for _, n := range names {
			p := filepath.Join(r.state, n)
			if err := os.MkdirAll(r.state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("left by a crash"), 0o600); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	gone := func(files []string) {
		t.Helper()
		for _, f := range files {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("stale %s was not removed", filepath.Base(f))
			}
		}
	}
	left := stale("vigil-accesses-1.log", "vigil-accesses-2.gob", "vigil-pending-1.seg")
	w1, incs1 := r.run(t)
	if w1.Read() != r.j.Size() || w1.Resumed() != 0 {
		t.Fatalf("first start read %d of %d entries, resumed from %d", w1.Read(), r.j.Size(), w1.Resumed())
	}
	gone(left)
	left = stale("vigil-accesses-3.log", "vigil-pending-2.seg")
	w2, incs2 := r.run(t)
	gone(left)
	if w2.Read() != 0 || w2.Resumed() != r.j.Size() {
		t.Fatalf("restart read %d entries again (resumed from %d of %d)", w2.Read(), w2.Resumed(), r.j.Size())
	}
	if !slices.Equal(incs1, incs2) {
		t.Fatalf("restart serves other incidents:\n%s\nbefore:\n%s", strings.Join(incs2, "\n"), strings.Join(incs1, "\n"))
	}
	sent := r.deliveries(t)
	r.appendHalf(t, 1)
	w3, incs3 := r.run(t)
	if w3.Read() != uint64(len(r.halves[1])) || w3.Resumed() != uint64(len(r.halves[0])) {
		t.Fatalf("third start read %d entries from %d; %d were new", w3.Read(), w3.Resumed(), len(r.halves[1]))
	}
	all := r.deliveries(t)
	if len(incs3) == 0 || len(all) == 0 {
		t.Fatalf("no incident (%d) or delivery (%d)", len(incs3), len(all))
	}
	if !slices.Equal(all[:len(sent)], sent) {
		t.Fatal("deliveries rewritten")
	}
	unique(t, all)
}

// A crash (no snapshot at the end: the last one is older than what was
// processed and delivered) replays from the last snapshot: the same
// incidents as without the crash, no message delivered twice, none lost.
func TestWatcherCrashReplaysFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	r := newWatchRig(t)
	r.appendHalf(t, 0)
	r.run(t)
	snap, err := os.ReadFile(filepath.Join(r.state, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	r.appendHalf(t, 1)
	_, want := r.run(t)
	sent := r.deliveries(t)
	// The crash: the snapshot at the stop is lost; the access log has
	// grown past the older one.
	if err := os.WriteFile(filepath.Join(r.state, snapshotFile), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	w, got := r.run(t)
	if w.Resumed() != uint64(len(r.halves[0])) || w.Read() != uint64(len(r.halves[1])) {
		t.Fatalf("resumed from %d and read %d; the snapshot was at %d", w.Resumed(), w.Read(), len(r.halves[0]))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the crash %d incidents:\n%s\nwithout it %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	if len(want) == 0 || len(sent) == 0 {
		t.Fatalf("no incident (%d) or delivery (%d)", len(want), len(sent))
	}
	after := r.deliveries(t)
	if len(after) != len(sent) {
		t.Errorf("the replay delivered %d more messages: %v", len(after)-len(sent), after[len(sent):])
	}
	unique(t, after)
	// Nothing lost: a watcher replaying everything from scratch (no
	// snapshot) queues nothing the sinks have not had.
	if err := os.Remove(filepath.Join(r.state, snapshotFile)); err != nil {
		t.Fatal(err)
	}
	w, full := r.run(t)
	if w.Resumed() != 0 || w.Read() != r.j.Size() {
		t.Fatalf("full replay resumed from %d, read %d", w.Resumed(), w.Read())
	}
	if !slices.Equal(full, want) {
		t.Fatalf("a full replay finds other incidents")
	}
	if all := r.deliveries(t); len(all) != len(sent) {
		t.Errorf("a full replay found %d messages the sinks never had: %v", len(all)-len(sent), all[len(sent):])
	}
}

// Entries expired by retention before detection read them (a first start
// over an old journal) are skipped, not a reason to stop: detection starts
// at the first entry the journal still holds and reads everything after it.
func TestWatcherStartsAfterExpiredEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	r := newWatchRig(t)
	r.j.Close()
	var err error
	now := time.Now()
	if r.j, err = journal.Open(t.Context(), filepath.Join(r.dir, "journal"), journal.Options{
		Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1, SegmentSize: 256 << 10,
		Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	r.appendHalf(t, 0)
	// A year later, retention (180 days by default) expires every sealed
	// segment of the first half.
	expired, err := r.j.Expire(t.Context(), now.Add(365*24*time.Hour))
	if err != nil || expired == 0 || r.j.Expired() != expired {
		t.Fatalf("expiry: %d entries (%v), bound %d", expired, err, r.j.Expired())
	}
	r.appendHalf(t, 1)
	w, _ := r.run(t)
	if want := r.j.Size() - expired; w.Read() != want || w.Offset() != r.j.Size() {
		t.Fatalf("detection read %d entries up to %d; want the %d after the %d expired, up to %d", w.Read(), w.Offset(), want, expired, r.j.Size())
	}
}

// A sign-in log that reaches the journal three hours after the mail log
// (a slower collector) makes the same incidents as the logs in event-time
// order, through a restart in the middle: the watcher waits for the
// sign-ins instead of judging the reads they issued unlinked.
func TestWatcherSignInLogLate(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	withoutRaised := func(incs []string) []string {
		var out []string
		for _, s := range incs {
			var m map[string]any
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "raised") // when a verdict could be taken, not what it is
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		slices.Sort(out)
		return out
	}
	inOrder := newWatchRig(t)
	inOrder.appendHalf(t, 0)
	inOrder.appendHalf(t, 1)
	_, want := inOrder.run(t)
	if len(want) == 0 {
		t.Fatal("no incident in event-time order: nothing to compare")
	}
	late := newWatchRigArrival(t, 3*time.Hour)
	late.appendHalf(t, 0)
	late.run(t)
	late.appendHalf(t, 1)
	w, got := late.run(t)
	if w.Resumed() == 0 {
		t.Fatal("the second start did not resume from the first one's snapshot")
	}
	if a, b := withoutRaised(got), withoutRaised(want); !slices.Equal(a, b) {
		t.Errorf("sign-ins 3 h late: %d incidents\n%s\nin event-time order %d:\n%s", len(a), strings.Join(a, "\n"), len(b), strings.Join(b, "\n"))
	}
}
