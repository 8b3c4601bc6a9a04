package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// detectFixture is a simulated tenant, in event-time order (as a live
// stream arrives), with what builds its detection pipelines.
type detectFixture struct {
	entries []journal.Entry
	nets    *behavior.NetTable
}

func newDetectFixture(t *testing.T, users, days int) *detectFixture {
	return newDetectFixtureTB(t, users, days)
}

func newDetectFixtureTB(t testing.TB, users, days int) *detectFixture {
	t.Helper()
	entries, dir := simTenant(t, users, days)
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	// Order the records by their first event, as the detection pipeline
	// orders events, so that where a worker's refreshes drain the
	// reordering buffer does not change the processing order.
	dec := source.NewDecoder(nil, nil)
	type keyed struct {
		k  string
		t  time.Time
		en journal.Entry
	}
	var ks []keyed
	for _, en := range entries {
		evs, err := dec.Decode(slices.Clone(en.Raw), event.Origin{})
		if err != nil || len(evs) == 0 {
			t.Fatalf("simulated record does not decode: %v", err)
		}
		ks = append(ks, keyed{evs[0].Source + "\x00" + evs[0].RecordID, evs[0].Time, en})
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	for i := range ks {
		entries[i] = ks[i].en
	}
	return &detectFixture{entries: entries, nets: nets}
}

// publishHalf publishes the first half of the tenant's records and waits
// until w (worker-1, holding the tenant) has detected and snapshotted it;
// it returns the half's length.
func (f *detectFixture) publishHalf(t *testing.T, admin *Conn, tenant string, w *Detector) int {
	t.Helper()
	half := len(f.entries) / 2
	if _, err := admin.Publish(t.Context(), tenant, f.entries[:half]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "worker-1 detecting the first half and snapshotting", func() error {
		if st := w.Stats()[tenant]; st.SnapshotSeq < uint64(half) {
			return errorf("%+v", st)
		}
		return nil
	})
	return half
}

func (f *detectFixture) pipeline(t testing.TB, tmp string, s detect.Sink) *detect.Pipeline {
	rs, _, err := sigma.Load(rules.FS, sigma.Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	ic := behavior.DefaultConfig().IncidentConfig()
	return detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: f.nets}),
		Incidents: &ic, TempDir: tmp}, s)
}

type keySink struct {
	mu   sync.Mutex
	keys []string
}

func (s *keySink) Alert(a *alert.Alert) {
	s.mu.Lock()
	s.keys = append(s.keys, a.Key())
	s.mu.Unlock()
}
func (s *keySink) Incident(detect.Update) {}

func incidentSummary(incs []*incident.Incident) []string {
	var out []string
	for _, inc := range incs {
		out = append(out, fmt.Sprintf("%s severity=%s alerts=%d accesses=%d messages=%d mailboxes=%d",
			inc.ID, inc.Severity, inc.AlertCount, inc.Impact.Accesses, inc.Impact.MessageCount, len(inc.Impact.Mailboxes)))
	}
	slices.Sort(out)
	return out
}

// runDetector runs d until kill or stop; both return once Run has.
func runDetector(t *testing.T, d *Detector) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("detector: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// streamRead reads every message of the stream on filter, in order, up
// to sequence last.
func streamRead(t *testing.T, c *Conn, stream, filter string, last uint64, fn func(seq uint64, m jetstream.Msg)) {
	t.Helper()
	if last == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cons, err := c.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			fn(md.Sequence.Stream, m)
			if md.Sequence.Stream >= last {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream %s: %s not read up to %d", stream, filter, last)
		}
	}
}

