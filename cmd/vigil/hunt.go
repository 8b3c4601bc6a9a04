package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/progress"
	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/internal/source/jsonl"
	"github.com/vigil-audit/vigil/internal/timeline"
	"github.com/vigil-audit/vigil/rules"
)

func init() {
	register(command{name: "hunt", summary: "run Sigma rules and behaviours over exported audit logs; print a timeline", run: runHunt})
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type huntOptions struct {
	rulesDirs    multiFlag
	noBuiltin    bool
	format       string
	out          string
	minLevel     string
	quarantine   string
	mapping      string
	placeholders string
	workers      int
	quiet        bool
	cpuProfile   string
	memProfile   string
	journalDir   string
	behaviours   bool
}

func runHunt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hunt", stderr)
	var o huntOptions
	fs.Var(&o.rulesDirs, "rules", "`DIR` (or file) of extra Sigma rules (repeatable)")
	fs.BoolVar(&o.noBuiltin, "no-builtin", false, "do not load the built-in rules")
	fs.StringVar(&o.format, "format", "table", "output format: "+strings.Join(timeline.Formats, ", "))
	fs.StringVar(&o.out, "out", "", "write the timeline to this file instead of stdout")
	fs.StringVar(&o.minLevel, "min-level", "informational", "lowest rule level to report")
	fs.StringVar(&o.quarantine, "quarantine", "vigil-quarantine.jsonl", "file for records that cannot be decoded (created only if there are any)")
	fs.StringVar(&o.mapping, "mapping", "", "YAML field mapping for generic JSON records")
	fs.StringVar(&o.placeholders, "placeholders", "", "YAML file of values for Sigma %placeholders% (name: [values])")
	fs.IntVar(&o.workers, "workers", 0, "decoding goroutines (default: number of CPUs)")
	fs.BoolVar(&o.quiet, "quiet", false, "nothing on stderr but warnings and errors (no progress, no summary); the timeline stays")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the hunt to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a Go heap profile to this file when the events are processed (what the detectors keep, and all allocations)")
	fs.BoolVar(&o.behaviours, "behaviours", false, "also run the behavioural detections (D1-D11; inputs each in event-time order are merged as they are read, plain files newest first read back to front, others sorted in bounded memory, spilling to the temporary directory; implied by --report, --iocs, --networks, --config and --state)")
	fs.StringVar(&o.journalDir, "journal", "", "also hunt over the records of this vigil journal (--data DIR of vigil ingest)")
	report := addHuntReportFlags(fs)
	limits := addLimitFlags(fs)
	setHelp(fs, stderr, helpText{synopsis: "hunt [flags] PATH...", summary: commands["hunt"].summary,
		args: []argHelp{{"PATH...", "log files, directories (walked) or - for stdin; none when --journal is given"}}})
	paths, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 && o.journalDir == "" {
		fs.Usage()
		return usageError("no input paths")
	}
	minLevel, err := alert.ParseLevel(o.minLevel)
	if err != nil {
		return usageError("--min-level: %v", err)
	}
	if !validFormat(o.format) {
		return usageError("--format %q: want one of %s", o.format, strings.Join(timeline.Formats, ", "))
	}
	if err := limits.Validate(); err != nil {
		return usageError("%v", err)
	}
	srcOpts := source.Options{Workers: o.workers, Limits: *limits}
	if o.mapping != "" {
		m, err := jsonl.LoadMapping(o.mapping)
		if err != nil {
			return usageError("%v", err)
		}
		srcOpts.Mapping = m
	}
	rs, err := loadHuntRules(o, stderr)
	if err != nil {
		return err
	}

	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	// Read the fields the rules look up while each record is parsed anyway
	// (the same fields for rules compiled again).
	srcOpts.Hot = append(rs.FieldSyms(), event.HotFields...)

	q := &lazyFile{path: o.quarantine}
	defer q.Close()
	srcOpts.Quarantine = q

	bar := progress.New(stderr, "hunt")
	if o.quiet {
		bar = nil
	}
	// Progress is reported from the reading goroutine: counters only.
	var nEvents atomic.Int64
	sink := &countSink{}
	srcOpts.Progress = func(done, total int64) {
		bar.Update(done, total, fmt.Sprintf("%d events, %d detections", nEvents.Load(), sink.alerts.Load()))
	}
	behaviours := report.enabled() || o.behaviours || report.feedsBehaviours()
	var inputs []string
	var skipped []source.Skipped
	if len(paths) > 0 {
		if inputs, skipped, err = inputFiles(paths, o.quarantine, o.out); err != nil {
			if errors.Is(err, source.ErrNoInput) {
				return usageError("no log files found in %s", strings.Join(paths, " "))
			}
			return fmt.Errorf("reading input: %w", err)
		}
	}
	// The behaviours need event-time order. Exports each in time order
	// (vigil simulate's, API pulls) are merged as they are read, every
	// record decoded once; so are exports wholly newest first (Purview's,
	// Graph's), read back to front. An input newest first that cannot be
	// read so (gzip, zip) or that proves out of order starts the run again,
	// sorting the inputs in bounded memory, spilling to the temporary
	// directory. A journal or stdin is read once, so it is sorted from the
	// start.
	merge := behaviours && o.journalDir == "" && source.Mergeable(inputs)
	var learning time.Duration
	start := time.Now()
	st := source.Stats{Reasons: map[string]int64{}, Sources: map[string]int64{}}
	// run makes the pipeline and runs it over the inputs, merged or
	// sorted. Each run has its own rules and behaviours: both keep state.
	run := func(merged, again bool) (*detect.Result, error) {
		if again {
			o := o
			o.quiet = true // the rules' refusals were listed the first time
			if rs, err = loadHuntRules(o, stderr); err != nil {
				return nil, err
			}
			nEvents.Store(0)
			sink.alerts.Store(0)
			q.reset()
		}
		// The timeline and report want the final incidents only.
		pcfg := detect.Config{Rules: rs, ResultOnly: true}
		var sorter *detect.Sorter
		var beforeClose func() error
		if behaviours {
			p, l, err := huntPipelineConfig(*report)
			learning = l
			if err != nil {
				return nil, err
			}
			pcfg.Behaviours = p.Behaviours
			if report.enabled() {
				pcfg.Incidents = p.Incidents
			}
			if !merged {
				sorter = detect.NewSorter("", func() detect.Decoder { return source.NewDecoder(srcOpts.Mapping, srcOpts.Hot) })
			}
		}
		pl := detect.New(pcfg, sink)
		if behaviours && report.state != "" {
			if err := loadState(pl, filepath.Join(report.state, stateFile)); err != nil {
				return nil, err
			}
			// Saved before the flush: accesses still waiting for late
			// sign-ins are judged again, with more data, by the next run.
			beforeClose = func() error { return saveState(pl, report.state) }
		}
		read := func(emit func(*event.Event) error) error {
			count := func(e *event.Event) error { nEvents.Add(1); return emit(e) }
			st = source.Stats{Reasons: map[string]int64{}, Sources: map[string]int64{}}
			var err error
			if len(inputs) > 0 {
				if merged {
					o := srcOpts
					o.Reverse = readBackwards
					st, err = source.ReadMerged(ctx, inputs, o, count)
				} else {
					st, err = source.ReadPaths(ctx, inputs, srcOpts, count)
				}
				st.Skipped = append(slices.Clone(skipped), st.Skipped...)
				err = damagedInputs(err) // named in the summary; exit 2 at the end
			}
			if err == nil && o.journalDir != "" {
				err = huntJournal(ctx, o.journalDir, srcOpts, &st, count)
			}
			bar.Done()
			return err
		}
		if o.memProfile != "" {
			// Taken before the close (the impact pass), while the
			// detectors still hold all their state.
			prev := beforeClose
			beforeClose = func() error {
				if err := writeHeapProfile(o.memProfile); err != nil {
					return err
				}
				if prev != nil {
					return prev()
				}
				return nil
			}
		}
		if merged {
			return detect.RunOrdered(ctx, pl, read, beforeClose)
		}
		return detect.RunOffline(ctx, pl, sorter, read, beforeClose)
	}
	res, err := run(merge, false)
	if merge && (errors.Is(err, detect.ErrNotOrdered) || errors.Is(err, source.ErrNotReversible)) {
		if !o.quiet {
			fmt.Fprintf(stderr, "vigil hunt: %v; sorting the inputs instead\n", sanitize.Line(err.Error()))
		}
		res, err = run(false, true)
	}
	elapsed := time.Since(start)
	if err != nil {
		if errors.Is(err, source.ErrNoInput) {
			return usageError("no log files found in %s", strings.Join(paths, " "))
		}
		return fmt.Errorf("reading input: %w", err)
	}
	defer res.Close()

	w := stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		defer f.Close()
		w = f
	}
	// The timeline is written as the alerts are read back: a month of
	// them is not held.
	hits := map[string]int64{} // by level
	nHits := 0
	err = timeline.WriteEach(w, o.format, func(fn func(*alert.Alert) error) error {
		return res.Alerts.Each(func(a *alert.Alert) error {
			if a.Level < minLevel {
				return nil
			}
			nHits++
			hits[a.Level.String()]++
			return fn(a)
		})
	})
	if err != nil {
		return fmt.Errorf("writing timeline: %w", err)
	}
	if o.out != "" {
		if err := w.(*os.File).Close(); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	if err := q.Close(); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if !o.quiet {
		printHuntSummary(stderr, st, nHits, hits, rs, elapsed, q)
	}
	if report.enabled() {
		if o.journalDir != "" {
			inputs = append(inputs, "journal:"+o.journalDir)
		}
		in := reportInputs(inputs, st, q.path)
		hr, err := writeHuntReport(report.dir, res, *report, in, learning)
		if err != nil {
			return err // report.Write's errors say "report: ..."
		}
		if !o.quiet {
			printReportSummary(stderr, hr)
		}
	}
	return inputsErr(st)
}

