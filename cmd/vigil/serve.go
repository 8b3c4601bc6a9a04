package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

func init() {
	register(command{name: "serve", summary: "run continuously: collect, accept pushed logs, detect as they arrive and send alerts", run: runServe})
}

// serveOptions are the settings after flags, VIGIL_* environment variables
// and the config file (in that order of precedence) are combined.
type serveOptions struct {
	data, listen, certFile, keyFile string
	demo, noIndex, acceptStreamGap  bool
	indexMemory                     int64
	maxDelay                        time.Duration
	demoUsers, demoDays             int
	demoDuration                    time.Duration
}

// settingFrom picks the first non-empty of the flag, the environment
// variable and the config value.
func settingFrom(flagVal, env, cfgVal, def string) string {
	for _, v := range []string{flagVal, os.Getenv(env), cfgVal} {
		if v != "" {
			return v
		}
	}
	return def
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	config := fs.String("config", "", "vigil.yaml with tenants to collect and the server: section (VIGIL_CONFIG); optional")
	data := fs.String("data", "", "data directory: journal, keys, detection state (VIGIL_DATA; default the config's data, else ./vigil-data)")
	listen := fs.String("listen", "", "address to listen on (VIGIL_LISTEN; default 127.0.0.1:8080); anything but loopback needs TLS")
	certFile := fs.String("tls-cert-file", "", "TLS certificate (VIGIL_TLS_CERT_FILE)")
	keyFile := fs.String("tls-key-file", "", "TLS private key (VIGIL_TLS_KEY_FILE)")
	demo := fs.Bool("demo", false, "replay a simulated tenant with a forged-token intrusion through the push endpoint, in accelerated time")
	demoUsers := fs.Int("demo-users", 50, "users in the --demo tenant")
	demoDays := fs.Int("demo-days", 21, "days in the --demo tenant")
	demoDuration := fs.Duration("demo-duration", 90*time.Second, "wall time the --demo replay takes")
	noIndex := fs.Bool("no-index", false, "do not keep the investigation index (DIR/index) up to date; /api/v1/search answers 503")
	delayFlag := fs.String("max-detection-delay", "", "how far detection may fall behind acknowledged pushes before ingest answers 429, such as 2s (VIGIL_MAX_DETECTION_DELAY, server: max_detection_delay; default 1s)")
	memFlag := fs.String("index-memory", "", fmt.Sprintf("memory the investigation index's engine may use, such as 512MiB or 8GiB (VIGIL_INDEX_MEMORY, server: index_memory; default %dGiB)", index.DefaultMemoryLimit>>30))
	acceptGap := fs.Bool("accept-stream-gap", false, "journal node (cluster: role journal): start although the stream no longer holds records the journal is missing, accepting that they are missing (the refusal without it says which; docs/scale.md)")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the whole run to this file (written at shutdown)")
	setHelp(fs, stderr, helpText{synopsis: "serve [--config FILE] [--data DIR] [--listen ADDR] [--demo]",
		summary: "Runs vigil as a service: collectors, push ingest, streaming detection, alert sinks and the HTTP API (see docs/serve.md)."})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, nil))
	default:
		return usageError("--log-format %q: want text or json", *logFormat)
	}
	cfg := &setup.Config{}
	if path := settingFrom(*config, "VIGIL_CONFIG", "", ""); path != "" {
		if cfg, err = setup.Load(path); err != nil {
			return usageError("%v", err)
		}
	}
	scfg := cfg.Server
	if scfg == nil {
		scfg = &setup.Server{}
	}
	dataDefault := "vigil-data"
	if cfg.Data != "" {
		dataDefault = cfg.DataDir()
	}
	o := serveOptions{
		data:     settingFrom(*data, "VIGIL_DATA", "", dataDefault),
		listen:   settingFrom(*listen, "VIGIL_LISTEN", scfg.Listen, "127.0.0.1:8080"),
		certFile: settingFrom(*certFile, "VIGIL_TLS_CERT_FILE", cfg.Resolve(scfg.TLSCertFile), ""),
		keyFile:  settingFrom(*keyFile, "VIGIL_TLS_KEY_FILE", cfg.Resolve(scfg.TLSKeyFile), ""),
		demo:     *demo, noIndex: *noIndex, acceptStreamGap: *acceptGap, demoUsers: *demoUsers, demoDays: *demoDays, demoDuration: *demoDuration,
	}
	cfgDelay := ""
	if scfg.MaxDetectionDelay > 0 {
		cfgDelay = scfg.MaxDetectionDelay.String()
	}
	if v := settingFrom(*delayFlag, "VIGIL_MAX_DETECTION_DELAY", cfgDelay, ""); v != "" {
		if o.maxDelay, err = time.ParseDuration(v); err != nil || o.maxDelay < 500*time.Millisecond {
			return usageError("max detection delay %q (--max-detection-delay, VIGIL_MAX_DETECTION_DELAY, server: max_detection_delay): want a duration of at least 500ms, such as 2s", v)
		}
	}
	if o.indexMemory, err = parseIndexMemory(settingFrom(*memFlag, "VIGIL_INDEX_MEMORY", scfg.IndexMemory, "")); err != nil {
		return err
	}
	if o.demo {
		if err := checkSimSize(o.demoUsers, o.demoDays); err != nil {
			return err
		}
	}
	abs, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	cfg.Data = abs
	o.data = abs
	return serve(ctx, cfg, scfg, o, stdout, stderr, logger)
}

