package journal

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Durable append: each Append/AppendBatch returns only after fsync. The
// appenders share one journal, so their entries are group-committed.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 256} {
		for _, p := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("batch=%d/appenders=%d", batch, p), func(b *testing.B) {
				benchAppend(b, p, batch, false)
			})
		}
	}
	b.Run("batch=256/appenders=8/zstd", func(b *testing.B) { benchAppend(b, 8, 256, true) })
}

func benchAppend(b *testing.B, appenders, batch int, compress bool) {
	opts := quietOptions()
	opts.Compress = compress
	j := mustOpen(b, b.TempDir(), opts)
	defer j.Close()
	pool := testEntries(11, 4096, 1500)
	for i := range pool {
		pool[i].RecordID = "" // distinct records; dedup is measured separately
	}
	b.SetBytes(int64(len(pool[0].Raw)))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + appenders - 1) / appenders
	ctx := context.Background()
	for w := 0; w < appenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < per; done += batch {
				k := min(batch, per-done)
				off := (w*per + done) % (len(pool) - batch)
				if _, err := j.AppendBatch(ctx, pool[off:off+k]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := j.Stats()
	b.ReportMetric(float64(st.Appended)/b.Elapsed().Seconds(), "events/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "events/commit")
	}
}

// BenchmarkDedupHit measures acknowledging re-delivered records.
func BenchmarkDedupHit(b *testing.B) {
	j := mustOpen(b, b.TempDir(), quietOptions())
	defer j.Close()
	es := testEntries(12, 256, 1500)
	ctx := context.Background()
	if _, err := j.AppendBatch(ctx, es); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(es[0].Raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(es) {
		if _, err := j.AppendBatch(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
}

// verifyCorpus builds (once per process) a journal of about 64 MiB of
// 1.5 KB records.
var verifyCorpus = map[bool]string{}
var verifyCorpusMu sync.Mutex

func benchJournal(b *testing.B, compress bool) string {
	verifyCorpusMu.Lock()
	defer verifyCorpusMu.Unlock()
	if dir, ok := verifyCorpus[compress]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "vigil-journal-bench")
	if err != nil {
		b.Fatal(err)
	}
	opts := quietOptions()
	opts.noSync = true
	opts.Compress = compress
	j := mustOpen(b, dir, opts)
	es := testEntries(13, 44_000, 1500)
	for i := 0; i < len(es); i += 1000 {
		if _, err := j.AppendBatch(context.Background(), es[i:min(i+1000, len(es))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	verifyCorpus[compress] = dir
	return dir
}

// BenchmarkVerify measures Verify over the whole journal; MB/s counts the
// entries' uncompressed bytes, the same bytes BenchmarkSHA256 hashes.
func BenchmarkVerify(b *testing.B) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "zstd"
		}
		b.Run(name, func(b *testing.B) {
			dir := benchJournal(b, compress)
			res := mustVerify(b, dir)
			b.SetBytes(res.EntryBytes)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Verify(context.Background(), dir, VerifyOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.Entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkSHA256 hashes the entries of the verify corpus with plain
// SHA-256 on one core: the yardstick for verify's speed.
func BenchmarkSHA256(b *testing.B) {
	dir := benchJournal(b, false)
	var encs [][]byte
	var total int64
	if err := Replay(context.Background(), dir, 0, func(_ uint64, e *Entry) error {
		enc := appendEntry(nil, e)
		encs = append(encs, enc)
		total += int64(len(enc))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, e := range encs {
			sha256.Sum256(e)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range verifyCorpus {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// BenchmarkContentID measures the content id of a ~1.5 KB record, paid by
// ingest for each record without an id of its own.
func BenchmarkContentID(b *testing.B) {
	raw := testEntries(3, 1, 1500)[0].Raw
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		_ = ContentID(raw)
	}
}

// BenchmarkDedupLookup measures finding one key (the confirming read of
// the ids file excluded): a hit in the recent table, a hit in the oldest
// of four runs holding 7.5 M keys, and a new key, the common case, which
// every run's filter must turn away.
func BenchmarkDedupLookup(b *testing.B) {
	dir := b.TempDir()
	if err := os.Mkdir(filepath.Join(dir, dedupDir), 0o700); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	key := func() dedupKey { return dedupKey{rng.Uint64() | 1, rng.Uint64()} }
	d := newDedupSet(dir, 1<<20)
	var old []dedupKey
	lo := uint64(0)
	for _, n := range []int{4 << 20, 2 << 20, 1 << 20, 1 << 19} {
		var tab dedupIndex
		for i := range n {
			k := key()
			tab.insert(k, lo+uint64(i))
			if lo == 0 && i < 1<<20 {
				old = append(old, k)
			}
		}
		r, err := writeRunFromTable(dir, lo, lo+uint64(n), &tab)
		if err != nil {
			b.Fatal(err)
		}
		d.runs = append(d.runs, r)
		lo += uint64(n)
	}
	defer d.close()
	var recent []dedupKey
	for i := range 1 << 20 {
		k := key()
		d.recent.insert(k, lo+uint64(i))
		recent = append(recent, k)
	}
	absent := make([]dedupKey, 1<<20)
	for i := range absent {
		absent[i] = key()
	}
	for _, c := range []struct {
		name string
		keys []dedupKey
		want bool
	}{{"recent", recent, true}, {"oldest-run", old, true}, {"absent", absent, false}} {
		b.Run(c.name, func(b *testing.B) {
			d.begin()
			defer d.end()
			i := 0
			for b.Loop() {
				if _, ok, _ := d.lookup(c.keys[i&(1<<20-1)]); ok != c.want {
					b.Fatalf("key %d: found %v", i, ok)
				}
				i++
			}
		})
	}
}

// BenchmarkDedupHitRun measures acknowledging re-delivered records whose
// originals are in dedup runs (each found key confirmed against the ids
// file), against BenchmarkDedupHit's recent-table hits.
func BenchmarkDedupHitRun(b *testing.B) {
	opts := quietOptions()
	opts.noSync = true
	opts.DedupMemoryKeys = 1 << 16
	j := mustOpen(b, b.TempDir(), opts)
	defer j.Close()
	var old []Entry
	for _, e := range dedupEntries("r", 1<<20) {
		if e.RecordID != "" {
			old = append(old, e)
		}
	}
	appendAll(b, j, old, 4096)
	waitDedupIdle(b, j)
	old = old[:len(old)/2] // in runs, not the recent table
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(old), func(i, k int) { old[i], old[k] = old[k], old[i] })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 256 {
		off := i % (len(old) - 256)
		acks, err := j.AppendBatch(ctx, old[off:off+256])
		if err != nil || !acks[0].Duplicate {
			b.Fatal(acks[0], err)
		}
	}
}