// readBackwards says whether hunt reads inputs newest first back to front
// (tests turn it off to compare with sorting them).
var readBackwards = true

// inputFiles expands paths like source.ReadPaths, leaving out the files a
// command writes (hunt's quarantine and timeline, ingest's quarantine)
// when a directory walk finds them: a run over the working directory would
// read back its previous run's output. Naming one of them as an input is a
// usage error.
func inputFiles(paths []string, outputs ...string) ([]string, []source.Skipped, error) {
	files, skipped, err := source.Walk(paths)
	if err != nil {
		return nil, nil, err
	}
	var outs []os.FileInfo
	for _, o := range outputs {
		if fi, err := os.Stat(o); o != "" && err == nil {
			outs = append(outs, fi)
		}
	}
	if len(outs) == 0 {
		return files, skipped, nil
	}
	named := map[string]bool{}
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			named[p] = true
		}
	}
	kept := files[:0]
	for _, f := range files {
		fi, err := os.Stat(f)
		if f != "-" && err == nil && slices.ContainsFunc(outs, func(o os.FileInfo) bool { return os.SameFile(o, fi) }) {
			if named[f] {
				return nil, nil, usageError("input %s is also an output of this command (--quarantine or --out)", f)
			}
			skipped = append(skipped, source.Skipped{Path: f, Reason: "an output of this command"})
			continue
		}
		kept = append(kept, f)
	}
	if len(kept) == 0 {
		return nil, nil, source.ErrNoInput
	}
	return kept, skipped, nil
}

