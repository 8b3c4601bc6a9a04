package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/cluster"
	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// config comes from the environment (bench/scale.sh sets it).
type config struct {
	workers []int // SCALE_WORKERS, e.g. "1 2 4"
	tenants int   // SCALE_TENANTS: simulated tenants per set (two sets a round)
	users   int   // SCALE_USERS per tenant
	days    int   // SCALE_DAYS per tenant
	batch   int   // SCALE_BATCH: records per push
	fetch   int   // SCALE_DETECT_BATCH: a worker's fetch size (0: vigil serve's default)
	repeat  int   // SCALE_REPEAT: rounds per worker count, interleaved
	out     string
	profile string // SCALE_PROFILE_DIR: CPU profiles per phase ("" none)
}

func loadConfig(tb testing.TB) config {
	c := config{workers: []int{1, 2, 4}, tenants: 8, users: 20, days: 7, batch: 500, repeat: 1,
		out: os.Getenv("SCALE_OUT"), profile: os.Getenv("SCALE_PROFILE_DIR")}
	num := func(name string, p *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				tb.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	num("SCALE_TENANTS", &c.tenants)
	num("SCALE_USERS", &c.users)
	num("SCALE_DAYS", &c.days)
	num("SCALE_BATCH", &c.batch)
	num("SCALE_DETECT_BATCH", &c.fetch)
	num("SCALE_REPEAT", &c.repeat)
	if v := os.Getenv("SCALE_WORKERS"); v != "" {
		c.workers = nil
		for f := range strings.FieldsSeq(strings.ReplaceAll(v, ",", " ")) {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				tb.Fatalf("SCALE_WORKERS=%q: want positive numbers", v)
			}
			c.workers = append(c.workers, n)
		}
	}
	return c
}

// push is one request body of a tenant: records as JSON lines.
type push struct {
	body []byte
	n    int
}

// tenantData is one simulated tenant, in event-time order, with what a
// single pipeline raises over it.
type tenantData struct {
	seed      int
	entries   []journal.Entry
	pushes    []push
	nets      behavior.Networks
	hours     map[time.Time]int // records per hour of event time
	refAlerts []string          // sorted alert keys of a single pipeline
	refIncs   int
	events    int
}

func (d *tenantData) keys() []string {
	out := make([]string, len(d.entries))
	for i, e := range d.entries {
		out[i] = e.Source + "\x00" + e.RecordID
	}
	return out
}

// detection is vigil serve's: the built-in rules, the default behaviours
// and incident grouping, a tenant's networks table.
type detection struct {
	rules *sigma.Ruleset
}

func newDetection(tb testing.TB) *detection {
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err != nil {
		tb.Fatal(err)
	}
	rs, _ := c.Compile()
	return &detection{rules: rs}
}

func (d *detection) pipeline(nets behavior.Networks, tmp string, s detect.Sink) *detect.Pipeline {
	bcfg := behavior.DefaultConfig()
	ic := bcfg.IncidentConfig()
	return detect.New(detect.Config{Rules: d.rules, Behaviours: behavior.New(bcfg, behavior.Options{Networks: nets, TempDir: tmp}),
		Incidents: &ic, TempDir: tmp}, s)
}

func (d *detection) decoder() *source.Decoder {
	return source.NewDecoder(nil, append(d.rules.FieldSyms(), event.MailAccessFields...))
}

// refSink keeps the keys of the alerts a pipeline raises.
type refSink struct{ keys []string }

func (s *refSink) Alert(a *alert.Alert)   { s.keys = append(s.keys, a.Key()) }
func (s *refSink) Incident(detect.Update) {}

