package source

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

// benchInput repeats the UAL fixture records (a Bind and a Sync
// MailItemsAccessed) into about 16 MB of JSON lines.
func benchInput(b *testing.B) []byte {
	lines, err := os.ReadFile("testdata/ual_mailitemsaccessed.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	for buf.Len() < 16<<20 {
		buf.Write(lines)
	}
	return buf.Bytes()
}

func benchRead(b *testing.B, touch func(*event.Event)) {
	in := benchInput(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(in)}, func(e *event.Event) error {
			touch(e)
			return nil
		})
		if err != nil || st.Quarantined > 0 {
			b.Fatal(err, st.Quarantined)
		}
		n += st.Events
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadPaths decodes normalized fields only (source fields stay
// unflattened, as for most events of a hunt).
func BenchmarkReadPaths(b *testing.B) { benchRead(b, func(*event.Event) {}) }

// BenchmarkReadPathsFlattened also flattens every event's source fields.
func BenchmarkReadPathsFlattened(b *testing.B) {
	benchRead(b, func(e *event.Event) { _ = e.Fields() })
}