func serve(ctx context.Context, cfg *setup.Config, scfg *setup.Server, o serveOptions, stdout, stderr io.Writer, logger *slog.Logger) error {
	retention := 180 * 24 * time.Hour
	if scfg.RetentionDays > 0 {
		retention = time.Duration(scfg.RetentionDays) * 24 * time.Hour
	}
	j, err := journal.Open(ctx, o.data, journal.Options{Retention: retention, Logger: logger})
	if err != nil {
		return journalErr(err)
	}
	defer j.Close()
	live, err := openLiveIndex(ctx, o.data, j, o.noIndex, retention, o.indexMemory, logger)
	if err != nil {
		return err
	}
	defer live.close()
	srvDir := filepath.Join(o.data, "server")
	keys, err := auth.Open(srvDir)
	if err != nil {
		return err
	}
	// With a cluster: section, ingest appends through the stream.
	var appendLog journal.Log = j
	node, err := startCluster(ctx, cfg, j, filepath.Join(srvDir, "cluster-quarantine.jsonl"), o.acceptStreamGap, logger)
	if err != nil {
		return err
	}
	if node != nil {
		defer node.conn.Close()
		appendLog = node.log
	}
	if keys.Empty() {
		plain, k, err := keys.Create("admin", auth.RoleAdmin)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "vigil serve: first start: created the admin API key %s; it is shown once, store it now:\n\n    %s\n\nCreate more with 'vigil apikey create --data %s --name NAME --role ROLE'.\n\n", k.ID, plain, o.data)
	}
	sinks, err := cfg.Sinks(version)
	if err != nil {
		return usageError("%v", err)
	}
	outbox, err := sink.NewOutbox(filepath.Join(srvDir, "outbox"), sinks, sink.OutboxOptions{Logger: logger, Ready: node.deliveryGate()})
	if err != nil {
		return err
	}
	// --demo simulates its tenant first: detection needs the simulated
	// network table, as it would need a real tenant's (server.networks).
	var demo *demoTenant
	netFiles := make([]string, 0, len(scfg.Networks))
	for _, n := range scfg.Networks {
		netFiles = append(netFiles, cfg.Resolve(n))
	}
	if o.demo {
		if demo, err = simulateDemo(ctx, o, stdout); err != nil {
			return err
		}
		netFiles = append(netFiles, demo.networks)
	}
	detectDir := filepath.Join(o.data, "detect")
	if err := os.MkdirAll(detectDir, 0o700); err != nil {
		return err
	}
	det, err := newServeDetection(netFiles, detectDir)
	if err != nil {
		return err
	}
	rs, bcfg := det.rules, det.bcfg
	// Rules an admin disabled: journal entries the watcher applies in
	// journal order, muting the pipeline's alerts from there on.
	switches := server.NewRuleSwitches()
	det.mute = switches.Mute
	// A journal node whose detection runs on detect nodes serves their
	// alerts. In a cluster, rule switches and triage go through the stream
	// as records do: detect nodes read the switches there, the journal
	// node journals both (so a journal rebuilt from the stream holds
	// them) and its pages read them back from its journal; the other
	// nodes' pages ask it.
	var feed server.AlertFeed
	var changeLog journal.Log
	if node != nil {
		changeLog = node.log
		if node.detection == "workers" && node.role != "detect" {
			feed = node.alertFeed()
		}
	}
	if node != nil && node.role == "detect" {
		node.switches = switches
	}
	// In a cluster, the journal's routes and pages answer from the journal
	// node (its journal and index are the cluster's).
	var forward server.Forwarder
	if node != nil && node.role != "journal" {
		forward = node.forwarder()
	}
	uiData := serveUIData(j, live.follower(), rs, bcfg, cfg, sinks, outbox, switches, changeLog, forward, o.demo, logger)
	// Detection's alerts and incidents go to the index's tables too.
	var detIdx *server.DetectionIndex
	if f := live.follower(); f != nil {
		detIdx = server.NewDetectionIndex(f.Index(), logger)
	}
	if node != nil && node.role == "detect" {
		// The worker's access logs (restored from snapshots) apart from the
		// local watcher's state.
		// Scratch: a worker's state is in the cluster, restored from there
		// at each start.
		workerDir := filepath.Join(detectDir, "worker")
		if err := os.RemoveAll(workerDir); err != nil {
			return err
		}
		if err := os.MkdirAll(workerDir, 0o700); err != nil {
			return err
		}
		wdet := *det
		wdet.temp = workerDir
		node.newPipeline, node.newDecoder = wdet.newPipeline, det.newDecoder
	}
	// Push ingest hands what it decoded and appended to detection when
	// both run here on the same journal (not when ingest publishes to a
	// cluster, nor when detection runs on the detect nodes).
	var handoff *server.Handoff
	if appendLog == j && feed == nil {
		handoff = server.NewHandoff(0, 0)
	}
	watcher := server.NewWatcher(j, server.WatcherOptions{
		NewPipeline: det.newPipeline,
		Handoff:     handoff,
		NewDecoder:  det.newDecoder,
		Outbox:      outbox,
		Logger:      logger,
		StateDir:    detectDir,
		OnEntry:     uiData.Entry,
		OnAlert: func(a *alert.Alert) {
			uiData.Alert(a)
			detIdx.Alert(a)
		},
		OnIncident: detIdx.Incident,
		OnGrouping: detIdx.Grouping,
		Rules:      switches,
		Feed:       feed,
		OnDecoded:  live.offer(),
	})
	uiData.Watch(watcher)
	// The index fills the ASN and country of records that carry neither
	// (the UAL's mail reads) from the tables detection uses.
	if err := live.useNetworks(ctx, netFiles, logger); err != nil {
		return err
	}
	if f := live.follower(); f != nil {
		// The index follows detection's reading, taking the rows of what
		// it decoded; a detection stalled for 5 s is not waited for.
		f.SetPace(watcher.Offset, 5*time.Second)
	}
	ingester := server.NewIngester(appendLog, filepath.Join(srvDir, "quarantine.jsonl"))
	ingester.Notify = func() { watcher.Wake(); live.wake() }
	ingester.Handoff, ingester.Hot = handoff, det.hot()
	var collectors []*collect.Collector
	if len(cfg.Tenants) > 0 {
		if collectors, err = setup.Build(cfg, setup.Options{Journal: appendLog, Logger: logger, RegisterPush: true}); err != nil {
			return usageError("%v", err)
		}
	}
	watcher.SetCollectors(collectors)
	srv, err := server.New(server.Config{Listen: o.listen, TLSCertFile: o.certFile, TLSKeyFile: o.keyFile, MaxBodyBytes: scfg.MaxBodyBytes, MaxDelay: o.maxDelay},
		server.Deps{Journal: j, Keys: keys, Ingest: ingester, Lag: watcher.Lag, Delay: watcher.Delay, Views: watcher, Index: live.follower(), UI: uiData,
			Forward: forward, Logger: logger})
	if err != nil {
		return usageError("%v", err)
	}
	if node != nil && node.role == "journal" {
		node.answer = func(ctx context.Context, q server.JournalQuery) server.JournalAnswer {
			if a, ok := uiData.AnswerJournalQuery(ctx, q); ok {
				return a
			}
			return srv.AnswerJournalQuery(ctx, q)
		}
	}
	if err := watcher.SetMetrics(srv.Metrics()); err != nil {
		return err
	}
	if err := srv.Metrics().Register(server.CollectorMetrics(watcher.CollectorStatus, nil), server.SinkMetrics(outbox)); err != nil {
		return err
	}
	if f := live.follower(); f != nil {
		if err := srv.Metrics().Register(indexMetrics(f)...); err != nil {
			return err
		}
	}
	if node != nil && node.role == "detect" {
		if err := srv.Metrics().Register(node.detectionMetrics()...); err != nil {
			return err
		}
	}
	if ns, err := notifications(cfg, collectors); err != nil {
		return usageError("%v", err)
	} else if err := srv.SetNotifications(ns); err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	// Retention first, so detection and the index start at what is kept.
	expire(runCtx, j, logger)
	wg.Go(func() { expireLoop(runCtx, j, logger) })
	for _, c := range collectors {
		wg.Go(func() {
			if err := c.Run(runCtx); err != nil && runCtx.Err() == nil {
				logger.Error("collector stopped", "tenant", c.Tenant(), "source", c.Name(), "err", err)
			}
		})
	}
	outboxDone := make(chan struct{})
	go func() { outbox.Run(runCtx); close(outboxDone) }()
	watchErr := make(chan error, 1)
	go func() { watchErr <- watcher.Run(runCtx) }()
	clusterErr := make(chan error, 1)
	if node != nil {
		wg.Go(func() {
			err := node.run(runCtx, func() { watcher.Wake(); live.wake() })
			if err != nil {
				logger.Error("cluster: this node stopped following the stream", "role", node.role, "err", err)
				stop()
			}
			clusterErr <- err
		})
	}
	live.run(runCtx)
	detIdxDone := make(chan struct{})
	go func() { detIdx.Run(runCtx); close(detIdxDone) }()

	scheme := "http"
	if o.certFile != "" {
		scheme = "https"
	}
	ready := func(addr string) {
		logger.Info("vigil serve listening", "url", scheme+"://"+addr, "data", o.data, "collectors", len(collectors), "sinks", len(sinks))
		fmt.Fprintf(stdout, "vigil serve: listening on %s://%s (data in %s)\n", scheme, addr, o.data)
		printLoginLink(stdout, srv, scheme+"://"+addr, logger)
		if o.demo {
			wg.Go(func() {
				if err := replayDemo(runCtx, scheme+"://"+addr, keys, demo, o, stdout, logger); err != nil && runCtx.Err() == nil {
					logger.Error("demo replay failed", "err", err)
				}
			})
		}
	}
	serveErr := srv.Serve(runCtx, ready)
	// Shutdown: the server has finished the requests in flight (their
	// records are durable); stop collectors and the replay, let detection
	// catch up with what was acknowledged and snapshot, flush the outbox.
	stop()
	wg.Wait()
	werr := <-watchErr
	<-outboxDone
	<-detIdxDone
	// Detection has stopped: what it raised last goes to the index.
	ictx, icancel := context.WithTimeout(context.Background(), catchUpTime)
	if err := detIdx.Flush(ictx); err != nil {
		logger.Warn("detections not written to the investigation index at exit (vigil reindex writes them)", "err", err)
	}
	icancel()
	if err := live.close(); err != nil {
		logger.Warn("closing the investigation index", "err", err)
	}
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := outbox.Flush(fctx); err != nil {
		logger.Warn("alerts still queued at shutdown (kept in the outbox)", "err", err)
	}
	if err := j.Close(); err != nil {
		return err
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	if werr != nil && !errors.Is(werr, context.Canceled) {
		return werr
	}
	if node != nil {
		return <-clusterErr
	}
	return nil
}

