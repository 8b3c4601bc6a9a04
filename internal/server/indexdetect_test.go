package server

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/index"
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
