package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// TestDetectionStaleHolderFenced: a detection worker pauses (a GC pause,
// a partition: here its goroutine is held) just before a write, alerts
// and incident updates going out ("flush") or a snapshot being committed
// ("commit"), and its lease renewals stop with it. Its lease expires,
// the other worker takes the tenant over and detects the whole stream.
// Then the paused worker wakes up, still believing it holds the tenant,
// and tries its write: the stream refuses it, the worker stops the
// tenant, and what readers of the alert stream see, and the snapshot a
// successor restores, are exactly a single process's.
func TestDetectionStaleHolderFenced(t *testing.T) {
	f := newDetectFixture(t, 10, 2)
	for _, point := range []string{"flush", "commit"} {
		t.Run(point, func(t *testing.T) {
			c := natstest.Start(t, 3)
			admin := connect(t, c, "admin")
			const ttl = 3 * time.Second
			newWorker := func(name string) *Detector {
				conn := connect(t, c, name)
				tmp := t.TempDir()
				d, err := conn.NewDetector(t.Context(), DetectorOptions{Tenants: []string{tenant}, Holder: name, LeaseTTL: ttl,
					Refresh: 100 * time.Millisecond, SnapshotEvery: 300 * time.Millisecond, Batch: 50, Idle: 200 * time.Millisecond,
					Logger:      testLogger(t),
					NewPipeline: func(_ string, s detect.Sink) *detect.Pipeline { return f.pipeline(t, tmp, s) }})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			w1 := newWorker("worker-1")
			// Once armed, worker-1 stops at its next write at point, and
			// from then on its lease renewals wait too.
			var armed, atPoint atomic.Bool
			paused, resume, resumeRenew := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var once sync.Once
			w1.pause = func(_, p string) {
				if p != point || !armed.Load() {
					return
				}
				once.Do(func() { atPoint.Store(true); close(paused) })
				<-resume
			}
			w1.pauseRenew = func(string) {
				if atPoint.Load() {
					<-resumeRenew
				}
			}
			wake, wakeRenew := sync.OnceFunc(func() { close(resume) }), sync.OnceFunc(func() { close(resumeRenew) })
			// A deferred call runs before the cleanups that stop the workers.
			defer func() { wake(); wakeRenew() }()
			stop1 := runDetector(t, w1)
			waitFor(t, 20*time.Second, "worker-1 holding the tenant", func() error {
				if !w1.Stats()[tenant].Held {
					return errorf("not yet")
				}
				return nil
			})
			w2 := newWorker("worker-2")
			stop2 := runDetector(t, w2)

			half := f.publishHalf(t, admin, tenant, w1)
			armed.Store(true)
			if _, err := admin.Publish(t.Context(), tenant, f.entries[half:]); err != nil {
				t.Fatal(err)
			}
			select {
			case <-paused:
			case <-time.After(60 * time.Second):
				t.Fatalf("worker-1 did not reach a %s: %+v", point, w1.Stats()[tenant])
			}
			at := w1.Stats()[tenant]
			_, staleFence, err := admin.lastHolder(t.Context(), tenant)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("worker-1 paused before a %s at position %d, its last snapshot at %d", point, at.Position, at.SnapshotSeq)
			last := uint64(len(f.entries))
			waitFor(t, 60*time.Second, "worker-2 taking the tenant over and detecting the whole stream", func() error {
				if st := w2.Stats()[tenant]; !st.Held || st.Refreshed < last {
					return errorf("%+v", st)
				}
				return nil
			})
			if st := w2.Stats()[tenant]; st.Restored != at.SnapshotSeq {
				t.Fatalf("worker-2 restored the snapshot at %d; worker-1's last committed one is at %d", st.Restored, at.SnapshotSeq)
			}
			if !w1.Stats()[tenant].Held {
				t.Fatal("worker-1 noticed it lost the tenant while paused; the pause does not test the fence")
			}
			// A write expecting worker-1's holder record is refused; one
			// expecting worker-2's is not.
			probe := func(fence uint64, ids ...string) error {
				var msgs []*nats.Msg
				for _, id := range ids {
					m := nats.NewMsg("alerts." + token(tenant) + ".alert")
					m.Header.Set(jetstream.MsgIDHeader, id)
					m.Data = []byte(`{}`)
					msgs = append(msgs, m)
				}
				var res PublishResult
				return admin.publishFenced(t.Context(), tenant, fence, msgs, make([]journal.Ack, len(msgs)), &res)
			}
			if err := probe(staleFence, "probe-stale"); !errors.Is(err, ErrFenced) {
				t.Fatalf("a publish expecting worker-1's holder record: %v, want ErrFenced", err)
			}
			if err := probe(staleFence, "probe-stale-1", "probe-stale-2", "probe-stale-3"); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "batch of 3") {
				t.Fatalf("a batch expecting worker-1's holder record: %v, want ErrFenced refusing the batch", err)
			}
			// Worker-1 wakes up with its write; its lease renewals still
			// wait, so it believes it holds the tenant.
			wake()
			waitFor(t, 30*time.Second, "worker-1's write refused", func() error {
				if st := w1.Stats()[tenant]; st.Fenced == 0 {
					return errorf("%+v", st)
				}
				return nil
			})
			if st := w1.Stats()[tenant]; st.Alerts != at.Alerts || st.Updates != at.Updates || st.Groupings != at.Groupings || st.Snapshots != at.Snapshots {
				t.Fatalf("worker-1 sent or committed after it was fenced: %+v, at the pause %+v", st, at)
			}
			wakeRenew()
			waitFor(t, 30*time.Second, "worker-1 standing by", func() error {
				if st := w1.Stats()[tenant]; st.Held {
					return errorf("%+v", st)
				}
				return nil
			})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			// The holder record names worker-2's snapshot, and worker-1's
			// uncommitted one is gone.
			rec, _, err := admin.lastHolder(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Holder != "worker-2" {
				t.Fatalf("holder record %+v, want worker-2's", rec)
			}
			stop1()
			live := w2.Incidents(tenant)
			stop2()
			snaps, err := admin.js.ObjectStore(ctx, SnapshotBucket)
			if err != nil {
				t.Fatal(err)
			}
			rec, _, err = admin.lastHolder(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			// Worker-1 removes its refused snapshot as it stops; on a busy
			// machine the list may show it for a moment longer.
			waitFor(t, 15*time.Second, "only the snapshot the holder record names left", func() error {
				objs, err := snaps.List(ctx)
				if err != nil {
					return err
				}
				if len(objs) != 1 || objs[0].Name != rec.Snapshot {
					var names []string
					for _, o := range objs {
						names = append(names, o.Name)
					}
					return errorf("snapshot objects %v; the holder record names %s", names, rec.Snapshot)
				}
				return nil
			})
			fin := f.pipeline(t, t.TempDir(), nil)
			if seq, err := admin.RestoreDetection(ctx, tenant, fin); err != nil || seq != last {
				t.Fatalf("final snapshot at %d (%v), want %d", seq, err, last)
			}
			fin.Close(ctx)

			// The single process over the same stream.
			refSink := &keySink{}
			ref := f.pipeline(t, t.TempDir(), refSink)
			dec := source.NewDecoder(nil, nil)
			streamRead(t, admin, DefaultStream, TenantFilter(tenant), last, func(seq uint64, m jetstream.Msg) {
				evs, err := decodeMessage(dec, DefaultStream, seq, m.Subject(), m.Data())
				if err != nil {
					t.Fatalf("message %d: %v", seq, err)
				}
				for _, e := range evs {
					ref.Process(e)
				}
			})
			refIncs, err := ref.Refresh(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(refIncs) == 0 || len(refSink.keys) == 0 {
				t.Fatal("the simulated intrusion raised nothing")
			}
			if g, w := incidentSummary(live), incidentSummary(refIncs); !slices.Equal(g, w) {
				t.Errorf("incidents after the stale worker:\n%v\nsingle process:\n%v", g, w)
			}
			// What a reader of the alert stream sees: every alert once,
			// the single process's; the incidents it lists, the single
			// process's; each message once.
			var alerts []string
			ids := map[string]int{}
			listed := map[string]bool{}
			msgs := 0
			st1, st2 := w1.Stats()[tenant], w2.Stats()[tenant]
			want := int(st1.Alerts + st1.Updates + st1.Groupings + st2.Alerts + st2.Updates + st2.Groupings)
			fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
			defer fcancel()
			err = admin.FollowAlerts(fctx, tenant, 0, func(seq uint64, m *AlertMessage, err error) error {
				if err != nil {
					t.Fatalf("message %d: %v", seq, err)
				}
				ids[m.ID]++
				if gs, ok := m.Grouping(); ok {
					clear(listed)
					for _, id := range gs {
						listed[id] = true
					}
				} else if u, isInc, _ := m.Update(); isInc {
					listed[u.Incident.ID] = true
				} else if m.Alert != nil {
					alerts = append(alerts, m.Alert.Key())
				}
				if msgs++; msgs == want {
					fcancel()
				}
				return nil
			})
			if err != nil || msgs != want {
				t.Fatalf("read %d messages of the alert stream, the workers sent %d: %v", msgs, want, err)
			}
			for id, n := range ids {
				if n > 1 {
					t.Errorf("%s sent %d times", id, n)
				}
			}
			wantAlerts := slices.Sorted(slices.Values(refSink.keys))
			if slices.Sort(alerts); !slices.Equal(alerts, wantAlerts) {
				t.Errorf("alert stream holds %d alerts, the single process raised %d", len(alerts), len(wantAlerts))
				for _, k := range diff(alerts, wantAlerts) {
					t.Log("  ", k)
				}
			}
			var refIDs []string
			for _, inc := range refIncs {
				refIDs = append(refIDs, inc.ID)
			}
			if got := slices.Sorted(maps.Keys(listed)); !slices.Equal(got, slices.Sorted(slices.Values(refIDs))) {
				t.Errorf("a reader of the alert stream lists incidents %v; the single process %v", got, slices.Sorted(slices.Values(refIDs)))
			}
			if st1.Batches+st2.Batches == 0 {
				t.Errorf("the workers sent %d alerts and %d updates, none in an atomic batch", st1.Alerts+st2.Alerts, st1.Updates+st2.Updates)
			}
			b, _ := json.Marshal(st1)
			t.Logf("worker-1 %s; worker-2 sent %d alerts, %d updates, %d lists in %d batches (the rest one at a time), %d repeats not sent", b, st2.Alerts, st2.Updates, st2.Groupings, st2.Batches, st2.Repeats)
		})
	}
}

// TestPublishFencedBatches: a flush's messages go out in atomic batches,
// each message expecting the holder record: an alert stream made before
// batches is updated to take them; a flush of 600 is stored in three
// batches, in order; a flush repeating messages already stored is
// refused as a batch and sent one at a time, the repeats reported as
// duplicates and stored once; a flush expecting a holder record that is
// no longer the last is refused whole, nothing of it stored.
func TestPublishFencedBatches(t *testing.T) {
	c := natstest.Start(t, 3)
	admin := connect(t, c, "admin")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const ten = "batches"
	old := admin.alertStreamConfig()
	old.AllowAtomicPublish = false
	if _, err := admin.js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := admin.ensureAlertStream(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := admin.js.Stream(ctx, AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowAtomicPublish || admin.noBatches.Load() {
		t.Fatal("the alert stream made before batches was not updated to take them")
	}
	fence, err := admin.writeHolder(ctx, holderRecord{Tenant: ten, Holder: "w1", Holding: "h1", At: time.Now()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func(from, to int) []*nats.Msg {
		var out []*nats.Msg
		for i := from; i < to; i++ {
			m := nats.NewMsg("alerts." + token(ten) + ".alert")
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", ten, i))
			m.Data = []byte(strconv.Itoa(i))
			out = append(out, m)
		}
		return out
	}
	count := func() uint64 {
		t.Helper()
		subj := "alerts." + token(ten) + ".alert"
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subj]
	}
	// readAlerts returns the tenant's alert messages' bodies in stream order.
	readAlerts := func() []string {
		t.Helper()
		var out []string
		for seq := uint64(1); ; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject == "alerts."+token(ten)+".alert" {
				out = append(out, string(m.Data))
			}
		}
	}

	var res PublishResult
	first := msgs(0, 600)
	acks := make([]journal.Ack, len(first))
	if err := admin.publishFenced(ctx, ten, fence, first, acks, &res); err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 600 || res.Duplicates != 0 || res.Batches != 3 {
		t.Fatalf("a flush of 600: %+v, want 600 accepted in 3 batches", res)
	}
	for i := 1; i < len(acks); i++ {
		if acks[i].Index <= acks[i-1].Index {
			t.Fatalf("acknowledged sequences %d then %d", acks[i-1].Index, acks[i].Index)
		}
	}
	got := readAlerts()
	if len(got) != 600 {
		t.Fatalf("%d alert messages stored, want 600", len(got))
	}
	for i, b := range got {
		if b != strconv.Itoa(i) {
			t.Fatalf("alert message %d is %q: out of order", i, b)
		}
	}

	// Ten repeats and five new messages.
	res = PublishResult{}
	again := append(msgs(590, 600), msgs(600, 605)...)
	if err := admin.publishFenced(ctx, ten, fence, again, make([]journal.Ack, len(again)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 5 || res.Duplicates != 10 || res.Batches != 0 {
		t.Fatalf("a flush of 10 repeats and 5 new messages: %+v, want 5 accepted and 10 duplicates, one at a time", res)
	}
	if n := count(); n != 605 {
		t.Fatalf("%d alert messages stored, want 605", n)
	}

	// Another holder: a flush expecting the first's record is refused whole.
	if _, err := admin.writeHolder(ctx, holderRecord{Tenant: ten, Holder: "w2", Holding: "h2", At: time.Now()}, fence); err != nil {
		t.Fatal(err)
	}
	res = PublishResult{}
	stale := msgs(605, 705)
	err = admin.publishFenced(ctx, ten, fence, stale, make([]journal.Ack, len(stale)), &res)
	if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "batch of 100") {
		t.Fatalf("a stale holder's flush of 100: %v, want ErrFenced refusing the batch", err)
	}
	if n := count(); n != 605 || res.Accepted != 0 {
		t.Fatalf("a refused flush stored %d messages (%+v)", n-605, res)
	}
}