// demoTenant is the simulated tenant of --demo.
type demoTenant struct {
	paths    []string // log files, networks excluded
	networks string   // the simulated network table
	truth    string
}

func simulateDemo(ctx context.Context, o serveOptions, stdout io.Writer) (*demoTenant, error) {
	logs := filepath.Join(o.data, "demo-logs")
	fmt.Fprintf(stdout, "vigil serve --demo: simulating %d users over %d days with a forged-token intrusion among benign look-alikes...\n", o.demoUsers, o.demoDays)
	truth, err := simulate.Run(ctx, simulate.Config{Users: o.demoUsers, Days: o.demoDays, Seed: 1,
		Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs)
	if err != nil {
		return nil, fmt.Errorf("demo: simulating: %w", err)
	}
	d := &demoTenant{networks: filepath.Join(logs, simulate.NetworksFile), truth: filepath.Join(logs, simulate.TruthFile)}
	d.paths = truth.LogPaths(logs)
	return d, nil
}

// replayDemo pushes the simulated tenant's records to the server's own
// ingest endpoint in event-time order, one simulated hour per request,
// compressing the tenant's days into o.demoDuration: a newcomer watches
// detection happen live, through the same path real pushes take.
func replayDemo(ctx context.Context, base string, keys *auth.Store, d *demoTenant, o serveOptions, stdout io.Writer, logger *slog.Logger) error {
	paths := d.paths
	type rec struct {
		t   time.Time
		raw []byte
	}
	var recs []rec
	var prev *event.Event
	if _, err := source.ReadPaths(ctx, paths, source.Options{}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		recs = append(recs, rec{e.Time, bytes.Clone(e.Raw)})
		return nil
	}); err != nil {
		return fmt.Errorf("demo: reading the simulated logs: %w", err)
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return a.t.Compare(b.t) })
	if len(recs) == 0 {
		return errors.New("demo: the simulation wrote no records")
	}
	// A key of its own, with the ingest role only, revoked when done.
	plain, key, err := keys.Create(fmt.Sprintf("demo-replay-%d", time.Now().UnixNano()), auth.RoleIngest)
	if err != nil {
		return err
	}
	defer keys.Revoke(key.ID)
	hours := int(recs[len(recs)-1].t.Sub(recs[0].t)/time.Hour) + 1
	pause := o.demoDuration / time.Duration(hours)
	fmt.Fprintf(stdout, "vigil serve --demo: replaying %d records (%d users, %d days, an intrusion among benign look-alikes) over %s...\n",
		len(recs), o.demoUsers, o.demoDays, o.demoDuration)
	client := &http.Client{Timeout: time.Minute}
	var body bytes.Buffer
	hourEnd := recs[0].t.Truncate(time.Hour).Add(time.Hour)
	push := func() error {
		if body.Len() == 0 {
			return nil
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/ingest", bytes.NewReader(body.Bytes()))
		req.Header.Set("Authorization", "Bearer "+plain)
		for {
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
				req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/ingest", bytes.NewReader(body.Bytes()))
				req.Header.Set("Authorization", "Bearer "+plain)
				continue
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("demo: ingest answered %s", resp.Status)
			}
			body.Reset()
			return nil
		}
	}
	for _, r := range recs {
		for !r.t.Before(hourEnd) {
			if err := push(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			hourEnd = hourEnd.Add(time.Hour)
		}
		body.Write(bytes.TrimSpace(r.raw))
		body.WriteByte('\n')
	}
	if err := push(); err != nil {
		return err
	}
	logger.Info("demo replay finished", "records", len(recs))
	fmt.Fprintf(stdout, "vigil serve --demo: replay finished; see /api/v1/incidents. Ground truth: %s\n", d.truth)
	return nil
}
