package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/source"
)

// addLimitFlags registers the input limits (docs/sources.md, "Limits")
// shared by hunt and ingest.
func addLimitFlags(fs *flag.FlagSet) *source.Limits {
	l := &source.Limits{}
	fs.IntVar(&l.MaxRecordBytes, "max-record-size", source.DefaultMaxRecordBytes, "largest record in bytes (a JSON line or value, a CSV row); larger ones are quarantined")
	fs.IntVar(&l.MaxDepth, "max-depth", source.DefaultMaxDepth, "deepest nesting of objects and arrays in a record")
	fs.IntVar(&l.MaxFields, "max-fields", source.DefaultMaxFields, "most fields in a record")
	fs.IntVar(&l.MaxElements, "max-elements", source.DefaultMaxElements, "most array elements in a record")
	fs.Int64Var(&l.MaxInputBytes, "max-input-bytes", source.DefaultMaxInputBytes, "most decompressed bytes read from one compressed input")
	fs.IntVar(&l.MaxRatio, "max-ratio", source.DefaultMaxRatio, "largest decompression ratio of an input (N:1)")
	fs.IntVar(&l.MaxReasonBytes, "max-reason", source.DefaultMaxReasonBytes, "longest quarantine reason in bytes")
	return l
}

// damagedInputs takes a *source.DamagedError out of err: the run goes on
// and writes its outputs, and exits 2 at the end (see inputsErr).
func damagedInputs(err error) error {
	var de *source.DamagedError
	if errors.As(err, &de) {
		return nil
	}
	return err
}

// inputsErr is the exit of a run that read damaged inputs: status 2,
// naming them.
func inputsErr(st source.Stats) error {
	if len(st.Damaged) == 0 {
		return nil
	}
	names := make([]string, len(st.Damaged))
	for i, d := range st.Damaged {
		names[i] = sanitize.Line(d.File)
	}
	return &exitError{code: 2, msg: fmt.Sprintf("%d input(s) not read to their end: %s", len(names), strings.Join(names, ", "))}
}

// maxListed bounds the skipped entries a summary lists one by one.
const maxListed = 20

// printInputs adds to a summary how the records add up, the entries a
// walk skipped and the inputs not read to their end.
func printInputs(w io.Writer, st source.Stats) {
	fmt.Fprintf(w, "  records:     %d read = %d decoded + %d quarantined\n", st.Records, st.Decoded, st.Quarantined)
	if n := len(st.Skipped); n > 0 {
		fmt.Fprintf(w, "  skipped:     %d entries not read\n", n)
		for i, s := range st.Skipped {
			if i == maxListed {
				fmt.Fprintf(w, "               … and %d more\n", n-maxListed)
				break
			}
			fmt.Fprintf(w, "               %s: %s\n", sanitize.Line(s.Path), sanitize.Line(s.Reason))
		}
	}
	if n := len(st.Damaged); n > 0 {
		fmt.Fprintf(w, "  damaged:     %d input(s) not read to their end\n", n)
		for _, d := range st.Damaged {
			part := "first"
			if d.Backwards {
				part = "last"
			}
			fmt.Fprintf(w, "               %s: %s; records were framed from its %s %d bytes\n", sanitize.Line(d.File), sanitize.Line(d.Reason), part, d.Read)
		}
	}
	if n := len(st.Reversed); n > 0 {
		fmt.Fprintf(w, "  newest first: %d input(s) read back to front\n", n)
		for i, f := range st.Reversed {
			if i == maxListed {
				fmt.Fprintf(w, "               … and %d more\n", n-maxListed)
				break
			}
			fmt.Fprintf(w, "               %s\n", sanitize.Line(f))
		}
	}
}
