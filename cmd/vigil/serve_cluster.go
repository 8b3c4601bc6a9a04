package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-audit/vigil/internal/cluster"
	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
	"github.com/vigil-audit/vigil/internal/source"
)

// clusterNode is this process's part of a deployment with a cluster:
// section (docs/scale.md): ingest appends through the replicated stream,
// and the journal node appends the stream to its journal.
type clusterNode struct {
	conn       *cluster.Conn
	log        journal.Log // what ingest and collectors append to
	role       string
	detection  string // "local" or "workers": where the journal node's alerts come from
	tenant     string
	j          journal.Log
	quarantine string
	holder     string
	acceptGap  bool // --accept-stream-gap
	logger     *slog.Logger
	// What a detect node builds its tenant's pipeline with (those of the
	// journal node's own detection).
	newPipeline func(detect.Sink) *detect.Pipeline
	newDecoder  func() *source.Decoder
	// switches are the detect node's rule switches: read from the stream
	// where the journal node put them, kept in the tenant's snapshot.
	switches *server.RuleSwitches
	detector atomic.Pointer[cluster.Detector]
	// answer is the journal node's API for journal queries from the
	// other nodes, served while it holds the journal lease.
	answer func(context.Context, server.JournalQuery) server.JournalAnswer
	// seq is the journal node's current sequencer.
	seq atomic.Pointer[cluster.Sequencer]
}

// confirmJournal: this journal node still holds the journal lease
// (Sequencer.ConfirmLease), asked before it answers for the journal.
func (n *clusterNode) confirmJournal(ctx context.Context) error {
	s := n.seq.Load()
	if s == nil {
		return cluster.ErrNoLease
	}
	return s.ConfirmLease(ctx)
}

// deliveryGate is the outbox's Ready: a journal node hands its sinks
// nothing while it does not hold the journal lease (one waking from a
// pause that outlived it, one whose lease another node took). Nil without
// a cluster and on other roles.
func (n *clusterNode) deliveryGate() func(context.Context) error {
	if n == nil || n.role != "journal" {
		return nil
	}
	return n.confirmJournal
}

// detectionMetrics are a detect node's gauges: where its worker stands in
// the tenant's stream (0 while another node detects the tenant).
func (n *clusterNode) detectionMetrics() []prometheus.Collector {
	stat := func(f func(cluster.TenantStats) float64) func() float64 {
		return func() float64 {
			d := n.detector.Load()
			if d == nil {
				return 0
			}
			st, ok := d.Stats()[n.tenant]
			if !ok || !st.Held {
				return 0
			}
			return f(st)
		}
	}
	sent := func(f func(cluster.TenantStats) uint64) func() float64 {
		return func() float64 {
			d := n.detector.Load()
			if d == nil {
				return 0
			}
			return float64(f(d.Stats()[n.tenant]))
		}
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_cluster_detection_alerts_sent_total",
			Help: "Alerts this node put on the alert stream (each alert is sent once cluster-wide)."},
			sent(func(s cluster.TenantStats) uint64 { return s.Alerts })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_cluster_detection_incident_updates_sent_total",
			Help: "Incident updates this node put on the alert stream."},
			sent(func(s cluster.TenantStats) uint64 { return s.Updates })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_cluster_detection_incident_lists_sent_total",
			Help: "Incident lists this node put on the alert stream (after a refresh that changed which incidents exist, and the first of each holding)."},
			sent(func(s cluster.TenantStats) uint64 { return s.Groupings })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "vigil_cluster_detection_fenced_total",
			Help: "Writes of this node refused because another node had taken its tenant over (it then stopped detecting the tenant)."},
			sent(func(s cluster.TenantStats) uint64 { return s.Fenced })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_cluster_detection_held",
			Help: "1 while this node detects its tenant (holds the detection lease), 0 while it stands by."},
			stat(func(cluster.TenantStats) float64 { return 1 })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_cluster_detection_position",
			Help: "The raw stream sequence up to which this node has detected its tenant's records."},
			stat(func(s cluster.TenantStats) float64 { return float64(s.Position) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_cluster_detection_refreshed_position",
			Help: "The stream sequence of the last incident refresh (incidents and alerts sent are as of it)."},
			stat(func(s cluster.TenantStats) float64 { return float64(s.Refreshed) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_cluster_detection_restored_position",
			Help: "The stream sequence of the snapshot this node resumed the tenant from (0: it read the stream from its first message)."},
			stat(func(s cluster.TenantStats) float64 { return float64(s.Restored) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vigil_cluster_detection_snapshot_position",
			Help: "The stream sequence of the last detection snapshot this node wrote (a takeover replays from it)."},
			stat(func(s cluster.TenantStats) float64 { return float64(s.SnapshotSeq) })),
	}
}

