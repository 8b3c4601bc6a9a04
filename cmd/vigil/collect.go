package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/progress"
)

func init() {
	register(command{name: "collect", summary: "pull audit logs from the Microsoft 365, Entra ID and Google Workspace APIs into the journal", run: runCollect})
}

func runCollect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collect", stderr)
	config := fs.String("config", "", "vigil.yaml describing the journal and the tenants (required)")
	once := fs.Bool("once", false, "read every source up to now − settle, then exit (exit 1 if a source failed or recorded a gap)")
	sinceFlag := fs.String("since", "", "first window of a source with no watermark, e.g. 36h or 7d (default: as far back as each API keeps)")
	tenant := fs.String("tenant", "", "collect only this tenant")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	quiet := fs.Bool("quiet", false, "no progress line")
	noIndex := fs.Bool("no-index", false, "do not keep the investigation index (DATA/index) up to date; vigil reindex catches up later")
	memFlag := indexMemoryFlag(fs)
	setHelp(fs, stderr, helpText{synopsis: "collect --config FILE [--once] [--since DURATION] [--tenant NAME] [--log-format json]",
		summary: "Polls the vendors' audit-log APIs and appends every record, exactly once, to the journal; without --once until interrupted (see docs/collect.md)."})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected arguments %q", pos)
	}
	if *config == "" {
		return usageError("--config FILE is required")
	}
	since, err := parseSince(*sinceFlag)
	if err != nil {
		return usageError("--since: %v", err)
	}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	case "json":
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	default:
		return usageError("--log-format %q: want text or json", *logFormat)
	}
	logger := slog.New(handler)
	cfg, err := setup.Load(*config)
	if err != nil {
		return usageError("%v", err)
	}
	if len(cfg.Tenants) == 0 {
		return usageError("%s: no tenants to collect", *config)
	}
	memSetting := *memFlag
	if memSetting == "" && cfg.Server != nil {
		memSetting = cfg.Server.IndexMemory
	}
	memory, err := parseIndexMemory(memSetting)
	if err != nil {
		return err
	}
	j, err := journal.Open(ctx, cfg.DataDir(), journal.Options{Logger: logger, Retention: indexRetention(cfg.Server)})
	if err != nil {
		return journalErr(err)
	}
	defer j.Close()
	// The journal's retention (server: retention_days, else 180 days)
	// applies while collecting, as in vigil serve.
	expire(ctx, j, logger)
	cs, err := setup.Build(cfg, setup.Options{Journal: j, Logger: logger, Since: since, Tenant: *tenant})
	if err != nil {
		return usageError("%v", err)
	}
	if len(cs) == 0 {
		return usageError("%s names no sources", *config)
	}
	// The index follows the journal while collecting (a second each at
	// most behind) and catches up once more before exit.
	live, err := openLiveIndex(ctx, cfg.DataDir(), j, *noIndex, indexRetention(cfg.Server), memory, logger)
	if err != nil {
		return err
	}
	defer live.close()
	var netFiles []string
	if cfg.Server != nil {
		for _, n := range cfg.Server.Networks {
			netFiles = append(netFiles, cfg.Resolve(n))
		}
	}
	if err := live.useNetworks(ctx, netFiles, logger); err != nil {
		return err
	}
	var bar *progress.Bar
	if !*quiet {
		bar = progress.New(stderr, "collect")
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	var done sync.Map
	for i, c := range cs {
		wg.Go(func() {
			if *once {
				errs[i] = c.Once(ctx)
			} else {
				errs[i] = c.Run(ctx)
			}
			done.Store(i, true)
		})
	}
	idxCtx, stopIndex := context.WithCancel(ctx)
	defer stopIndex()
	if !*once {
		live.run(idxCtx)
		go expireLoop(idxCtx, j, logger)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-tick.C:
			var n, recs int64
			for i, c := range cs {
				if _, ok := done.Load(i); ok {
					n++
				}
				recs += c.Status().Records
			}
			if *once {
				bar.Update(n, int64(len(cs)), fmt.Sprintf("%d records", recs))
			} else {
				bar.Update(recs, 0, "records; Ctrl-C to stop")
			}
		}
	}
	bar.Done()
	stopIndex()
	ierr := live.catchUp(ctx, logger)
	if err := j.Close(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	failed, gaps := printCollectSummary(stdout, cs, errs)
	if ierr != nil {
		// The records are in the journal; only the index lags.
		fmt.Fprintf(stderr, "vigil collect: the records are in the journal, but the index was not updated (vigil reindex --data %s rebuilds it): %v\n", cfg.DataDir(), ierr)
		failed++
	}
	switch {
	case ctx.Err() != nil && !*once:
		if failed > 0 {
			return &exitError{code: 1}
		}
		return nil
	case failed > 0 || (*once && gaps > 0):
		return &exitError{code: 1, msg: fmt.Sprintf("%d sources failed, %d gaps recorded", failed, gaps)}
	}
	return nil
}

// parseSince accepts Go durations and whole days ("7d").
func parseSince(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 36h, 7d)", s)
	}
	return d, nil
}

// printCollectSummary writes one line per source and returns how many
// failed and how many gaps were recorded.
func printCollectSummary(w io.Writer, cs []*collect.Collector, errs []error) (failed int, gaps int64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSOURCE\tSTATE\tWINDOWS\tPAGES\tRECORDS\tDUPLICATES\tGAPS\tTHROTTLED\tWAITED\tWATERMARK\tSKEW")
	var notes []string
	for i, c := range cs {
		s := c.Status()
		wm := "-"
		if !s.Watermark.IsZero() {
			wm = s.Watermark.UTC().Format(time.RFC3339)
		}
		state := s.State
		if errs[i] != nil && !errors.Is(errs[i], context.Canceled) {
			if s.State != "failed" {
				state = "error"
			}
			failed++
			notes = append(notes, errs[i].Error()) // names tenant/source itself
		}
		gaps += s.Gaps
		for _, r := range slices.Sorted(maps.Keys(s.GapReasons)) {
			notes = append(notes, fmt.Sprintf("%s/%s: %d gap(s): %s (collector.gap records in the journal)", s.Tenant, s.Source, s.GapReasons[r], r))
		}
		if s.Undecodable > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s: %d records the decoders do not recognise (stored verbatim)", s.Tenant, s.Source, s.Undecodable))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", s.Tenant, s.Source, state, s.Windows, s.Pages, s.Records,
			s.Duplicates, s.Gaps, s.Throttled, s.Waited.Round(time.Second), wm, s.Skew.Round(time.Second))
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return failed, gaps
}
