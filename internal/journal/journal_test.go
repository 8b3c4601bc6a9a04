package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// testEntry returns a realistic entry of about size bytes of raw JSON.
func testEntry(rng *rand.Rand, i int, size int) Entry {
	id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
	raw := fmt.Sprintf(`{"CreationTime":"2023-06-%02dT10:%02d:%02d","Id":"%s","Operation":"MailItemsAccessed","UserId":"user%d@contoso.com","ClientIPAddress":"203.0.113.%d","Seq":%d,"Pad":"`,
		1+i%28, i%60, (i/60)%60, id, rng.IntN(5000), rng.IntN(255), i)
	pad := size - len(raw) - 2
	var b strings.Builder
	b.WriteString(raw)
	for b.Len() < len(raw)+pad {
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(36)])
	}
	b.WriteString(`"}`)
	return Entry{
		Source:   "m365.ual",
		Origin:   "testdata/ual.json",
		Received: time.Unix(1700000000, int64(i)).UTC(),
		RecordID: id,
		Raw:      []byte(b.String()),
	}
}

func testEntries(seed uint64, n, size int) []Entry {
	rng := rand.New(rand.NewPCG(seed, 1))
	es := make([]Entry, n)
	for i := range es {
		es[i] = testEntry(rng, i, size)
	}
	return es
}

func quietOptions() Options {
	return Options{Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil)), CheckpointInterval: -1}
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

