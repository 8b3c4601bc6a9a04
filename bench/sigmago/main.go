// Command sigmago is the comparison harness for bench/hunt.sh: it runs
// Sigma rules over a JSON-lines file with github.com/bradleyjkemp/sigma-go's
// evaluator, the way a program built on that library would, so vigil's
// engine can be timed against it on the same rules and input.
//
// It loads every *.yml / *.yaml rule under the given directories, keeps
// those whose logsource product is m365 (the only rules that apply to UAL
// records, as in vigil's logsource routing), skips and counts rules
// sigma-go cannot parse or evaluate, drops repeated rule ids (first wins),
// then decodes each line with encoding/json into map[string]any and
// evaluates every kept rule against it with the default case-insensitive
// comparators. Lines are spread over a pool of workers (one per CPU):
// sigma-go's RuleEvaluator is read-only during Matches, so the evaluators
// are shared.
//
// The m365 SigmaHQ rules name fields as the Sentinel / CloudTrail-style
// exports do (eventSource, eventName); a sigma-go config maps them to the
// UAL fields (Workload, Operation / Name), mirroring vigil's field mapping,
// so both engines do comparable lookups.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradleyjkemp/sigma-go"
	"github.com/bradleyjkemp/sigma-go/evaluator"
	"github.com/bradleyjkemp/sigma-go/evaluator/modifiers"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sigmago:", err)
		os.Exit(2)
	}
}

// fieldConfig maps the Sigma field names of the SigmaHQ m365 rules to UAL
// field names (vigil maps the same names; see its logsource.go).
var fieldConfig = sigma.Config{
	Title: "m365 UAL field names",
	FieldMappings: map[string]sigma.FieldMapping{
		"eventSource": {TargetNames: []string{"Workload"}},
		"eventName":   {TargetNames: []string{"Operation", "Name"}},
	},
}

type rule struct {
	file    string
	eval    *evaluator.RuleEvaluator
	matches atomic.Int64
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("sigmago", flag.ContinueOnError)
	fl.SetOutput(stderr)
	workers := fl.Int("workers", runtime.GOMAXPROCS(0), "evaluation goroutines")
	product := fl.String("product", "m365", "evaluate only rules whose logsource product is this")
	noMapping := fl.Bool("no-mapping", false, "do not map eventSource/eventName to UAL field names")
	verbose := fl.Bool("v", false, "list skipped rules and per-rule match counts on stderr")
	cpuProfile := fl.String("cpuprofile", "", "write a Go CPU profile of the evaluation to this file")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sigmago [flags] FILE.jsonl RULEDIR...")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() < 2 {
		fl.Usage()
		return errors.New("need a JSON-lines file and at least one rule directory")
	}
	if *workers < 1 {
		return fmt.Errorf("--workers %d: need at least 1", *workers)
	}
	var opts []evaluator.Option
	if !*noMapping {
		opts = append(opts, evaluator.WithConfig(fieldConfig))
	}
	rules, ls, err := loadRules(fl.Args()[1:], *product, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sigmago: %d rule files, %d %s rules loaded, %d other products ignored, %d duplicates, %d skipped\n",
		ls.files, len(rules), *product, ls.otherProduct, ls.duplicates, len(ls.skipped))
	if *verbose {
		for _, s := range ls.skipped {
			fmt.Fprintln(stderr, "  skipped:", s)
		}
	}
	if len(rules) == 0 {
		return fmt.Errorf("no %s rules loaded", *product)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	start := time.Now()
	st, err := evaluate(ctx, fl.Arg(0), rules, *workers)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	var total int64
	for _, r := range rules {
		n := r.matches.Load()
		total += n
		if *verbose && n > 0 {
			fmt.Fprintf(stderr, "  %8d  %s (%s)\n", n, r.eval.Title, r.file)
		}
	}
	if st.evalErrors > 0 {
		fmt.Fprintf(stderr, "sigmago: %d rule evaluations returned an error (counted as no match)\n", st.evalErrors)
	}
	// key=value lines: bench/hunt.sh reads them.
	fmt.Fprintf(stdout, "rules=%d\nevents=%d\nbad_lines=%d\nbytes=%d\nmatches=%d\nelapsed=%.3f\n",
		len(rules), st.events, st.badLines, st.bytes, total, elapsed.Seconds())
	return nil
}

type loadStats struct {
	files, otherProduct, duplicates int
	skipped                         []string
}

