// Command detection measures vigil's forged-token detection quality on
// simulated tenants with known ground truth: per campaign, incident-level
// recall and precision, alert latency in event time, and impact accuracy
// (messages found against the messages the intruder really read). It
// then runs the same detection over the real samples in ../shared/data
// and reports how many alerts they raise. bench/detection.sh drives it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"

	pipeline "github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

func main() {
	seeds := flag.String("seeds", "1,2,3", "simulation seeds, comma-separated")
	sizes := flag.String("users", "50,200", "tenant sizes (users), comma-separated")
	days := flag.Int("days", 21, "days simulated per run")
	work := flag.String("work", "", "scratch directory (default: a temporary one, removed after)")
	shared := flag.String("shared", "", "directory of real samples to run over as well (e.g. ../shared/data)")
	verbose := flag.Bool("v", false, "list every incident and miss")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.DurationVar(&signInDelay, "signin-delay", 0, "feed the records in journal order (as vigil serve and reindex read them) with the sign-ins arriving this long after the other logs, instead of sorted as hunt does")
	flag.DurationVar(&mailDelay, "mail-delay", 0, "feed the records in journal order with the unified audit log (mail accesses, searches, directory audit) arriving this long after the other logs: the UAL's documented latency is 30 min to 24 h")
	flag.DurationVar(&maxMailLag, "max-mail-lag", -1, "override orphan_token.max_mail_lag (0: keep no sign-in evidence for a late mail log)")
	flag.DurationVar(&maxSourceLag, "max-source-lag", -1, "override orphan_token.max_source_lag (0: judge without waiting for a late sign-in log)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "detection bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "detection bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *seeds, *sizes, *days, *work, *shared, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "detection bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, x := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("bad number %q", x)
		}
		out = append(out, n)
	}
	return out, nil
}

// campaignScore accumulates one campaign's results over all runs.
type campaignScore struct {
	runs, detected   int
	incidents        int // incidents matching the campaign
	exclusive        int // of which match no other campaign
	latencies        []time.Duration
	truthMsgs, found int
	extraMsgs        int
	exactRuns        int
	evidenceAgree    int
	evidenceRuns     int
}

