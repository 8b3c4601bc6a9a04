package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
)

// Bounds of the pages' index queries: a page waits up to uiIndexWait (by
// default) for the index to catch up with the journal (then answers from
// what is indexed and says how far behind), and a query gives up after
// uiQueryTimeout.
const (
	uiIndexWait    = 5 * time.Second
	uiQueryTimeout = 20 * time.Second
	// uiMaxDays bounds the days the counts over time are grouped into.
	uiMaxDays = 20_000
)

// pageQueryError is a query the user must fix: the page shows the
// index's message, which names the offending term and its column.
type pageQueryError struct{ err error }

func (e pageQueryError) Error() string   { return e.err.Error() }
func (e pageQueryError) Unwrap() []error { return []error{ui.ErrQuery, e.err} }

// indexPosition lets the index catch up with the journal as it is now,
// and returns the first journal entry it leaves
// out (listings stop before it) with a note when that is not the
// journal's end. It waits for at most UIOptions.IndexWait.
func (d *UIData) indexPosition(ctx context.Context) (uint64, string) {
	f := d.o.Index
	_, size, _ := f.Position()
	wctx, cancel := context.WithTimeout(ctx, d.o.IndexWait)
	err := f.WaitFor(wctx, size)
	cancel()
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
		d.o.Logger.Warn("ui: the index could not catch up", "err", err)
	}
	next, size, ferr := f.Position()
	var note string
	if size > next {
		note = fmt.Sprintf("The investigation index is %d journal entries behind; they are not in this answer yet.", size-next)
	}
	if ferr != nil {
		note = strings.TrimSpace(note + " The index's last update failed: " + ferr.Error())
	}
	return next, note
}

// indexFailed turns an engine error into what the page shows: a query to
// fix, a query that took too long (narrow it), or a fault.
func indexFailed(ctx context.Context, err error) error {
	var qe *index.QueryError
	var ae *index.ArgError
	switch {
	case errors.As(err, &qe):
		return pageQueryError{err}
	case errors.As(err, &ae):
		// Named as the page's field, not the CLI's flag.
		return pageQueryError{fmt.Errorf("%s %q: %s", ae.Arg, ae.Value, ae.Msg)}
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return pageQueryError{fmt.Errorf("the query gave up after %s; narrow it (more terms, since:, until:)", uiQueryTimeout)}
	}
	return fmt.Errorf("index: %w", err)
}

// resultRows reads an index result's columns by name.
type resultRows struct {
	res *index.Result
	at  map[string]int
}

func newResultRows(res *index.Result) resultRows {
	at := make(map[string]int, len(res.Columns))
	for i, c := range res.Columns {
		at[c] = i
	}
	return resultRows{res, at}
}

func (r resultRows) str(row []any, col string) string {
	i, ok := r.at[col]
	if !ok || row[i] == nil {
		return ""
	}
	if s, ok := row[i].(string); ok {
		return s
	}
	return fmt.Sprint(row[i])
}

func (r resultRows) time(row []any, col string) time.Time {
	if i, ok := r.at[col]; ok {
		if t, ok := row[i].(time.Time); ok {
			return t.UTC()
		}
	}
	return time.Time{}
}

// row is one index row as the pages show it.
func (r resultRows) row(row []any, signal func(string) string) ui.Row {
	app := r.str(row, "app")
	if app == "" {
		app = r.str(row, "client_app")
	}
	out := ui.Row{Time: r.time(row, "time"), Source: r.str(row, "source"), Operation: r.str(row, "op"), User: r.str(row, "actor"),
		IP: r.str(row, "ip"), App: app, Mailbox: r.str(row, "mailbox"), Result: r.str(row, "result")}
	if id := r.str(row, "record_id"); id != "" {
		out.Signal = signal(id)
	}
	return out
}

// searchIndex answers the search page through the investigation index:
// the rows (the first limit in time order), and every match counted per
// day or hour for the chart.
func (d *UIData) searchIndex(ctx context.Context, q string, limit int) (ui.SearchResult, error) {
	now := time.Now()
	// A bad query is refused before anything waits or runs.
	if _, err := index.Parse(q); err != nil {
		return ui.SearchResult{}, pageQueryError{err}
	}
	below, note := d.indexPosition(ctx)
	ctx, cancel := context.WithTimeout(ctx, uiQueryTimeout)
	defer cancel()
	x := d.o.Index.Index()
	res, err := x.Search(ctx, index.Request{Query: q, Limit: limit, Below: below, Now: now})
	if err != nil {
		return ui.SearchResult{}, indexFailed(ctx, err)
	}
	out := ui.SearchResult{Note: note}
	rr := newResultRows(res)
	signal := d.signal()
	for _, row := range res.Rows {
		out.Rows = append(out.Rows, rr.row(row, signal))
	}
	if err := d.countOverTime(ctx, x, q, now, &out); err != nil {
		return ui.SearchResult{}, indexFailed(ctx, err)
	}
	return out, nil
}

// timeBucket is one group of a count over time.
type timeBucket struct {
	at time.Time
	n  int
}

