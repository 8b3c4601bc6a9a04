package index

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// BenchmarkRebuild indexes the journal in $VIGIL_BENCH_JOURNAL (or a small
// simulated one) from scratch; bench/search.sh measures at scale. It
// reports events per second of wall time, the CPU of the process (user +
// system, engine threads included) per event, and each step's CPU per
// event (stepHook; the loads run inside "read, decode, stage", beside the
// decoding, so a load step's CPU includes the decoding done meanwhile).
func BenchmarkRebuild(b *testing.B) {
	ctx := context.Background()
	data := os.Getenv("VIGIL_BENCH_JOURNAL")
	if data == "" {
		data = b.TempDir()
		ingest(b, data, tenantFiles(b), 5000, nil)
	}
	x, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	steps := map[string]time.Duration{}
	var order []string
	x.stepHook = stepCPU(steps, &order)
	runtime.GC()
	b.ResetTimer()
	c0 := cpuTime()
	var events uint64
	for range b.N {
		st, err := x.Rebuild(ctx, data)
		if err != nil {
			b.Fatal(err)
		}
		events += st.Events
	}
	cpu := cpuTime() - c0
	b.StopTimer()
	ev := float64(events)
	b.ReportMetric(ev/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/ev, "cpu-µs/event")
	if fi, err := os.Stat(filepath.Join(x.path, dbFile)); err == nil {
		b.ReportMetric(float64(fi.Size())/(ev/float64(b.N)), "file-bytes/event")
	}
	for _, s := range order {
		b.ReportMetric(float64(steps[s].Microseconds())/ev, strings.ReplaceAll(s, " ", "_")+"-cpu-µs/event")
	}
}

