package server

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/server/sink"
)

type fakeSinks struct {
	mu sync.Mutex
	s  []sink.Status
}

func (f *fakeSinks) Status() []sink.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sink.Status(nil), f.s...)
}

// The collector and sink series follow their status snapshots: one series
// per configured collector or sink, whatever they fetched or delivered.
func TestCollectorAndSinkMetrics(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := []collect.Status{
		{Tenant: "contoso", Source: "m365.ual", State: "polling", Watermark: now.Add(-90 * time.Second), Windows: 4, Gaps: 1, Throttled: 2, Requests: 9, Waited: 3 * time.Second, Wakeups: 5},
		{Tenant: "contoso", Source: "gws.login", State: "failed"},
	}
	var mu sync.Mutex
	cm := CollectorMetrics(func() []collect.Status { mu.Lock(); defer mu.Unlock(); return append([]collect.Status(nil), st...) }, func() time.Time { return now })
	sinks := &fakeSinks{s: []sink.Status{{Sink: "webhook-1", Delivered: 3, Failures: 1, Pending: 2}, {Sink: "file-2", Disabled: "410 Gone"}}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cm, SinkMetrics(sinks))

	type key struct{ name, label string }
	gather := func() map[key]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[key]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				v := m.GetGauge().GetValue()
				if m.GetCounter() != nil {
					v = m.GetCounter().GetValue()
				}
				out[key{mf.GetName(), strings.Join(ls, ",")}] = v
			}
		}
		return out
	}
	got := gather()
	for k, v := range map[key]float64{
		{"vigil_collector_windows_total", "source=m365.ual,tenant=contoso"}:      4,
		{"vigil_collector_windows_total", "source=gws.login,tenant=contoso"}:     0,
		{"vigil_collector_gaps_total", "source=m365.ual,tenant=contoso"}:         1,
		{"vigil_collector_throttled_total", "source=m365.ual,tenant=contoso"}:    2,
		{"vigil_collector_requests_total", "source=m365.ual,tenant=contoso"}:     9,
		{"vigil_collector_wait_seconds_total", "source=m365.ual,tenant=contoso"}: 3,
		{"vigil_collector_lag_seconds", "source=m365.ual,tenant=contoso"}:        90,
		{"vigil_collector_failed", "source=gws.login,tenant=contoso"}:            1,
		{"vigil_collector_failed", "source=m365.ual,tenant=contoso"}:             0,
		{"vigil_sink_delivered_total", "sink=webhook-1"}:                         3,
		{"vigil_sink_failures_total", "sink=webhook-1"}:                          1,
		{"vigil_sink_queue_depth", "sink=webhook-1"}:                             2,
		{"vigil_sink_disabled", "sink=file-2"}:                                   1,
		{"vigil_sink_disabled", "sink=webhook-1"}:                                0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s{%s} = %v (present %v), want %v", k.name, k.label, g, ok, v)
		}
	}
	// No watermark yet: no lag series rather than a made-up one.
	if _, ok := got[key{"vigil_collector_lag_seconds", "source=gws.login,tenant=contoso"}]; ok {
		t.Error("lag reported for a collector without a watermark")
	}
	// Lots of work later: the values move, the number of series does not.
	mu.Lock()
	st[0].Windows, st[0].Gaps, st[0].Throttled, st[0].Records = 5000, 7, 300, 1_000_000
	mu.Unlock()
	sinks.mu.Lock()
	sinks.s[0].Delivered = 9000
	sinks.mu.Unlock()
	later := gather()
	if len(later) != len(got) {
		t.Fatalf("series grew with the work done: %d then %d", len(got), len(later))
	}
	if v := later[key{"vigil_collector_windows_total", "source=m365.ual,tenant=contoso"}]; v != 5000 {
		t.Errorf("windows = %v after the collector finished 5000", v)
	}
	if v := later[key{"vigil_sink_delivered_total", "sink=webhook-1"}]; v != 9000 {
		t.Errorf("delivered = %v after the sink delivered 9000", v)
	}
}
