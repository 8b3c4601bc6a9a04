package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/index"
)

// Bounds of the search API: no query runs unbounded.
const (
	searchDefaultLimit = 100
	searchMaxLimit     = 10_000
	searchTimeout      = 30 * time.Second // and the most ?timeout= may ask
	searchMaxWait      = time.Minute
)

// searchIndex returns the followed index, or answers 503.
func (s *Server) searchIndex(w http.ResponseWriter) (*index.Follower, bool) {
	if s.d.Index == nil {
		writeError(w, http.StatusServiceUnavailable, "this server keeps no investigation index")
		return nil, false
	}
	return s.d.Index, true
}

// cursor is the opaque paging token: where the last page ended, the
// journal entries the first page saw (so entries indexed while paging do
// not shift pages), the clock relative times were read against, and a
// digest of the query it belongs to.
type cursor struct {
	V     int    `json:"v"`
	Query string `json:"q"` // digest of the parameters that define the listing
	Time  string `json:"t,omitempty"`
	Idx   uint64 `json:"i"`
	Sub   int    `json:"s"`
	N     int    `json:"m,omitempty"` // the row within its event (mail_access)
	ID    string `json:"a,omitempty"` // the alert (alerts, timelines)
	Below uint64 `json:"b"`
	Now   int64  `json:"n"` // unix nanoseconds
}

