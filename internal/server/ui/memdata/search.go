package memdata

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/server/ui"
)

// term is one condition: field:value, or a free word when field is "".
type term struct{ field, value string }

// searchFields are the fields of `vigil search`'s language this scan
// understands.
var searchFields = []string{"user", "mailbox", "ip", "app", "client_app", "op", "source", "session", "token", "folder", "message"}

// parse reads terms joined by whitespace or "and". The index's full
// language (or, not, parentheses, time ranges) is refused with a reason
// rather than half-understood.
func parse(q string) ([]term, error) {
	var out []term
	for _, w := range strings.Fields(q) {
		switch lw := strings.ToLower(w); {
		case lw == "and":
			continue
		case lw == "or" || lw == "not" || strings.ContainsAny(w, "()"):
			return nil, fmt.Errorf("%w: %q: this server's in-memory search joins terms with and only", ui.ErrQuery, w)
		}
		f, v, ok := strings.Cut(w, ":")
		if !ok || strings.Contains(f, "/") || f == "" {
			out = append(out, term{"", strings.ToLower(w)})
			continue
		}
		f = strings.ToLower(f)
		if !slices.Contains(searchFields, f) {
			return nil, fmt.Errorf("%w: unknown field %q (want one of %s)", ui.ErrQuery, f, strings.Join(searchFields, ", "))
		}
		if v == "" {
			return nil, fmt.Errorf("%w: %s: needs a value", ui.ErrQuery, f)
		}
		out = append(out, term{f, strings.Trim(v, `"`)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty query", ui.ErrQuery)
	}
	return out, nil
}

// QueryHelp says what this scan understands.
func (s *Store) QueryHelp() string { return s.ev.QueryHelp() }

// QueryHelp says what this scan understands, and what it holds.
func (x *Events) QueryHelp() string {
	return x.held() + "Terms field:value joined by spaces or and, all of which must match; fields " + strings.Join(searchFields, ", ") +
		"; a trailing * matches a prefix; other words match anywhere in operation, user, IP, user agent, mailbox and app."
}

// eq compares case-insensitively; a trailing * matches a prefix.
func eq(have, want string) bool {
	if p, ok := strings.CutSuffix(want, "*"); ok {
		return len(have) >= len(p) && strings.EqualFold(have[:len(p)], p)
	}
	return strings.EqualFold(have, want)
}

func anyEq(have []string, want string) bool {
	return slices.ContainsFunc(have, func(h string) bool { return eq(h, want) })
}

func (t term) match(e *rec) bool {
	switch t.field {
	case "":
		for _, s := range []string{e.Operation, e.User, e.IP, e.UserAgent, e.Mailbox, e.AppID} {
			if strings.Contains(strings.ToLower(s), t.value) {
				return true
			}
		}
		return false
	case "user":
		return eq(e.User, t.value)
	case "mailbox":
		return eq(e.Mailbox, t.value)
	case "ip":
		return eq(e.IP, t.value)
	case "app":
		return eq(e.AppID, t.value) || eq(e.ClientApp, t.value)
	case "client_app":
		return eq(e.ClientApp, t.value)
	case "op":
		return eq(e.Operation, t.value)
	case "source":
		return eq(e.Source, t.value)
	case "session":
		return eq(e.SessionID, t.value)
	case "token":
		return eq(e.TokenID, t.value)
	case "folder":
		return anyEq(e.Folders, t.value)
	case "message":
		return anyEq(e.MessageIDs, t.value)
	}
	return false
}

// Search scans the records for those matching every term; signal names
// the detection on a record id, if any.
func (x *Events) Search(ctx context.Context, q string, limit int, signal func(recordID string) string) (ui.SearchResult, error) {
	ts, err := parse(q)
	if err != nil {
		return ui.SearchResult{}, err
	}
	x.sort()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var res ui.SearchResult
	var first, last time.Time
	var hits []int // indexes into x.recs, for the counts
	for i := range x.recs {
		e := &x.recs[i]
		if i%4096 == 0 && ctx.Err() != nil {
			return ui.SearchResult{}, ctx.Err()
		}
		if !slices.ContainsFunc(ts, func(t term) bool { return !t.match(e) }) {
			res.Total++
			// min and max, not first and last: a record added between the
			// sort and the scan may be out of order.
			if res.Total == 1 || e.Time.Before(first) {
				first = e.Time
			}
			if e.Time.After(last) {
				last = e.Time
			}
			hits = append(hits, i)
			if len(res.Rows) < limit {
				res.Rows = append(res.Rows, e.row(signal))
			}
		}
	}
	if res.Total > 0 {
		res.Step = StepFor(last.Sub(first)+time.Second, 120)
		res.From = first.Truncate(res.Step)
		res.Counts = make([]int, int(last.Sub(res.From)/res.Step)+1)
		for _, i := range hits {
			res.Counts[int(x.recs[i].Time.Sub(res.From)/res.Step)]++
		}
	}
	return res, nil
}

// Search scans the events for records matching every term.
func (s *Store) Search(ctx context.Context, q string, limit int) (ui.SearchResult, error) {
	return s.ev.Search(ctx, q, limit, s.signal())
}