// startCluster connects when cfg has a cluster: section; nil, nil
// without one (vigil serve stays a single process).
func startCluster(ctx context.Context, cfg *setup.Config, j journal.Log, quarantine string, acceptGap bool, logger *slog.Logger) (*clusterNode, error) {
	opts, ok, err := cfg.ClusterOptions()
	if err != nil {
		return nil, usageError("%v", err)
	}
	if !ok {
		return nil, nil
	}
	host, _ := os.Hostname()
	opts.Name = fmt.Sprintf("vigil %s (%s)", host, cfg.Cluster.Role)
	opts.Logger = logger
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := cluster.Connect(cctx, opts)
	if err != nil {
		return nil, err
	}
	logger.Info("cluster: connected", "role", cfg.Cluster.Role, "tenant", cfg.Cluster.Tenant, "stream", opts.Stream, "replicas", opts.Replicas)
	return &clusterNode{conn: conn, log: conn.Log(cfg.Cluster.Tenant, j), role: cfg.Cluster.Role, detection: cfg.Cluster.Detection, tenant: cfg.Cluster.Tenant,
		// The lease holder names this journal (host and data directory), so
		// a restart takes its lease back and any other journal is refused.
		j: j, quarantine: quarantine, holder: host + ":" + cfg.Data, acceptGap: acceptGap, logger: logger}, nil
}