// simulateTenant makes a tenant (the forged-token intrusion among its
// users) and splits it into pushes.
func simulateTenant(tb testing.TB, cfg config, seed int) *tenantData {
	dir := tb.TempDir()
	if _, err := simulate.Run(context.Background(), simulate.Config{Users: cfg.users, Days: cfg.days, Seed: uint64(seed),
		Campaigns: []string{simulate.CampaignForgedToken}}, dir); err != nil {
		tb.Fatal(err)
	}
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		tb.Fatal(err)
	}
	type rec struct {
		t  time.Time
		k  string
		en journal.Entry
	}
	var recs []rec
	var prev *event.Event
	if _, err := source.ReadPaths(context.Background(), []string{dir}, source.Options{Workers: 1}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		en := source.Entry(e)
		en.Raw = bytes.TrimSpace(bytes.Clone(en.Raw))
		recs = append(recs, rec{e.Time, en.Source + "\x00" + en.RecordID, en})
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	// Event-time order, as a tenant's records arrive (roughly): where a
	// worker's refreshes fall then does not change what it raises.
	slices.SortStableFunc(recs, func(a, b rec) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	d := &tenantData{seed: seed, nets: nets, hours: map[time.Time]int{}}
	for _, r := range recs {
		d.entries = append(d.entries, r.en)
		d.hours[r.t.Truncate(time.Hour)]++
	}
	for i := 0; i < len(d.entries); i += cfg.batch {
		var b []byte
		part := d.entries[i:min(i+cfg.batch, len(d.entries))]
		for _, e := range part {
			b = append(append(b, e.Raw...), '\n')
		}
		d.pushes = append(d.pushes, push{body: b, n: len(part)})
	}
	return d
}

// reference runs one pipeline over d in order, as a single process would,
// and keeps what it raised; it returns the pipeline (alive, for the
// memory measurement).
func (det *detection) reference(tb testing.TB, d *tenantData) *detect.Pipeline {
	s := &refSink{}
	p := det.pipeline(d.nets, tb.TempDir(), s)
	dec := det.decoder()
	for i, en := range d.entries {
		evs, err := dec.Decode(slices.Clone(en.Raw), event.Origin{File: "reference", Index: i})
		if err != nil {
			tb.Fatalf("tenant %d record %d does not decode: %v", d.seed, i, err)
		}
		d.events += len(evs)
		for _, e := range evs {
			_ = p.Process(e)
		}
	}
	incs, err := p.Refresh(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	d.refIncs = len(incs)
	d.refAlerts = s.keys
	slices.Sort(d.refAlerts)
	return p
}

// tenant is one tenant in a round.
type tenant struct {
	name   string
	data   *tenantData
	worker int
	jdir   string
	j      *journal.Journal
	seq    *cluster.Sequencer

	mu      sync.Mutex
	lastSeq uint64 // highest stream sequence acknowledged
	acked   int
	dups    int
	pending []ackMark // pushes acknowledged and not yet detected
	ackAt   map[string]time.Time
	pushed  bool      // every push acknowledged
	done    time.Time // detection reached lastSeq after the last push
	jdone   time.Time // the journal held every record
}

type ackMark struct {
	seq uint64
	at  time.Time
}

// ackLog is the tenant's cluster.Log, noting what each append got
// acknowledged and when.
type ackLog struct {
	*cluster.Log
	t *tenant
}

func (l ackLog) AppendBatch(ctx context.Context, entries []journal.Entry) ([]journal.Ack, error) {
	acks, err := l.Log.AppendBatch(ctx, entries)
	if err != nil {
		return acks, err
	}
	now := time.Now()
	t := l.t
	t.mu.Lock()
	defer t.mu.Unlock()
	var top uint64
	for i, a := range acks {
		if a.Duplicate {
			t.dups++
			continue
		}
		t.acked++
		top = max(top, a.Index)
		t.ackAt[entries[i].RecordID] = now
	}
	if top > 0 {
		t.lastSeq = max(t.lastSeq, top)
		t.pending = append(t.pending, ackMark{top, now})
	}
	return acks, nil
}

// phase is one measured stretch of a round.
type phase struct {
	Name    string                   `json:"name"`
	Records int                      `json:"records"`
	Wall    time.Duration            `json:"wall_ns"`
	CPU     CPUUse                   `json:"cpu"`
	Parts   map[string]time.Duration `json:"cpu_by_part_ns,omitempty"` // from the labelled profile
	profile string
}

// round is everything measured with one worker count.
type round struct {
	Workers int `json:"workers"`
	Repeat  int `json:"repeat"`
	// End to end, every stage live (tenant set A).
	E2E             phase            `json:"e2e"`
	Acked           time.Duration    `json:"e2e_acked_ns"`     // first push to the last acknowledgement
	Journaled       time.Duration    `json:"e2e_journaled_ns"` // … to every journal complete
	Detected        time.Duration    `json:"e2e_detected_ns"`  // … to every record detected
	E2EWorker       []float64        `json:"e2e_worker_records_per_s"`
	Lag             []time.Duration  `json:"-"`
	AlertLag        []time.Duration  `json:"-"`
	SigmaLag        []time.Duration  `json:"-"`
	LagP            [3]time.Duration `json:"lag_p50_p99_max_ns"`
	AlertLagP       [3]time.Duration `json:"alert_lag_p50_p99_max_ns"`
	SigmaLagP       [3]time.Duration `json:"sigma_alert_lag_p50_p99_max_ns"`
	LagN, AlertLagN int
	SigmaLagN       int
	AlertsUnmatched int `json:"alerts_unmatched"`
	// One stage at a time (tenant set B).
	Ingest       phase     `json:"ingest"`
	Journal      phase     `json:"journal"`
	Detect       phase     `json:"detect"`
	DetectWorker []float64 `json:"detect_worker_records_per_s"`
	DetectTenant []float64 `json:"detect_tenant_records_per_s"`
	// DetectSteady is the rate between the first record detected and 90 %
	// of them: without the workers' start-up and without the last fetch
	// of each tenant, which waits for its batch to fill (up to the
	// worker's fetch wait, 1 s in vigil serve).
	DetectSteady  float64       `json:"detect_steady_records_per_s"`
	DetectStartup time.Duration `json:"detect_startup_ns"` // phase start to the first record detected
	StreamBytes   uint64        `json:"stream_bytes"`      // one replica's
	StreamMsgs    uint64        `json:"stream_msgs"`
	JournalBytes  int64         `json:"journal_bytes"`
	AlertMsgs     int           `json:"alert_messages"`
	// Records stored after a record of a later push position (publishes
	// re-sent after a failure), the tenants with any, and of those the
	// tenants whose alerts then differ from a pipeline over the push order.
	LateRecords        int      `json:"late_records"`
	LateTenants        int      `json:"late_tenants"`
	OrderChangedAlerts int      `json:"order_changed_alert_tenants"`
	IncidentMsgs       int      `json:"incident_messages"`
	Failures           []string `json:"failures,omitempty"`
	SnapshotBytes      int64    `json:"snapshot_bytes"`
}

// BenchmarkScale is bench/scale.sh's measurement; it runs its rounds once
// whatever b.N is (run it with -benchtime 1x).
func BenchmarkScale(b *testing.B) {
	cfg := loadConfig(b)
	ncpu := runtime.NumCPU()
	fmt.Printf("scale: %d CPUs, GOMAXPROCS %d, %s; workers %v; %d tenants a set of %d users x %d days; pushes of %d\n",
		ncpu, runtime.GOMAXPROCS(0), runtime.Version(), cfg.workers, cfg.tenants, cfg.users, cfg.days, cfg.batch)
	det := newDetection(b)

	t0 := time.Now()
	data := make([]*tenantData, cfg.tenants)
	for i := range data {
		data[i] = simulateTenant(b, cfg, i+1)
	}
	records := 0
	for _, d := range data {
		records += len(d.entries)
	}
	fmt.Printf("scale: simulated %d records in %d tenants (%.1fs)\n", records, len(data), time.Since(t0).Seconds())

	// The single-process reference, and detection's memory per mailbox.
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	refs := make([]*detect.Pipeline, len(data))
	refCPU0, err := TakeCPU()
	if err != nil {
		b.Fatal(err)
	}
	for i, d := range data {
		refs[i] = det.reference(b, d)
	}
	refCPU1, err := TakeCPU()
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	events := 0
	for _, d := range data {
		events += d.events
		if d.refIncs == 0 || len(d.refAlerts) == 0 {
			b.Fatalf("tenant %d: the reference raised %d alerts and %d incidents; the intrusion should raise both", d.seed, len(d.refAlerts), d.refIncs)
		}
	}
	heapPerTenant := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(len(data))
	refUse := Since(refCPU0, refCPU1)
	fmt.Printf("scale: reference (one pipeline per tenant, no cluster): %d events from %d records, %s events per CPU-second; live heap %.1f MB per tenant, %.0f KB per user after %d days\n",
		events, records, Thousands(refUse.PerCPUSecond(events)), heapPerTenant/1e6, heapPerTenant/1e3/float64(cfg.users), cfg.days)
	runtime.KeepAlive(refs)
	refs = nil
	runtime.GC()

	// The busiest hour of all tenants together (they share a calendar)
	// against the average hour.
	hours := map[time.Time]int{}
	for _, d := range data {
		for h, n := range d.hours {
			hours[h] += n
		}
	}
	peak := 0
	for _, n := range hours {
		peak = max(peak, n)
	}
	res := &results{PeakHour: float64(peak) / (float64(records) / float64(cfg.days*24)), HeapPerTenant: heapPerTenant, CPUs: ncpu, Config: fmt.Sprintf("%d tenants x %d users x %d days, pushes of %d", cfg.tenants, cfg.users, cfg.days, cfg.batch),
		RecordsPerSet: records, EventsPerSet: events, RefEventsPerCPUSecond: refUse.PerCPUSecond(events),
		HeapPerUser: heapPerTenant / float64(cfg.users), RecordsPerUserDay: float64(records) / float64(cfg.tenants*cfg.users*cfg.days)}
	for rep := 1; rep <= cfg.repeat; rep++ {
		for _, w := range cfg.workers {
			// A sub-benchmark per round: its temporary directories (the
			// NATS servers' stores among them) go when the round ends.
			var r round
			ok := b.Run(fmt.Sprintf("workers=%d/round=%d", w, rep), func(b *testing.B) {
				r = runRound(b, cfg, det, data, w)
				for _, f := range r.Failures {
					b.Errorf("%d workers: %s", w, f)
				}
			})
			if r.Workers == 0 {
				b.Fatalf("round %d with %d workers stopped before its end", rep, w)
			}
			if !ok {
				fmt.Printf("scale: round %d with %d workers FAILED its checks\n", rep, w)
			}
			r.Repeat = rep
			res.Rounds = append(res.Rounds, r)
		}
	}
	res.print(os.Stdout, cfg)
	if cfg.out != "" {
		bs, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(cfg.out, bs, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// labelled runs fn with the profile label part=name; goroutines it
// starts (a NATS server's, a connection's reader) inherit it.
func labelled(name string, fn func()) {
	pprof.Do(context.Background(), pprof.Labels("part", name), func(context.Context) { fn() })
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// meter measures a phase: CPU, load and, when profiling, a labelled CPU
// profile.
type meter struct {
	b     *testing.B
	cfg   config
	start CPUSnap
	ph    *phase
	f     *os.File
}

func startPhase(b *testing.B, cfg config, w int, ph *phase, name string) *meter {
	m := &meter{b: b, cfg: cfg, ph: ph}
	ph.Name = name
	if cfg.profile != "" {
		ph.profile = filepath.Join(cfg.profile, fmt.Sprintf("w%d-%s.pprof", w, name))
		f, err := os.Create(ph.profile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		m.f = f
	}
	s, err := TakeCPU()
	if err != nil {
		b.Fatal(err)
	}
	m.start = s
	return m
}

func (m *meter) stop() {
	s, err := TakeCPU()
	if err != nil {
		m.b.Fatal(err)
	}
	if m.f != nil {
		pprof.StopCPUProfile()
		m.f.Close()
	}
	m.ph.CPU = Since(m.start, s)
	m.ph.Wall = m.ph.CPU.Wall
}

func runRound(b *testing.B, cfg config, det *detection, data []*tenantData, workers int) round {
	r := round{Workers: workers}
	fail := func(format string, a ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, a...)) }
	ctx := context.Background()
	fmt.Printf("\nscale: round with %d detection workers; load %s\n", workers, loadNow())

	var c *natstest.Cluster
	labelled("nats", func() { c = natstest.Start(b, 3) })
	defer c.Shutdown()
	urls := strings.Split(c.URLs(), ",")
	connect := func(part, name string) *cluster.Conn {
		var conn *cluster.Conn
		var err error
		labelled(part, func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			conn, err = cluster.Connect(cctx, cluster.Options{URLs: urls, Name: name, Logger: logger()})
		})
		if err != nil {
			b.Fatal(err)
		}
		return conn
	}
	ingestConn := connect("ingest", "ingest")
	defer ingestConn.Close()
	journalConn := connect("journal", "journal")
	defer journalConn.Close()
	var nc *nats.Conn
	var err error
	labelled("observe", func() { nc, err = nats.Connect(c.URLs(), nats.Name("observer")) })
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	defer os.RemoveAll(work)

	mk := func(set string) []*tenant {
		var ts []*tenant
		for i, d := range data {
			t := &tenant{name: fmt.Sprintf("%s%d", set, i+1), data: d, worker: i % workers, ackAt: map[string]time.Time{}}
			t.jdir = filepath.Join(work, "journal-"+t.name)
			var j *journal.Journal
			var err error
			// The journal's committer goroutine is the journal stage's.
			labelled("journal", func() { j, err = journal.Open(ctx, t.jdir, journal.Options{Logger: logger()}) })
			if err != nil {
				b.Fatal(err)
			}
			t.j = j
			ts = append(ts, t)
		}
		return ts
	}
	setA, setB := mk("a"), mk("b")
	byName := map[string]*tenant{}
	for _, t := range append(slices.Clone(setA), setB...) {
		byName[t.name] = t
	}

	// Alerts as they come out on VIGIL_ALERTS: lag from the
	// acknowledgement of the last record an alert names.
	var alertMu sync.Mutex
	var sub *nats.Subscription
	labelled("observe", func() {
		sub, err = nc.Subscribe("alerts.>", func(m *nats.Msg) {
			at := time.Now()
			var am cluster.AlertMessage
			if json.Unmarshal(m.Data, &am) != nil || am.Alert == nil {
				return
			}
			t := byName[am.Tenant]
			if t == nil || !strings.HasPrefix(t.name, "a") {
				// Set B is detected from a backlog: its lag is the test's
				// waiting, not the system's.
				return
			}
			t.mu.Lock()
			var acked time.Time
			for _, id := range am.Alert.RecordIDs {
				if a, ok := t.ackAt[id]; ok && a.After(acked) {
					acked = a
				}
			}
			t.mu.Unlock()
			alertMu.Lock()
			defer alertMu.Unlock()
			if acked.IsZero() {
				r.AlertsUnmatched++
				return
			}
			r.AlertLag = append(r.AlertLag, at.Sub(acked))
			if am.Alert.File != "" {
				r.SigmaLag = append(r.SigmaLag, at.Sub(acked))
			}
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	runSequencers := func(ts []*tenant) (stop func()) {
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, t := range ts {
			s, err := journalConn.NewSequencer(cluster.SequencerOptions{Tenant: t.name, Journal: t.j, Holder: "bench",
				Quarantine: func(rj cluster.Rejected) error {
					fail("tenant %s: message %d quarantined: %s", t.name, rj.Seq, rj.Reason)
					return nil
				}, Logger: logger()})
			if err != nil {
				b.Fatal(err)
			}
			t.seq = s
			labelled("journal", func() {
				wg.Go(func() {
					if err := s.Run(sctx); err != nil && sctx.Err() == nil {
						fail("sequencer %s: %v", t.name, err)
					}
				})
			})
		}
		return func() { cancel(); wg.Wait() }
	}
	var dconns []*cluster.Conn
	for k := range workers {
		dconns = append(dconns, connect("detect", fmt.Sprintf("worker-%d", k)))
	}
	defer func() {
		for _, dc := range dconns {
			dc.Close()
		}
	}()
	runDetectors := func(ts []*tenant) ([]*cluster.Detector, func()) {
		dctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var ds []*cluster.Detector
		for k := range workers {
			var names []string
			for _, t := range ts {
				if t.worker == k {
					names = append(names, t.name)
				}
			}
			tmp := filepath.Join(work, fmt.Sprintf("detect-%d-%s", k, ts[0].name))
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				b.Fatal(err)
			}
			d, err := dconns[k].NewDetector(ctx, cluster.DetectorOptions{Tenants: names, Holder: fmt.Sprintf("worker-%d", k), Logger: logger(), Batch: cfg.fetch,
				NewDecoder: det.decoder,
				NewPipeline: func(name string, s detect.Sink) *detect.Pipeline {
					return det.pipeline(byName[name].data.nets, tmp, s)
				}})
			if err != nil {
				b.Fatal(err)
			}
			ds = append(ds, d)
			labelled("detect", func() {
				wg.Go(func() {
					if err := d.Run(dctx); err != nil {
						fail("worker %d: %v", k, err)
					}
				})
			})
		}
		return ds, func() { cancel(); wg.Wait() }
	}
	pushAll := func(ts []*tenant) {
		var wg sync.WaitGroup
		for _, t := range ts {
			in := server.NewIngester(ackLog{ingestConn.Log(t.name, t.j), t}, filepath.Join(work, "quarantine-"+t.name+".jsonl"))
			labelled("ingest", func() {
				wg.Go(func() {
					for _, p := range t.data.pushes {
						res, err := in.Ingest(ctx, bytes.NewReader(p.body), "push:bench")
						if err != nil {
							fail("push to %s: %v", t.name, err)
							return
						}
						if res.Accepted != int64(p.n) || res.Quarantined != 0 {
							fail("push to %s: %+v, want %d accepted", t.name, res, p.n)
						}
					}
					t.mu.Lock()
					t.pushed = true
					t.mu.Unlock()
				})
			})
		}
		wg.Wait()
	}
	// watch samples the journals and the workers' positions every 5 ms
	// until every tenant of ts is journaled (if journals) and detected (if
	// ds), recording the lag of every acknowledged push.
	watch := func(ts []*tenant, ds []*cluster.Detector, journals bool, lags *[]time.Duration, st *steady, deadline time.Duration) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(deadline)
		total := 0
		for _, t := range ts {
			total += len(t.data.entries)
		}
		for {
			now := time.Now()
			var stats []map[string]cluster.TenantStats
			for _, d := range ds {
				stats = append(stats, d.Stats())
			}
			if st != nil {
				read := 0
				for _, t := range ts {
					read += int(stats[t.worker][t.name].Read)
				}
				st.observe(now, read, total)
			}
			left := 0
			for _, t := range ts {
				t.mu.Lock()
				if journals && t.jdone.IsZero() {
					if t.j.Size() >= uint64(len(t.data.entries)) {
						t.jdone = now
					} else {
						left++
					}
				}
				if ds != nil && t.done.IsZero() {
					pos := stats[t.worker][t.name].Position
					k := 0
					for k < len(t.pending) && t.pending[k].seq <= pos {
						if lags != nil {
							*lags = append(*lags, now.Sub(t.pending[k].at))
						}
						k++
					}
					t.pending = t.pending[k:]
					if t.pushed && pos >= t.lastSeq {
						t.done = now
					} else {
						left++
					}
				}
				t.mu.Unlock()
			}
			if left == 0 {
				return
			}
			if now.After(end) {
				b.Fatalf("%d workers: %d tenants not journaled or detected after %v", workers, left, deadline)
			}
			<-tick.C
		}
	}
	perWorker := func(ts []*tenant, from time.Time) []float64 {
		n := make([]int, workers)
		last := make([]time.Time, workers)
		for _, t := range ts {
			n[t.worker] += len(t.data.entries)
			if t.done.After(last[t.worker]) {
				last[t.worker] = t.done
			}
		}
		out := make([]float64, workers)
		for k := range out {
			if n[k] > 0 {
				out[k] = float64(n[k]) / last[k].Sub(from).Seconds()
			}
		}
		return out
	}
	recordsOf := func(ts []*tenant) int {
		n := 0
		for _, t := range ts {
			n += len(t.data.entries)
		}
		return n
	}
	const deadline = 15 * time.Minute

	// 1. End to end: sequencers and workers running, set A pushed as fast
	//    as it is acknowledged.
	stopSeqA := runSequencers(setA)
	dsA, stopDetA := runDetectors(setA)
	waitHeld(b, setA, dsA)
	m := startPhase(b, cfg, workers, &r.E2E, "e2e")
	start := time.Now()
	watched := make(chan struct{})
	go labelled("observe", func() {
		defer close(watched)
		watch(setA, dsA, true, &r.Lag, nil, deadline)
	})
	pushAll(setA)
	r.Acked = time.Since(start)
	<-watched
	m.stop()
	r.E2E.Records = recordsOf(setA)
	for _, t := range setA {
		r.Journaled = max(r.Journaled, t.jdone.Sub(start))
		r.Detected = max(r.Detected, t.done.Sub(start))
	}
	r.E2EWorker = perWorker(setA, start)
	waitRefreshed(b, setA, dsA)
	stopDetA()
	stopSeqA()
	fmt.Printf("scale:   end to end: %d records acknowledged in %.1fs, journaled in %.1fs, detected in %.1fs; process %.2f cores, load %s\n",
		r.E2E.Records, r.Acked.Seconds(), r.Journaled.Seconds(), r.Detected.Seconds(), r.E2E.CPU.Cores(), r.E2E.CPU.LoadAfter)

	// 2. One stage at a time over set B: ingest alone, then the journal
	//    catching up, then detection over the backlog.
	m = startPhase(b, cfg, workers, &r.Ingest, "ingest")
	pushAll(setB)
	m.stop()
	r.Ingest.Records = recordsOf(setB)
	fmt.Printf("scale:   ingest alone: %d records in %.1fs (%s records per process CPU-second)\n",
		r.Ingest.Records, r.Ingest.Wall.Seconds(), Thousands(r.Ingest.CPU.PerCPUSecond(r.Ingest.Records)))
	m = startPhase(b, cfg, workers, &r.Journal, "journal")
	stopSeqB := runSequencers(setB)
	watch(setB, nil, true, nil, nil, deadline)
	m.stop()
	r.Journal.Records = recordsOf(setB)
	stopSeqB()
	fmt.Printf("scale:   journal alone: %d records in %.1fs (%s records per process CPU-second)\n",
		r.Journal.Records, r.Journal.Wall.Seconds(), Thousands(r.Journal.CPU.PerCPUSecond(r.Journal.Records)))
	m = startPhase(b, cfg, workers, &r.Detect, "detect")
	start = time.Now()
	dsB, stopDetB := runDetectors(setB)
	var st steady
	watch(setB, dsB, false, nil, &st, deadline)
	r.DetectSteady, r.DetectStartup = st.rate(), st.first.Sub(start)
	m.stop()
	r.Detect.Records = recordsOf(setB)
	r.DetectWorker = perWorker(setB, start)
	for _, t := range setB {
		r.DetectTenant = append(r.DetectTenant, float64(len(t.data.entries))/t.done.Sub(start).Seconds())
	}
	waitRefreshed(b, setB, dsB)
	fmt.Printf("scale:   detection alone: %d records in %.1fs (%s records per process CPU-second); process %.2f cores\n",
		r.Detect.Records, r.Detect.Wall.Seconds(), Thousands(r.Detect.CPU.PerCPUSecond(r.Detect.Records)), r.Detect.CPU.Cores())

	// What each worker did, checked.
	for _, ds := range [][]*cluster.Detector{dsA, dsB} {
		for _, d := range ds {
			for name, st := range d.Stats() {
				t := byName[name]
				if st.Read != uint64(len(t.data.entries)) || st.Undecoded != 0 || st.Repeats != 0 || st.Takeovers != 1 {
					fail("tenant %s: worker read %d of %d records, %d undecoded, %d repeats, %d takeovers",
						name, st.Read, len(t.data.entries), st.Undecoded, st.Repeats, st.Takeovers)
				}
			}
		}
	}
	stopDetB()
	for _, t := range append(slices.Clone(setA), setB...) {
		if st := t.seq.Stats(); st.Appended != uint64(len(t.data.entries)) || st.Quarantined != 0 || st.Gap != 0 {
			fail("tenant %s: sequencer %+v, want %d appended", t.name, st, len(t.data.entries))
		}
		if t.dups != 0 || t.acked != len(t.data.entries) {
			fail("tenant %s: %d acknowledged new, %d as duplicates; %d pushed", t.name, t.acked, t.dups, len(t.data.entries))
		}
	}

	// Sizes: the stream (one replica), the journals, the snapshots.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if s, err := js.Stream(sctx, cluster.DefaultStream); err == nil {
		if info, err := s.Info(sctx); err == nil {
			r.StreamBytes, r.StreamMsgs = info.State.Bytes, info.State.Msgs
		}
	}
	for _, t := range append(slices.Clone(setA), setB...) {
		if err := t.j.Close(); err != nil {
			fail("journal %s: %v", t.name, err)
		}
		n, err := DirSize(t.jdir)
		if err != nil {
			b.Fatal(err)
		}
		r.JournalBytes += n
	}
	if obs, err := js.ObjectStore(sctx, cluster.SnapshotBucket); err == nil {
		if st, err := obs.Status(sctx); err == nil {
			r.SnapshotBytes = int64(st.Size())
		}
	}

	// Every acknowledged record journaled once; every journal verifies.
	for _, t := range append(slices.Clone(setA), setB...) {
		checkJournal(ctx, t, fail)
	}
	// Every alert on VIGIL_ALERTS once, and exactly the single pipeline's.
	checkAlerts(sctx, js, det, append(slices.Clone(setA), setB...), &r, fail)

	// The labelled profiles: CPU per part.
	for _, ph := range []*phase{&r.E2E, &r.Ingest, &r.Journal, &r.Detect} {
		if ph.profile == "" {
			continue
		}
		parts, err := ProfileByLabel(ph.profile, "part")
		if err != nil {
			fail("profile of %s: %v", ph.Name, err)
			continue
		}
		ph.Parts = parts
	}
	r.LagN, r.AlertLagN, r.SigmaLagN = len(r.Lag), len(r.AlertLag), len(r.SigmaLag)
	r.LagP = pcts(r.Lag)
	r.AlertLagP = pcts(r.AlertLag)
	r.SigmaLagP = pcts(r.SigmaLag)
	if len(r.Failures) == 0 {
		fmt.Printf("scale:   checks passed: every acknowledged record journaled once (%d), journals verify, %d alerts on %s each once and equal to a single pipeline's, %d incident updates\n",
			2*recordsOf(setA), r.AlertMsgs, cluster.AlertStream, r.IncidentMsgs)
	}
	return r
}

// steady follows the records read over a backlog.
type steady struct {
	first, at90      time.Time
	readFirst, at90n int
}

func (s *steady) observe(now time.Time, read, total int) {
	if read > 0 && s.first.IsZero() {
		s.first, s.readFirst = now, read
	}
	if read*10 >= total*9 && s.at90.IsZero() {
		s.at90, s.at90n = now, read
	}
}

func (s *steady) rate() float64 {
	if s.first.IsZero() || s.at90.IsZero() || !s.at90.After(s.first) {
		return 0
	}
	return float64(s.at90n-s.readFirst) / s.at90.Sub(s.first).Seconds()
}

// streamReference reads a tenant's records in stream order and counts
// those stored after a record pushed later (publishes re-sent); when
// there are any, it runs a single pipeline over the stream's order and
// returns its sorted alert keys.
func streamReference(ctx context.Context, js jetstream.JetStream, det *detection, t *tenant) (late int, keys []string, err error) {
	idx := map[string]int{}
	for i, k := range t.data.keys() {
		idx[k] = i
	}
	cons, err := js.OrderedConsumer(ctx, cluster.DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{cluster.TenantFilter(t.name)}})
	if err != nil {
		return 0, nil, fmt.Errorf("stream order: %w", err)
	}
	type msg struct {
		seq uint64
		en  journal.Entry
	}
	var msgs []msg
	top := -1
	for len(msgs) < len(t.data.entries) {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return 0, nil, fmt.Errorf("stream order: %w", err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return 0, nil, fmt.Errorf("stream order: %w", err)
			}
			en, err := journal.DecodeEntry(m.Data())
			if err != nil {
				return 0, nil, fmt.Errorf("stream message %d: %w", md.Sequence.Stream, err)
			}
			i, ok := idx[en.Source+"\x00"+en.RecordID]
			if !ok {
				return 0, nil, fmt.Errorf("stream message %d: a record this tenant never pushed", md.Sequence.Stream)
			}
			if i < top {
				late++
			}
			top = max(top, i)
			msgs = append(msgs, msg{md.Sequence.Stream, en})
		}
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("stream order: %d of %d records read", len(msgs), len(t.data.entries))
		}
	}
	if late == 0 {
		return 0, nil, nil
	}
	tmp, err := os.MkdirTemp("", "scale-reference-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(tmp)
	s := &refSink{}
	p := det.pipeline(t.data.nets, tmp, s)
	dec := det.decoder()
	for _, m := range msgs {
		dec.SetObserved(m.en.Received)
		evs, err := dec.Decode(slices.Clone(m.en.Raw), event.Origin{File: "stream", Index: int(m.seq)})
		if err != nil {
			return 0, nil, fmt.Errorf("stream message %d: %w", m.seq, err)
		}
		for _, e := range evs {
			_ = p.Process(e)
		}
	}
	if _, err := p.Refresh(ctx); err != nil {
		return 0, nil, err
	}
	slices.Sort(s.keys)
	return late, s.keys, nil
}

func pcts(ds []time.Duration) [3]time.Duration {
	ds = slices.Clone(ds)
	return [3]time.Duration{Percentile(ds, 50), Percentile(ds, 99), Percentile(ds, 100)}
}

func loadNow() string {
	s, err := TakeCPU()
	if err != nil {
		return "?"
	}
	return s.Load
}

// waitHeld waits until each tenant's worker holds it.
func waitHeld(b *testing.B, ts []*tenant, ds []*cluster.Detector) {
	end := time.Now().Add(2 * time.Minute)
	for _, t := range ts {
		for !ds[t.worker].Stats()[t.name].Held {
			if time.Now().After(end) {
				b.Fatalf("worker %d does not hold tenant %s", t.worker, t.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitRefreshed waits until each tenant's incidents are as of its last
// record (a refresh runs at most every 2 s): only then has every alert
// and incident update gone out.
func waitRefreshed(b *testing.B, ts []*tenant, ds []*cluster.Detector) {
	end := time.Now().Add(2 * time.Minute)
	for _, t := range ts {
		for ds[t.worker].Stats()[t.name].Refreshed < t.lastSeq {
			if time.Now().After(end) {
				b.Fatalf("tenant %s: worker %d refreshed up to %d, last record %d", t.name, t.worker,
					ds[t.worker].Stats()[t.name].Refreshed, t.lastSeq)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func checkJournal(ctx context.Context, t *tenant, fail func(string, ...any)) {
	want := t.data.keys()
	got := map[string]int{}
	var n int
	if err := journal.Replay(ctx, t.jdir, 0, func(_ uint64, e *journal.Entry) error {
		got[e.Source+"\x00"+e.RecordID]++
		n++
		return nil
	}); err != nil {
		fail("journal %s: %v", t.name, err)
		return
	}
	var missing, repeated int
	for _, k := range want {
		switch got[k] {
		case 0:
			missing++
		case 1:
		default:
			repeated++
		}
	}
	if n != len(want) || missing > 0 || repeated > 0 {
		fail("journal %s: %d entries for %d acknowledged records: %d missing, %d stored more than once", t.name, n, len(want), missing, repeated)
	}
	res, err := journal.Verify(ctx, t.jdir, journal.VerifyOptions{})
	if err != nil {
		fail("journal %s does not verify: %v", t.name, err)
		return
	}
	if res.Entries != uint64(n) {
		fail("journal %s: verified %d entries, replayed %d", t.name, res.Entries, n)
	}
}

func checkAlerts(ctx context.Context, js jetstream.JetStream, det *detection, ts []*tenant, r *round, fail func(string, ...any)) {
	s, err := js.Stream(ctx, cluster.AlertStream)
	if err != nil {
		fail("alert stream: %v", err)
		return
	}
	info, err := s.Info(ctx)
	if err != nil {
		fail("alert stream: %v", err)
		return
	}
	ids := map[string]map[string]int{}
	keys := map[string][]string{}
	if last := info.State.LastSeq; last > 0 {
		cons, err := js.OrderedConsumer(ctx, cluster.AlertStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			fail("alert stream: %v", err)
			return
		}
	read:
		for {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				fail("alert stream: %v", err)
				return
			}
			for m := range batch.Messages() {
				md, err := m.Metadata()
				if err != nil {
					fail("alert stream: %v", err)
					return
				}
				var am cluster.AlertMessage
				if strings.HasSuffix(m.Subject(), ".holder") {
					// A tenant's holder record (the workers' fence), not an alert.
				} else if err := json.Unmarshal(m.Data(), &am); err != nil {
					fail("alert message %d: %v", md.Sequence.Stream, err)
				} else {
					if ids[am.Tenant] == nil {
						ids[am.Tenant] = map[string]int{}
					}
					ids[am.Tenant][am.ID]++
					if am.Alert != nil {
						keys[am.Tenant] = append(keys[am.Tenant], am.Alert.Key())
						r.AlertMsgs++
					} else {
						r.IncidentMsgs++
					}
				}
				if md.Sequence.Stream >= last {
					break read
				}
			}
			if ctx.Err() != nil {
				fail("alert stream: not read up to %d", last)
				return
			}
		}
	}
	for _, t := range ts {
		for id, n := range ids[t.name] {
			if n > 1 {
				fail("tenant %s: %s sent %d times", t.name, id, n)
			}
		}
		got := keys[t.name]
		slices.Sort(got)
		// The single process detects the stream's order, which is the
		// push order unless a publish was re-sent (then it lands after
		// the rest of its push).
		want := t.data.refAlerts
		late, streamRef, err := streamReference(ctx, js, det, t)
		if err != nil {
			fail("tenant %s: %v", t.name, err)
			continue
		}
		if late > 0 {
			r.LateRecords += late
			r.LateTenants++
			want = streamRef
			if !slices.Equal(streamRef, t.data.refAlerts) {
				r.OrderChangedAlerts++
			}
		}
		if !slices.Equal(got, want) {
			fail("tenant %s: %d alerts on %s, a single pipeline over the stream raised %d (or others)", t.name, len(got), cluster.AlertStream, len(want))
		}
		if len(ids[t.name])-len(got) == 0 {
			fail("tenant %s: no incident update on %s; the single pipeline found %d incidents", t.name, cluster.AlertStream, t.data.refIncs)
		}
	}
}
