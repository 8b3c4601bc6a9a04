package detect

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/source"
)

// A portable snapshot restored on "another machine" (another TempDir,
// the first one deleted) continues exactly as the uninterrupted pipeline:
// same sink messages, same alerts, same incidents with the same impact.
func TestSnapshotPortableRestore(t *testing.T) {
	evs, nets := scenarioStream(t)
	newP := func(s Sink, tmp string) *Pipeline { return fullPipeline(t, nets, tmp, s) }
	cut := len(evs) / 2

	whole := &recordingSink{}
	one := newP(whole, t.TempDir())
	for _, e := range evs[:cut] {
		one.Process(e)
	}
	if _, err := one.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := one.SnapshotPortable(&bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs[cut:] {
		one.Process(e)
	}
	want, err := one.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	first := filepath.Join(t.TempDir(), "first")
	second := filepath.Join(t.TempDir(), "second")
	for _, d := range []string{first, second} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	moved := &recordingSink{}
	p := newP(moved, first)
	for _, e := range evs[:cut] {
		p.Process(e)
	}
	if _, err := p.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := p.SnapshotPortable(&snap); err != nil {
		t.Fatal(err)
	}
	if len(p.AccessLogFiles()) == 0 {
		t.Fatal("the scenario logged no mail access before the cut")
	}
	mark := len(moved.log)
	for _, e := range evs[cut:min(cut+3000, len(evs))] {
		p.Process(e) // work the crash loses
	}
	if _, err := p.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	moved.log = moved.log[:mark]
	// The first machine is gone, its access log with it.
	if err := os.RemoveAll(first); err != nil {
		t.Fatal(err)
	}
	p = newP(moved, second)
	if err := p.RestorePortable(&snap); err != nil {
		t.Fatal(err)
	}
	for _, f := range p.AccessLogFiles() {
		if filepath.Dir(f) != second {
			t.Fatalf("restored access log %s is not under the new TempDir %s", f, second)
		}
	}
	got := finish(t, p, evs[cut:], want, "after a portable restore")
	gk, wk := alertKeys(t, got), alertKeys(t, want)
	if !slices.Equal(gk, wk) {
		t.Errorf("%d alerts after a portable restore, %d uninterrupted", len(gk), len(wk))
	}
	if !slices.Equal(moved.log, whole.log) {
		t.Errorf("the sink heard %d things across the move, %d uninterrupted", len(moved.log), len(whole.log))
	}
	if got.Stats.Events != want.Stats.Events {
		t.Errorf("%d events after a portable restore, %d uninterrupted", got.Stats.Events, want.Stats.Events)
	}
}

func alertKeys(t testing.TB, r *Result) []string {
	var out []string
	for _, a := range allAlerts(t, r) {
		out = append(out, a.Key())
	}
	return out
}

// A damaged or cut portable snapshot is refused with its reason, and
// leaves no access log file behind.
func TestRestorePortableRejects(t *testing.T) {
	tmp := t.TempDir()
	newP := func() *Pipeline { return fullPipeline(t, nil, tmp, nil) }
	dir, _ := scenario(t)
	p := newP()
	if _, err := source.ReadPaths(t.Context(), []string{filepath.Join(dir, "ual.jsonl")}, source.Options{},
		func(e *event.Event) error { return p.Process(e) }); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := p.SnapshotPortable(&snap); err != nil {
		t.Fatal(err)
	}
	full := snap.Bytes()
	before, _ := filepath.Glob(filepath.Join(tmp, "vigil-accesses-*"))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not a snapshot", []byte("hello"), "not a portable detection snapshot"},
		{"a local snapshot", func() []byte { var b bytes.Buffer; newP().Snapshot(&b); return b.Bytes() }(), "not a portable detection snapshot"},
		{"cut in the log", full[:len(full)-10], "bytes"},
		{"cut in the state", full[:len(portableMagic)+40], "restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := newP().RestorePortable(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			after, _ := filepath.Glob(filepath.Join(tmp, "vigil-accesses-*"))
			if len(after) != len(before) {
				t.Fatalf("a refused restore left files: %v (before %v)", after, before)
			}
		})
	}
}

func FuzzRestorePortable(f *testing.F) {
	p := New(Config{Incidents: &incident.Config{}}, nil)
	var snap bytes.Buffer
	if err := p.SnapshotPortable(&snap); err != nil {
		f.Fatal(err)
	}
	f.Add(snap.Bytes())
	f.Add([]byte(portableMagic))
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		q := New(Config{Incidents: &incident.Config{}, TempDir: tmp}, nil)
		if err := q.RestorePortable(bytes.NewReader(b)); err == nil {
			for _, name := range q.AccessLogFiles() {
				os.Remove(name)
			}
		}
	})
}
