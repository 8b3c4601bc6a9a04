package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "genual:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("genual", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", "64MiB", "bytes to write (suffixes KB MB GB KiB MiB GiB); the last record is completed, so output is at least this long")
	out := fs.String("out", "-", "output file, - for stdout")
	seed := fs.Uint64("seed", 1, "random seed; the same seed and size give the same output")
	start := fs.String("start", "2026-01-05T00:00:00Z", "time of the first record (RFC 3339)")
	users := fs.Int("users", 5000, "number of distinct users in the tenant")
	quiet := fs.Bool("quiet", false, "no summary on stderr")
	folderItems := fs.String("folder-items", "", "MIN-MAX: each MailItemsAccessed Bind lists MIN to MAX FolderItems in all, over 1-3 folders (default: 1-4 per folder, 1-2 folders)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: genual [--size 1GiB] [--out FILE] [--seed N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	n, err := parseSize(*size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	t0, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return fmt.Errorf("--start: %w", err)
	}
	if *users < 10 {
		return fmt.Errorf("--users %d: need at least 10", *users)
	}

	itemsMin, itemsMax, err := parseRange(*folderItems)
	if err != nil {
		return fmt.Errorf("--folder-items: %w", err)
	}

	w := stdout
	var f *os.File
	if *out != "-" {
		// Write to a temporary name and rename, so an interrupted run never
		// leaves a truncated file that a later benchmark would reuse.
		f, err = os.Create(*out + ".tmp")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	began := time.Now()
	g := newGenerator(*seed, t0, *users)
	g.itemsMin, g.itemsMax = itemsMin, itemsMax
	st, err := g.write(bw, n)
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(f.Name(), *out); err != nil {
			return err
		}
	}
	if !*quiet {
		secs := time.Since(began).Seconds()
		fmt.Fprintf(stderr, "genual: %d records, %d bytes (%.0f B/record avg), %d trigger records, %.1fs, %.0f MB/s\n",
			st.records, st.bytes, float64(st.bytes)/float64(max(st.records, 1)), st.triggers, secs, float64(st.bytes)/1e6/max(secs, 1e-9))
	}
	return nil
}

// parseSize reads "1GiB", "200MiB", "500MB", "1048576".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if v <= 0 {
		return 0, errors.New("size must be positive")
	}
	return int64(v * float64(mult)), nil
}

// parseRange reads "MIN-MAX" (or a single N) of positive counts; "" is
// 0, 0 (the default).
func parseRange(s string) (lo, hi int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q is not MIN-MAX", s)
	case lo < 1 || hi < lo || hi > 10000:
		return 0, 0, fmt.Errorf("%q: want 1 <= MIN <= MAX <= 10000", s)
	}
	return lo, hi, nil
}