// countOverTime sets the result's Total and its counts per step, from
// the index's counts per day (per hour when the matches span a few
// days): memory grows with the days covered, not with the matches.
func (d *UIData) countOverTime(ctx context.Context, x *index.Index, q string, now time.Time, out *ui.SearchResult) error {
	group := func(by, layout string) ([]timeBucket, int, error) {
		// Groupings are not bounded by a journal position: entries indexed
		// since the listing ran may be counted too.
		res, err := x.Search(ctx, index.Request{Query: q, GroupBy: by, Limit: uiMaxDays, Now: now})
		if err != nil {
			return nil, 0, err
		}
		if res.Truncated {
			return nil, 0, fmt.Errorf("counting per %s: more than %d groups", by, uiMaxDays)
		}
		var bs []timeBucket
		total := 0
		for _, row := range res.Rows {
			n, _ := row[1].(int64)
			total += int(n)
			s, ok := row[0].(string)
			if !ok {
				continue // matches without a time: counted, not charted
			}
			t, err := time.Parse(layout, s)
			if err != nil {
				return nil, 0, fmt.Errorf("counting per %s: %q: %w", by, s, err)
			}
			bs = append(bs, timeBucket{t, int(n)})
		}
		slices.SortFunc(bs, func(a, b timeBucket) int { return a.at.Compare(b.at) })
		return bs, total, nil
	}
	bs, total, err := group("day", "2006-01-02")
	if err != nil {
		return err
	}
	unit := 24 * time.Hour
	if len(bs) > 0 && bs[len(bs)-1].at.Sub(bs[0].at) < 4*24*time.Hour {
		if bs, total, err = group("hour", "2006-01-02T15:04"); err != nil {
			return err
		}
		unit = time.Hour
	}
	out.Total = total
	if len(bs) == 0 {
		return nil
	}
	first, last := bs[0].at, bs[len(bs)-1].at
	out.Step = max(memdata.StepFor(last.Sub(first)+unit, 120), unit)
	out.From = first.Truncate(out.Step)
	out.Counts = make([]int, int(last.Sub(out.From)/out.Step)+1)
	for _, b := range bs {
		out.Counts[int(b.at.Sub(out.From)/out.Step)] += b.n
	}
	return nil
}

// entityTerm is the query-language term for a timeline's entity, for
// counting what a truncated timeline leaves out.
func entityTerm(e ui.Entity) string {
	v := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e.Value)
	return e.Kind + `:"` + v + `"`
}

// timelineIndex answers the timeline page through the investigation
// index, with the entities seen alongside for pivots.
func (d *UIData) timelineIndex(ctx context.Context, q ui.TimelineQuery) (ui.Timeline, error) {
	below, note := d.indexPosition(ctx)
	ctx, cancel := context.WithTimeout(ctx, uiQueryTimeout)
	defer cancel()
	x := d.o.Index.Index()
	req := index.TimelineRequest{Entity: q.Entity.Kind, Value: q.Entity.Value, Limit: q.Limit, Below: below}
	if !q.Around.IsZero() {
		req.Around, req.Window, req.Context = q.Around, q.Window, q.Context
	}
	res, err := x.Timeline(ctx, req)
	if err != nil {
		return ui.Timeline{}, indexFailed(ctx, err)
	}
	tl := ui.Timeline{Entity: q.Entity, Note: note}
	rr := newResultRows(res)
	signal := d.signal()
	related := map[ui.Entity]bool{}
	add := func(kind, v string) {
		if v != "" && len(related) < 40 && !(kind == q.Entity.Kind && strings.EqualFold(v, q.Entity.Value)) {
			related[ui.Entity{Kind: kind, Value: v}] = true
		}
	}
	for _, row := range res.Rows {
		r := rr.row(row, signal)
		if at := rr.str(row, "at"); at == "before" || at == "after" {
			r.At = at
		} else {
			tl.Total++
			for _, k := range []struct{ kind, col string }{{"ip", "ip"}, {"user", "actor"}, {"mailbox", "mailbox"},
				{"app", "app"}, {"session", "session"}, {"token", "token"}} {
				add(k.kind, rr.str(row, k.col))
			}
		}
		tl.Rows = append(tl.Rows, r)
	}
	if res.Truncated {
		// The listing stopped at the limit: count the rest.
		cr := index.Request{Query: entityTerm(q.Entity), Count: true}
		if !q.Around.IsZero() {
			// The window is closed at both ends; Until is exclusive.
			cr.Since, cr.Until = q.Around.Add(-q.Window), q.Around.Add(q.Window).Add(time.Microsecond)
		}
		c, err := x.Search(ctx, cr)
		if err != nil {
			return ui.Timeline{}, indexFailed(ctx, err)
		}
		if len(c.Rows) == 1 {
			if n, ok := c.Rows[0][0].(int64); ok && int(n) > tl.Total {
				tl.Total = int(n)
			}
		}
	}
	for k := range related {
		tl.Related = append(tl.Related, k)
	}
	slices.SortFunc(tl.Related, func(a, b ui.Entity) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Value, b.Value))
	})
	return tl, nil
}

// indexHelp says what the search page understands with the index.
func indexHelp() string {
	return "The query language of vigil search, over the whole journal through the investigation index: field:value terms (" +
		strings.Join(index.Fields, ", ") + `; ip takes a CIDR range, * is a wildcard), quoted phrases, AND (or a space), OR, NOT and parentheses; ` +
		"other words match anywhere in the actor, mailbox, operation, app, IP, user agent, session, token or record id. " +
		"The first 500 matches are listed in time order; the chart counts every match."
}