// BenchmarkDecode is the decoding part of Rebuild alone.
func BenchmarkDecode(b *testing.B) {
	ctx := context.Background()
	data := os.Getenv("VIGIL_BENCH_JOURNAL")
	if data == "" {
		data = b.TempDir()
		ingest(b, data, tenantFiles(b), 5000, nil)
	}
	b.ResetTimer()
	var n int
	for range b.N {
		dec := source.NewDecoder(nil, nil)
		err := journal.Replay(ctx, data, 0, func(i uint64, e *journal.Entry) error {
			d := decodeEntry(dec, i, e, nil)
			n += len(d.events)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIncremental measures updates as vigil serve's follower makes
// them: its process appends to the journal, and the index, built over the
// first half, catches up with UpdateFrom after every further chunk of
// $VIGIL_BENCH_CHUNK entries (default 10,000). Detection runs ahead of the
// index in a server, so before each update an alert is written for one
// entry in 2,000 of the chunk, for the update to link. The tenant is
// $VIGIL_BENCH_TENANT (a directory of `vigil simulate` output) or the
// tests' small one. It reports the CPU (user + system of the whole process,
// engine threads included) of the updates per event indexed, events per
// second of the updates' wall time, and each step's CPU per event
// (stepHook). Both totals include a checkpoint after the last update,
// which writes what the updates left in the engine's write-ahead log. Run with -benchtime=1x: one iteration is the whole journal.
func BenchmarkIncremental(b *testing.B) {
	ctx := context.Background()
	files := tenantFiles(b)
	if d := os.Getenv("VIGIL_BENCH_TENANT"); d != "" {
		files = []string{filepath.Join(d, "ual.jsonl"), filepath.Join(d, "signins.jsonl"), filepath.Join(d, "gws.jsonl")}
	}
	chunk := 10_000
	if v := os.Getenv("VIGIL_BENCH_CHUNK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("VIGIL_BENCH_CHUNK=%q: want a positive number", v)
		}
		chunk = n
	}
	// Count the entries first, to know where the first half ends.
	var total int
	if _, err := source.ReadPaths(ctx, files, source.Options{}, func(*event.Event) error { total++; return nil }); err != nil {
		b.Fatal(err)
	}

	type cost struct{ cpu, wall time.Duration }
	var (
		steps  = map[string]*cost{}
		order  []string
		upd    cost
		ckpt   cost // the final checkpoint
		events uint64
		rounds int
		// checkpoints the engine made during the updates, and the largest
		// write-ahead log seen after one
		checkpoints     int
		walSize, walMax int64
		bytesPerEvent   float64 // the database file after the last run
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		data := b.TempDir()
		x, err := Open(ctx, filepath.Join(b.TempDir(), "idx"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		var (
			cur     []journal.Entry
			pending []alert.Alert
			seen    int
		)
		update := func() {
			if len(cur) > 0 {
				if _, err := j.AppendBatch(ctx, cur); err != nil {
					b.Fatal(err)
				}
				cur = cur[:0]
			}
			if seen <= total/2 {
				return // the first half is indexed once, unmeasured
			}
			if x.stepHook == nil {
				if _, err := x.UpdateFrom(ctx, data, j); err != nil {
					b.Fatal(err)
				}
				x.stepHook = func(step string) func() {
					c0, t0 := cpuTime(), time.Now()
					return func() {
						c, ok := steps[step]
						if !ok {
							c = &cost{}
							steps[step] = c
							order = append(order, step)
						}
						c.cpu += cpuTime() - c0
						c.wall += time.Since(t0)
					}
				}
				return
			}
			if err := x.PutDetections(ctx, pending, nil, nil); err != nil {
				b.Fatal(err)
			}
			pending = pending[:0]
			runtime.GC()
			b.StartTimer()
			c0, t0 := cpuTime(), time.Now()
			st, err := x.UpdateFrom(ctx, data, j)
			upd.cpu += cpuTime() - c0
			upd.wall += time.Since(t0)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			events += st.Events
			rounds++
			// The engine checkpoints when its write-ahead log passes the
			// threshold: the log shrinks.
			if fi, err := os.Stat(filepath.Join(x.path, dbFile+".wal")); err == nil {
				if fi.Size() < walSize {
					checkpoints++
				}
				walSize = fi.Size()
				walMax = max(walMax, walSize)
			} else if walSize > 0 {
				checkpoints++
				walSize = 0
			}
		}
		_, err = source.ReadPaths(ctx, files, source.Options{}, func(e *event.Event) error {
			cur = append(cur, journal.Entry{Source: e.Source, Origin: e.Origin.File, RecordID: e.RecordID, Raw: e.Raw})
			seen++
			if seen > total/2 && seen%2000 == 0 && e.RecordID != "" {
				pending = append(pending, alertOn(e, "B1", "benchmark alert", alert.High))
			}
			if len(cur) == chunk {
				update()
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		update()
		// What the updates left in the write-ahead log is written to the
		// database by a checkpoint (at the threshold, or at close): part
		// of their cost.
		b.StartTimer()
		c0, t0 := cpuTime(), time.Now()
		if _, err := x.db.ExecContext(ctx, `CHECKPOINT`); err != nil {
			b.Fatal(err)
		}
		ckpt.cpu += cpuTime() - c0
		ckpt.wall += time.Since(t0)
		b.StopTimer()
		var all uint64
		if err := x.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&all); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(x.path, dbFile))
		if err != nil {
			b.Fatal(err)
		}
		bytesPerEvent = float64(fi.Size()) / float64(all)
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
		if err := x.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if events == 0 {
		b.Fatal("no event indexed by a measured update")
	}
	ev := float64(events)
	b.ReportMetric(float64((upd.cpu+ckpt.cpu).Microseconds())/ev, "cpu-µs/event")
	b.ReportMetric(ev/(upd.wall+ckpt.wall).Seconds(), "events/s")
	b.ReportMetric(float64(ckpt.cpu.Microseconds())/ev, "final_checkpoint-cpu-µs/event")
	b.ReportMetric(float64(events)/float64(rounds), "events/update")
	b.ReportMetric(float64(checkpoints), "checkpoints")
	b.ReportMetric(bytesPerEvent, "file-bytes/event")
	b.ReportMetric(float64(walMax)/(1<<20), "max-wal-MiB")
	for _, s := range order {
		b.ReportMetric(float64(steps[s].cpu.Microseconds())/ev, strings.ReplaceAll(s, " ", "_")+"-cpu-µs/event")
	}
}

// cpuTime is the user + system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(fmt.Sprintf("getrusage: %v", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWrite measures the index's write path alone, as vigil serve's
// follower runs it: detection has decoded every entry and offered its rows
// (Follower.Offer), so an update only appends them and commits. The
// journal is $VIGIL_BENCH_JOURNAL (a directory `vigil ingest --no-index`
// wrote) or the tests' small tenant. The first half is indexed
// unmeasured, then the second half by updates of $VIGIL_BENCH_CHUNK
// entries (default gatherEntries, what a follower under load takes at a
// time), each chunk decoded and offered unmeasured before its update. It
// reports the CPU (user + system of the process, engine threads included)
// of the updates and of a final checkpoint per event indexed, and each
// step's CPU per event. Run with -benchtime=1x: one iteration is the whole
// journal.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	data := os.Getenv("VIGIL_BENCH_JOURNAL")
	if data == "" {
		data = b.TempDir()
		ingest(b, data, tenantFiles(b), 5000, nil)
	}
	chunk := uint64(gatherEntries)
	if v := os.Getenv("VIGIL_BENCH_CHUNK"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			b.Fatalf("VIGIL_BENCH_CHUNK=%q: want a positive number", v)
		}
		chunk = n
	}
	total, err := JournalSize(data)
	if err != nil || total == 0 {
		b.Fatalf("journal %s: %d entries, %v", data, total, err)
	}
	half := total / 2
	read := func(ctx context.Context, from uint64, fn func(uint64, *journal.Entry) error) error {
		return journal.Replay(ctx, data, from, fn)
	}
	// offer decodes the entries [from, to) and offers their rows, as
	// detection does.
	dec := source.NewDecoder(nil, nil)
	offer := func(cache *rowCache, from, to uint64) {
		err := journal.Replay(ctx, data, from, func(i uint64, e *journal.Entry) error {
			if i >= to {
				return errLimit
			}
			cache.offer(i, &Rows{decodeEntry(dec, i, e, nil)})
			return nil
		})
		if err != nil && !errors.Is(err, errLimit) {
			b.Fatal(err)
		}
	}
	var (
		steps  = map[string]time.Duration{}
		order  []string
		upd    time.Duration
		ckpt   time.Duration
		events uint64
		rounds int
		bytes  float64
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		x, err := Open(ctx, filepath.Join(b.TempDir(), "idx"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		var cache rowCache
		// The cache holds at most sharedMax entries.
		for next := uint64(0); next < half; {
			to := min(next+sharedMax/2, half)
			offer(&cache, next, to)
			if _, err := x.update(ctx, data, read, &cache, to); err != nil {
				b.Fatal(err)
			}
			next = to
		}
		if os.Getenv("VIGIL_BENCH_MARK") != "" {
			// For a profiler recording the whole run: where the measured part begins.
			fmt.Fprintf(os.Stderr, "measured updates begin at %s\n", time.Now().Format(time.RFC3339Nano))
		}
		x.stepHook = stepCPU(steps, &order)
		for next := half; next < total; {
			to := min(next+chunk, total)
			offer(&cache, next, to)
			b.StartTimer()
			c0 := cpuTime()
			st, err := x.update(ctx, data, read, &cache, to)
			upd += cpuTime() - c0
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if st.Shared != to-next {
				b.Fatalf("update took %d offered entries of %d", st.Shared, to-next)
			}
			events += st.Events
			rounds++
			next = to
		}
		x.stepHook = nil
		b.StartTimer()
		c0 := cpuTime()
		if _, err := x.db.ExecContext(ctx, `CHECKPOINT`); err != nil {
			b.Fatal(err)
		}
		ckpt += cpuTime() - c0
		b.StopTimer()
		var all uint64
		if err := x.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&all); err != nil {
			b.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(x.path, dbFile)); err == nil {
			bytes = float64(fi.Size()) / float64(all)
		}
		if err := x.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if events == 0 {
		b.Fatal("no event indexed by a measured update")
	}
	ev := float64(events)
	b.ReportMetric(float64((upd+ckpt).Microseconds())/ev, "cpu-µs/event")
	b.ReportMetric(float64(ckpt.Microseconds())/ev, "final_checkpoint-cpu-µs/event")
	b.ReportMetric(ev/float64(rounds), "events/update")
	b.ReportMetric(bytes, "file-bytes/event")
	for _, s := range order {
		b.ReportMetric(float64(steps[s].Microseconds())/ev, strings.ReplaceAll(s, " ", "_")+"-cpu-µs/event")
	}
}

// stepCPU is a stepHook adding each step's CPU time to steps, the steps
// listed in *order as first seen.
func stepCPU(steps map[string]time.Duration, order *[]string) func(string) func() {
	return func(step string) func() {
		c0 := cpuTime()
		return func() {
			if _, ok := steps[step]; !ok {
				*order = append(*order, step)
			}
			steps[step] += cpuTime() - c0
		}
	}
}
