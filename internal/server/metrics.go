package server

import (
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are vigil's Prometheus series (names per the Prometheus naming
// practices: vigil_ prefix, base units, _total counters). Label values come
// from small fixed sets, never from log data or users.
type Metrics struct {
	reg           *prometheus.Registry
	ingestRecords *prometheus.CounterVec
	ingestReqs    *prometheus.CounterVec
	appendSeconds prometheus.Histogram
	denied        *prometheus.CounterVec
	// Alerts counts alerts by level (critical, high, medium, low, info).
	Alerts *prometheus.CounterVec
	// IncidentUpdates counts incident state changes by kind.
	IncidentUpdates *prometheus.CounterVec
	// SinkDeliveries counts deliveries by sink name (from the config) and outcome.
	SinkDeliveries *prometheus.CounterVec
}

func newMetrics(d Deps) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		ingestRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_records_total", Help: "Records pushed to /api/v1/ingest, by outcome.",
		}, []string{"outcome"}),
		ingestReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_requests_total", Help: "Ingest requests by HTTP status.",
		}, []string{"status"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_journal_append_duration_seconds", Help: "Time to make one ingest batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_api_denied_total", Help: "API requests refused, by HTTP status.",
		}, []string{"status"}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_alerts_total", Help: "Alerts raised, by level.",
		}, []string{"level"}),
		IncidentUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_incident_updates_total", Help: "Incident state changes, by kind.",
		}, []string{"kind"}),
		SinkDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_sink_deliveries_total", Help: "Alert deliveries by sink and outcome.",
		}, []string{"sink", "outcome"}),
	}
	reg.MustRegister(m.ingestRecords, m.ingestReqs, m.appendSeconds, m.denied, m.Alerts, m.IncidentUpdates, m.SinkDeliveries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_build_info", Help: "Build version.", ConstLabels: prometheus.Labels{"version": version}})
	info.Set(1)
	reg.MustRegister(info)
	if d.Journal != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_journal_entries", Help: "Entries acknowledged in the journal.",
		}, func() float64 { return float64(d.Journal.Size()) }))
	}
	if d.Lag != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_detection_lag_entries", Help: "Journal entries detection has not processed yet.",
		}, func() float64 { return float64(d.Lag()) }))
	}
	return m
}

// Register adds more collectors (collector and sink metrics).
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
