package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is a table of answers.
type Result struct {
	Columns []string
	Rows    [][]any
	// Truncated says the limit cut the answer short.
	Truncated bool
	// Last is the ordering key of the last row when Truncated cut a
	// listing (not a count or grouping) short: pass it as After for the
	// next page.
	Last *Key
}

// Key is a row's place in the order of listings: time (NULL last), then
// journal index, then the event's number within its record, then (in
// mail_access) the row's number within its event. Alerts are ordered by
// time, then id; in a timeline an alert comes after the event it was
// raised on (ID is "" for events).
type Key struct {
	Time time.Time // zero: the row has no time
	Idx  uint64
	Sub  int
	N    int
	ID   string
}

// order is the listing order of a table's rows.
func order(t Table) string {
	switch t {
	case MailAccess:
		return "time NULLS LAST, idx, sub, n"
	case Alerts:
		return "time NULLS LAST, id"
	}
	return "time NULLS LAST, idx, sub"
}

// timelineKey is the order of a timeline's rows: an alert linked to no
// event sorts after the events of its time.
const timelineIdx = "coalesce(idx, 18446744073709551615::UBIGINT)"

// afterCond selects the rows of table t after k in listing order. Times
// compare as stored (microseconds). t "" is a timeline: events and alerts.
func afterCond(k *Key, t Table) (string, []any) {
	idx := strconv.FormatUint(k.Idx, 10)
	tail := "(idx > CAST(? AS UBIGINT) OR (idx = CAST(? AS UBIGINT) AND sub > ?))"
	targs := []any{idx, idx, k.Sub}
	switch t {
	case MailAccess:
		tail = "(idx > CAST(? AS UBIGINT) OR (idx = CAST(? AS UBIGINT) AND (sub > ? OR (sub = ? AND n > ?))))"
		targs = []any{idx, idx, k.Sub, k.Sub, k.N}
	case Alerts:
		tail, targs = "id > ?", []any{k.ID}
	case "":
		ci, cs, ca := timelineIdx, "coalesce(sub, 0)", "coalesce(alert, '')"
		tail = "(" + ci + " > CAST(? AS UBIGINT) OR (" + ci + " = CAST(? AS UBIGINT) AND (" + cs + " > ? OR (" + cs + " = ? AND " + ca + " > ?))))"
		targs = []any{idx, idx, k.Sub, k.Sub, k.ID}
	}
	if k.Time.IsZero() {
		return "(time IS NULL AND " + tail + ")", targs
	}
	tm := k.Time.UTC()
	return "(time > ? OR time IS NULL OR (time = ? AND " + tail + "))", append([]any{tm, tm}, targs...)
}

// lastKey reads the ordering key of a result's last row.
func lastKey(res *Result) *Key {
	if len(res.Rows) == 0 {
		return nil
	}
	ti, ii, si := slices.Index(res.Columns, "time"), slices.Index(res.Columns, "idx"), slices.Index(res.Columns, "sub")
	if ti < 0 || ii < 0 || si < 0 {
		return nil
	}
	row := res.Rows[len(res.Rows)-1]
	k := &Key{}
	if t, ok := row[ti].(time.Time); ok {
		k.Time = t
	}
	switch v := row[ii].(type) {
	case uint64:
		k.Idx = v
	case int64:
		k.Idx = uint64(v)
	case nil:
		k.Idx = ^uint64(0) // an alert linked to no event, as timelineIdx sorts it
	}
	switch v := row[si].(type) {
	case int32:
		k.Sub = int(v)
	case int64:
		k.Sub = int(v)
	}
	for _, c := range []string{"id", "alert"} {
		if i := slices.Index(res.Columns, c); i >= 0 {
			k.ID, _ = row[i].(string)
		}
	}
	if ni := slices.Index(res.Columns, "n"); ni >= 0 {
		switch v := row[ni].(type) {
		case int32:
			k.N = int(v)
		case int64:
			k.N = int(v)
		}
	}
	return k
}