func (c *cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, digest string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 1024 {
		return nil, errors.New("cursor: not a cursor this server issued")
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.V != 1 {
		return nil, errors.New("cursor: not a cursor this server issued")
	}
	if c.Query != digest {
		return nil, errors.New("cursor: it belongs to another query; repeat the query's parameters unchanged")
	}
	if c.Time != "" {
		if _, err := time.Parse(time.RFC3339Nano, c.Time); err != nil {
			return nil, errors.New("cursor: not a cursor this server issued")
		}
	}
	return &c, nil
}

func (c *cursor) key() *index.Key {
	k := &index.Key{Idx: c.Idx, Sub: c.Sub, N: c.N, ID: c.ID}
	if c.Time != "" {
		k.Time, _ = time.Parse(time.RFC3339Nano, c.Time)
	}
	return k
}

func newCursor(digest string, k *index.Key, below uint64, now time.Time) string {
	c := &cursor{V: 1, Query: digest, Idx: k.Idx, Sub: k.Sub, N: k.N, ID: k.ID, Below: below, Now: now.UnixNano()}
	if !k.Time.IsZero() {
		c.Time = k.Time.UTC().Format(time.RFC3339Nano)
	}
	return c.encode()
}

// digestOf names a listing by the parameters that define it (all but
// cursor, limit, wait and timeout).
func digestOf(q url.Values, path string) string {
	h := sha256.New()
	h.Write([]byte(path))
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k == "cursor" || k == "limit" || k == "wait" || k == "timeout" {
			continue
		}
		for _, v := range q[k] {
			fmt.Fprintf(h, "\x00%s=%s", k, v)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// badRequest answers 400; a query error also says where the term is.
func badRequest(w http.ResponseWriter, err error) {
	var qe *index.QueryError
	if errors.As(err, &qe) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "column": qe.Pos + 1, "term": qe.Term})
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return searchDefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > searchMaxLimit {
		return 0, fmt.Errorf("limit: want a number from 1 to %d", searchMaxLimit)
	}
	return n, nil
}

// catchUp honours ?wait=D (up to searchMaxWait): the index first catches
// up with the journal as it is now. It then sets X-Vigil-Index-Behind to
// the journal entries the answer leaves out, and returns the index's
// position.
func (s *Server) catchUp(ctx context.Context, w http.ResponseWriter, f *index.Follower, q url.Values) (uint64, bool) {
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > searchMaxWait {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait: want a duration up to %s, such as 5s", searchMaxWait))
			return 0, false
		}
		_, size, _ := f.Position()
		wctx, cancel := context.WithTimeout(ctx, d)
		err = f.WaitFor(wctx, size)
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			// An update failed: answer from what is indexed, and say so below.
			s.log.Warn("search: the index could not catch up", "err", err)
		}
	}
	next, size, err := f.Position()
	behind := uint64(0)
	if size > next {
		behind = size - next
	}
	w.Header().Set("X-Vigil-Index-Behind", strconv.FormatUint(behind, 10))
	if err != nil {
		w.Header().Set("X-Vigil-Index-Error", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return next, true
}

// queryContext bounds a query's time: searchTimeout, or less when the
// client asks (?timeout=D).
func queryContext(ctx context.Context, q url.Values) (context.Context, context.CancelFunc, time.Duration, error) {
	d := searchTimeout
	if v := q.Get("timeout"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 || t > searchTimeout {
			return nil, nil, 0, fmt.Errorf("timeout: want a duration up to %s, such as 5s", searchTimeout)
		}
		d = t
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, d, nil
}

// queryFailed answers an error of the engine: the client's own cancel,
// the time limit, a bad query, or a server fault.
func (s *Server) queryFailed(w http.ResponseWriter, r *http.Request, ctx context.Context, limit time.Duration, err error) {
	var qe *index.QueryError
	var ae *index.ArgError
	switch {
	case errors.As(err, &qe):
		badRequest(w, err)
	case errors.As(err, &ae):
		// Named as the API's parameter, not the CLI's flag.
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q: %s", strings.ReplaceAll(ae.Arg, "-", "_"), ae.Value, ae.Msg))
	case r.Context().Err() != nil:
		// The client went away; the engine was interrupted. Nobody reads
		// this answer, but it must not look like a success.
		s.log.Info("search cancelled by the client", "path", r.URL.Path)
		writeError(w, http.StatusServiceUnavailable, "request cancelled")
	case ctx.Err() != nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the query gave up after %s; narrow it (since, until, more terms)", limit))
	default:
		s.log.Error("search failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "search failed")
	}
}

// rowsJSON turns a result into objects, NULLs left out, times RFC 3339.
func rowsJSON(res *index.Result) []map[string]any {
	out := make([]map[string]any, 0, len(res.Rows))
	for _, row := range res.Rows {
		m := make(map[string]any, len(row))
		for i, v := range row {
			if v == nil {
				continue
			}
			if t, ok := v.(time.Time); ok {
				v = t.UTC().Format(time.RFC3339Nano)
			}
			m[res.Columns[i]] = v
		}
		out = append(out, m)
	}
	return out
}

// search answers GET /api/v1/search?q=&table=&since=&until=&limit=
// &cursor=&count=&group_by=&wait=&timeout=.
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	f, ok := s.searchIndex(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	digest := digestOf(q, r.URL.Path)
	req := index.Request{Query: q.Get("q"), Table: index.Table(q.Get("table")), GroupBy: q.Get("group_by"), Now: time.Now()}
	if req.Table == "" {
		req.Table = index.Events
	}
	if !slices.Contains(index.SearchTables, req.Table) {
		writeError(w, http.StatusBadRequest, "table: events, mail_access or alerts")
		return
	}
	switch q.Get("count") {
	case "", "false":
	case "true":
		req.Count = true
	default:
		writeError(w, http.StatusBadRequest, "count: true or false")
		return
	}
	var err error
	if req.Limit, err = parseLimit(q); err != nil {
		badRequest(w, err)
		return
	}
	var cur *cursor
	if v := q.Get("cursor"); v != "" {
		if req.Count || req.GroupBy != "" {
			writeError(w, http.StatusBadRequest, "cursor: counts and groupings come in one page")
			return
		}
		if cur, err = decodeCursor(v, digest); err != nil {
			badRequest(w, err)
			return
		}
		req.Now = time.Unix(0, cur.Now)
		req.After, req.Below = cur.key(), cur.Below
	}
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"since", &req.Since}, {"until", &req.Until}} {
		if v := q.Get(b.name); v != "" {
			if *b.to, err = index.ParseTime(v, req.Now); err != nil {
				badRequest(w, fmt.Errorf("%s: %w", b.name, err))
				return
			}
		}
	}
	// A bad query is refused before the engine runs anything.
	if _, err := index.Parse(req.Query); err != nil {
		badRequest(w, err)
		return
	}
	s.query(w, r, f, cur == nil, &req.Below, digest, req.Now, func(ctx context.Context) (*index.Result, error) {
		return f.Index().Search(ctx, req)
	})
}

// query runs a search or timeline once its request is checked: it waits
// for the index as asked, bounds a first page by the journal position the
// index reached (a cursor's page keeps its own bound), runs under the
// query's time limit and answers.
func (s *Server) query(w http.ResponseWriter, r *http.Request, f *index.Follower, firstPage bool, below *uint64, digest string, now time.Time, run func(context.Context) (*index.Result, error)) {
	q := r.URL.Query()
	next, ok := s.catchUp(r.Context(), w, f, q)
	if !ok {
		return
	}
	if firstPage {
		*below = next
	}
	ctx, cancel, limit, err := queryContext(r.Context(), q)
	if err != nil {
		badRequest(w, err)
		return
	}
	defer cancel()
	res, err := run(ctx)
	if err != nil {
		s.queryFailed(w, r, ctx, limit, err)
		return
	}
	s.answer(w, res, digest, *below, now)
}

func (s *Server) answer(w http.ResponseWriter, res *index.Result, digest string, below uint64, now time.Time) {
	body := map[string]any{"columns": res.Columns, "rows": rowsJSON(res), "truncated": res.Truncated}
	if res.Last != nil {
		body["next_cursor"] = newCursor(digest, res.Last, below, now)
	}
	writeJSON(w, http.StatusOK, body)
}

// timeline answers GET /api/v1/timeline?user|mailbox|ip|app|session|token=V
// &around=&window=&context=&limit=&cursor=&wait=&timeout=.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	f, ok := s.searchIndex(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	digest := digestOf(q, r.URL.Path)
	req := index.TimelineRequest{Window: time.Hour, Context: 5}
	for _, k := range index.EntityKinds {
		if v := q.Get(k); v != "" {
			if req.Entity != "" {
				writeError(w, http.StatusBadRequest, "name one entity: "+strings.Join(index.EntityKinds, ", "))
				return
			}
			req.Entity, req.Value = k, v
		}
	}
	if req.Entity == "" {
		writeError(w, http.StatusBadRequest, "name one entity: "+strings.Join(index.EntityKinds, ", "))
		return
	}
	var err error
	if req.Limit, err = parseLimit(q); err != nil {
		badRequest(w, err)
		return
	}
	now := time.Now()
	var cur *cursor
	if v := q.Get("cursor"); v != "" {
		if cur, err = decodeCursor(v, digest); err != nil {
			badRequest(w, err)
			return
		}
		now = time.Unix(0, cur.Now)
		req.After, req.Below = cur.key(), cur.Below
	}
	if v := q.Get("around"); v != "" {
		if req.Around, err = index.ParseTime(v, now); err != nil {
			badRequest(w, fmt.Errorf("around: %w", err))
			return
		}
	}
	if v := q.Get("window"); v != "" {
		if req.Window, err = time.ParseDuration(v); err != nil || req.Window < 0 {
			writeError(w, http.StatusBadRequest, "window: want a duration such as 30m")
			return
		}
	}
	if v := q.Get("context"); v != "" {
		if req.Context, err = strconv.Atoi(v); err != nil || req.Context < 0 || req.Context > 1000 {
			writeError(w, http.StatusBadRequest, "context: want a number from 0 to 1000")
			return
		}
	}
	if (q.Has("window") || q.Has("context")) && req.Around.IsZero() {
		writeError(w, http.StatusBadRequest, "window and context go with around")
		return
	}
	s.query(w, r, f, cur == nil, &req.Below, digest, now, func(ctx context.Context) (*index.Result, error) {
		return f.Index().Timeline(ctx, req)
	})
}