// TestDetectionWorkerCrash is the detection test: two detection
// workers on a 3-node cluster; the one detecting the simulated tenant
// crashes mid-stream (no final snapshot, no lease release) after at
// least one periodic snapshot; the other takes the tenant over once the
// lease expires, restores the snapshot and finishes. The incidents and
// their impact equal a single-process pipeline's over the same records
// in the same order, and the alert stream holds every alert exactly once.
func TestDetectionWorkerCrash(t *testing.T) {
	f := newDetectFixture(t, 10, 2)
	t.Logf("%d records", len(f.entries))
	c := natstest.Start(t, 3)
	admin := connect(t, c, "admin")
	const ttl = 3 * time.Second
	newWorker := func(name string) (*Conn, *Detector) {
		conn := connect(t, c, name)
		tmp := t.TempDir()
		d, err := conn.NewDetector(t.Context(), DetectorOptions{Tenants: []string{tenant}, Holder: name, LeaseTTL: ttl,
			Refresh: 100 * time.Millisecond, SnapshotEvery: 300 * time.Millisecond, Batch: 50, Idle: 200 * time.Millisecond,
			Logger:      testLogger(t),
			NewPipeline: func(_ string, s detect.Sink) *detect.Pipeline { return f.pipeline(t, tmp, s) }})
		if err != nil {
			t.Fatal(err)
		}
		return conn, d
	}
	conn1, w1 := newWorker("worker-1")
	_, w2 := newWorker("worker-2")
	kill1 := runDetector(t, w1)
	waitFor(t, 20*time.Second, "worker-1 holding the tenant", func() error {
		if !w1.Stats()[tenant].Held {
			return errorf("not yet")
		}
		return nil
	})
	stop2 := runDetector(t, w2)

	half := f.publishHalf(t, admin, tenant, w1)
	// The rest arrives in pushes of 50 while worker-1 crashes.
	pubDone := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := half; i < len(f.entries); i += 50 {
			if _, err := admin.Publish(pctx, tenant, f.entries[i:min(i+50, len(f.entries))]); err != nil {
				pubDone <- err
				return
			}
		}
		pubDone <- nil
	}()
	waitFor(t, 60*time.Second, "worker-1 detecting past its last snapshot", func() error {
		if st := w1.Stats()[tenant]; st.Position < st.SnapshotSeq+100 {
			return errorf("%+v", st)
		}
		return nil
	})
	// A crash: the connection goes first, so nothing more reaches the
	// cluster (no final snapshot, the lease is not released).
	at := w1.Stats()[tenant]
	conn1.Close()
	killed := time.Now()
	kill1()
	t.Logf("worker-1 crashed at position %d, its last snapshot at %d (%d snapshots, %d bytes)", at.Position, at.SnapshotSeq, at.Snapshots, at.SnapshotLen)
	if w2.Stats()[tenant].Held {
		t.Fatal("worker-2 held the tenant while worker-1 did")
	}
	waitFor(t, 4*ttl, "worker-2 taking the tenant over", func() error {
		if st := w2.Stats()[tenant]; !st.Held || st.Position == 0 {
			return errorf("%+v", st)
		}
		return nil
	})
	takeover := time.Since(killed)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	last, err := streamLastSeq(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if last != uint64(len(f.entries)) {
		t.Fatalf("stream holds %d messages, %d records pushed", last, len(f.entries))
	}
	if at.Position >= last {
		t.Fatalf("worker-1 had read the whole stream (%d) before it crashed", last)
	}
	caught := time.Now()
	waitFor(t, 60*time.Second, "worker-2 detecting the whole stream", func() error {
		if st := w2.Stats()[tenant]; st.Refreshed < last {
			return errorf("%+v", st)
		}
		return nil
	})
	st2 := w2.Stats()[tenant]
	t.Logf("takeover %v after the crash (lease TTL %v); worker-2 restored the snapshot at %d, read %d records, caught up %v after the publisher finished; %d repeats not sent",
		takeover.Round(time.Millisecond), ttl, st2.Restored, st2.Read, time.Since(caught).Round(time.Millisecond), st2.Repeats)
	if st2.Restored == 0 || st2.RestoreErr != "" {
		t.Fatalf("worker-2 did not resume from worker-1's snapshot: %+v", st2)
	}
	if st2.Read != last-st2.Restored {
		t.Errorf("worker-2 read %d records, the stream after its snapshot holds %d", st2.Read, last-st2.Restored)
	}
	live := w2.Incidents(tenant)
	stop2()
	if st := w2.Stats()[tenant]; st.SnapshotSeq != last {
		t.Errorf("worker-2's snapshot at stop is at %d, want %d", st.SnapshotSeq, last)
	}

	// The single process: one pipeline over the stream's records, in
	// stream order.
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
	refIncs, err := ref.Refresh(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(refIncs) == 0 {
		t.Fatal("the simulated intrusion made no incident")
	}
	if g, w := incidentSummary(live), incidentSummary(refIncs); !slices.Equal(g, w) {
		t.Errorf("incidents across the crash:\n%v\nsingle process:\n%v", g, w)
	}
	wantAlerts := slices.Clone(refSink.keys)

	// The final snapshot, restored and closed, gives what the single
	// process gives when it ends.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	fin := f.pipeline(t, t.TempDir(), nil)
	seq, err := admin.RestoreDetection(ctx, tenant, fin)
	if err != nil {
		t.Fatal(err)
	}
	if seq != last {
		t.Fatalf("final snapshot at %d, want %d", seq, last)
	}
	got, err := fin.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := incidentSummary(got.Incidents), incidentSummary(want.Incidents); !slices.Equal(g, w) {
		t.Errorf("incidents of the final snapshot, closed:\n%v\nsingle process:\n%v", g, w)
	}
	if got.Stats.Events != want.Stats.Events || got.Stats.Reads.Total != want.Stats.Reads.Total {
		t.Errorf("final snapshot: %d events, %d mail reads; single process %d, %d",
			got.Stats.Events, got.Stats.Reads.Total, want.Stats.Events, want.Stats.Reads.Total)
	}

	// Every alert exactly once in the alert stream; every incident state
	// at most once.
	info, err := admin.js.Stream(ctx, AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	ids := map[string]int{}
	var order []string
	var seqs []uint64 // of order's messages
	streamRead(t, admin, AlertStream, "alerts."+token(tenant)+".*", si.State.LastSeq, func(seq uint64, m jetstream.Msg) {
		if m.Subject() == holderSubject(tenant) {
			return // the workers' holder record
		}
		var am AlertMessage
		if err := json.Unmarshal(m.Data(), &am); err != nil {
			t.Fatalf("alert message %d: %v", seq, err)
		}
		ids[am.ID]++
		order = append(order, am.ID)
		seqs = append(seqs, seq)
		if am.Alert != nil {
			sent = append(sent, am.Alert.Key())
		}
	})
	for id, n := range ids {
		if n > 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
	slices.Sort(sent)
	slices.Sort(wantAlerts)
	if len(wantAlerts) == 0 {
		t.Fatal("the single process raised no alert")
	}
	if !slices.Equal(sent, wantAlerts) {
		t.Errorf("alert stream holds %d alerts, the single process raised %d", len(sent), len(wantAlerts))
		for _, k := range diff(sent, wantAlerts) {
			t.Log("  ", k)
		}
	}
	// The journal node's reader: every message in stream order, incident
	// updates with their alerts named, and from a position on after a
	// restart.
	// listed is the incidents a reader lists: those updated, less those
	// the last incident list after them does not name.
	listed := map[string]bool{}
	follow := func(after uint64, n int) (got []string, firstSeq uint64) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		err := admin.FollowAlerts(ctx, tenant, after, func(seq uint64, m *AlertMessage, err error) error {
			if err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			if firstSeq == 0 {
				firstSeq = seq
			}
			u, isInc, err := m.Update()
			ids, isGrouping := m.Grouping()
			switch {
			case isGrouping:
				clear(listed)
				for _, id := range ids {
					listed[id] = true
				}
			case err != nil:
				t.Fatalf("message %d: %v", seq, err)
			case isInc && (u.Incident.ID == "" || len(u.AlertIDs) != u.Incident.AlertCount):
				t.Fatalf("update %s names %d alerts of %d", m.ID, len(u.AlertIDs), u.Incident.AlertCount)
			case isInc:
				listed[u.Incident.ID] = true
			case m.Alert == nil:
				t.Fatalf("message %d is neither an alert, an update nor an incident list", seq)
			}
			if got = append(got, m.ID); len(got) == n {
				cancel()
			}
			return nil
		})
		if err != nil || len(got) != n {
			t.Fatalf("followed %d of %d messages: %v", len(got), n, err)
		}
		return got, firstSeq
	}
	all, _ := follow(0, len(order))
	if !slices.Equal(all, order) {
		t.Fatalf("FollowAlerts gave another order than the stream")
	}
	// The incidents a reader of the stream lists are the single
	// process's, the crash's merged and dissolved ones gone.
	var refIDs []string
	for _, inc := range refIncs {
		refIDs = append(refIDs, inc.ID)
	}
	if got := slices.Sorted(maps.Keys(listed)); !slices.Equal(got, slices.Sorted(slices.Values(refIDs))) {
		t.Errorf("a reader of the alert stream lists incidents %v; the single process %v", got, slices.Sorted(slices.Values(refIDs)))
	}
	mid := len(order) / 2
	if rest, _ := follow(seqs[mid-1], len(order)-mid); !slices.Equal(rest, order[mid:]) {
		t.Fatalf("FollowAlerts after a position gave other messages")
	}
	t.Logf("alert stream: %d alerts, %d incident updates; single process: %d alerts, %d incidents",
		len(sent), len(ids)-len(sent), len(wantAlerts), len(refIncs))
}

// diff lists what is in one sorted list and not the other.
func diff(a, b []string) []string {
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, "extra: "+a[i])
			i++
		case i >= len(a) || b[j] < a[i]:
			out = append(out, "missing: "+b[j])
			j++
		default:
			i++
			j++
		}
	}
	return out
}

