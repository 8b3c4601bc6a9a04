package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
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

const (
	readRuleA = "bbbbbbbb-0000-4000-8000-00000000000a"
	readRuleB = "bbbbbbbb-0000-4000-8000-00000000000b"
)

// groupingPipeline detects every mail read (a medium alert, which counts
// but makes no incident alone) and bob's and carol's (high: an incident
// on its own). Alerts link through their address until it is seen for
// more than two users (a shared address links nothing).
func groupingPipeline(t *testing.T, s detect.Sink) *detect.Pipeline {
	t.Helper()
	rule := func(id, level, sel string) *fstest.MapFile {
		return &fstest.MapFile{Data: fmt.Appendf(nil, "title: mail read %s\nid: %s\nlevel: %s\nlogsource: {product: m365, service: exchange}\ndetection:\n  sel: {%s}\n  condition: sel\n", level, id, level, sel)}
	}
	rs, refused, err := sigma.Load(fstest.MapFS{
		"a.yml": rule(readRuleA, "medium", "Operation: MailItemsAccessed"),
		"b.yml": rule(readRuleB, "high", "Operation: MailItemsAccessed, UserId: [bob@contoso.com, carol@contoso.com]"),
	}, sigma.Options{}, ".")
	if err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	ic := incident.Config{Window: 24 * time.Hour, SigmaCounts: true, MinLevel: "medium", SingleLevel: "high", BroadActorUsers: 2, MaxTimeline: 50}
	return detect.New(detect.Config{Rules: rs, Incidents: &ic, TempDir: t.TempDir()}, s)
}

// mailRead is a decoded MailItemsAccessed record of user from ip.
func mailRead(t *testing.T, i int, user, ip string) *event.Event {
	t.Helper()
	evs, err := source.NewDecoder(nil, nil).Decode(mailReadRecord(t, i, user, ip), event.Origin{File: "test", Line: i + 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("record %d: %d events (%v)", i, len(evs), err)
	}
	return evs[0]
}

// mailReadRecord is the record of mailRead.
func mailReadRecord(t *testing.T, i int, user, ip string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "source", "testdata", "ual_mailitemsaccessed.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	rec["Id"] = fmt.Sprintf("read-%d", i)
	rec["CreationTime"] = time.Date(2026, 3, 2, 9, i, 0, 0, time.UTC).Format("2006-01-02T15:04:05")
	rec["UserId"], rec["MailboxOwnerUPN"] = user, user
	rec["ClientIP"], rec["ClientIPAddress"] = ip, ip
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// recordSink keeps a pipeline's sink calls as a detect node sends them.
type recordSink struct{ msgs []recorded }

func (s *recordSink) Alert(a *alert.Alert) { c := *a; s.msgs = append(s.msgs, recorded{alert: &c}) }
func (s *recordSink) Incident(u detect.Update) {
	c := *u.Incident
	c.Alerts = slices.Clone(u.Incident.Alerts)
	s.msgs = append(s.msgs, recorded{update: &detect.Update{Kind: u.Kind, Incident: &c}})
}

func incidentIDs(incs []*incident.Incident) []string {
	ids := []string{}
	for _, inc := range incs {
		ids = append(ids, inc.ID)
	}
	slices.Sort(ids)
	return ids
}

// dissolutionSteps are mail reads by user from ip, one a step, whose
// grouping makes an incident and then dissolves it.
var dissolutionSteps = []struct{ user, ip string }{
	{"alice@contoso.com", "198.51.100.7"}, // a medium alert: no incident
	{"bob@contoso.com", "198.51.100.7"},   // bob's high alert makes one of alice's and bob's, linked by the address
	{"carol@contoso.com", "203.0.113.9"},  // an incident of carol's own
	{"dave@contoso.com", "198.51.100.7"},  // the address is shared: that incident dissolves, bob's high alert makes one alone
	{"erin@contoso.com", "203.0.113.9"},   // carol's grows
}

// detectNodeFeed runs groupingPipeline over steps, a refresh after each,
// and returns what a detect node sends (its sink's messages, then the
// incident list of each refresh), the incidents after each step and the
// feed's length after each.
func detectNodeFeed(t *testing.T, steps []struct{ user, ip string }) (msgs []RemoteDetection, want [][]string, cut []int) {
	t.Helper()
	sink := &recordSink{}
	p := groupingPipeline(t, sink)
	for i, s := range steps {
		if err := p.Process(mailRead(t, i, s.user, s.ip)); err != nil {
			t.Fatal(err)
		}
		incs, err := p.Refresh(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sink.msgs {
			msgs = append(msgs, m.wire(t))
		}
		sink.msgs = nil
		// What a detect node sends after its refresh's updates.
		msgs = append(msgs, RemoteDetection{Current: incidentIDs(incs)})
		want, cut = append(want, incidentIDs(incs)), append(cut, len(msgs))
	}
	return msgs, want, cut
}

// A watcher fed from elsewhere lists the incidents the detect node's
// grouping holds after every refresh, including when one dissolves
// without its alerts going to another (an address shared by more users
// stops linking them), and across a restart from its snapshot.
func TestWatcherFedFollowsDissolution(t *testing.T) {
	steps := dissolutionSteps
	msgs, want, cut := detectNodeFeed(t, steps)
	if len(want[1]) != 1 || len(want[3]) != 2 || slices.Contains(want[3], want[1][0]) || !slices.Equal(want[4], want[3]) {
		t.Fatalf("the scenario does not dissolve an incident: %v", want)
	}

	j, err := journal.Open(t.Context(), t.TempDir(), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	state := t.TempDir()
	var starts []uint64
	for step := range steps {
		w := NewWatcher(j, WatcherOptions{Feed: sliceFeed(msgs, cut[step], &starts), Logger: slog.New(slog.DiscardHandler),
			StateDir: state, Refresh: 10 * time.Millisecond, SnapshotEvery: time.Nanosecond})
		runUntil(t, w, func() bool { return w.remoteSeq() == uint64(cut[step]) })
		if got := incidentIDs(w.IncidentList()); !slices.Equal(got, want[step]) {
			t.Fatalf("after step %d the fed watcher lists %v; the detect node %v", step, got, want[step])
		}
	}
	if len(starts) != len(steps) || starts[len(starts)-1] != uint64(cut[len(cut)-2]) {
		t.Fatalf("the feed was read from %v; each restart from its snapshot %v", starts, cut)
	}
}

// An incident a grouping left and a later one names again is listed
// again, as last updated: its state is not sent a second time.
func TestWatcherFedIncidentReturns(t *testing.T) {
	w := NewWatcher(nil, WatcherOptions{Feed: func(context.Context, uint64, func(RemoteDetection) error) error { return nil },
		Logger: slog.New(slog.DiscardHandler)})
	w.remote = newRemoteView()
	inc := &incident.Incident{ID: "INC-1", AlertCount: 2}
	for i, d := range []RemoteDetection{
		{Update: &detect.Update{Kind: detect.Opened, Incident: inc, AlertIDs: []string{"a", "b"}}},
		{Current: []string{}},
		{Current: []string{"INC-1"}},
		{Current: []string{"INC-1", "INC-2"}},
	} {
		d.Seq = uint64(i + 1)
		w.applyRemote(d)
	}
	if got, ok := w.IncidentOf("INC-1"); !ok || got.AlertCount != 2 || len(w.IncidentList()) != 1 {
		t.Fatalf("incidents listed: %v", incidentIDs(w.IncidentList()))
	}
	if w.remote.errors != 1 {
		t.Fatalf("a grouping naming an incident never updated counted %d errors, want 1", w.remote.errors)
	}
}
