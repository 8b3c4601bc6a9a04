package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/sanitize"
)

func init() {
	register(command{name: "search", summary: "search the investigation index of a journal (query language or read-only SQL)", run: runSearch})
}

func runSearch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("search", stderr)
	data := dataFlag(fs)
	table := fs.String("table", "events", "rows to return: events (one per event), mail_access (one per message read) or alerts (one per alert detection raised)")
	since := fs.String("since", "", "only events at or after this time (2026-03-05, 2026-03-05T02:00, RFC 3339) or this long ago (90d, 12h)")
	until := fs.String("until", "", "only events before this time (same forms as --since)")
	format := fs.String("format", "table", "output: table, jsonl or csv")
	count := fs.Bool("count", false, "print only the number of matches")
	groupBy := fs.String("group-by", "", "count matches per value of this field (user, mailbox, ip, app, op, day, hour, ...)")
	limit := fs.Int("limit", index.DefaultLimit, "at most this many rows")
	sqlStmt := fs.String("sql", "", "run this read-only SQL statement over the documented tables instead of a query")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	wait := fs.Bool("wait", false, "if the index is behind the journal, catch up before answering (needs the index not open elsewhere)")
	memFlag := indexMemoryFlag(fs)
	timing := fs.Bool("timing", false, "print the time the query took inside the engine (without process start and index open) on stderr")
	setHelp(fs, stderr, helpText{
		synopsis: "search --data DIR [flags] QUERY...   (or --sql 'SELECT ...')",
		summary:  "searches the investigation index of a journal with the query language or read-only SQL (docs/search.md).",
		args:     []argHelp{{"QUERY...", "terms field:value (" + strings.Join(index.Fields, ", ") + "), \"quoted phrases\", AND / OR / NOT (or -term), parentheses; * is a wildcard; ip: takes an address or CIDR prefix; a bare word matches the user, mailbox, operation, app, IP, user agent, session, token or record id"}},
	})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := needData(*data); err != nil {
		return err
	}
	f, err := newResultWriter(*format, stdout)
	if err != nil {
		return err
	}
	if *sqlStmt != "" && (len(pos) > 0 || *count || *groupBy != "" || *since != "" || *until != "") {
		return usageError("--sql takes no query, --count, --group-by, --since or --until")
	}
	if *limit <= 0 {
		return usageError("--limit must be positive")
	}
	if *timeout <= 0 {
		return usageError("--timeout must be positive")
	}
	memory, err := parseIndexMemory(*memFlag)
	if err != nil {
		return err
	}
	req := index.Request{Query: strings.Join(pos, " "), Table: index.Table(*table), Count: *count, GroupBy: *groupBy, Limit: *limit}
	if !slices.Contains(index.SearchTables, req.Table) {
		return usageError("--table %q: events, mail_access or alerts", *table)
	}
	now := time.Now()
	if *since != "" {
		if req.Since, err = index.ParseTime(*since, now); err != nil {
			return usageError("--since: %v", err)
		}
	}
	if *until != "" {
		if req.Until, err = index.ParseTime(*until, now); err != nil {
			return usageError("--until: %v", err)
		}
	}
	if *sqlStmt == "" {
		// Refuse a bad query before touching the index.
		if _, err := index.Parse(req.Query); err != nil {
			return usageError("%v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	x, err := openForQuery(ctx, *data, *wait, memory, stderr)
	if err != nil {
		return err
	}
	defer x.Close()
	var res *index.Result
	began := time.Now()
	if *sqlStmt != "" {
		res, err = x.SQL(ctx, *sqlStmt, *limit)
	} else {
		res, err = x.Search(ctx, req)
	}
	if *timing {
		fmt.Fprintf(stderr, "vigil search: query took %.1f ms\n", float64(time.Since(began).Microseconds())/1000)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("gave up after --timeout %s", *timeout)
	}
	var qe *index.QueryError
	if errors.As(err, &qe) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	if err := f.write(res); err != nil {
		return err
	}
	if res.Truncated {
		fmt.Fprintf(stderr, "vigil search: showing the first %d rows; raise --limit for more\n", *limit)
	}
	return x.Close()
}

// openForQuery opens the index of the journal in data for reading. An
// index behind its journal says by how much; with wait it catches up first.
func openForQuery(ctx context.Context, data string, wait bool, memory int64, stderr io.Writer) (*index.Index, error) {
	dir := index.Path(data)
	if wait {
		w, err := index.Open(ctx, dir, index.Options{MemoryLimit: memory})
		if err != nil {
			return nil, err
		}
		if err := useIndexNetworks(ctx, w, nil, true, func(s string) { fmt.Fprintf(stderr, "vigil search: index: %s\n", s) }); err != nil {
			w.Close()
			return nil, err
		}
		st, err := w.Update(ctx, data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		if st.To > st.From {
			fmt.Fprintf(stderr, "vigil: index caught up on journal entries %d to %d\n", st.From, st.To-1)
		}
	}
	x, err := index.Open(ctx, dir, index.Options{ReadOnly: true, MemoryLimit: memory})
	if errors.Is(err, index.ErrNoIndex) {
		return nil, usageError("%s has %v", data, err)
	}
	if err != nil {
		return nil, err
	}
	st, err := x.Status(ctx, data)
	if err != nil {
		x.Close()
		return nil, err
	}
	if st.Behind > 0 {
		fmt.Fprintf(stderr, "vigil: the index is %d journal entries behind (it holds entries below %d of %d); answers leave them out: pass --wait or run vigil reindex\n",
			st.Behind, st.Next, st.Journal)
	}
	return x, nil
}

// resultWriter prints results as a table, JSON lines or CSV.
type resultWriter struct {
	format string
	w      io.Writer
}

func newResultWriter(format string, w io.Writer) (*resultWriter, error) {
	switch format {
	case "table", "jsonl", "csv":
		return &resultWriter{format: format, w: w}, nil
	}
	return nil, usageError("--format %q: table, jsonl or csv", format)
}

// cellText renders a value; times in UTC RFC 3339.
func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case string:
		return x
	case []byte:
		return string(x)
	default:
		return fmt.Sprint(x)
	}
}

func (f *resultWriter) write(res *index.Result) error {
	bw := bufio.NewWriterSize(f.w, 1<<16)
	switch f.format {
	case "table":
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		cells := make([]string, len(res.Columns))
		for i, c := range res.Columns {
			cells[i] = sanitize.Line(strings.ToUpper(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		for _, r := range res.Rows {
			for i, v := range r {
				cells[i] = sanitize.Line(cellText(v))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	case "csv":
		cw := csv.NewWriter(bw)
		if err := cw.Write(res.Columns); err != nil {
			return err
		}
		cells := make([]string, len(res.Columns))
		for _, r := range res.Rows {
			for i, v := range r {
				cells[i] = sanitize.CSVCell(cellText(v))
			}
			if err := cw.Write(cells); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	case "jsonl":
		var line []byte
		for _, r := range res.Rows {
			line = append(line[:0], '{')
			n := 0
			for i, v := range r {
				if v == nil {
					continue
				}
				if n > 0 {
					line = append(line, ',')
				}
				n++
				k, _ := json.Marshal(res.Columns[i])
				line = append(line, k...)
				line = append(line, ':')
				if t, ok := v.(time.Time); ok {
					v = t.UTC().Format(time.RFC3339Nano)
				}
				b, err := json.Marshal(v)
				if err != nil {
					return fmt.Errorf("column %s: %w", res.Columns[i], err)
				}
				line = append(line, b...)
			}
			line = append(line, '}', '\n')
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}
