package index

import (
	"context"
	"os"
	"testing"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

// BenchmarkRebuild indexes the journal in $VIGIL_BENCH_JOURNAL (or a small
// simulated one) from scratch; bench/search.sh measures at scale.
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
	b.ResetTimer()
	var events uint64
	for range b.N {
		st, err := x.Rebuild(ctx, data)
		if err != nil {
			b.Fatal(err)
		}
		events += st.Events
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
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