// run appends the stream to the journal on the journal node until ctx
// ends; on an ingest node it has nothing to do. Losing the journal lease
// (no NATS quorum for a while) stops the appends, not the node: it keeps
// serving what its journal holds and takes its lease again when it can.
// Another node holding the lease (a second journal node, whose journal
// would fork this one) and a journal failure end it.
func (n *clusterNode) run(ctx context.Context, wake func()) error {
	switch n.role {
	case "detect":
		return n.detect(ctx)
	case "journal":
	default:
		return nil
	}
	var mu sync.Mutex
	for {
		s, err := n.conn.NewSequencer(cluster.SequencerOptions{Tenant: n.tenant, Journal: n.j, Holder: n.holder, OnAppend: wake, Logger: n.logger,
			AcceptGap: n.acceptGap,
			OnLease:   n.serveQueries(),
			Quarantine: func(r cluster.Rejected) error {
				mu.Lock()
				defer mu.Unlock()
				return appendSynced(n.quarantine, r)
			}})
		if err != nil {
			return err
		}
		n.seq.Store(s)
		err = s.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, cluster.ErrLeaseLost) {
			return err
		}
		n.logger.Error("cluster: not appending to the journal; retrying in 5 s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

// serveQueries answers the other nodes' journal queries while this
// journal node holds the lease: a journal node that lost it (no quorum)
// leaves them to the one that takes it.
func (n *clusterNode) serveQueries() func(held bool) {
	var stop func()
	return func(held bool) {
		if stop != nil {
			stop()
			stop = nil
			n.logger.Info("cluster: no longer answering journal queries")
		}
		if !held || n.answer == nil {
			return
		}
		var err error
		stop, err = n.conn.ServeJournalQueries(n.tenant, server.ForwardTimeout, n.confirmJournal, func(ctx context.Context, path, query string) cluster.QueryAnswer {
			a := n.answer(ctx, server.JournalQuery{Path: path, Query: query})
			return cluster.QueryAnswer{Status: a.Status, Header: a.Header, Body: a.Body}
		})
		if err != nil {
			// The journal still fills; other nodes answer 503 for it.
			n.logger.Error("cluster: not answering journal queries", "err", err)
			return
		}
		n.logger.Info("cluster: answering journal queries for the cluster")
	}
}

// forwarder asks the journal node (docs/scale.md): the API of an ingest
// or detect node answers the journal's routes for the cluster.
func (n *clusterNode) forwarder() server.Forwarder {
	return func(ctx context.Context, q server.JournalQuery) (server.JournalAnswer, error) {
		a, err := n.conn.AskJournal(ctx, n.tenant, q.Path, q.Query)
		if err != nil {
			if errors.Is(err, cluster.ErrNoJournalNode) {
				return server.JournalAnswer{}, fmt.Errorf("%w: %w", server.ErrNoJournalNode, err)
			}
			return server.JournalAnswer{}, err
		}
		return server.JournalAnswer{Status: a.Status, Header: a.Header, Body: a.Body}, nil
	}
}

// detect runs a detection worker for the tenant until ctx ends: it
// detects while it holds the tenant's detection lease and stands by while
// another node does (docs/scale.md). Its lease holder names the process,
// so a restarted node waits for its old lease to expire (or be released
// by a graceful stop).
func (n *clusterNode) detect(ctx context.Context) error {
	if n.newPipeline == nil {
		return errors.New("cluster: detect role without a detection pipeline")
	}
	d, err := n.conn.NewDetector(ctx, cluster.DetectorOptions{
		Tenants:     []string{n.tenant},
		NewPipeline: func(_ string, s detect.Sink) *detect.Pipeline { return n.newPipeline(s) },
		NewDecoder:  n.newDecoder,
		Holder:      n.holder + ":" + strconv.Itoa(os.Getpid()),
		Logger:      n.logger,
		Control: func(_ string, p *detect.Pipeline, seq uint64, en *journal.Entry) bool {
			if en.Source != server.RuleSource || n.switches == nil {
				return false
			}
			ch, err := n.switches.Apply(p, seq, en.Raw)
			if err != nil {
				n.logger.Warn("cluster: rule switch not applied", "seq", seq, "err", err)
			} else {
				n.logger.Info("rule switched", "rule", ch.Rule, "enabled", ch.Enabled, "actor", ch.Actor, "seq", seq)
			}
			return true
		},
		ControlState: func(string) ([]byte, error) {
			if n.switches == nil {
				return nil, nil
			}
			return n.switches.MarshalState()
		},
		RestoreControl: func(_ string, b []byte) error {
			if n.switches == nil {
				return nil
			}
			return n.switches.RestoreState(b)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	n.detector.Store(d)
	return d.Run(ctx)
}

// alertFeed reads the alerts and incident updates the detect nodes put on
// the alert stream for this node's tenant.
func (n *clusterNode) alertFeed() server.AlertFeed {
	return func(ctx context.Context, after uint64, deliver func(server.RemoteDetection) error) error {
		return n.conn.FollowAlerts(ctx, n.tenant, after, func(seq uint64, m *cluster.AlertMessage, err error) error {
			d := server.RemoteDetection{Seq: seq, Err: err}
			if err == nil {
				u, isInc, uerr := m.Update()
				ids, isGrouping := m.Grouping()
				switch {
				case isGrouping:
					d.Current = ids
				case uerr != nil:
					d.Err = fmt.Errorf("alert stream message %d: %w", seq, uerr)
				case isInc:
					d.Update = &u
				case m.Alert != nil:
					d.Alert = m.Alert
				default:
					d.Err = fmt.Errorf("alert stream message %d (%s) carries no alert", seq, m.Type)
				}
			}
			return deliver(d)
		})
	}
}

// appendSynced appends v as a JSON line to path and fsyncs it.
func appendSynced(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