// A graceful stop snapshots and releases the lease: the other worker goes
// on at once from exactly where the first stopped, reading nothing twice.
// A worker whose lease another holder took stops detecting the tenant
// before its next fetch and does not take it back while that holder has
// it.
func TestDetectionHandoffAndLostLease(t *testing.T) {
	f := newDetectFixture(t, 10, 1)
	c := natstest.Start(t, 3)
	admin := connect(t, c, "admin")
	const ttl = 3 * time.Second
	// Worker-2 is told of no tenant: it finds the tenant in the stream.
	newWorker := func(name string) *Detector {
		conn := connect(t, c, name)
		tmp := t.TempDir()
		var tenants []string
		if name == "worker-1" {
			tenants = []string{tenant}
		}
		d, err := conn.NewDetector(t.Context(), DetectorOptions{Tenants: tenants, Discover: tenants == nil, Holder: name, LeaseTTL: ttl,
			Refresh: 100 * time.Millisecond, SnapshotEvery: time.Hour, Batch: 50, Idle: 100 * time.Millisecond,
			Logger:      testLogger(t),
			NewPipeline: func(_ string, s detect.Sink) *detect.Pipeline { return f.pipeline(t, tmp, s) }})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	w1 := newWorker("worker-1")
	stop1 := runDetector(t, w1)
	waitFor(t, 20*time.Second, "worker-1 holding the tenant", func() error {
		if !w1.Stats()[tenant].Held {
			return errorf("not yet")
		}
		return nil
	})
	w2 := newWorker("worker-2")
	runDetector(t, w2)
	third := len(f.entries) / 3
	if _, err := admin.Publish(t.Context(), tenant, f.entries[:third]); err != nil {
		t.Fatal(err)
	}
	// The same records in another tenant are that tenant's, not repeats.
	if r, err := admin.Publish(t.Context(), "other.tenant", f.entries[:third]); err != nil || r.Accepted != int64(third) {
		t.Fatalf("the same records for another tenant: %+v, %v; want all %d accepted", r, err, third)
	}
	waitFor(t, 30*time.Second, "worker-1 detecting the first third", func() error {
		if st := w1.Stats()[tenant]; st.Position < uint64(third) {
			return errorf("%+v", st)
		}
		return nil
	})
	stopped := time.Now()
	stop1()
	st1 := w1.Stats()[tenant]
	if st1.SnapshotSeq != uint64(third) || st1.Held {
		t.Fatalf("worker-1 after a graceful stop: %+v, want a snapshot at %d and no lease", st1, third)
	}
	waitFor(t, ttl/2, "worker-2 taking the released tenant", func() error {
		if st := w2.Stats()[tenant]; !st.Held || st.Restored != uint64(third) {
			return errorf("%+v", st)
		}
		return nil
	})
	t.Logf("graceful handoff took %v", time.Since(stopped).Round(time.Millisecond))
	if _, err := admin.Publish(t.Context(), tenant, f.entries[third:2*third]); err != nil {
		t.Fatal(err)
	}
	end, err := streamLastSeq(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "worker-2 detecting the second third", func() error {
		if st := w2.Stats()[tenant]; st.Position < end {
			return errorf("%+v", st)
		}
		return nil
	})
	if st := w2.Stats()[tenant]; st.Read != uint64(third) {
		t.Fatalf("worker-2 read %d records, %d came after the handoff", st.Read, third)
	}

	// Another holder takes the lease (as one would after worker-2 failed to
	// renew it in time).
	kv, err := admin.js.KeyValue(t.Context(), DetectLeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), detectLeaseKey(tenant), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl, "worker-2 giving the tenant up", func() error {
		if st := w2.Stats()[tenant]; st.Held {
			return errorf("%+v", st)
		}
		return nil
	})
	at := w2.Stats()[tenant].Position
	if _, err := admin.Publish(t.Context(), tenant, f.entries[2*third:]); err != nil {
		t.Fatal(err)
	}
	// Keep the intruder's lease alive for a while: nobody detects.
	for range 3 {
		time.Sleep(ttl / 3)
		if _, err := kv.Put(t.Context(), detectLeaseKey(tenant), []byte("intruder")); err != nil {
			t.Fatal(err)
		}
	}
	if st := w2.Stats()[tenant]; st.Held || st.Position != at {
		t.Fatalf("worker-2 detected without its lease: %+v (position was %d)", st, at)
	}
	if st := w1.Stats()[tenant]; st.Held {
		t.Fatalf("worker-1 holds the tenant after it stopped: %+v", st)
	}
}

func TestUntoken(t *testing.T) {
	for _, s := range []string{"", "acme.example", "a b/c*>%", "tenant-1_x", "\x00\xff"} {
		got, ok := untoken(token(s))
		if !ok || got != s {
			t.Errorf("untoken(token(%q)) = %q, %v", s, got, ok)
		}
	}
	for _, bad := range []string{"%4", "%zz", "a%"} {
		if _, ok := untoken(bad); ok {
			t.Errorf("untoken(%q) accepted a damaged escape", bad)
		}
	}
}
