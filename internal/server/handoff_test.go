package server

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/event/eventtest"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// detectionHot is the hot field list vigil serve's detection decodes
// with: the built-in rules' fields and the behaviours'.
func detectionHot(t testing.TB) []event.Sym {
	t.Helper()
	rs, _, err := sigma.Load(rules.FS, sigma.Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	return append(rs.FieldSyms(), event.HotFields...)
}

// The events push ingest hands to detection are the events detection
// decodes from the journal entries: every sample format (an inbox-rule
// snapshot takes its time from when it was received; Workspace
// activities make several events of one entry; a CSV export; records
// that are quarantined), and duplicates are not handed over twice.
func TestHandoffEventsAreTheJournals(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	hot := detectionHot(t)
	h := NewHandoff(0, 0)
	in := NewIngester(j, filepath.Join(dir, "quarantine.jsonl"))
	in.Handoff, in.Hot = h, hot
	samples, err := filepath.Glob("../source/testdata/*.*")
	if err != nil {
		t.Fatal(err)
	}
	var pushed []string
	for _, p := range samples {
		if !strings.HasSuffix(p, ".json") && !strings.HasSuffix(p, ".jsonl") && !strings.HasSuffix(p, ".csv") {
			continue
		}
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		res, err := in.Ingest(t.Context(), bytes.NewReader(body), "push:"+filepath.Base(p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if res.Accepted > 0 {
			pushed = append(pushed, filepath.Base(p))
		}
		// Later, from another pusher: an inbox-rule snapshot gets another
		// observed time, so a mismatch in that time shows.
		time.Sleep(5 * time.Millisecond)
	}
	for _, want := range []string{"inbox_rules.json", "gws_activities.json", "purview_export.csv", "ual_mailitemsaccessed.jsonl"} {
		if !slices.Contains(pushed, want) {
			t.Fatalf("sample %s was not pushed (pushed %v)", want, pushed)
		}
	}
	size := j.Size()
	if st := h.Stats(); st.Offered != size {
		t.Fatalf("%d entries offered, the journal holds %d", st.Offered, size)
	}
	// Pushing a sample again appends nothing and offers nothing.
	again, err := os.ReadFile("../source/testdata/ual_mailitemsaccessed.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := in.Ingest(t.Context(), bytes.NewReader(again), "push:again"); err != nil || res.Accepted != 0 || res.Duplicates == 0 {
		t.Fatalf("pushed again: %+v, %v", res, err)
	}
	if st := h.Stats(); st.Offered != size {
		t.Fatalf("duplicates were offered: %d offers for %d entries", st.Offered, size)
	}
	dec := source.NewDecoder(nil, hot)
	var events, multi int
	err = j.Read(t.Context(), 0, func(i uint64, en *journal.Entry) error {
		got, gotEvs, ok := h.Take(i)
		if !ok {
			t.Fatalf("entry %d was not handed over", i)
		}
		if got.Source != en.Source || got.Origin != en.Origin || got.RecordID != en.RecordID ||
			!bytes.Equal(got.Raw, en.Raw) || !got.Received.Equal(en.Received) {
			t.Fatalf("entry %d handed over as %+v, the journal holds %+v", i, got, *en)
		}
		dec.SetObserved(en.Received)
		want, err := dec.Decode(en.Raw, event.Origin{File: journalOrigin(en.Origin), Index: int(i)})
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if len(gotEvs) != len(want) {
			t.Fatalf("entry %d (%s): %d events handed over, %d decoded from the journal", i, en.Origin, len(gotEvs), len(want))
		}
		for k := range want {
			if g, w := eventtest.Of(gotEvs[k]), eventtest.Of(want[k]); !reflect.DeepEqual(g, w) {
				t.Fatalf("entry %d (%s) event %d differs:\nhanded over %+v\njournal     %+v", i, en.Origin, k, g, w)
			}
		}
		events += len(want)
		if len(want) > 1 {
			multi++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if multi == 0 || events <= int(size) {
		t.Fatalf("%d events in %d entries, %d of several events: the samples lack a record of several events", events, size, multi)
	}
	if st := h.Stats(); st.Taken != size {
		t.Fatalf("taken %d of %d", st.Taken, size)
	}
}

// The handoff's bounds: a slot taken by a later entry loses the older
// one, entries past the byte bound are refused, and entries detection
// read from the journal already are not held.
func TestHandoffBounds(t *testing.T) {
	en := func(n int) journal.Entry { return journal.Entry{Source: "s", RecordID: "r", Raw: make([]byte, n)} }
	h := NewHandoff(4, 1000)
	h.Offer(1, en(10), nil)
	h.Offer(5, en(10), nil) // the slot of 1
	if _, _, ok := h.Take(1); ok {
		t.Fatal("entry 1 still held after entry 5 took its slot")
	}
	if _, _, ok := h.Take(5); !ok {
		t.Fatal("entry 5 not held")
	}
	h.Offer(6, en(400), nil)
	h.Offer(7, en(400), nil) // 2×400 each: over 1000 with 6 held
	if !h.Has(6) || h.Has(7) {
		t.Fatalf("byte bound: 6 held %v, 7 held %v", h.Has(6), h.Has(7))
	}
	h.Take(6)
	h.Passed(9)
	h.Offer(8, en(10), nil)
	if h.Has(8) {
		t.Fatal("an entry detection has passed is held")
	}
	h.Offer(9, en(10), nil)
	if !h.Has(9) {
		t.Fatal("entry 9 not held")
	}
	if st := h.Stats(); st != (HandoffStats{Offered: 4, Taken: 2, Refused: 1, Late: 1}) {
		t.Fatalf("stats %+v", st)
	}
}

// Detection over entries push ingest handed over finds what it finds
// reading the journal, and reads no handed-over entry from the journal.
func TestWatcherTakesHandedOverEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	r := newWatchRig(t)
	r.handoff = NewHandoff(0, 0)
	in := NewIngester(r.j, filepath.Join(r.dir, "quarantine.jsonl"))
	in.Handoff, in.Hot = r.handoff, detectionHot(t)
	var body bytes.Buffer
	for _, half := range r.halves {
		for _, en := range half {
			body.Write(en.Raw)
			body.WriteByte('\n')
		}
	}
	res, err := in.Ingest(t.Context(), &body, "push:test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != int64(r.j.Size()) || res.Quarantined != 0 {
		t.Fatalf("pushed: %+v, journal %d", res, r.j.Size())
	}
	_, withHandoff := r.run(t)
	if st := r.handoff.Stats(); st.Taken != r.j.Size() {
		t.Fatalf("detection took %d of %d entries from the handoff (%+v)", st.Taken, r.j.Size(), st)
	}
	// The same journal read from scratch, every entry decoded from it.
	r.handoff = nil
	r.state = filepath.Join(r.dir, "detect-journal")
	_, fromJournal := r.run(t)
	if len(fromJournal) == 0 {
		t.Fatal("no incident")
	}
	if !slices.Equal(withHandoff, fromJournal) {
		t.Fatalf("with the handoff %d incidents:\n%s\nfrom the journal %d:\n%s", len(withHandoff), strings.Join(withHandoff, "\n"),
			len(fromJournal), strings.Join(fromJournal, "\n"))
	}
}