// countSink counts alerts for the progress line.
type countSink struct{ alerts atomic.Int64 }

func (c *countSink) Alert(*alert.Alert)       { c.alerts.Add(1) }
func (c *countSink) Incident(u detect.Update) {}

func validFormat(f string) bool {
	for _, x := range timeline.Formats {
		if x == f {
			return true
		}
	}
	return false
}

// loadHuntRules compiles the built-in rules and any --rules directories.
// Refused rules are listed on stderr; they never stop the hunt.
func loadHuntRules(o huntOptions, stderr io.Writer) (*sigma.Ruleset, error) {
	opts := sigma.Options{}
	if o.placeholders != "" {
		ph, err := loadPlaceholders(o.placeholders)
		if err != nil {
			return nil, usageError("--placeholders: %v", err)
		}
		opts.Placeholders = ph
	}
	c := sigma.NewCompiler(opts)
	if !o.noBuiltin {
		if err := c.AddFS(rules.FS, "."); err != nil {
			return nil, fmt.Errorf("built-in rules: %w", err)
		}
	}
	for _, d := range o.rulesDirs {
		st, err := os.Stat(d)
		if err != nil {
			return nil, usageError("--rules: %v", err)
		}
		var fsys fs.FS
		if st.IsDir() {
			fsys = os.DirFS(d)
			err = c.AddFS(fsys, ".")
		} else {
			var data []byte
			data, err = os.ReadFile(d)
			if err == nil {
				c.AddFile(d, data)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("--rules %s: %w", d, err)
		}
	}
	rs, refused := c.Compile()
	if len(refused) > 0 && !o.quiet {
		// A rules directory that repeats built-in rules (a SigmaHQ
		// checkout) is common: say so apart from real refusals.
		dups := 0
		for _, r := range refused {
			if strings.HasPrefix(r.Reason, "duplicate rule id") {
				dups++
			}
		}
		if dups > 0 {
			fmt.Fprintf(stderr, "vigil hunt: %d rules skipped: their id is already loaded (built in, or given twice)\n", dups)
		}
		if n := len(refused) - dups; n > 0 {
			fmt.Fprintf(stderr, "vigil hunt: %d rules refused (run 'vigil rules check DIR' for reasons)\n", n)
		}
	}
	if rs.Len() == 0 {
		return nil, usageError("no rules loaded")
	}
	return rs, nil
}

func printHuntSummary(w io.Writer, st source.Stats, hits int, byLevel map[string]int64, rs *sigma.Ruleset, elapsed time.Duration, q *lazyFile) {
	secs := max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "vigil hunt: %d files, %d records, %s in %.2fs (%.0f events/s, %.1f MB/s), %d rules\n",
		st.Files, st.Records, progress.Bytes(st.Bytes), elapsed.Seconds(), float64(st.Events)/secs, float64(st.Bytes)/1e6/secs, rs.Len())
	fmt.Fprintf(w, "  decoded:     %d events%s\n", st.Events, countList(st.Sources))
	if st.Quarantined > 0 {
		fmt.Fprintf(w, "  quarantined: %d records%s -> %s\n", st.Quarantined, countList(st.Reasons), sanitize.Line(q.path))
	} else {
		fmt.Fprintf(w, "  quarantined: 0\n")
	}
	printInputs(w, st)
	fmt.Fprintf(w, "  detections:  %d%s\n", hits, countList(byLevel))
	if cs := rs.Stats(); cs.Late+cs.Untimed+cs.NoGroupValue > 0 {
		fmt.Fprintf(w, "  correlation inputs skipped: %d late, %d without time, %d without group value\n", cs.Late, cs.Untimed, cs.NoGroupValue)
	}
}

