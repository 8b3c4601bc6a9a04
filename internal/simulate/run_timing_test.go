package simulate

import (
	"context"
	"testing"
)

// BenchmarkRun measures generation throughput (events/s) with every
// campaign and confounder on.
func BenchmarkRun(b *testing.B) {
	cfg := testConfig()
	cfg.Users, cfg.Days, cfg.ThrottleLimit = 300, 7, 1000
	dir := b.TempDir()
	b.ReportAllocs()
	var events, bytes int64
	for i := 0; i < b.N; i++ {
		tr, err := Run(context.Background(), cfg, dir)
		if err != nil {
			b.Fatal(err)
		}
		events, bytes = 0, 0
		for _, f := range tr.Files {
			if f.Source != "networks" {
				events += f.Records
				bytes += f.Bytes
			}
		}
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMailItemsAccessed measures the hottest record writer.
func BenchmarkMailItemsAccessed(b *testing.B) {
	t, err := buildTenant(1, 20, 2)
	if err != nil {
		b.Fatal(err)
	}
	s := &sim{t: t}
	g := newRNG(1, 2)
	u := t.Users[0]
	a := access{appID: appOffice.ID, clientAppID: appOffice.ID, ip: u.home.host(1), clientInfo: "Client=MSExchangeRPC", session: g.id(), token: g.id(), issued: 1}
	reads := []folderRead{{folder: 0, items: []int{100, 101, 102}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.reset()
		s.mailItemsAccessed(&s.w, int64(i)*1e9, g.id(), userActor(u), u.mailbox, 0, &a, false, false, reads)
	}
	b.SetBytes(int64(len(s.w.b)))
}