func mustOpen(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	j, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func mustVerify(t testing.TB, dir string) VerifyResult {
	t.Helper()
	res, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

func TestAppendReadVerifyReopen(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			opts := quietOptions()
			opts.Compress = compress
			opts.SegmentSize = 64 << 10 // several segments
			j := mustOpen(t, dir, opts)
			es := testEntries(1, 500, 1500)
			for k := 0; k < 300; k += 50 {
				acks, err := j.AppendBatch(ctx, es[k:k+50])
				if err != nil {
					t.Fatal(err)
				}
				for i, a := range acks {
					if a.Index != uint64(k+i) || a.Duplicate {
						t.Fatalf("ack %d = %+v", k+i, a)
					}
				}
			}
			// Re-delivery of 100 old records mixed with 200 new ones.
			batch := append(append([]Entry{}, es[100:200]...), es[300:]...)
			acks, err := j.AppendBatch(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range acks {
				want := Ack{Index: uint64(100 + i), Duplicate: true}
				if i >= 100 {
					want = Ack{Index: uint64(300 + i - 100)}
				}
				if a != want {
					t.Fatalf("ack %d = %+v, want %+v", i, a, want)
				}
			}
			if s := j.Stats(); s.Appended != 500 || s.Duplicates != 100 {
				t.Fatalf("stats %+v", s)
			}
			checkRead(t, j, es, 0)
			checkRead(t, j, es, 437)
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			res := mustVerify(t, dir)
			if res.Entries != 500 || res.Segments < 3 || len(res.Notes) != 0 {
				t.Fatalf("verify: %+v", res)
			}
			if _, err := j.Append(ctx, es[0]); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}

			j = mustOpen(t, dir, opts)
			defer j.Close()
			if j.Size() != 500 {
				t.Fatalf("size after reopen %d", j.Size())
			}
			a, err := j.Append(ctx, es[42])
			if err != nil || a != (Ack{Index: 42, Duplicate: true}) {
				t.Fatalf("duplicate after reopen: %+v %v", a, err)
			}
			noID := es[42]
			noID.RecordID = ""
			if a, err := j.Append(ctx, noID); err != nil || a != (Ack{Index: 500}) {
				t.Fatalf("entry without record id: %+v %v", a, err)
			}
			var got []Entry
			if err := Replay(ctx, dir, 498, func(i uint64, e *Entry) error {
				c := *e
				c.Raw = bytes.Clone(e.Raw)
				got = append(got, c)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || !bytes.Equal(got[2].Raw, es[42].Raw) || got[2].RecordID != "" {
				t.Fatalf("replay got %d entries", len(got))
			}
		})
	}
}

func checkRead(t *testing.T, j *Journal, es []Entry, from uint64) {
	t.Helper()
	next := from
	err := j.Read(t.Context(), from, func(i uint64, e *Entry) error {
		if i != next {
			return fmt.Errorf("index %d, want %d", i, next)
		}
		w := es[i]
		if e.Source != w.Source || e.Origin != w.Origin || e.RecordID != w.RecordID || !e.Received.Equal(w.Received) || !bytes.Equal(e.Raw, w.Raw) {
			return fmt.Errorf("entry %d differs: %+v", i, e)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != uint64(len(es)) {
		t.Fatalf("read up to %d, want %d", next, len(es))
	}
}

// TestMerkleAgainstReference checks roots and proofs against
// transparency-dev/merkle for every size up to 600 (crossing tile
// boundaries), and that the proofs verify with its standard verifier.
func TestMerkleAgainstReference(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	j := mustOpen(t, dir, quietOptions())
	defer j.Close()
	const n = 600
	es := testEntries(2, n, 100)
	if _, err := j.AppendBatch(ctx, es); err != nil {
		t.Fatal(err)
	}
	h := rfc6962.DefaultHasher
	ref := make([][]byte, n)
	for i := range es {
		ref[i] = h.HashLeaf(appendEntry(nil, &es[i]))
		got, err := j.LeafHash(uint64(i))
		if err != nil || !bytes.Equal(got[:], ref[i]) {
			t.Fatalf("leaf %d: %x vs %x (%v)", i, got, ref[i], err)
		}
	}
	refRoot := func(size int) []byte { return refMTH(ref[:size]) }
	for size := uint64(0); size <= n; size++ {
		root, err := j.RootAt(size)
		if err != nil {
			t.Fatal(err)
		}
		want := refRoot(int(size))
		if !bytes.Equal(root[:], want) {
			t.Fatalf("root at %d: %x, want %x", size, root, want)
		}
		if size == 0 {
			continue
		}
		for _, idx := range []uint64{0, size / 3, size / 2, size - 1} {
			p, err := j.InclusionProof(idx, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(h, idx, size, ref[idx], hashSlices(p), want); err != nil {
				t.Fatalf("inclusion %d in %d: %v", idx, size, err)
			}
		}
		for _, s1 := range []uint64{1, size / 2, size - 1} {
			if s1 == 0 {
				continue
			}
			p, err := j.ConsistencyProof(s1, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(h, s1, size, hashSlices(p), refRoot(int(s1)), want); err != nil {
				t.Fatalf("consistency %d→%d: %v", s1, size, err)
			}
		}
	}
	size, root := j.Root()
	if size != n || !bytes.Equal(root[:], refRoot(n)) {
		t.Fatalf("Root() = %d %x", size, root)
	}
}

// refMTH is RFC 6962's recursive Merkle Tree Hash, written from the RFC.
func refMTH(leaves [][]byte) []byte {
	h := rfc6962.DefaultHasher
	switch len(leaves) {
	case 0:
		return h.EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return h.HashChildren(refMTH(leaves[:k]), refMTH(leaves[k:]))
}

func TestConcurrentAppenders(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	opts := quietOptions()
	opts.SegmentSize = 256 << 10
	j := mustOpen(t, dir, opts)
	const workers, per = 16, 100
	es := testEntries(3, workers*per, 700)
	seen := make([]int32, workers*per)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * per; i < (w+1)*per; i++ {
				// Every record is sent twice, by two appenders.
				for _, e := range []Entry{es[i], es[(i+per)%len(es)]} {
					a, err := j.Append(ctx, e)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if !a.Duplicate {
						seen[a.Index]++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("index %d acknowledged as new %d times", i, c)
		}
	}
	st := j.Stats()
	if st.Appended != workers*per || st.Duplicates != workers*per {
		t.Fatalf("stats %+v", st)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, dir); res.Entries != workers*per {
		t.Fatalf("verified %d", res.Entries)
	}
}

func TestRetention(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := quietOptions()
	opts.SegmentSize = 32 << 10
	opts.Retention = 30 * 24 * time.Hour
	opts.Now = func() time.Time { return now }
	j := mustOpen(t, dir, opts)
	es := testEntries(4, 400, 1000)
	for i := range es {
		es[i].Received = now.Add(time.Duration(i) * 6 * time.Hour) // 100 days
	}
	for i := 0; i < len(es); i += 10 {
		if _, err := j.AppendBatch(ctx, es[i:i+10]); err != nil {
			t.Fatal(err)
		}
	}
	cpBefore, err := j.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := j.Expire(ctx, now.Add(100*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Entries received before day 70 may go; whole segments only.
	if expired == 0 || expired > 280 {
		t.Fatalf("expired %d entries", expired)
	}
	if err := j.Read(ctx, 0, func(uint64, *Entry) error { return nil }); !errors.Is(err, ErrExpired) {
		t.Fatalf("read of expired entries: %v", err)
	}
	checkRead(t, j, es, expired)
	// Proofs still work across the expired range.
	p, err := j.InclusionProof(0, 400)
	if err != nil {
		t.Fatal(err)
	}
	lh, _ := j.LeafHash(0)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 0, 400, lh[:], hashSlices(p), cpBefore.Root[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, es[399]); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(ctx, dir, VerifyOptions{Checkpoint: cpBefore.Note})
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired != expired || res.Entries != 400 {
		t.Fatalf("verify %+v", res)
	}
	j = mustOpen(t, dir, opts)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Deleting the expiry note makes the missing segments damage.
	if err := os.Remove(filepath.Join(dir, expiredFile)); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(ctx, dir, VerifyOptions{})
	var d *Damage
	if !errors.As(err, &d) || d.Kind != "missing segment" {
		t.Fatalf("verify without expiry note: %v", err)
	}
}

func TestTornTailCut(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	j := mustOpen(t, dir, quietOptions())
	es := testEntries(5, 20, 500)
	if _, err := j.AppendBatch(ctx, es[:10]); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, segDir, segName(0))
	// A block that was being written when the process died: a valid frame
	// cut in the middle.
	enc := appendEntry(nil, &es[10])
	w := appendFrame(nil, frameEntries, 10, 1, len(enc)+1, append([]byte{byte(len(enc))}, enc...))
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(w[:len(w)/2])
	f.Close()
	res := mustVerify(t, dir)
	if res.Entries != 10 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "torn tail") {
		t.Fatalf("verify of a torn journal: %+v", res)
	}
	var logBuf bytes.Buffer
	opts := quietOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	j = mustOpen(t, dir, opts)
	if !strings.Contains(logBuf.String(), "cut torn tail") || !strings.Contains(logBuf.String(), "bytes="+fmt.Sprint(len(w)/2)) {
		t.Fatalf("log: %s", logBuf.String())
	}
	a, err := j.Append(ctx, es[10])
	if err != nil || a.Index != 10 {
		t.Fatalf("append after cut: %+v %v", a, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, dir); res.Entries != 11 || len(res.Notes) != 0 {
		t.Fatalf("verify: %+v", res)
	}
}

func TestDerivedFilesRebuilt(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	opts := quietOptions()
	opts.SegmentSize = 16 << 10
	j := mustOpen(t, dir, opts)
	es := testEntries(6, 700, 300)
	if _, err := j.AppendBatch(ctx, es); err != nil {
		t.Fatal(err)
	}
	_, root := j.Root()
	j.Close()
	for _, name := range []string{"leaves", "tiles", "ids"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	res := mustVerify(t, dir)
	if res.Root != root || len(res.Notes) != 1 {
		t.Fatalf("verify without derived files: %+v", res)
	}
	j = mustOpen(t, dir, opts)
	if a, err := j.Append(ctx, es[5]); err != nil || !a.Duplicate || a.Index != 5 {
		t.Fatalf("dedup after rebuild: %+v %v", a, err)
	}
	if _, r := j.Root(); r != root {
		t.Fatal("root changed after rebuild")
	}
	j.Close()
	if res := mustVerify(t, dir); len(res.Notes) != 0 {
		t.Fatalf("notes after rebuild: %v", res.Notes)
	}
}

func TestBadInput(t *testing.T) {
	ctx := t.Context()
	j := mustOpen(t, t.TempDir(), quietOptions())
	defer j.Close()
	_, err := j.Append(ctx, Entry{Source: "m365.ual", RecordID: "x", Raw: make([]byte, MaxEntrySize)})
	if err == nil || !strings.Contains(err.Error(), `record "x"`) {
		t.Fatalf("oversized entry: %v", err)
	}
	if _, err := Open(ctx, j.dir, quietOptions()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
	if st, err := os.Stat(filepath.Join(j.dir, keyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
}

func TestSegmentAgeRotation(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	opts := quietOptions()
	opts.SegmentAge = time.Hour
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	j := mustOpen(t, dir, opts)
	es := testEntries(7, 3, 100)
	for i := range es {
		if _, err := j.Append(ctx, es[i]); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(2 * time.Hour)
		mu.Unlock()
	}
	j.Close()
	segs, err := listSegments(dir)
	if err != nil || len(segs) != 3 {
		t.Fatalf("segments %v %v", segs, err)
	}
	mustVerify(t, dir)
}
