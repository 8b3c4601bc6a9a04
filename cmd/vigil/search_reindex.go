package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/server"
)

func init() {
	register(command{name: "reindex", summary: "rebuild the investigation index of a journal from scratch", run: runReindex})
}

func runReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := newFlagSet("reindex", stderr)
	data := dataFlag(fset)
	days := fset.Int("retention-days", 0, "drop the rows of entries received more than this many days ago, as vigil serve does with server: retention_days (0: keep every entry the journal holds)")
	config := fset.String("config", "", "vigil.yaml whose server: networks detection and the index's ASN/country use, as vigil serve does")
	var netFiles multiFlag
	fset.Var(&netFiles, "networks", "also use this network table (CSV or MaxMind .mmdb) for detection and for the ASN/country of records that carry neither, as server: networks does (repeatable; default: the tables the index used)")
	noDetect := fset.Bool("no-detect", false, "leave the alerts and incidents tables empty instead of running detection over the journal")
	memFlag := indexMemoryFlag(fset)
	cpuProfile := fset.String("cpuprofile", "", "write a Go CPU profile of the rebuild and detection to this file (the engine's own threads show as cgo calls or not at all)")
	setHelp(fset, stderr, helpText{synopsis: "reindex --data DIR [--retention-days N] [--config FILE] [--networks FILE]... [--no-detect] [--cpuprofile FILE]",
		summary: "throws the investigation index away and builds it again from every journal entry (the journal is not changed), then runs vigil serve's detection over the journal to fill the alerts and incidents tables."})
	if err := parseNoArgs(fset, args, data); err != nil {
		return err
	}
	if *days < 0 {
		return usageError("--retention-days must be positive (0 keeps everything)")
	}
	memory, err := parseIndexMemory(*memFlag)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*data, "segments")); err != nil {
		return usageError("--data %s: not a journal: %v", *data, err)
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	files := []string(netFiles)
	if *config != "" {
		cfg, err := setup.Load(*config)
		if err != nil {
			return usageError("%v", err)
		}
		if cfg.Server != nil {
			for _, n := range cfg.Server.Networks {
				files = append(files, cfg.Resolve(n))
			}
		}
	}
	if len(files) == 0 {
		// The tables the index was built with, so a rebuild gives the
		// same ASN and country.
		if files, err = recordedNetworks(ctx, *data, memory); err != nil {
			fmt.Fprintf(stderr, "vigil reindex: the network tables of the old index are unknown (%v): ASN and country come only from the records; pass --networks or --config\n", err)
		}
	}
	var det *serveDetection
	var tmp string
	if !*noDetect {
		if tmp, err = os.MkdirTemp("", "vigil-reindex-*"); err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if det, err = newServeDetection(files, tmp); err != nil {
			return err
		}
	}
	x, err := index.Open(ctx, index.Path(*data), index.Options{Fresh: true, Retention: time.Duration(*days) * 24 * time.Hour, MemoryLimit: memory})
	if err != nil {
		return err
	}
	defer x.Close()
	if _, err := x.UseNetworks(ctx, files); err != nil {
		return err
	}
	st, err := x.Rebuild(ctx, *data)
	if err != nil {
		return err
	}
	printIndexStats(stdout, "reindexed", st, index.Path(*data))
	if det != nil {
		began := time.Now()
		// Rules an admin disabled in vigil serve are journal entries:
		// applied where they stand, as the server applies them.
		switches := server.NewRuleSwitches()
		det.mute = switches.Mute
		ds, err := server.DetectJournal(ctx, *data, st.From, det.newPipeline, det.newDecoder, switches, server.NewDetectionIndex(x, nil))
		if err != nil {
			return fmt.Errorf("the index holds the journal's events, but detection failed (vigil reindex again, or --no-detect): %w", err)
		}
		// Retention drops the alerts of the entries it dropped, as it did
		// the events.
		if *days > 0 {
			if _, err := x.Expire(ctx, time.Now()); err != nil {
				return err
			}
		}
		counts, err := x.DetectionCounts(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "index: detection read %d journal entries (%d events) in %s: %d alerts (%d linked to their event), %d incidents\n",
			ds.Entries, ds.Events, time.Since(began).Round(time.Millisecond), counts.Alerts, counts.Linked, counts.Incidents)
	}
	return x.Close()
}

// recordedNetworks are the network tables the index of the journal in
// data was made with (none without an index).
func recordedNetworks(ctx context.Context, data string, memory int64) ([]string, error) {
	dir := index.Path(data)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	old, err := index.Open(ctx, dir, index.Options{ReadOnly: true, MemoryLimit: memory})
	if err != nil {
		return nil, err
	}
	defer old.Close()
	return old.RecordedNetworks(ctx)
}

func printIndexStats(w io.Writer, verb string, st index.UpdateStats, dir string) {
	secs := max(st.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "index: %s journal entries %d..%d: %d events, %d mail_access rows in %s (%.0f events/s)\n",
		verb, st.From, st.To, st.Events, st.MailRows, st.Elapsed.Round(time.Millisecond), float64(st.Events)/secs)
	if st.Unindexed > 0 {
		fmt.Fprintf(w, "index: %d journal entries gave no event; their reasons are in table unindexed (vigil search --sql 'SELECT * FROM unindexed')\n", st.Unindexed)
	}
	if st.Expired > 0 {
		fmt.Fprintf(w, "index: %d journal entries below %d were expired by retention before they were indexed\n", st.Expired, st.From)
	}
	if st.Dropped > 0 {
		fmt.Fprintf(w, "index: dropped %d events of entries received before the retention horizon (the journal still holds what its own retention keeps)\n", st.Dropped)
	}
	if n := dirBytes(dir); n > 0 && verb == "reindexed" {
		fmt.Fprintf(w, "index: %d bytes on disk", n)
		if st.Events > 0 {
			fmt.Fprintf(w, " (%.1f per event)", float64(n)/float64(st.Events))
		}
		fmt.Fprintln(w)
	}
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// indexAfterIngest brings the index up to the journal just appended to.
// The journal holds the records whatever happens here, so a failure says
// how to recover rather than hiding the append.
func indexAfterIngest(ctx context.Context, data string, skip bool, retention time.Duration, memory int64, stdout io.Writer) error {
	if skip {
		return nil
	}
	x, err := index.Open(ctx, index.Path(data), index.Options{Retention: retention, MemoryLimit: memory})
	if err == nil {
		err = useIndexNetworks(ctx, x, nil, true, func(s string) { fmt.Fprintf(stdout, "index: %s\n", s) })
	}
	if err == nil {
		var st index.UpdateStats
		st, err = x.Update(ctx, data)
		if cerr := x.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			printIndexStats(stdout, "indexed", st, index.Path(data))
			return nil
		}
	}
	return fmt.Errorf("the records are in the journal, but the index was not updated (vigil reindex --data %s rebuilds it): %w", data, err)
}
