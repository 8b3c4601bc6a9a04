package scale

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// results is what BenchmarkScale prints and writes as JSON.
type results struct {
	CPUs                  int     `json:"cpus"`
	Config                string  `json:"config"`
	RecordsPerSet         int     `json:"records_per_set"`
	EventsPerSet          int     `json:"events_per_set"`
	RecordsPerUserDay     float64 `json:"records_per_user_day"`
	RefEventsPerCPUSecond float64 `json:"reference_events_per_cpu_second"`
	HeapPerUser           float64 `json:"detection_heap_bytes_per_user"`
	HeapPerTenant         float64 `json:"detection_heap_bytes_per_tenant"`
	PeakHour              float64 `json:"peak_hour_over_average"`
	Rounds                []round `json:"rounds"`
}

func ms(d time.Duration) string { return fmt.Sprintf("%d", d.Milliseconds()) }

func lagCell(p [3]time.Duration, n int) string {
	if n == 0 {
		return "- (none)"
	}
	return fmt.Sprintf("%s / %s / %s (%d)", ms(p[0]), ms(p[1]), ms(p[2]), n)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func workerCell(rs []float64) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, Thousands(r))
	}
	return strings.Join(parts, ", ")
}

// natsShare is the share of the profiled CPU the NATS servers took (-1
// without a profile).
func natsShare(ph phase) float64 {
	var sum time.Duration
	for _, d := range ph.Parts {
		sum += d
	}
	if sum == 0 {
		return -1
	}
	return ph.Parts["nats"].Seconds() / sum.Seconds()
}