func loadRules(dirs []string, product string, opts []evaluator.Option) ([]*rule, loadStats, error) {
	var (
		ls    loadStats
		rules []*rule
		seen  = map[string]string{}
	)
	for _, dir := range dirs {
		var paths []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yml" || ext == ".yaml") {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return nil, ls, fmt.Errorf("rules %s: %w", dir, err)
		}
		sort.Strings(paths)
		for _, p := range paths {
			ls.files++
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, ls, err
			}
			r, err := sigma.ParseRule(data)
			if err != nil {
				ls.skipped = append(ls.skipped, fmt.Sprintf("%s: parse: %v", p, err))
				continue
			}
			if !strings.EqualFold(r.Logsource.Product, product) {
				ls.otherProduct++
				continue
			}
			if why := unsupported(r); why != "" {
				ls.skipped = append(ls.skipped, fmt.Sprintf("%s: %s", p, why))
				continue
			}
			key := r.ID
			if key == "" {
				key = r.Title
			}
			if _, dup := seen[key]; dup {
				ls.duplicates++
				continue
			}
			seen[key] = p
			rules = append(rules, &rule{file: p, eval: evaluator.ForRule(r, opts...)})
		}
	}
	return rules, ls, nil
}

// unsupported says why sigma-go would fail on every event for r: it only
// reports unknown modifiers, keywords, placeholders and aggregations when
// it evaluates them, so check them up front.
func unsupported(r sigma.Rule) string {
	if len(r.Detection.Conditions) == 0 {
		return "no condition"
	}
	for _, c := range r.Detection.Conditions {
		if c.Aggregation != nil {
			return "aggregation condition (sigma-go needs a caller-supplied counter)"
		}
	}
	for name, s := range r.Detection.Searches {
		if len(s.Keywords) > 0 {
			return "keyword search " + name + " (unsupported by sigma-go)"
		}
		for _, em := range s.EventMatchers {
			for _, fm := range em {
				mods := fm.Modifiers
				if len(mods) > 0 && mods[len(mods)-1] == "all" {
					mods = mods[:len(mods)-1]
				}
				if _, err := modifiers.GetComparator(fm.Field, modifiers.Comparators, mods...); err != nil {
					return fmt.Sprintf("%s: %v", fm.Field, err)
				}
				for _, v := range fm.Values {
					if s, ok := v.(string); ok && len(s) > 1 && strings.HasPrefix(s, "%") && strings.HasSuffix(s, "%") {
						return "placeholder " + s + " without values"
					}
				}
			}
		}
	}
	return ""
}

type evalStats struct {
	events, badLines, bytes, evalErrors int64
}

// batch is a run of whole lines; batching keeps channel traffic off the
// per-event cost.
type batch struct{ data []byte }

func evaluate(ctx context.Context, path string, rules []*rule, workers int) (evalStats, error) {
	var st evalStats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()

	work := make(chan batch, workers*4)
	free := make(chan []byte, workers*4+2)
	var (
		wg                        sync.WaitGroup
		events, bad, errs, nbytes atomic.Int64
	)
	for range workers {
		wg.Go(func() {
			local := make([]int64, len(rules))
			var ev, bd, er int64
			for b := range work {
				data := b.data
				for len(data) > 0 {
					line := data
					if i := bytes.IndexByte(data, '\n'); i >= 0 {
						line, data = data[:i], data[i+1:]
					} else {
						data = nil
					}
					line = bytes.TrimSpace(line)
					if len(line) == 0 {
						continue
					}
					var m map[string]any
					if err := json.Unmarshal(line, &m); err != nil {
						bd++
						continue
					}
					ev++
					for i, r := range rules {
						res, err := r.eval.Matches(ctx, m)
						if err != nil {
							er++
							continue
						}
						if res.Match {
							local[i]++
						}
					}
				}
				select {
				case free <- b.data[:0]:
				default:
				}
			}
			for i, n := range local {
				rules[i].matches.Add(n)
			}
			events.Add(ev)
			bad.Add(bd)
			errs.Add(er)
		})
	}

	const chunk = 4 << 20
	br := bufio.NewReaderSize(f, 1<<20)
	var readErr error
	for readErr == nil {
		if err := ctx.Err(); err != nil {
			readErr = err
			break
		}
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, 0, chunk+64<<10)
		}
		// Fill up to chunk bytes, then finish the current line.
		for partial := false; len(buf) < chunk || partial; {
			line, err := br.ReadSlice('\n')
			buf = append(buf, line...)
			partial = err == bufio.ErrBufferFull
			if err != nil && !partial {
				readErr = err // io.EOF ends the input
				break
			}
		}
		nbytes.Add(int64(len(buf)))
		if len(buf) > 0 {
			work <- batch{data: buf}
		}
	}
	close(work)
	wg.Wait()
	st.events, st.badLines, st.evalErrors, st.bytes = events.Load(), bad.Load(), errs.Load(), nbytes.Load()
	if readErr != io.EOF {
		return st, fmt.Errorf("reading %s: %w", path, readErr)
	}
	return st, nil
}
