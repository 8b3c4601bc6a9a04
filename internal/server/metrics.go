package server

import (
	"math"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-audit/vigil/internal/journal"
)

// Metrics are vigil's Prometheus series (names per the Prometheus naming
// practices: vigil_ prefix, base units, _total counters). Label values come
// from small fixed sets, never from log data or users.
type Metrics struct {
	reg           *prometheus.Registry
	ingestRecords *prometheus.CounterVec
	ingestReqs    *prometheus.CounterVec
	commitSeconds prometheus.Histogram
	denied        *prometheus.CounterVec
	// Alerts counts alerts by level (critical, high, medium, low, info).
	Alerts *prometheus.CounterVec
	// IncidentUpdates counts incident state changes by kind.
	IncidentUpdates *prometheus.CounterVec
	// DetectionDelay is the time from a record's acknowledgment (its
	// journal Received time) to the pipeline reading it, observed while
	// detection is live (not while it replays the journal at start).
	DetectionDelay prometheus.Histogram
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
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_journal_commit_duration_seconds", Help: "Time from handing an ingest batch to the journal until it is durable (written and fsynced).",
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
		DetectionDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_detection_delay_seconds", Help: "Time from a record's acknowledgment to detection reading it (live, not during the replay at start).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	reg.MustRegister(m.ingestRecords, m.ingestReqs, m.commitSeconds, m.denied, m.Alerts, m.IncidentUpdates, m.DetectionDelay,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if d.Ingest != nil && d.Ingest.Committed == nil {
		d.Ingest.Committed = func(t time.Duration) { m.commitSeconds.Observe(t.Seconds()) }
	}
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
		if st, ok := d.Journal.(interface{ Stats() journal.Stats }); ok {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "vigil_journal_commits_total", Help: "Group commits (write + fsync) since start.",
			}, func() float64 { return float64(st.Stats().Commits) }))
		}
		if db, ok := d.Journal.(interface{ DiskBytes() (int64, error) }); ok {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "vigil_journal_bytes", Help: "Size of the journal's segment files on disk.",
			}, func() float64 {
				n, err := db.DiskBytes()
				if err != nil {
					// A scrape cannot carry the error; NaN is not a made-up size.
					return math.NaN()
				}
				return float64(n)
			}))
		}
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
