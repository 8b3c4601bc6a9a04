package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/simulate"
)

func init() {
	register(command{name: "simulate", summary: "generate a synthetic tenant's audit logs with labelled intrusion campaigns", run: runSimulate})
}

// paramFlags collects repeated --param campaign.key=value flags.
type paramFlags map[string]map[string]string

func (p paramFlags) String() string { return "" }

func (p paramFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	camp, key, ok2 := strings.Cut(k, ".")
	if !ok || !ok2 || camp == "" || key == "" {
		return fmt.Errorf("want campaign.parameter=value, got %q", v)
	}
	if p[camp] == nil {
		p[camp] = map[string]string{}
	}
	p[camp][key] = val
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", stderr)
	out := fs.String("out", "", "output `DIR` (required)")
	users := fs.Int("users", 200, "users in the Microsoft 365 tenant (at least 10)")
	days := fs.Int("days", 21, "days to simulate")
	seed := fs.Uint64("seed", 1, "random seed; the same seed and flags give the same bytes")
	campaigns := fs.String("campaign", "", "campaigns to run, comma-separated: "+strings.Join(campaignNames(), ", "))
	confounders := fs.String("confounders", "all", "benign confounders, comma-separated, or 'all' or 'none': "+strings.Join(simulate.ConfounderNames, ", "))
	start := fs.String("start", simulate.DefaultStart.Format("2006-01-02"), "first day (UTC), YYYY-MM-DD")
	format := fs.String("format", "jsonl", "output format: jsonl, json, or csv (UAL as the Purview CSV export)")
	throttle := fs.Int("throttle-limit", 1000, "MailItemsAccessed records per mailbox in 24 h before Exchange throttles")
	noGWS := fs.Bool("no-workspace", false, "do not simulate the Google Workspace tenant")
	quiet := fs.Bool("quiet", false, "no progress display on stderr; the summary on stdout stays")
	params := paramFlags{}
	fs.Var(params, "param", "campaign parameter, `campaign.key=value` (repeatable), e.g. forged-token.targets=5")
	setHelp(fs, stderr, helpText{synopsis: "simulate --out DIR [flags]", summary: commands["simulate"].summary})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected arguments: %s", strings.Join(pos, " "))
	}
	if *out == "" {
		return usageError("--out DIR is required")
	}
	if err := checkSimSize(*users, *days); err != nil {
		return err
	}
	st, err := time.Parse("2006-01-02", *start)
	if err != nil {
		return usageError("--start %q: want YYYY-MM-DD", *start)
	}
	cfg := simulate.Config{
		Users: *users, Days: *days, Seed: *seed, Start: st, Format: simulate.Format(*format),
		Campaigns: splitList(*campaigns), Params: params, ThrottleLimit: *throttle, NoWorkspace: *noGWS,
	}
	switch *confounders {
	case "all":
		cfg.Confounders = simulate.ConfounderNames
	case "none", "":
	default:
		cfg.Confounders = splitList(*confounders)
	}
	if len(cfg.Params) == 0 {
		cfg.Params = nil
	}
	if f, ok := stderr.(*os.File); ok && !*quiet && isTerminal(f) {
		began := time.Now()
		cfg.Progress = func(p simulate.Progress) {
			rate := float64(p.Events) / max(time.Since(began).Seconds(), 1e-3)
			fmt.Fprintf(f, "\r%5.1f%%  %s  %d events  %.0f events/s ", 100*p.Fraction, p.SimTime.Format("2006-01-02 15:04"), p.Events, rate)
			if p.Fraction >= 1 {
				fmt.Fprintln(f)
			}
		}
	}
	began := time.Now()
	truth, err := simulate.Run(ctx, cfg, *out)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: 2, msg: "interrupted"}
		}
		var ce *simulate.ConfigError
		if errors.As(err, &ce) {
			return usageError("%v", err)
		}
		return err
	}
	var total int64
	for _, f := range truth.Files {
		if f.Source != "networks" {
			total += f.Records
		}
		fmt.Fprintf(stdout, "%-14s %10d records  %s\n", f.Name, f.Records, f.Source)
	}
	for _, c := range truth.Campaigns {
		fmt.Fprintf(stdout, "campaign %-15s %5d malicious records, %d mailboxes read\n", c.Name, len(c.Records), len(c.Impact))
	}
	el := time.Since(began)
	fmt.Fprintf(stdout, "%d records in %s (%.0f/s); ground truth in %s\n", total, el.Round(time.Millisecond), float64(total)/max(el.Seconds(), 1e-3), *out+"/"+simulate.TruthFile)
	return nil
}

func campaignNames() []string {
	names := make([]string, 0, len(simulate.Campaigns))
	for n := range simulate.Campaigns {
		names = append(names, n)
	}
	// stable order for help text
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return names
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// checkSimSize refuses tenant sizes the simulator cannot honour, before
// anything is printed: the simulator reads 0 as "the default", which a
// user asking for --users 0 did not mean.
func checkSimSize(users, days int) error {
	if users < simulate.MinUsers {
		return usageError("--users %d: need at least %d users", users, simulate.MinUsers)
	}
	if days < 1 || days > simulate.MaxDays {
		return usageError("--days %d: need at least 1 and at most %d days", days, simulate.MaxDays)
	}
	return nil
}
