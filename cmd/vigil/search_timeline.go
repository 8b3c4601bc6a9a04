package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vigil-audit/vigil/internal/index"
)

// The command is "timeline" as investigators say it; the package behind it
// is internal/index (internal/timeline renders hunt's detections).
func init() {
	register(command{name: "timeline", summary: "one user's, mailbox's, IP's, app's, session's or token's activity in time order, from the index", run: runEntityTimeline})
}

func runEntityTimeline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("timeline", stderr)
	data := dataFlag(fs)
	vals := map[string]*string{}
	for _, k := range index.EntityKinds {
		vals[k] = fs.String(k, "", "the "+k+" to follow")
	}
	around := fs.String("around", "", "centre the timeline on this time (2026-03-05T02:00, RFC 3339)")
	window := fs.Duration("window", time.Hour, "with --around: show this long before and after it")
	contextN := fs.Int("context", 5, "with --around: also show this many events before and after the window")
	limit := fs.Int("limit", index.DefaultLimit, "at most this many events (in the window)")
	format := fs.String("format", "table", "output: table, jsonl or csv")
	wait := fs.Bool("wait", false, "if the index is behind the journal, catch up first")
	memFlag := indexMemoryFlag(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	setHelp(fs, stderr, helpText{
		synopsis: "timeline --data DIR --user|--mailbox|--ip|--app|--session|--token VALUE [--around T --window D]",
		summary:  "prints one entity's sign-ins, mail access and audits in time order, from the investigation index (--ip takes an address or CIDR prefix; --app matches the app or the client app).",
	})
	if err := parseNoArgs(fs, args, data); err != nil {
		return err
	}
	memory, err := parseIndexMemory(*memFlag)
	if err != nil {
		return err
	}
	var req index.TimelineRequest
	for _, k := range index.EntityKinds {
		if *vals[k] == "" {
			continue
		}
		if req.Entity != "" {
			return usageError("give one of --user, --mailbox, --ip, --app, --session, --token (got --%s and --%s)", req.Entity, k)
		}
		req.Entity, req.Value = k, *vals[k]
	}
	if req.Entity == "" {
		return usageError("give one of --user, --mailbox, --ip, --app, --session, --token")
	}
	if *around != "" {
		t, err := index.ParseTime(*around, time.Now())
		if err != nil {
			return usageError("--around: %v", err)
		}
		req.Around, req.Window, req.Context = t, *window, *contextN
		if *window < 0 || *contextN < 0 {
			return usageError("--window and --context must not be negative")
		}
	}
	if *limit <= 0 {
		return usageError("--limit must be positive")
	}
	req.Limit = *limit
	f, err := newResultWriter(*format, stdout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	x, err := openForQuery(ctx, *data, *wait, memory, stderr)
	if err != nil {
		return err
	}
	defer x.Close()
	res, err := x.Timeline(ctx, req)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("gave up after --timeout %s", *timeout)
	}
	if err != nil {
		return usageError("%v", err)
	}
	if err := f.write(res); err != nil {
		return err
	}
	if res.Truncated {
		fmt.Fprintf(stderr, "vigil timeline: showing the first %d events; raise --limit or narrow with --around\n", *limit)
	}
	return x.Close()
}
