package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/server/sink"
)

// collectorMetrics turns the collectors' status snapshots into series at
// scrape time. Labels are the tenant name from the config and the source
// name: one series per configured collector, never per record.
type collectorMetrics struct {
	status func() []collect.Status
	now    func() time.Time

	windows, pages, records, duplicates, undecodable, gaps *prometheus.Desc
	requests, throttled, retries, waited, lag, up, wakeups *prometheus.Desc
}

// CollectorMetrics reports windows, gaps, throttling and lag of the
// collectors whose status snapshots status returns at each scrape.
func CollectorMetrics(status func() []collect.Status, now func() time.Time) prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	l := []string{"tenant", "source"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, l, nil) }
	return &collectorMetrics{status: status, now: now,
		windows:     d("vigil_collector_windows_total", "Time windows a collector finished."),
		pages:       d("vigil_collector_pages_total", "Pages a collector fetched."),
		records:     d("vigil_collector_records_total", "New records a collector stored in the journal."),
		duplicates:  d("vigil_collector_duplicates_total", "Records a collector fetched that were already stored."),
		undecodable: d("vigil_collector_undecodable_total", "Records a collector could not decode (quarantined)."),
		gaps:        d("vigil_collector_gaps_total", "Windows a collector could not fetch completely (gaps in the record)."),
		requests:    d("vigil_collector_requests_total", "HTTP requests a collector made."),
		throttled:   d("vigil_collector_throttled_total", "Requests the vendor throttled (429, 503 with Retry-After)."),
		retries:     d("vigil_collector_retries_total", "Requests a collector retried."),
		waited:      d("vigil_collector_wait_seconds_total", "Time a collector waited on throttling, back-off and its rate limit."),
		lag:         d("vigil_collector_lag_seconds", "Wall time minus the collector's watermark (how far behind the vendor's log it is)."),
		up:          d("vigil_collector_failed", "1 when the collector stopped on an error it cannot retry."),
		wakeups:     d("vigil_collector_wakeups_total", "Vendor push notifications that asked the collector for a poll."),
	}
}

func (m *collectorMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.windows, m.pages, m.records, m.duplicates, m.undecodable, m.gaps,
		m.requests, m.throttled, m.retries, m.waited, m.lag, m.up, m.wakeups} {
		ch <- d
	}
}

func (m *collectorMetrics) Collect(ch chan<- prometheus.Metric) {
	now := m.now()
	for _, s := range m.status() {
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, s.Tenant, s.Source)
		}
		counter(m.windows, float64(s.Windows))
		counter(m.pages, float64(s.Pages))
		counter(m.records, float64(s.Records))
		counter(m.duplicates, float64(s.Duplicates))
		counter(m.undecodable, float64(s.Undecodable))
		counter(m.gaps, float64(s.Gaps))
		counter(m.requests, float64(s.Requests))
		counter(m.throttled, float64(s.Throttled))
		counter(m.retries, float64(s.Retries))
		counter(m.waited, s.Waited.Seconds())
		counter(m.wakeups, float64(s.Wakeups))
		failed := 0.0
		if s.State == "failed" {
			failed = 1
		}
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, failed, s.Tenant, s.Source)
		// No watermark yet: no lag series rather than a made-up one.
		if !s.Watermark.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, now.Sub(s.Watermark).Seconds(), s.Tenant, s.Source)
		}
	}
}

// SinkStatus is what the sink metrics read (sink.Outbox).
type SinkStatus interface{ Status() []sink.Status }

type sinkMetrics struct {
	o                                       SinkStatus
	delivered, failures, pending, dead, off *prometheus.Desc
}

// SinkMetrics reports deliveries, failures and queue depth per sink (by
// the sink's name from the config).
func SinkMetrics(o SinkStatus) prometheus.Collector {
	l := []string{"sink"}
	return &sinkMetrics{o: o,
		delivered: prometheus.NewDesc("vigil_sink_delivered_total", "Alerts a sink delivered.", l, nil),
		failures:  prometheus.NewDesc("vigil_sink_failures_total", "Delivery attempts that failed (each is retried per the ladder).", l, nil),
		pending:   prometheus.NewDesc("vigil_sink_queue_depth", "Alerts waiting in the outbox for a sink.", l, nil),
		dead:      prometheus.NewDesc("vigil_sink_given_up", "Alerts a sink gave up on after the last retry (kept in the outbox).", l, nil),
		off:       prometheus.NewDesc("vigil_sink_disabled", "1 when a sink is disabled (its receiver answered 410 Gone).", l, nil),
	}
}

func (m *sinkMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.delivered, m.failures, m.pending, m.dead, m.off} {
		ch <- d
	}
}

func (m *sinkMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.o.Status() {
		ch <- prometheus.MustNewConstMetric(m.delivered, prometheus.CounterValue, float64(s.Delivered), s.Sink)
		ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(s.Failures), s.Sink)
		ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(s.Pending), s.Sink)
		ch <- prometheus.MustNewConstMetric(m.dead, prometheus.GaugeValue, float64(s.Failed), s.Sink)
		off := 0.0
		if s.Disabled != "" {
			off = 1
		}
		ch <- prometheus.MustNewConstMetric(m.off, prometheus.GaugeValue, off, s.Sink)
	}
}