// split renders a phase's profiled CPU by part as percentages.
func split(ph phase) string {
	var sum time.Duration
	for _, d := range ph.Parts {
		sum += d
	}
	if sum == 0 {
		return "-"
	}
	var parts []string
	for _, k := range []string{"ingest", "journal", "detect", PartNATS, "observe", PartGC, ""} {
		d, ok := ph.Parts[k]
		if !ok {
			continue
		}
		name := k
		if k == "" {
			name = "other"
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", name, 100*d.Seconds()/sum.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// vigilPerCPUSecond is records per CPU-second of everything but the NATS
// servers (the process CPU less the NATS servers' profiled share).
func vigilPerCPUSecond(ph phase) string {
	s := natsShare(ph)
	if s < 0 {
		return "-"
	}
	cpu := ph.CPU.Process.Seconds() * (1 - s)
	if cpu <= 0 {
		return "-"
	}
	return Thousands(float64(ph.Records) / cpu)
}

func minMax(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return Thousands(lo) + "–" + Thousands(hi)
}

func cores(u CPUUse) string { return fmt.Sprintf("%.2f", u.Cores()) }

func others(u CPUUse, ncpu int) string { return fmt.Sprintf("%.2f", u.OthersCores(ncpu)) }

func load(u CPUUse) string { return u.LoadBefore + " → " + u.LoadAfter }

// best is, per worker count, the round with the highest detection rate
// over the backlog and the one with the highest end-to-end rate: on a
// shared machine the least disturbed.
func (res *results) best() (workers []int, detect, e2e map[int]round) {
	detect, e2e = map[int]round{}, map[int]round{}
	for _, r := range res.Rounds {
		if _, ok := detect[r.Workers]; !ok {
			workers = append(workers, r.Workers)
		}
		if b, ok := detect[r.Workers]; !ok || rate(r.Detect.Records, r.Detect.Wall) > rate(b.Detect.Records, b.Detect.Wall) {
			detect[r.Workers] = r
		}
		if b, ok := e2e[r.Workers]; !ok || rate(r.E2E.Records, r.Detected) > rate(b.E2E.Records, b.Detected) {
			e2e[r.Workers] = r
		}
	}
	return workers, detect, e2e
}

func (res *results) print(w io.Writer, cfg config) {
	rs := res.Rounds
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n# bench/scale.sh: %s; %d CPUs; %d round(s) per worker count\n\n", res.Config, res.CPUs, cfg.repeat)
	fmt.Fprintf(w, "Each set: %d records (%d events), %.1f records per user per day, busiest hour %.1fx the average; "+
		"a single pipeline without the cluster detects %s events per CPU-second; its live heap after %d days: %.1f MB per tenant (%.0f KB per user).\n\n",
		res.RecordsPerSet, res.EventsPerSet, res.RecordsPerUserDay, res.PeakHour, Thousands(res.RefEventsPerCPUSecond), cfg.days,
		res.HeapPerTenant/1e6, res.HeapPerUser/1e3)

	fmt.Fprintf(w, "## End to end: every stage live, %d tenants pushed at once as fast as acknowledged\n\n", cfg.tenants)
	rows := [][]string{{"workers", "round", "acknowledged rec/s", "journaled rec/s", "detected rec/s", "per worker rec/s",
		"ack→detected ms p50/p99/max (pushes)", "ack→alert out ms p50/p99/max (alerts)", "of which Sigma alerts", "process cores", "others' cores", "load before → after"}}
	for _, r := range rs {
		rows = append(rows, []string{fmt.Sprint(r.Workers), fmt.Sprint(r.Repeat), Thousands(rate(r.E2E.Records, r.Acked)), Thousands(rate(r.E2E.Records, r.Journaled)),
			Thousands(rate(r.E2E.Records, r.Detected)), workerCell(r.E2EWorker), lagCell(r.LagP, r.LagN), lagCell(r.AlertLagP, r.AlertLagN), lagCell(r.SigmaLagP, r.SigmaLagN),
			cores(r.E2E.CPU), others(r.E2E.CPU, res.CPUs), load(r.E2E.CPU)})
	}
	fmt.Fprintln(w, Table(rows))

	fmt.Fprintf(w, "## Detection alone: workers reading a backlog of %d tenants already journaled\n\n", cfg.tenants)
	rows = [][]string{{"workers", "round", "records/s", "steady rec/s", "start-up ms", "per worker rec/s", "per tenant rec/s", "process cores", "records per process CPU-s", "per CPU-s without NATS", "CPU split", "others' cores", "load before → after"}}
	for _, r := range rs {
		rows = append(rows, []string{fmt.Sprint(r.Workers), fmt.Sprint(r.Repeat), Thousands(rate(r.Detect.Records, r.Detect.Wall)),
			Thousands(r.DetectSteady), ms(r.DetectStartup), workerCell(r.DetectWorker), minMax(r.DetectTenant),
			cores(r.Detect.CPU), Thousands(r.Detect.CPU.PerCPUSecond(r.Detect.Records)), vigilPerCPUSecond(r.Detect),
			split(r.Detect), others(r.Detect.CPU, res.CPUs), load(r.Detect.CPU)})
	}
	fmt.Fprintln(w, Table(rows))
	fmt.Fprintln(w, "records/s: all of the backlog over the phase; steady: from the first record detected to 90 % of them (no start-up, "+
		"no last fetch of a tenant waiting for its batch to fill); per worker and per tenant: their records over the time until their last was detected.")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "## One stage at a time (each round's second tenant set)")
	fmt.Fprintln(w)
	rows = [][]string{{"stage", "workers", "round", "records/s", "process cores", "records per process CPU-s", "per CPU-s without NATS", "CPU split", "others' cores", "load before → after"}}
	for _, st := range []string{"ingest", "journal", "detect"} {
		for _, r := range rs {
			ph := map[string]phase{"ingest": r.Ingest, "journal": r.Journal, "detect": r.Detect}[st]
			if st == "detect" && r.Workers != 1 {
				continue
			}
			rows = append(rows, []string{st, fmt.Sprint(r.Workers), fmt.Sprint(r.Repeat), Thousands(rate(ph.Records, ph.Wall)), cores(ph.CPU),
				Thousands(ph.CPU.PerCPUSecond(ph.Records)), vigilPerCPUSecond(ph), split(ph), others(ph.CPU, res.CPUs), load(ph.CPU)})
		}
	}
	fmt.Fprintln(w, Table(rows))
	fmt.Fprintln(w, "\"per CPU-s without NATS\": the process CPU less the three NATS servers' share in the CPU profile (samples with nats-server code on the stack); "+
		"the garbage collector and the runtime stay in. CPU split: the profile's samples by the part whose goroutine took them (pprof labels).")
	fmt.Fprintln(w)

	var sb, jb, recs float64
	for _, r := range rs {
		if r.StreamMsgs > 0 {
			sb += float64(r.StreamBytes) / float64(r.StreamMsgs)
		}
		jb += float64(r.JournalBytes)
		recs += float64(2 * r.E2E.Records)
	}
	fmt.Fprintf(w, "Sizes: %.0f bytes per record in the stream (one replica; three are kept), %.0f bytes per record in the journals "+
		"(with their Merkle files and checkpoints); detection snapshots: %s bytes for %d tenants.\n\n",
		sb/float64(len(rs)), jb/recs, Thousands(float64(rs[len(rs)-1].SnapshotBytes)), 2*cfg.tenants)

	late, lateT, changed := 0, 0, 0
	for _, r := range rs {
		late, lateT, changed = late+r.LateRecords, lateT+r.LateTenants, changed+r.OrderChangedAlerts
	}
	fmt.Fprintf(w, "Stream order: %d records stored after a record pushed later (publishes re-sent after a failure) in %d of the %d tenants of all rounds; "+
		"for %d of those a single pipeline over the push order raises other alerts than over the stream order (the checks compare with the stream order, as the journal holds it).\n\n",
		late, lateT, 2*cfg.tenants*len(rs), changed)

	workers, bd, be := res.best()
	fmt.Fprintln(w, "## The curve (best round per worker count)")
	fmt.Fprintln(w)
	b1, e1 := bd[workers[0]], be[workers[0]]
	rows = [][]string{{"workers", "detection alone rec/s", "vs first", "steady rec/s", "vs first", "its process cores", "others' cores", "end to end detected rec/s", "vs first", "ack→detected p50/p99 ms", "its process cores", "others' cores"}}
	for _, n := range workers {
		d, e := bd[n], be[n]
		rows = append(rows, []string{fmt.Sprint(n), Thousands(rate(d.Detect.Records, d.Detect.Wall)), Ratio(rate(d.Detect.Records, d.Detect.Wall), rate(b1.Detect.Records, b1.Detect.Wall)),
			Thousands(d.DetectSteady), Ratio(d.DetectSteady, b1.DetectSteady),
			cores(d.Detect.CPU), others(d.Detect.CPU, res.CPUs), Thousands(rate(e.E2E.Records, e.Detected)), Ratio(rate(e.E2E.Records, e.Detected), rate(e1.E2E.Records, e1.Detected)),
			ms(e.LagP[0]) + " / " + ms(e.LagP[1]), cores(e.E2E.CPU), others(e.E2E.CPU, res.CPUs)})
	}
	fmt.Fprintln(w, Table(rows))
	fmt.Fprintln(w, "## Where it stops scaling")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- detection alone, records per process CPU-second (median of the rounds): %s workers; all of them share this machine's %d cores. With %d: %s.\n",
		cpuPerWorkers(rs), res.CPUs, workers[0], Bound(bd[workers[0]].Detect.CPU, res.CPUs))
	for i := 1; i < len(workers); i++ {
		p, r := bd[workers[i-1]], bd[workers[i]]
		g := rate(r.Detect.Records, r.Detect.Wall) / rate(p.Detect.Records, p.Detect.Wall)
		verdict := "scales"
		if g < 1.15 {
			verdict = "does not scale"
		}
		fmt.Fprintf(w, "- detection alone, %d → %d workers: %.2fx (%s; steady rate %.2fx); the process kept %.2f → %.2f of the %d cores busy, other processes %.2f → %.2f, the machine %.0f%% → %.0f%% busy. With %d: %s.\n",
			p.Workers, r.Workers, g, verdict, r.DetectSteady/max(p.DetectSteady, 1), p.Detect.CPU.Cores(), r.Detect.CPU.Cores(), res.CPUs,
			p.Detect.CPU.OthersCores(res.CPUs), r.Detect.CPU.OthersCores(res.CPUs), 100*p.Detect.CPU.MachineBusy, 100*r.Detect.CPU.MachineBusy,
			r.Workers, Bound(r.Detect.CPU, res.CPUs))
	}
	for i := 1; i < len(workers); i++ {
		p, r := be[workers[i-1]], be[workers[i]]
		fmt.Fprintf(w, "- end to end, %d → %d workers: detected %.2fx, acknowledged %.2fx; the process kept %.2f → %.2f cores busy, the machine %.0f%% → %.0f%%. With %d: %s.\n",
			p.Workers, r.Workers, rate(r.E2E.Records, r.Detected)/rate(p.E2E.Records, p.Detected), rate(r.E2E.Records, r.Acked)/rate(p.E2E.Records, p.Acked),
			p.E2E.CPU.Cores(), r.E2E.CPU.Cores(), 100*p.E2E.CPU.MachineBusy, 100*r.E2E.CPU.MachineBusy, r.Workers, Bound(r.E2E.CPU, res.CPUs))
	}
}

// cpuPerWorkers lists detection's records per process CPU-second by
// worker count (the median of its rounds).
func cpuPerWorkers(rs []round) string {
	by := map[int][]float64{}
	var order []int
	for _, r := range rs {
		if _, ok := by[r.Workers]; !ok {
			order = append(order, r.Workers)
		}
		by[r.Workers] = append(by[r.Workers], r.Detect.CPU.PerCPUSecond(r.Detect.Records))
	}
	var parts []string
	for _, n := range order {
		v := slices.Clone(by[n])
		slices.Sort(v)
		parts = append(parts, fmt.Sprintf("%s with %d", Thousands(v[len(v)/2]), n))
	}
	return strings.Join(parts, ", ")
}