func run(ctx context.Context, out io.Writer, seedList, sizeList string, days int, work, shared string, verbose bool) error {
	seeds, err := ints(seedList)
	if err != nil {
		return err
	}
	sizes, err := ints(sizeList)
	if err != nil {
		return err
	}
	if work == "" {
		work, err = os.MkdirTemp("", "vigil-detection-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	campaigns := simulate.CampaignNames
	scores := map[string]*campaignScore{}
	for _, c := range campaigns {
		scores[c] = &campaignScore{}
	}
	totalInc, fpInc, runs := 0, 0, 0
	var elapsed time.Duration
	var events int
	for _, users := range sizes {
		for _, seed := range seeds {
			dir := filepath.Join(work, fmt.Sprintf("u%d-s%d", users, seed))
			truth, err := simulate.Run(ctx, simulate.Config{Users: users, Days: days, Seed: uint64(seed), Campaigns: campaigns, Confounders: simulate.ConfounderNames}, dir)
			if err != nil {
				return err
			}
			start := time.Now()
			an, n, err := detect(ctx, dir)
			if err != nil {
				return err
			}
			an.Close() // the incidents are scored; their alerts are not read
			elapsed += time.Since(start)
			events += n
			runs++
			matched := map[string][]*incident.Incident{}
			for _, inc := range an.Incidents {
				totalInc++
				names := matchCampaigns(inc, truth)
				if len(names) == 0 {
					fpInc++
					if verbose {
						fmt.Fprintf(out, "  u%d s%d FALSE POSITIVE %s %s signals=%v mailboxes=%v actors=%+v\n", users, seed, inc.ID, inc.Title, inc.Signals, inc.Mailboxes, inc.Actors)
					}
				}
				for _, nm := range names {
					matched[nm] = append(matched[nm], inc)
				}
			}
			for _, ct := range truth.Campaigns {
				sc := scores[ct.Name]
				sc.runs++
				incs := matched[ct.Name]
				if len(incs) == 0 {
					if verbose {
						fmt.Fprintf(out, "  u%d s%d MISSED %s\n", users, seed, ct.Name)
					}
				} else {
					sc.detected++
					sc.incidents += len(incs)
					for _, inc := range incs {
						if len(matchCampaigns(inc, truth)) == 1 {
							sc.exclusive++
						}
					}
					first := incs[0].Raised
					for _, inc := range incs {
						if inc.Raised.Before(first) {
							first = inc.Raised
						}
					}
					sc.latencies = append(sc.latencies, first.Sub(ct.Start))
				}
				truthSet := map[string]bool{}
				complete := true
				for _, mi := range ct.Impact {
					for _, m := range mi.MessageIDs {
						truthSet[mi.Mailbox+"\x00"+m] = true
					}
					complete = complete && mi.Complete
				}
				got := map[string]bool{}
				ourComplete := true
				for _, inc := range incs {
					for _, r := range inc.Impact.Reads {
						got[r.Mailbox+"\x00"+r.MessageID] = true
					}
					ourComplete = ourComplete && inc.Impact.EvidenceComplete
				}
				f, x := 0, 0
				for k := range got {
					if truthSet[k] {
						f++
					} else {
						x++
					}
				}
				sc.truthMsgs += len(truthSet)
				sc.found += f
				sc.extraMsgs += x
				if f == len(truthSet) && x == 0 {
					sc.exactRuns++
				}
				if len(incs) > 0 {
					sc.evidenceRuns++
					if complete == ourComplete {
						sc.evidenceAgree++
					}
				}
				if verbose && (f != len(truthSet) || x != 0) {
					fmt.Fprintf(out, "  u%d s%d %s impact: truth %d, found %d, extra %d\n", users, seed, ct.Name, len(truthSet), f, x)
				}
			}
		}
	}
	fmt.Fprintf(out, "Detection quality: %d runs (users %s × seeds %s, %d days, every campaign with every confounder), %d events in %.1fs of detection (%.0f events/s)\n\n",
		runs, sizeList, seedList, days, events, elapsed.Seconds(), float64(events)/elapsed.Seconds())
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "campaign\trecall\tprecision\tincidents/intrusion\tmessage recall\tmessage precision\tlatency median\tlatency max\tmessages found/truth\textra messages\timpact exact\tevidence flag agrees\t")
	for _, c := range campaigns {
		sc := scores[c]
		med, mx := "-", "-"
		if len(sc.latencies) > 0 {
			sort.Slice(sc.latencies, func(i, j int) bool { return sc.latencies[i] < sc.latencies[j] })
			med, mx = sc.latencies[len(sc.latencies)/2].Round(time.Minute).String(), sc.latencies[len(sc.latencies)-1].Round(time.Minute).String()
		}
		perIntrusion := "-"
		if sc.detected > 0 {
			perIntrusion = fmt.Sprintf("%.2f", float64(sc.incidents)/float64(sc.detected))
		}
		fmt.Fprintf(tw, "%s\t%d/%d (%.0f%%)\t%.2f\t%s\t%.3f\t%.3f\t%s\t%s\t%d/%d\t%d\t%d/%d\t%d/%d\t\n", c, sc.detected, sc.runs, pct(sc.detected, sc.runs),
			ratio(sc.exclusive, sc.incidents), perIntrusion, ratio(sc.found, sc.truthMsgs), ratio(sc.found, sc.found+sc.extraMsgs), med, mx,
			sc.found, sc.truthMsgs, sc.extraMsgs, sc.exactRuns, sc.runs, sc.evidenceAgree, sc.evidenceRuns)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nincidents: %d, matching a campaign: %d, false positives: %d, incident precision %.3f\n", totalInc, totalInc-fpInc, fpInc, ratio(totalInc-fpInc, totalInc))
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		fmt.Fprintf(out, "peak RSS of the run (simulation and detection): %.0f MB\n", float64(ru.Maxrss)/1024)
	}
	if shared != "" {
		return realData(ctx, out, shared, verbose)
	}
	return nil
}

// ratio is a/b, 1 when there is nothing to count (no misses possible).
func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func pct(a, b int) float64 {
	if b == 0 {
		return 100
	}
	return 100 * float64(a) / float64(b)
}

// detect runs a simulated run's files through the pipeline, as
// hunt --report does: ordered, behaviours, incidents and impact.
func detect(ctx context.Context, dir string) (*pipeline.Result, int, error) {
	nets, err := behavior.LoadNetTableFile(filepath.Join(dir, simulate.NetworksFile))
	if err != nil {
		return nil, 0, err
	}
	var paths []string
	for _, f := range []string{"ual.jsonl", "signins.jsonl", "gws.jsonl"} {
		paths = append(paths, filepath.Join(dir, f))
	}
	res, st, err := runPipeline(ctx, paths, behavior.Options{Networks: nets}, nil)
	if err != nil {
		return nil, 0, err
	}
	if st.Quarantined > 0 {
		return nil, 0, fmt.Errorf("%s: %d simulated records quarantined", dir, st.Quarantined)
	}
	return res, int(st.Events), nil
}

// signInDelay and mailDelay, when positive, feed the records in journal
// order with the sign-ins (-signin-delay) or the unified audit log
// (-mail-delay) arriving that long after the other logs; maxSourceLag and
// maxMailLag, when not negative, override the settings.
var signInDelay, mailDelay, maxSourceLag, maxMailLag time.Duration

// runPipeline decodes paths and runs the behaviours, incident grouping
// and impact over them in event-time order, or in the journal order
// signInDelay and mailDelay make.
func runPipeline(ctx context.Context, paths []string, opts behavior.Options, quarantine io.Writer) (*pipeline.Result, source.Stats, error) {
	cfg := behavior.DefaultConfig()
	if maxSourceLag >= 0 {
		cfg.D1.MaxSourceLag = behavior.Duration(maxSourceLag)
	}
	if maxMailLag >= 0 {
		cfg.D1.MaxMailLag = behavior.Duration(maxMailLag)
	}
	ic := cfg.IncidentConfig()
	// The built-in Sigma rules run too, as in hunt --report: a high one
	// (forwarding to an outside address) pairs with a behavioural alert
	// of the same actor. A ruleset holds correlation state: one each.
	var hot []event.Sym
	newPipeline := func() (*pipeline.Pipeline, error) {
		c := sigma.NewCompiler(sigma.Options{})
		if err := c.AddFS(rules.FS, "."); err != nil {
			return nil, fmt.Errorf("built-in rules: %w", err)
		}
		rs, refused := c.Compile()
		if len(refused) > 0 {
			return nil, fmt.Errorf("built-in rules: %d refused, first %s: %s", len(refused), refused[0].File, refused[0].Reason)
		}
		hot = append(rs.FieldSyms(), event.HotFields...)
		return pipeline.New(pipeline.Config{Rules: rs, Behaviours: behavior.New(cfg, opts), Incidents: &ic}, nil), nil
	}
	pl, err := newPipeline()
	if err != nil {
		return nil, source.Stats{}, err
	}
	if signInDelay > 0 || mailDelay > 0 {
		// Holds every event: a bench of the journal order, for the sizes
		// the quick run uses.
		var evs []*event.Event
		st, err := source.ReadPaths(ctx, paths, source.Options{Quarantine: quarantine, Hot: hot}, func(e *event.Event) error {
			evs = append(evs, e)
			return nil
		})
		if err != nil {
			return nil, st, err
		}
		arrival := func(e *event.Event) time.Time {
			switch e.Source {
			case "entra.signin":
				return e.Time.Add(signInDelay)
			case "m365.ual":
				return e.Time.Add(mailDelay)
			}
			return e.Time
		}
		slices.SortStableFunc(evs, func(a, b *event.Event) int { return arrival(a).Compare(arrival(b)) })
		for _, e := range evs {
			if err := pl.Process(e); err != nil {
				return nil, st, err
			}
		}
		res, err := pl.Close(ctx)
		return res, st, err
	}
	var st source.Stats
	read := func(merged bool) func(emit func(*event.Event) error) error {
		return func(emit func(*event.Event) error) error {
			var err error
			if merged {
				st, err = source.ReadMerged(ctx, paths, source.Options{Quarantine: quarantine, Hot: hot, Reverse: true}, emit)
			} else {
				st, err = source.ReadPaths(ctx, paths, source.Options{Quarantine: quarantine, Hot: hot}, emit)
			}
			return err
		}
	}
	// As hunt --report: logs each in time order (vigil simulate's) are
	// merged as they are read, those newest first read back to front;
	// others are sorted, by a fresh pipeline.
	// Inputs that quarantine (the real samples) are sorted from the
	// start, so nothing is quarantined twice.
	if quarantine == nil {
		res, err := pipeline.RunOrdered(ctx, pl, read(true), nil)
		if !errors.Is(err, pipeline.ErrNotOrdered) && !errors.Is(err, source.ErrNotReversible) {
			return res, st, err
		}
		if pl, err = newPipeline(); err != nil {
			return nil, st, err
		}
	}
	sorter := pipeline.NewSorter("", func() pipeline.Decoder { return source.NewDecoder(nil, hot) })
	res, err := pipeline.RunOffline(ctx, pl, sorter, read(false), nil)
	return res, st, err
}

// matchCampaigns names the campaigns an incident is about: those sharing
// a malicious record with one of its alerts, or a forged/stolen
// identifier with its actors.
func matchCampaigns(inc *incident.Incident, truth *simulate.Truth) []string {
	var out []string
	for _, ct := range truth.Campaigns {
		recs := map[string]bool{}
		for _, r := range ct.Records {
			recs[r.ID] = true
		}
		ids := map[string]bool{}
		for _, l := range [][]string{ct.Actor.TokenIDs, ct.Actor.SessionIDs, ct.Actor.IPs, ct.Actor.ClientAppIDs} {
			for _, v := range l {
				ids[v] = true
			}
		}
		hit := false
		for _, a := range inc.Alerts {
			for _, id := range a.RecordIDs {
				hit = hit || recs[id]
			}
			for _, ac := range a.Actors {
				hit = hit || (ac.Kind != alert.ActorUser && ids[ac.Value])
			}
		}
		if hit {
			out = append(out, ct.Name)
		}
	}
	return out
}

// realData runs the detection over the real samples and counts alerts
// (verbose: lists them).
func realData(ctx context.Context, out io.Writer, dir string, verbose bool) error {
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(out, "\nreal samples: %s not found, skipped\n", dir)
		return nil
	}
	var paths []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		// Rule and documentation folders hold no logs.
		if e.IsDir() && e.Name() != "sigmahq-sigma" && e.Name() != "ms-office365-management-api-docs" {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	// Files that hold state, not log records: their rows have no time and
	// would only be counted as quarantined.
	files, err := source.Expand(paths)
	if err != nil {
		return err
	}
	paths = paths[:0]
	for _, f := range files {
		if filepath.Base(f) != "MailboxRules.csv" { // Get-InboxRule configuration snapshot
			paths = append(paths, f)
		}
	}
	an, st, err := runPipeline(ctx, paths, behavior.Options{}, io.Discard)
	if err != nil {
		return err
	}
	defer an.Close()
	alerts, err := an.Alerts.All() // a few hundred from the samples
	if err != nil {
		return err
	}
	by := map[string]int{}
	for _, a := range alerts {
		by[a.Signal+" "+a.Level.String()]++
	}
	fmt.Fprintf(out, "\nreal samples (%s): %d events decoded, %d quarantined %v; %d alerts, %d incidents\n", dir, st.Events, st.Quarantined, st.Reasons, len(alerts), len(an.Incidents))
	for _, k := range slices.Sorted(maps.Keys(by)) {
		fmt.Fprintf(out, "  %-16s %d\n", k, by[k])
	}
	if verbose {
		for _, a := range alerts {
			fmt.Fprintf(out, "    %s %s %s %s: %s\n", a.Time.UTC().Format(time.RFC3339), a.Signal, a.Level, a.Tenant, a.Title)
		}
	}
	return nil
}