// pageConds adds a page's bounds to a WHERE clause: rows after After and
// journal entries below Below (the snapshot a cursor pins, so entries
// indexed while paging do not shift the pages).
func pageConds(where string, args []any, after *Key, below uint64, t Table) (string, []any) {
	if after != nil {
		c, a := afterCond(after, t)
		where += " AND " + c
		args = append(args, a...)
	}
	if below > 0 && t != Alerts {
		// (Alerts are not journal entries: their pages are not pinned.)
		where += " AND idx < CAST(? AS UBIGINT)"
		args = append(args, strconv.FormatUint(below, 10))
	}
	return where, args
}

// Request is one search.
type Request struct {
	Query   string
	Table   Table     // Events (default) or MailAccess
	Since   time.Time // zero: unbounded
	Until   time.Time // zero: unbounded; exclusive
	Limit   int       // rows returned (not counted); <= 0 means DefaultLimit
	Count   bool      // return only the number of matches
	GroupBy string    // a query field, "day" or "hour": counts per value
	Now     time.Time // for relative times; zero means time.Now()
	// After and Below page a listing: rows after the key, of journal
	// entries below Below (0: any). Ignored by Count and GroupBy.
	After *Key
	Below uint64
}

// DefaultLimit bounds a search's rows unless the request says otherwise.
const DefaultLimit = 1000

// outColumns are what a search returns for each table.
var outColumns = map[Table]string{
	Events:     "time, kind, source, op, actor, mailbox, app, client_app, ip, asn, country, session, token, items, record_id, idx, sub",
	MailAccess: "time, mailbox, folder, internet_message_id, access_type, throttled, actor, app, client_app, ip, asn, session, token, idx, sub, n",
	Alerts:     "time, level, rule, title, source, op, actor, mailbox, ip, app, client_app, session, token, incident, record_id, idx, sub, id",
}

// groupColumns are the fields a search can group by, per table.
func groupColumn(field string, t Table) (string, error) {
	switch field {
	case "day":
		return "strftime(date_trunc('day', time), '%Y-%m-%d')", nil
	case "hour":
		return "strftime(date_trunc('hour', time), '%Y-%m-%dT%H:00')", nil
	case "ip":
		return "ip", nil
	}
	ti := tableIndex(t)
	if field == "rule" && t == Alerts {
		return "rule", nil
	}
	if c, ok := columns[field]; ok && c[ti] != "" {
		return c[ti], nil
	}
	var ok []string
	for _, f := range append(slices.Clone(Fields), "day", "hour") {
		if f == "ip" || f == "day" || f == "hour" || f == "rule" && t == Alerts {
			ok = append(ok, f)
		} else if c, found := columns[f]; found && c[ti] != "" {
			ok = append(ok, f)
		}
	}
	return "", &ArgError{Arg: "group-by", Value: field, Msg: fmt.Sprintf("not a field of %s (one of %s)", t, strings.Join(ok, ", "))}
}

