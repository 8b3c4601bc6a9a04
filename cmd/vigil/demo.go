package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

func init() {
	register(command{name: "demo", summary: "simulate a tenant under a forged-token attack, detect it and write a report", run: runDemo})
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	out := fs.String("out", "vigil-demo", "`DIR` for the simulated logs and the report")
	users := fs.Int("users", 50, "users in the simulated tenant (at least 10)")
	days := fs.Int("days", 21, "days simulated (1 to 3660)")
	seed := fs.Uint64("seed", 1, "random seed")
	setHelp(fs, stderr, helpText{synopsis: "demo [flags]",
		summary: "Simulates a tenant attacked with forged tokens (Storm-0558 style) among benign look-alikes, runs vigil's detections over its logs and writes the report."})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected argument %q", pos[0])
	}
	if err := checkSimSize(*users, *days); err != nil {
		return err
	}
	start := time.Now()
	logs := filepath.Join(*out, "logs")
	fmt.Fprintf(stdout, "Simulating %d users over %d days (seed %d): a forged-token campaign among an Outlook roll-out, travel, a VPN change, a backup tool and a new SaaS app...\n", *users, *days, *seed)
	truth, err := simulate.Run(ctx, simulate.Config{
		Users: *users, Days: *days, Seed: *seed,
		Campaigns:   []string{simulate.CampaignForgedToken},
		Confounders: simulate.ConfounderNames,
	}, logs)
	if err != nil {
		return fmt.Errorf("simulating: %w", err)
	}
	paths := truth.LogPaths(logs)
	nets, err := behavior.LoadNetTableFile(filepath.Join(logs, simulate.NetworksFile))
	if err != nil {
		return err
	}
	rs, err := demoRules()
	if err != nil {
		return err
	}
	hot := append(rs.FieldSyms(), event.HotFields...)
	ic := behavior.DefaultConfig().IncidentConfig()
	var st source.Stats
	decoded := func() error {
		fmt.Fprintf(stdout, "Decoded %d events from %s and ran the Sigma rules and behaviours over them in event-time order.\n", st.Events, logs)
		if st.Quarantined > 0 {
			return fmt.Errorf("decoding the simulated logs: %d records quarantined", st.Quarantined)
		}
		return nil
	}
	// The simulated logs are each in time order: merged as they are read,
	// as hunt does (every record decoded once). The pipeline's rules and
	// behaviours hold state, so a run that finds them out of order (it
	// would be a simulator bug) starts again with fresh ones and sorts.
	pl := detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets}), Incidents: &ic}, nil)
	res, err := detect.RunOrdered(ctx, pl, func(emit func(*event.Event) error) error {
		var err error
		st, err = source.ReadMerged(ctx, paths, source.Options{Hot: hot, Reverse: true}, emit)
		return err
	}, decoded)
	if errors.Is(err, detect.ErrNotOrdered) || errors.Is(err, source.ErrNotReversible) {
		if rs, err = demoRules(); err != nil {
			return err
		}
		pl = detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets}), Incidents: &ic}, nil)
		sorter := detect.NewSorter("", func() detect.Decoder { return source.NewDecoder(nil, hot) })
		res, err = detect.RunOffline(ctx, pl, sorter, func(emit func(*event.Event) error) error {
			var err error
			st, err = source.ReadPaths(ctx, paths, source.Options{Hot: hot}, emit)
			return err
		}, decoded)
	}
	if err != nil {
		return fmt.Errorf("detecting: %w", err)
	}
	defer res.Close()
	dir := filepath.Join(*out, "report")
	an := &huntResult{alerts: res.Alerts.Len(), incidents: res.Incidents, dir: dir}
	in := reportInputs(paths, st, "")
	if _, err := writeHuntReport(dir, res, huntReportConfig{title: "vigil demo: forged-token mail access", networks: multiFlag{filepath.Join(logs, simulate.NetworksFile)}}, in, behavior.DefaultConfig().Learning.D()); err != nil {
		return err
	}
	printReportSummary(stdout, an)
	fmt.Fprintln(stdout, demoVerdict(truth, res.Incidents))
	fmt.Fprintf(stdout, "Done in %s. Ground truth: %s\n", time.Since(start).Round(100*time.Millisecond), filepath.Join(logs, simulate.TruthFile))
	return nil
}

// demoRules compiles the built-in Sigma rules.
func demoRules() (*sigma.Ruleset, error) {
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err != nil {
		return nil, fmt.Errorf("built-in rules: %w", err)
	}
	rs, _ := c.Compile()
	return rs, nil
}

// demoVerdict compares what was found with what the simulator says the
// intruder read, so the demo shows its own accuracy.
func demoVerdict(truth *simulate.Truth, incs []*incident.Incident) string {
	want := map[string]bool{}
	for _, ct := range truth.Campaigns {
		for _, mi := range ct.Impact {
			for _, m := range mi.MessageIDs {
				want[mi.Mailbox+"\x00"+m] = true
			}
		}
	}
	got := map[string]bool{}
	for _, inc := range incs {
		for _, r := range inc.Impact.Reads {
			got[r.Mailbox+"\x00"+r.MessageID] = true
		}
	}
	found, extra := 0, 0
	for k := range got {
		if want[k] {
			found++
		} else {
			extra++
		}
	}
	return fmt.Sprintf("Against the simulator's ground truth: %d of %d messages the intruder read were found, %d reported that it did not read.", found, len(want), extra)
}
