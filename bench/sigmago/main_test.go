package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers string
		mapping bool
		want    string
	}{
		{name: "mapped, 1 worker", workers: "1", mapping: true, want: "rules=2\nevents=4\nbad_lines=1\nbytes=467\nmatches=3\n"},
		{name: "mapped, 3 workers", workers: "3", mapping: true, want: "matches=3\n"},
		// Without the mapping the alert rule looks for eventSource/eventName
		// fields the UAL record does not have.
		{name: "unmapped", workers: "2", want: "matches=2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--workers", tc.workers}
			if !tc.mapping {
				args = append(args, "--no-mapping")
			}
			args = append(args, "testdata/events.jsonl", "testdata/rules")
			var out, errOut bytes.Buffer
			if err := run(context.Background(), args, &out, &errOut); err != nil {
				t.Fatalf("run: %v\n%s", err, errOut.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output\n%s\nwant it to contain\n%s", out.String(), tc.want)
			}
			// broken.yml does not parse and exists.yml uses a modifier
			// sigma-go lacks: both skipped; the copy is a duplicate id.
			if want := "6 rule files, 2 m365 rules loaded, 1 other products ignored, 1 duplicates, 2 skipped"; !strings.Contains(errOut.String(), want) {
				t.Errorf("stderr %q, want %q", errOut.String(), want)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	for _, args := range [][]string{
		{"testdata/events.jsonl"},
		{"testdata/missing.jsonl", "testdata/rules"},
		{"testdata/events.jsonl", "testdata/no-such-dir"},
		{"--workers", "0", "testdata/events.jsonl", "testdata/rules"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