// Search runs a request.
func (x *Index) Search(ctx context.Context, r Request) (*Result, error) {
	if r.Table == "" {
		r.Table = Events
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	n, err := Parse(r.Query)
	if err != nil {
		return nil, err
	}
	where, args, err := Compile(n, r.Table, r.Now)
	if err != nil {
		return nil, err
	}
	if !r.Since.IsZero() {
		where += " AND time >= ?"
		args = append(args, r.Since.UTC())
	}
	if !r.Until.IsZero() {
		where += " AND time < ?"
		args = append(args, r.Until.UTC())
	}
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	prefix, src, pargs := selectFrom(r.Table, n)
	var q string
	switch {
	case r.Count:
		q = prefix + "SELECT count(*) AS count FROM " + src + " WHERE " + where
	case r.GroupBy != "":
		col, err := groupColumn(r.GroupBy, r.Table)
		if err != nil {
			return nil, err
		}
		q = fmt.Sprintf("%sSELECT %s AS %s, count(*) AS count FROM %s WHERE %s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %d",
			prefix, col, quoteIdent(r.GroupBy), src, where, limit+1)
	default:
		where, args = pageConds(where, args, r.After, r.Below, r.Table)
		q = fmt.Sprintf("%sSELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d",
			prefix, outColumns[r.Table], src, where, order(r.Table), limit+1)
	}
	res, err := x.query(ctx, q, append(pargs, args...)...)
	if err != nil {
		return nil, err
	}
	if len(res.Rows) > limit {
		res.Rows = res.Rows[:limit]
		res.Truncated = true
		if !r.Count && r.GroupBy == "" {
			res.Last = lastKey(res)
		}
	}
	return res, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (x *Index) query(ctx context.Context, q string, args ...any) (*Result, error) {
	rows, err := x.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return readRows(rows, 0, "search")
}

// readRows reads every row of rows (at most limit when limit > 0, then
// marking the result truncated) and closes rows; errors carry prefix.
func readRows(rows *sql.Rows, limit int, prefix string) (*Result, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: cols}
	for rows.Next() {
		if limit > 0 && len(res.Rows) == limit {
			res.Truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	return res, nil
}

// ErrNotReadOnly refuses SQL on an index opened for writing.
var ErrNotReadOnly = errors.New("index: SQL needs an index opened read-only")

// SQL runs a power user's statement over the documented tables. The index
// must be opened read-only: the engine then refuses writes, file access
// and changes to its settings. At most limit rows are returned.
func (x *Index) SQL(ctx context.Context, stmt string, limit int) (*Result, error) {
	if !x.readOnly {
		return nil, ErrNotReadOnly
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	rows, err := x.db.QueryContext(ctx, stmt)
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	return readRows(rows, limit, "sql")
}

// Entity kinds a timeline follows, and the condition each puts on events.
var entityColumns = map[string]string{
	"user":    "actor = ?",
	"mailbox": "mailbox = ?",
	"app":     "(app = ? OR client_app = ?)",
	"session": "session = ?",
	"token":   "token = ?",
}

// EntityKinds lists what Timeline accepts.
var EntityKinds = []string{"user", "mailbox", "ip", "app", "session", "token"}

// TimelineRequest asks for one entity's activity.
type TimelineRequest struct {
	Entity  string // one of EntityKinds
	Value   string
	Around  time.Time     // zero: the whole history (up to Limit)
	Window  time.Duration // with Around: [Around-Window, Around+Window]
	Context int           // rows before and after the window
	Limit   int
	// After and Below page the listing (the window with Around) as in
	// Request; the rows before the window come with the first page, those
	// after it with the last.
	After *Key
	Below uint64
}

// ArgError says a request's argument (a timeline's entity, a grouping)
// is not one the index can answer; Arg is named as the CLI flag is,
// without the dashes.
type ArgError struct {
	Arg, Value, Msg string
}

func (e *ArgError) Error() string { return fmt.Sprintf("--%s %q: %s", e.Arg, e.Value, e.Msg) }

const timelineColumns = "time, kind, source, op, result, actor, mailbox, app, ip, country, session, token, items, record_id, idx, sub"

// timelineAlertColumns are an alert's columns in a timeline: kind
// "alert", op its rule id, result its level, idx and sub the event it was
// raised on (NULL when none is indexed), then its title and id.
const timelineAlertColumns = "time, 'alert', source, rule, level, actor, mailbox, app, ip, NULL, session, token, NULL, record_id, idx, sub, title, id"

// Timeline returns an entity's events in time order across sources, with
// Context events before and after the window.
func (x *Index) Timeline(ctx context.Context, r TimelineRequest) (*Result, error) {
	var cond string
	var args []any
	switch r.Entity {
	case "ip":
		// As the query term ip: compiles it, so one address is an
		// equality the lookup index answers.
		c := &compiler{table: Events}
		var err error
		if cond, err = c.term(&Node{Op: "term", Field: "ip", Value: r.Value, Text: r.Value}); err != nil {
			var qe *QueryError
			if errors.As(err, &qe) {
				return nil, &ArgError{Arg: "ip", Value: r.Value, Msg: qe.Msg}
			}
			return nil, err
		}
		args = c.args
	default:
		c, ok := entityColumns[r.Entity]
		if !ok {
			return nil, &ArgError{Arg: r.Entity, Value: r.Value, Msg: "no such entity kind (one of " + strings.Join(EntityKinds, ", ") + ")"}
		}
		cond = c
		v := r.Value
		if r.Entity == "user" || r.Entity == "mailbox" || r.Entity == "app" {
			v = strings.ToLower(v)
		}
		for range strings.Count(c, "?") {
			args = append(args, v)
		}
	}
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	evCond, alCond := cond, cond
	evArgs, alArgs := args, slices.Clone(args)
	if r.Below > 0 {
		b := strconv.FormatUint(r.Below, 10)
		evCond += " AND idx < CAST(? AS UBIGINT)"
		evArgs = append(evArgs, b)
		alCond += " AND (idx IS NULL OR idx < CAST(? AS UBIGINT))"
		alArgs = append(alArgs, b)
	}
	// A token or one address is probed through its lookup index, as in
	// Search.
	var prefix, evSrc = "", "events"
	var pargs []any
	if r.Entity == "token" || r.Entity == "ip" {
		prefix, evSrc, pargs = selectFrom(Events, &Node{Op: "term", Field: r.Entity, Value: r.Value})
	}
	// The entity's events and the alerts naming it, as one listing.
	src := fmt.Sprintf("(SELECT %s, NULL::VARCHAR AS title, NULL::VARCHAR AS alert FROM %s WHERE %s UNION ALL SELECT %s FROM alerts WHERE %s) AS t",
		timelineColumns, evSrc, evCond, timelineAlertColumns, alCond)
	srcArgs := append(append(slices.Clone(pargs), evArgs...), alArgs...)
	const asc = "time NULLS LAST, " + timelineIdx + ", coalesce(sub, 0), coalesce(alert, '')"
	const desc = "time DESC, " + timelineIdx + " DESC, coalesce(sub, 0) DESC, coalesce(alert, '') DESC"
	sel := func(where string, order string, n int, a ...any) (*Result, error) {
		q := fmt.Sprintf("%sSELECT * FROM %s WHERE %s ORDER BY %s LIMIT %d", prefix, src, where, order, n)
		return x.query(ctx, q, append(slices.Clone(srcArgs), a...)...)
	}
	page := "TRUE"
	var pageArgs []any
	if r.After != nil {
		page, pageArgs = afterCond(r.After, "")
	}
	if r.Around.IsZero() {
		res, err := sel(page, asc, limit+1, pageArgs...)
		if err != nil {
			return nil, err
		}
		if len(res.Rows) > limit {
			res.Rows, res.Truncated = res.Rows[:limit], true
			res.Last = lastKey(res)
		}
		return res, nil
	}
	lo, hi := r.Around.Add(-r.Window).UTC(), r.Around.Add(r.Window).UTC()
	before := &Result{}
	var err error
	if r.After == nil {
		if before, err = sel("time < ?", desc, r.Context, lo); err != nil {
			return nil, err
		}
	}
	mid, err := sel("time >= ? AND time <= ? AND "+page, asc, limit+1, append([]any{lo, hi}, pageArgs...)...)
	if err != nil {
		return nil, err
	}
	after := &Result{}
	if len(mid.Rows) <= limit {
		if after, err = sel("time > ?", asc, r.Context, hi); err != nil {
			return nil, err
		}
	}
	out := &Result{Columns: append([]string{"at"}, mid.Columns...)}
	slices.Reverse(before.Rows)
	for _, row := range before.Rows {
		out.Rows = append(out.Rows, append([]any{"before"}, row...))
	}
	if len(mid.Rows) > limit {
		mid.Rows, out.Truncated = mid.Rows[:limit], true
		out.Last = lastKey(mid)
	}
	for _, row := range mid.Rows {
		out.Rows = append(out.Rows, append([]any{"window"}, row...))
	}
	for _, row := range after.Rows {
		out.Rows = append(out.Rows, append([]any{"after"}, row...))
	}
	return out, nil
}
