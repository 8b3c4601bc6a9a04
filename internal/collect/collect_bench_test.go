package collect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/o365"
)

// pageSource serves one page of prebuilt UAL records per window.
type pageSource struct{ pages [][][]byte }

func (p *pageSource) Name() string { return "bench" }
func (p *pageSource) Policy() collect.Policy {
	return collect.Policy{MaxWindow: time.Hour, MaxAge: 24 * time.Hour, Poll: time.Minute, Journal: "m365.ual"}
}
func (p *pageSource) Prepare(context.Context, collect.Sink) error { return nil }
func (p *pageSource) Fetch(ctx context.Context, _ collect.Window, out collect.Sink) error {
	if len(p.pages) == 0 {
		return nil
	}
	pg := p.pages[0]
	p.pages = p.pages[1:]
	return out.Records(ctx, pg, "")
}
func (p *pageSource) Key(raw []byte) (string, error) { return (&o365.Source{}).Key(raw) }

// BenchmarkRecords measures the collector's own cost per record: dedup
// lookup, decoding to classify, handing to an in-memory journal, and the
// state commit per window. ns/op is per record.
func BenchmarkRecords(b *testing.B) {
	const perPage = 1000
	src := &pageSource{}
	at := t0
	for i := 0; i < b.N; i += perPage {
		var pg [][]byte
		for k := 0; k < perPage; k++ {
			pg = append(pg, fake.UAL(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+k), at, "alice@contoso.com"))
		}
		src.pages = append(src.pages, pg)
	}
	clock := fake.NewClock(t0.Add(25 * time.Hour))
	c, err := collect.New(collect.Options{Tenant: "t", Source: src, Journal: &memLog{}, State: &collect.MemStore{}, Clock: clock, Skew: &collect.Skew{}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for len(src.pages) > 0 {
		if err := c.Once(b.Context()); err != nil {
			b.Fatal(err)
		}
		clock.Advance(24 * time.Hour)
	}
	b.StopTimer()
	if s := c.Status(); s.Records < int64(b.N) {
		b.Fatalf("stored %d of %d", s.Records, b.N)
	}
}