func countList(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", sanitize.Line(k), m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// lazyFile creates its file on the first write, so a clean run leaves no
// empty quarantine file behind — and removes a regular file left at its
// path by an earlier run, so the file always belongs to this run.
type lazyFile struct {
	path   string
	f      *os.File
	err    error
	closed bool
}

func (l *lazyFile) Write(p []byte) (int, error) {
	if l.f == nil && l.err == nil {
		l.f, l.err = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.f.Write(p)
}

// reset starts the file again: what was written is dropped, and the file
// is created anew on the next write.
func (l *lazyFile) reset() {
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.err, l.closed = nil, nil, false
}

func (l *lazyFile) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	if l.f == nil {
		if l.err == nil {
			if fi, err := os.Lstat(l.path); err == nil && fi.Mode().IsRegular() {
				return os.Remove(l.path)
			}
		}
		return nil
	}
	return l.f.Close()
}

// loadPlaceholders reads a YAML map of placeholder name to values.
func loadPlaceholders(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string][]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// huntJournal decodes every record kept in a journal (read without taking
// its lock, so an ingest may run meanwhile) and passes the events to emit,
// counting into st like ReadPaths. Records whose raw bytes are not JSON
// (rows of a CSV export, which need their file's header) are quarantined.
func huntJournal(ctx context.Context, dir string, opts source.Options, st *source.Stats, emit func(*event.Event) error) error {
	if _, err := os.Stat(dir); err != nil {
		return usageError("--journal: %v", err)
	}
	dec := source.NewDecoder(opts.Mapping, opts.Hot)
	dec.SetLimits(opts.Limits)
	var qenc *json.Encoder
	if opts.Quarantine != nil {
		qenc = json.NewEncoder(opts.Quarantine)
	}
	st.Files++
	return journal.Replay(ctx, dir, 0, func(index uint64, en *journal.Entry) error {
		st.Records++
		st.Bytes += int64(len(en.Raw))
		origin := event.Origin{File: "journal:" + en.Origin, Index: int(index)}
		dec.SetObserved(en.Received) // the time of records that carry none (snapshots)
		evs, err := dec.Decode(en.Raw, origin)
		if err != nil {
			st.Quarantined++
			st.Reasons["journal record"]++
			if qenc != nil {
				return qenc.Encode(source.Reject{File: dir, Index: int(index), Reason: fmt.Sprintf("journal entry %d (%s): %v", index, en.Origin, err), Record: string(en.Raw)})
			}
			return nil
		}
		st.Decoded++
		for _, e := range evs {
			st.Events++
			st.Sources[e.Source]++
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	runtime.GC() // the profile shows live objects as of the last GC
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--memprofile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return nil
}
