package index

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// entriesOf reads the tenant's records as journal entries.
func entriesOf(t *testing.T, files []string) []journal.Entry {
	t.Helper()
	var out []journal.Entry
	_, err := source.ReadPaths(context.Background(), files, source.Options{}, func(e *event.Event) error {
		out = append(out, journal.Entry{Source: e.Source, Origin: e.Origin.File, RecordID: e.RecordID, Raw: e.Raw})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFollowerResumesWithoutDuplicates: a follower indexes a journal its
// process appends to, stops, and a new follower (a restarted vigil serve)
// resumes from the persisted position; the result equals a rebuild.
func TestFollowerResumesWithoutDuplicates(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	idxDir := filepath.Join(t.TempDir(), "idx")
	entries := entriesOf(t, tenantFiles(t))
	half := len(entries) / 2
	quiet := slog.New(slog.DiscardHandler)

	j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	run := func(part []journal.Entry, wantBefore uint64) {
		x, err := Open(ctx, idxDir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := NewFollower(x, data, j, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if next, _, _ := f.Position(); next != wantBefore {
			t.Fatalf("follower starts at %d, want the persisted %d", next, wantBefore)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- f.Run(rctx) }()
		for c := range slices.Chunk(part, 2000) {
			if _, err := j.AppendBatch(ctx, c); err != nil {
				t.Fatal(err)
			}
			f.Wake()
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		if err := f.WaitFor(wctx, j.Size()); err != nil {
			t.Fatalf("waiting for the follower: %v", err)
		}
		wcancel()
		if f.Behind() != 0 {
			t.Fatalf("follower is %d entries behind after WaitFor", f.Behind())
		}
		cancel()
		<-done
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run(entries[:half], 0)
	first := j.Size()
	// Restarted: the position came from the index, so nothing is indexed twice.
	run(entries[half:], first)
	total := j.Size()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	inc, err := Open(ctx, idxDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	full, _ := rebuilt(t, data, Options{})
	a := sameRows(t, inc, full, "the followed index", "events", "mail_access", "signins", "audits", "unindexed")
	if uint64(len(a["events"])) < total {
		t.Errorf("%d events for %d journal entries", len(a["events"]), total)
	}
	if next, _ := inc.Next(ctx); next != total {
		t.Errorf("persisted position %d, journal holds %d", next, total)
	}
}

// newFollowRig opens a journal in data, an index and a follower of it,
// closed when the test ends.
func newFollowRig(t *testing.T, data string) (*journal.Journal, *Index, *Follower) {
	t.Helper()
	j, err := journal.Open(context.Background(), data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	x, err := Open(context.Background(), filepath.Join(t.TempDir(), "idx"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	f, err := NewFollower(x, data, j, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return j, x, f
}

// TestFollowerTakesOfferedRows: entries detection decoded (with its own
// decoder: hot fields, the receipt as observed time) and offered are not
// decoded again, and the index is the same as a rebuild's.
func TestFollowerTakesOfferedRows(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	entries := entriesOf(t, tenantFiles(t))
	j, x, f := newFollowRig(t, data)
	dec := source.NewDecoder(nil, event.MailAccessFields)
	for c := range slices.Chunk(entries, 3000) {
		from := j.Size()
		if _, err := j.AppendBatch(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := j.Read(ctx, from, func(i uint64, en *journal.Entry) error {
			dec.SetObserved(en.Received)
			evs, err := dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin, Index: int(i)})
			f.Offer(i, en, evs, err)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// An offer for an entry the index holds already is ignored.
		if err := f.Step(ctx); err != nil {
			t.Fatal(err)
		}
		f.Offer(from, &c[0], nil, fmt.Errorf("stale"))
	}
	if used, dropped := f.Shared(); used != j.Size() || dropped != 0 {
		t.Fatalf("%d of %d entries indexed from offered rows, %d offers refused", used, j.Size(), dropped)
	}
	full, _ := rebuilt(t, data, Options{})
	a := sameRows(t, x, full, "the index from offered rows", "events", "mail_access", "signins", "audits", "unindexed")
	if len(a["events"]) == 0 || len(a["mail_access"]) == 0 {
		t.Fatalf("nothing indexed: %d events, %d mail rows", len(a["events"]), len(a["mail_access"]))
	}
}

// TestFollowerPacedMixesOfferedAndRead: a follower paced by detection
// takes the offered entries' rows without reading the journal for them and
// reads the runs of entries nobody offered, stopping at the pace; the
// index equals a rebuild, and every offered entry was taken.
func TestFollowerPacedMixesOfferedAndRead(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	entries := entriesOf(t, tenantFiles(t))
	j, x, f := newFollowRig(t, data)
	if _, err := j.AppendBatch(ctx, entries); err != nil {
		t.Fatal(err)
	}
	size := j.Size()
	// Runs of 50 entries offered, then 50 not; the first entry is not
	// offered, so the update starts with a journal read.
	offered := func(i uint64) bool { return i > 0 && (i/50)%2 == 0 }
	var want uint64
	dec := source.NewDecoder(nil, event.MailAccessFields)
	if err := j.Read(ctx, 0, func(i uint64, en *journal.Entry) error {
		if !offered(i) {
			return nil
		}
		want++
		dec.SetObserved(en.Received)
		evs, err := dec.Decode(en.Raw, event.Origin{File: "journal:" + en.Origin, Index: int(i)})
		f.Offer(i, en, evs, err)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The follower reads the journal through a log that records what it
	// gave out.
	counted := &readCounter{Log: j, read: map[uint64]bool{}}
	f.j = counted
	pace := size/2 + 25 // inside an offered run
	f.SetPace(func() uint64 { return pace }, time.Hour)
	if err := f.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if next, _, _ := f.Position(); next != pace {
		t.Fatalf("paced at %d, the index holds [0, %d)", pace, next)
	}
	pace = size
	if err := f.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if used, dropped := f.Shared(); used != want || dropped != 0 {
		t.Fatalf("%d entries indexed from offered rows, %d offered; %d offers refused", used, want, dropped)
	}
	for i := range size {
		if offered(i) == counted.read[i] {
			t.Fatalf("entry %d: offered %v, read from the journal %v", i, offered(i), counted.read[i])
		}
	}
	full, _ := rebuilt(t, data, Options{})
	a := sameRows(t, x, full, "the index from offered rows and the journal", "events", "mail_access", "signins", "audits", "unindexed")
	if len(a["events"]) == 0 || len(a["mail_access"]) == 0 {
		t.Fatalf("nothing indexed: %d events, %d mail rows", len(a["events"]), len(a["mail_access"]))
	}
}

// readCounter is a journal that records which entries Read gave out.
type readCounter struct {
	journal.Log
	read map[uint64]bool
}

func (r *readCounter) Read(ctx context.Context, from uint64, fn func(uint64, *journal.Entry) error) error {
	return r.Log.Read(ctx, from, func(i uint64, e *journal.Entry) error {
		err := fn(i, e)
		if err == nil {
			r.read[i] = true
		}
		return err
	})
}

// TestRowCacheWindow: offers are held up to sharedMax entries past the
// index's position, or past what an update in progress has taken when
// that is further.
func TestRowCacheWindow(t *testing.T) {
	for _, tc := range []struct {
		name             string
		next, floor, idx uint64
		held             bool
	}{
		{"next to the position", 100, 0, 100, true},
		{"last in the window", 100, 0, 100 + sharedMax - 1, true},
		{"past the window", 100, 0, 100 + sharedMax, false},
		{"past the position, in the window of what was taken", 100, 50_000, 100 + sharedMax, true},
		{"past what was taken", 100, 50_000, 50_000 + sharedMax, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &rowCache{floor: tc.floor}
			if got := c.room(tc.idx, tc.next); got != tc.held {
				t.Fatalf("entry %d with the index at %d and %d taken: held %v, want %v", tc.idx, tc.next, tc.floor, got, tc.held)
			}
			if want := map[bool]uint64{true: 0, false: 1}[tc.held]; c.dropped != want {
				t.Fatalf("%d refusals counted, want %d", c.dropped, want)
			}
		})
	}
}

// TestFollowerWaitGivesUp: WaitFor for entries the journal never gets
// ends with the caller's context.
func TestFollowerWaitGivesUp(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	j, _, f := newFollowRig(t, data)
	wctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.WaitFor(wctx, 1); err != context.Canceled {
		t.Fatalf("WaitFor past the journal: %v, want context.Canceled", err)
	}
	ro, err := Open(ctx, filepath.Join(t.TempDir(), "ro"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	ro, err = Open(ctx, filepath.Join(filepath.Dir(ro.path), "ro"), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := NewFollower(ro, data, j, nil); err == nil {
		t.Fatal("a follower over a read-only index was accepted")
	}
}

// TestRetentionDropsOldEntries: entries received before the horizon leave
// every table, the journal keeps them, later entries stay, and a rebuild
// with the same horizon equals the incremental index.
func TestRetentionDropsOldEntries(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	entries := entriesOf(t, tenantFiles(t))
	half := len(entries) / 2
	now := time.Now()
	for i := range entries {
		if i < half {
			entries[i].Received = now.Add(-40 * 24 * time.Hour)
		} else {
			entries[i].Received = now.Add(-time.Hour)
		}
	}
	j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Two appends with an update between, as a follower sees them.
	inc, err := Open(ctx, filepath.Join(t.TempDir(), "inc"), Options{Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	if _, err := j.AppendBatch(ctx, entries[:half+10]); err != nil {
		t.Fatal(err)
	}
	if _, err := inc.UpdateFrom(ctx, data, j); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendBatch(ctx, entries[half+10:]); err != nil {
		t.Fatal(err)
	}
	// The second update is within expireEvery of the first: nothing new
	// is old, so nothing more may go.
	if _, err := inc.UpdateFrom(ctx, data, j); err != nil {
		t.Fatal(err)
	}
	total := j.Size()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var minIdx, n uint64
	if err := inc.db.QueryRowContext(ctx, `SELECT min(idx), count(*) FROM events`).Scan(&minIdx, &n); err != nil {
		t.Fatal(err)
	}
	if minIdx != uint64(half) || n == 0 {
		t.Fatalf("after retention the first event is of entry %d (%d events), want %d", minIdx, n, half)
	}
	for _, tbl := range []string{"mail_access", "unindexed"} {
		var old int
		if err := inc.db.QueryRowContext(ctx, `SELECT count(*) FROM `+tbl+` WHERE idx < ?`, half).Scan(&old); err != nil || old != 0 {
			t.Fatalf("%s keeps %d rows of expired entries (%v)", tbl, old, err)
		}
	}
	st, err := inc.Status(ctx, data)
	if err != nil || st.RetainedFrom != uint64(half) || st.Next != total || st.Journal != total {
		t.Fatalf("status %+v (%v), want retained from %d of %d", st, err, half, total)
	}
	// A search for everything sees only what is kept.
	res, err := inc.Search(ctx, Request{Count: true})
	if err != nil || fmt.Sprint(res.Rows[0][0]) != fmt.Sprint(n) {
		t.Fatalf("count after retention: %v %v, want %d", res, err, n)
	}
	// The journal still holds every entry.
	count := 0
	if err := journal.Replay(ctx, data, 0, func(uint64, *journal.Entry) error { count++; return nil }); err != nil || uint64(count) != total {
		t.Fatalf("journal replays %d of %d entries (%v)", count, total, err)
	}
	full, rst := rebuilt(t, data, Options{Retention: 30 * 24 * time.Hour})
	if rst.Dropped == 0 {
		t.Fatalf("rebuild dropped nothing: %+v", rst)
	}
	sameRows(t, inc, full, "incremental", "events", "mail_access", "unindexed")
}

// TestLookupIndexes: a rebuilt index, and an index that lacked them when
// opened for writing, have the lookup indexes; a rebuild answers the same
// lookups as an incremental index (TestReindexEqualsIncremental covers the
// rows).
func TestLookupIndexes(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	ingest(t, data, tenantFiles(t)[:1], 5000, nil)
	names := func(x *Index) []string {
		res, err := x.query(ctx, `SELECT index_name FROM duckdb_indexes() ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range res.Rows {
			out = append(out, fmt.Sprint(r[0]))
		}
		return out
	}
	var want []string
	for _, li := range lookupIndexes {
		want = append(want, li.name)
	}
	slices.Sort(want)
	dir := filepath.Join(t.TempDir(), "idx")
	x, err := Open(ctx, dir, Options{Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Rebuild(ctx, data); err != nil {
		t.Fatal(err)
	}
	if got := names(x); !slices.Equal(got, want) {
		t.Fatalf("after rebuild: lookup indexes %v, want %v", got, want)
	}
	// An index from before the lookup indexes gets them when next opened
	// for writing.
	if err := x.dropLookupIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	x.Close()
	x, err = Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if got := names(x); !slices.Equal(got, want) {
		t.Fatalf("after reopening: lookup indexes %v, want %v", got, want)
	}
	// A lookup through them answers as a scan does.
	var tok string
	if err := x.db.QueryRowContext(ctx, `SELECT token FROM mail_access WHERE token IS NOT NULL LIMIT 1`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	var viaIndex, scan int
	if err := x.db.QueryRowContext(ctx, `SELECT count(*) FROM mail_access WHERE token = ?`, tok).Scan(&viaIndex); err != nil {
		t.Fatal(err)
	}
	if err := x.db.QueryRowContext(ctx, `SELECT count(*) FROM mail_access WHERE token || '' = ?`, tok).Scan(&scan); err != nil {
		t.Fatal(err)
	}
	if viaIndex == 0 || viaIndex != scan {
		t.Fatalf("token %s: %d rows through the index, %d by a scan", tok, viaIndex, scan)
	}
	// Searches that probe the lookup indexes (a term, or a conjunction
	// holding one) answer as the same query written so that it cannot (an
	// OR of the term with itself).
	var msg, ip string
	if err := x.db.QueryRowContext(ctx, `SELECT internet_message_id, ip FROM mail_access WHERE internet_message_id IS NOT NULL AND ip IS NOT NULL LIMIT 1`).Scan(&msg, &ip); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		table Table
		term  string
	}{
		{Events, "token:" + tok}, {MailAccess, "token:" + tok}, {Events, "ip:" + ip},
		{MailAccess, `message:"` + msg + `"`}, {Events, `message:"` + msg + `"`},
	} {
		for _, extra := range []string{"", " op:MailItemsAccessed", " -mailbox:nobody@example.com"} {
			if c.table == MailAccess && extra == " op:MailItemsAccessed" {
				continue
			}
			q := c.term + extra
			// Events reach a message through mail_access: no probe there.
			want := !(c.table == Events && strings.HasPrefix(c.term, "message:"))
			if _, _, ok := probe(mustParse(t, q), c.table); ok != want {
				t.Errorf("%s on %s: probe %v, want %v", q, c.table, ok, want)
			}
			a, err := x.Search(ctx, Request{Query: q, Table: c.table, Limit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			b, err := x.Search(ctx, Request{Query: "(" + c.term + " OR " + c.term + ")" + extra, Table: c.table, Limit: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Rows) == 0 || fmt.Sprint(a.Rows) != fmt.Sprint(b.Rows) {
				t.Errorf("%s on %s: %d rows with the probe, %d without, or they differ", q, c.table, len(a.Rows), len(b.Rows))
			}
		}
	}
}

func mustParse(t *testing.T, q string) *Node {
	t.Helper()
	n, err := Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
