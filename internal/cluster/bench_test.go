package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/journal"
)

// BenchmarkIngestR3 publishes simulated records to an R3 stream of an
// in-process 3-node cluster (all three servers share this machine's
// cores with vigil) in pushes of 500, and sequences them into a journal;
// it reports publish and end-to-end records per second.
func BenchmarkIngestR3(b *testing.B) {
	base := simEntries(b, 10, 2)
	c := natstest.Start(b, 3)
	ctx := context.Background()
	conn, err := Connect(ctx, Options{URLs: splitURLs(c.URLs()), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	j, err := journal.Open(ctx, b.TempDir(), journal.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	s, err := conn.NewSequencer(SequencerOptions{Tenant: tenant, Journal: j, Quarantine: func(Rejected) error { return nil }, Batch: 512, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.Run(sctx)

	n := b.N
	entries := make([]journal.Entry, n)
	for i := range entries {
		e := base[i%len(base)]
		e.RecordID = fmt.Sprintf("%s/%d", e.RecordID, i/len(base))
		entries[i] = e
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i += 500 {
		if _, err := conn.Publish(ctx, tenant, entries[i:min(i+500, n)]); err != nil {
			b.Fatal(err)
		}
	}
	published := time.Since(start)
	for j.Size() < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	total := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/published.Seconds(), "published/s")
	b.ReportMetric(float64(n)/total.Seconds(), "journaled/s")
}

// benchTenants numbers the tenants BenchmarkDetectWorker makes, across
// its runs.
var benchTenants int

// BenchmarkDetectWorker measures one detection worker reading a tenant's
// records from an R3 stream that already holds them (a takeover's
// replay, or a backlog): Sigma rules, behaviours and incidents, with
// alerts sent and guarded, up to the first refresh (every 250 ms) after
// the last record. It reports records per second per worker and per
// second of the process's CPU (the three NATS servers' included). Each
// iteration detects a new tenant with the same simulated records
// (publishing them is not timed).
func BenchmarkDetectWorker(b *testing.B) {
	f := newDetectFixtureTB(b, 50, 7)
	c := natstest.Start(b, 3)
	ctx := context.Background()
	conn, err := Connect(ctx, Options{URLs: splitURLs(c.URLs()), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var total, cpu time.Duration
	var sent, batches uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		benchTenants++
		ten := fmt.Sprintf("bench-%d", benchTenants)
		// The stream's dedupe key is (source, record id), whatever the
		// tenant: each tenant gets ids of its own.
		entries := make([]journal.Entry, len(f.entries))
		for k, e := range f.entries {
			e.RecordID = ten + "/" + e.RecordID
			entries[k] = e
		}
		for k := 0; k < len(entries); k += 500 {
			r, err := conn.Publish(ctx, ten, entries[k:min(k+500, len(entries))])
			if err != nil {
				b.Fatal(err)
			}
			if r.Duplicates > 0 {
				b.Fatalf("%d records taken for duplicates", r.Duplicates)
			}
		}
		last, err := streamLastSeq(ctx, conn)
		if err != nil {
			b.Fatal(err)
		}
		tmp := b.TempDir()
		d, err := conn.NewDetector(ctx, DetectorOptions{Tenants: []string{ten}, Holder: "bench", LeaseTTL: 15 * time.Second,
			SnapshotEvery: time.Hour, Batch: 512, Refresh: 250 * time.Millisecond, Idle: 100 * time.Millisecond, Logger: quietLogger(),
			NewPipeline: func(_ string, s detect.Sink) *detect.Pipeline { return f.pipeline(b, tmp, s) }})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU(b)
		dctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Run(dctx) }()
		deadline := time.Now().Add(5 * time.Minute)
		for d.Stats()[ten].Refreshed < last {
			if time.Now().After(deadline) {
				b.Fatalf("worker at %+v after 5 min, stream at %d", d.Stats()[ten], last)
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cpu += processCPU(b) - cpu0
		b.StopTimer()
		st := d.Stats()[ten]
		sent += st.Alerts + st.Updates + st.Groupings
		batches += st.Batches
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(f.entries)*b.N)/total.Seconds(), "records/s")
	// The process's CPU includes the three NATS servers': what the
	// worker's reads and alerts cost them is part of detection's cost.
	b.ReportMetric(float64(len(f.entries)*b.N)/cpu.Seconds(), "records/cpu-s")
	b.ReportMetric(float64(len(f.entries)), "records/op")
	b.ReportMetric(float64(sent)/float64(b.N), "alert-msgs/op")
	b.ReportMetric(float64(batches)/float64(b.N), "batches/op")
}

// BenchmarkAlertFlush publishes flushes of alert messages to the alert
// stream of an in-process R3 cluster, each message expecting the holder
// record, as atomic batches ("batch") and one at a time ("single", what a
// stream without batches gets): messages per second, and per second of
// the process's CPU (the three NATS servers' included).
func BenchmarkAlertFlush(b *testing.B) {
	c := natstest.Start(b, 3)
	ctx := context.Background()
	conn, err := Connect(ctx, Options{URLs: splitURLs(c.URLs()), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := conn.ensureAlertStream(ctx); err != nil {
		b.Fatal(err)
	}
	const ten = "flush-bench"
	fence, err := conn.writeHolder(ctx, holderRecord{Tenant: ten, Holder: "bench", Holding: "bench", At: time.Now()}, 0)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1500) // about an alert's JSON
	n := 0
	for _, size := range []int{8, 64} {
		for _, mode := range []string{"batch", "single"} {
			b.Run(fmt.Sprintf("%s-%d", mode, size), func(b *testing.B) {
				conn.noBatches.Store(mode == "single")
				defer conn.noBatches.Store(false)
				cpu0, start := processCPU(b), time.Now()
				for i := 0; i < b.N; i++ {
					msgs := make([]*nats.Msg, size)
					for k := range msgs {
						n++
						m := nats.NewMsg("alerts." + token(ten) + ".alert")
						m.Header.Set(jetstream.MsgIDHeader, "flush-bench-"+strconv.Itoa(n))
						m.Data = body
						msgs[k] = m
					}
					var res PublishResult
					if err := conn.publishFenced(ctx, ten, fence, msgs, make([]journal.Ack, size), &res); err != nil {
						b.Fatal(err)
					}
					if res.Accepted != int64(size) {
						b.Fatalf("%+v", res)
					}
				}
				msgs := float64(b.N * size)
				b.ReportMetric(msgs/time.Since(start).Seconds(), "msgs/s")
				b.ReportMetric(msgs/(processCPU(b)-cpu0).Seconds(), "msgs/cpu-s")
			})
		}
	}
}

// processCPU is the user and system time of the process so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
