package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// Detection writes its alerts and incidents into the index as vigil serve
// wires it; a crash that replays from an older snapshot, and a replay from
// scratch, write the same alerts again without error and without a second
// row, and leave the tables as they were.
func TestDetectionIndexReplaysWithoutDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	ctx := t.Context()
	r := newWatchRig(t)
	data := filepath.Join(r.dir, "journal")
	x, err := index.Open(ctx, index.Path(data), index.Options{MemoryLimit: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { x.Close() }()
	r.det = NewDetectionIndex(x, nil)
	// run detects, then writes what detection raised, as serve does at
	// exit; the index follows the journal.
	run := func() *Watcher {
		t.Helper()
		w, _ := r.run(t)
		if err := r.det.Flush(ctx); err != nil {
			t.Fatalf("detections not written: %v", err)
		}
		if _, err := x.UpdateFrom(ctx, data, r.j); err != nil {
			t.Fatal(err)
		}
		return w
	}
	// sql answers a statement on a read-only handle (the engine allows no
	// reader beside a writer): the writer is closed meanwhile.
	sql := func(q string) string {
		t.Helper()
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		ro, err := index.Open(ctx, index.Path(data), index.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := ro.SQL(ctx, q, 100_000)
		ro.Close()
		if err != nil {
			t.Fatal(err)
		}
		if x, err = index.Open(ctx, index.Path(data), index.Options{MemoryLimit: 256 << 20}); err != nil {
			t.Fatal(err)
		}
		r.det = NewDetectionIndex(x, nil)
		out := ""
		for _, row := range res.Rows {
			out += fmt.Sprintln(row...)
		}
		return out
	}
	tables := func() string {
		t.Helper()
		return sql(`SELECT * EXCLUDE (raised) FROM alerts ORDER BY id`) + sql(`SELECT * FROM incidents ORDER BY id`)
	}
	r.appendHalf(t, 0)
	run()
	snap, err := os.ReadFile(filepath.Join(r.state, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	r.appendHalf(t, 1)
	w := run()
	want := tables()
	d, err := x.DetectionCounts(ctx)
	if err != nil || d.Alerts == 0 || d.Linked == 0 || d.Incidents == 0 {
		t.Fatalf("detections in the index: %+v %v", d, err)
	}
	// Every incident detection serves is a row with its severity.
	incs, err := w.Incidents(time.Time{}, "")
	if err != nil || len(incs) == 0 {
		t.Fatalf("incidents %d %v", len(incs), err)
	}
	for _, b := range incs {
		var inc struct{ ID, Severity string }
		json.Unmarshal(b, &inc)
		got := sql(fmt.Sprintf(`SELECT severity, status <> 'merged', alert_count > 0 FROM incidents WHERE id = '%s'`, inc.ID))
		if got != inc.Severity+" true true\n" {
			t.Errorf("incident %s (%s) in the index: %q", inc.ID, inc.Severity, got)
		}
	}
	// The crash: the last snapshot is lost, the older one replays the
	// second half.
	if err := os.WriteFile(filepath.Join(r.state, snapshotFile), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	if w := run(); w.Resumed() != uint64(len(r.halves[0])) {
		t.Fatalf("resumed from %d", w.Resumed())
	}
	if got := tables(); got != want {
		t.Errorf("after the crash's replay the tables differ:\n%s\nbefore:\n%s", got, want)
	}
	// From scratch.
	if err := os.Remove(filepath.Join(r.state, snapshotFile)); err != nil {
		t.Fatal(err)
	}
	run()
	if got := tables(); got != want {
		t.Errorf("after a full replay the tables differ:\n%s\nbefore:\n%s", got, want)
	}
}

// DetectJournal applies the journal's rule switches where they stand, as
// the watcher does: a rule disabled before every record raises no alert
// into the index, and the same journal without switches applied has them.
func TestDetectJournalAppliesRuleSwitches(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	ctx := t.Context()
	r := newWatchRig(t)
	raw, err := json.Marshal(ruleRecord{ID: "switch-1", Time: time.Now().UTC(), Source: RuleSource, Operation: opRuleDisabled, User: "admin", Rule: "D4"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.j.AppendBatch(ctx, []journal.Entry{{Source: RuleSource, Origin: "vigil serve: rules", RecordID: "switch-1", Raw: raw}}); err != nil {
		t.Fatal(err)
	}
	r.appendHalf(t, 0)
	r.appendHalf(t, 1)
	data := filepath.Join(r.dir, "journal")
	rs, _, err := sigma.Load(rules.FS, sigma.Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	count := func(sw *RuleSwitches) (d4, all int) {
		t.Helper()
		x, err := index.Open(ctx, t.TempDir(), index.Options{MemoryLimit: 256 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		var mute func(*alert.Alert) bool
		if sw != nil {
			mute = sw.Mute
		}
		newPipeline := func(s detect.Sink) *detect.Pipeline {
			ic := behavior.DefaultConfig().IncidentConfig()
			return detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: r.nets}),
				Incidents: &ic, TempDir: t.TempDir(), Mute: mute}, s)
		}
		newDecoder := func() *source.Decoder { return source.NewDecoder(nil, nil) }
		if _, err := DetectJournal(ctx, data, 0, newPipeline, newDecoder, sw, NewDetectionIndex(x, nil)); err != nil {
			t.Fatal(err)
		}
		res, err := x.Search(ctx, index.Request{Table: index.Alerts, GroupBy: "rule", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range res.Rows {
			n := int(row[1].(int64))
			all += n
			if row[0] == "D4" {
				d4 = n
			}
		}
		return d4, all
	}
	d4, all := count(nil)
	if d4 == 0 || all == d4 {
		t.Fatalf("without switches: %d D4 alerts of %d; the test needs D4 and others", d4, all)
	}
	sw := NewRuleSwitches()
	if d4Off, allOff := count(sw); d4Off != 0 || allOff != all-d4 {
		t.Errorf("D4 disabled: %d D4 alerts of %d; want 0 of %d", d4Off, allOff, all-d4)
	}
	if _, suppressed, ok := sw.State("D4"); !ok || suppressed != d4 {
		t.Errorf("switch state %v, %d suppressed; want %d", ok, suppressed, d4)
	}
}

// The index's incidents table follows the grouping: an incident that
// dissolves (its alerts stop linking when their address turns out to be
// shared) is marked dissolved, not left listed as open, through a local
// watcher restarted between steps and through one fed from elsewhere.
func TestDetectionIndexFollowsDissolution(t *testing.T) {
	ctx := t.Context()
	steps := dissolutionSteps
	// reopen closes the writer x (the engine allows no reader beside a
	// writer) and opens path for writing again.
	reopen := func(t *testing.T, x **index.Index, det **DetectionIndex, path string, read func(ro *index.Index)) {
		t.Helper()
		if err := (*x).Close(); err != nil {
			t.Fatal(err)
		}
		ro, err := index.Open(ctx, path, index.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		read(ro)
		ro.Close()
		if *x, err = index.Open(ctx, path, index.Options{MemoryLimit: 256 << 20}); err != nil {
			t.Fatal(err)
		}
		*det = NewDetectionIndex(*x, nil)
	}
	status := func(t *testing.T, ro *index.Index, st string) []string {
		t.Helper()
		res, err := ro.SQL(ctx, fmt.Sprintf(`SELECT id FROM incidents WHERE status %s ORDER BY id`, st), 1000)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, row := range res.Rows {
			ids = append(ids, fmt.Sprint(row[0]))
		}
		return ids
	}
	// check compares the incidents the index holds as current (neither
	// merged nor dissolved) with detection's, and returns those marked
	// dissolved.
	check := func(t *testing.T, x **index.Index, det **DetectionIndex, path string, step int, want []string) (dissolved []string) {
		t.Helper()
		reopen(t, x, det, path, func(ro *index.Index) {
			if got := status(t, ro, `NOT IN ('merged', 'dissolved')`); !slices.Equal(got, want) {
				t.Fatalf("after step %d the index lists %v as current; detection holds %v", step, got, want)
			}
			dissolved = status(t, ro, `= 'dissolved'`)
		})
		return dissolved
	}

	// open gives a journal, an index for detection to write and the
	// index's path.
	open := func(t *testing.T) (*journal.Journal, *index.Index, *DetectionIndex, string) {
		t.Helper()
		j, err := journal.Open(ctx, filepath.Join(t.TempDir(), "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		path := filepath.Join(t.TempDir(), "index.duckdb")
		x, err := index.Open(ctx, path, index.Options{MemoryLimit: 256 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return j, x, NewDetectionIndex(x, nil), path
	}

	t.Run("local", func(t *testing.T) {
		j, x, det, path := open(t)
		defer func() { x.Close() }()
		state := t.TempDir()
		var first string
		for i, s := range steps {
			if _, err := j.AppendBatch(ctx, []journal.Entry{{Source: "m365.ual", Origin: "test", RecordID: fmt.Sprintf("read-%d", i), Raw: mailReadRecord(t, i, s.user, s.ip)}}); err != nil {
				t.Fatal(err)
			}
			var heard [][]string
			w := NewWatcher(j, WatcherOptions{NewPipeline: func(s detect.Sink) *detect.Pipeline { return groupingPipeline(t, s) },
				Logger: slog.New(slog.DiscardHandler), StateDir: state, Refresh: 10 * time.Millisecond, SnapshotEvery: time.Nanosecond,
				OnAlert: det.Alert, OnIncident: det.Incident,
				OnGrouping: func(incs []*incident.Incident) { heard = append(heard, incidentIDs(incs)); det.Grouping(incs) }})
			runUntil(t, w, func() bool { return w.Ready() == nil && w.Lag() == 0 })
			if err := det.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			want := incidentIDs(w.IncidentList())
			if len(heard) == 0 || !slices.Equal(heard[len(heard)-1], want) {
				t.Fatalf("step %d: the grouping heard %v; the watcher lists %v", i, heard, want)
			}
			if i == 1 {
				first = want[0]
			}
			dissolved := check(t, &x, &det, path, i, want)
			if i < 3 && len(dissolved) > 0 || i >= 3 && !slices.Equal(dissolved, []string{first}) {
				t.Fatalf("after step %d the index marks %v dissolved; the first incident is %s", i, dissolved, first)
			}
		}
	})

	t.Run("fed", func(t *testing.T) {
		msgs, want, cut := detectNodeFeed(t, steps)
		j, x, det, path := open(t)
		defer func() { x.Close() }()
		state := t.TempDir()
		var starts []uint64
		for step := range steps {
			w := NewWatcher(j, WatcherOptions{Feed: sliceFeed(msgs, cut[step], &starts), Logger: slog.New(slog.DiscardHandler),
				StateDir: state, Refresh: 10 * time.Millisecond, SnapshotEvery: time.Nanosecond,
				OnAlert: det.Alert, OnIncident: det.Incident, OnGrouping: det.Grouping})
			runUntil(t, w, func() bool { return w.remoteSeq() == uint64(cut[step]) })
			if err := det.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			dissolved := check(t, &x, &det, path, step, want[step])
			if step < 3 && len(dissolved) > 0 || step >= 3 && !slices.Equal(dissolved, want[1]) {
				t.Fatalf("after step %d the index marks %v dissolved; the first incident is %v", step, dissolved, want[1])
			}
		}
	})
}
