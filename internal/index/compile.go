package index

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Table is what a search returns rows of.
type Table string

// The tables a search can return.
const (
	Events     Table = "events"      // one row per event
	MailAccess Table = "mail_access" // one row per message read (or folder synchronised)
	Alerts     Table = "alerts"      // one row per alert detection raised
)

// SearchTables are the tables a search can return, in the order help
// lists them.
var SearchTables = []Table{Events, MailAccess, Alerts}

// tableIndex is a table's place in columns.
func tableIndex(t Table) int { return slices.Index(SearchTables, t) }

// columns maps a query field to its column in each table (events,
// mail_access, alerts); "" means the table has no such column.
var columns = map[string][3]string{
	"user":       {"actor", "actor", "actor"},
	"mailbox":    {"mailbox", "mailbox", "mailbox"},
	"app":        {"app", "app", "app"},
	"client_app": {"client_app", "client_app", "client_app"},
	"op":         {"op", "", "op"},
	"source":     {"source", "", "source"},
	"session":    {"session", "session", "session"},
	"token":      {"token", "token", "token"},
	"country":    {"country", "country", ""},
	"kind":       {"kind", "", ""},
	"folder":     {"", "folder", ""},
	"message":    {"", "internet_message_id", ""},
	"asn":        {"asn", "asn", ""},
	"level":      {"", "", "level"},
}

// lowered fields are stored lower-case, so values are lower-cased too.
var lowered = map[string]bool{"user": true, "mailbox": true, "app": true, "client_app": true, "kind": true}

// caseless fields compare without regard to case (names, not ids).
var caseless = map[string]bool{"op": true, "source": true, "country": true, "folder": true, "level": true, "rule": true}

// freeText are the columns a bare word or phrase is looked for in.
var freeText = map[Table][]string{
	Events:     {"actor", "mailbox", "op", "app", "client_app", "ip", "user_agent", "session", "token", "record_id"},
	MailAccess: {"actor", "mailbox", "folder", "internet_message_id", "app", "client_app", "ip", "session", "token"},
	Alerts:     {"rule", "title", "actor", "mailbox", "op", "app", "client_app", "ip", "session", "token", "record_id"},
}

type compiler struct {
	table Table
	now   time.Time
	args  []any
}

// Compile turns a parsed query into a SQL condition over table, with its
// arguments.
func Compile(n *Node, table Table, now time.Time) (string, []any, error) {
	if tableIndex(table) < 0 {
		return "", nil, fmt.Errorf("search: no table %q (events, mail_access or alerts)", table)
	}
	c := &compiler{table: table, now: now}
	s, err := c.node(n)
	return s, c.args, err
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return "?"
}

// u64 passes an unsigned 64-bit value as text: database/sql refuses
// uint64 arguments with the high bit set, which IPv6 ranges have.
func (c *compiler) u64(v uint64) string {
	return "CAST(" + c.arg(strconv.FormatUint(v, 10)) + " AS UBIGINT)"
}

func (c *compiler) node(n *Node) (string, error) {
	switch n.Op {
	case "and", "or":
		if len(n.Kids) == 0 {
			return "TRUE", nil
		}
		parts := make([]string, 0, len(n.Kids))
		for _, k := range n.Kids {
			s, err := c.node(k)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return "(" + strings.Join(parts, " "+strings.ToUpper(n.Op)+" ") + ")", nil
	case "not":
		s, err := c.node(n.Kids[0])
		if err != nil {
			return "", err
		}
		// A missing value is not a match, so NOT of it is one.
		return "(" + s + ") IS NOT TRUE", nil
	case "term":
		return c.term(n)
	}
	return "", fmt.Errorf("search: bad node %q", n.Op)
}

func likePattern(v string) (string, bool) {
	if !strings.Contains(v, "*") {
		return v, false
	}
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`, `*`, `%`)
	return r.Replace(v), true
}

func (c *compiler) term(n *Node) (string, error) {
	bad := func(format string, a ...any) error {
		return &QueryError{Pos: n.Pos, Term: n.Text, Msg: fmt.Sprintf(format, a...)}
	}
	ti := tableIndex(c.table)
	v := n.Value
	switch n.Field {
	case "":
		pat := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(v) + "%"
		cols := freeText[c.table]
		parts := make([]string, len(cols))
		for i, col := range cols {
			parts[i] = col + ` ILIKE ` + c.arg(pat) + ` ESCAPE '\'`
		}
		return "(" + strings.Join(parts, " OR ") + ")", nil
	case "since", "until":
		t, err := ParseTime(v, c.now)
		if err != nil {
			return "", bad("%v", err)
		}
		if n.Field == "since" {
			return "time >= " + c.arg(t), nil
		}
		return "time < " + c.arg(t), nil
	case "ip":
		sh, sl, eh, el, err := ipRange(v)
		if err != nil {
			return "", bad("%v", err)
		}
		u := func(v uint64) string { return c.u64(v) }
		if sh == eh && sl == el {
			return fmt.Sprintf("(ip_hi = %s AND ip_lo = %s)", u(sh), u(sl)), nil
		}
		if sh == eh {
			return fmt.Sprintf("(ip_hi = %s AND ip_lo BETWEEN %s AND %s)", u(sh), u(sl), u(el)), nil
		}
		return fmt.Sprintf("((ip_hi > %s OR (ip_hi = %s AND ip_lo >= %s)) AND (ip_hi < %s OR (ip_hi = %s AND ip_lo <= %s)))",
			u(sh), u(sh), u(sl), u(eh), u(eh), u(el)), nil
	case "asn":
		if c.table == Alerts {
			return "", bad("asn is not a column of %s", c.table)
		}
		a, err := parseASN(v)
		if err != nil {
			return "", bad("%v", err)
		}
		return "asn = " + c.arg(a), nil
	case "level", "rule":
		// A level is one name, exactly (level:high is not critical); a
		// rule is its id or its title.
		var cond string
		if n.Field == "level" {
			cond, _ = c.match("level", n.Field, v)
		} else {
			id, _ := c.match("rule", n.Field, v)
			title, _ := c.match("title", n.Field, v)
			cond = "(" + id + " OR " + title + ")"
		}
		if c.table == Alerts {
			return cond, nil
		}
		// Over events and mail reads: those an alert was raised on.
		return "(idx, sub) IN (SELECT idx, sub FROM alerts WHERE idx IS NOT NULL AND " + cond + ")", nil
	case "message":
		if c.table == Alerts {
			break
		}
		// Arguments are numbered in order: the key's comes first.
		key := ""
		if !strings.Contains(v, "*") {
			key = "message_key = " + c.u64(messageKey(v)) + " AND "
		}
		cond, _ := c.match("internet_message_id", n.Field, v)
		cond = key + cond
		if c.table == Events {
			return "(idx, sub) IN (SELECT idx, sub FROM mail_access WHERE " + cond + ")", nil
		}
		return "(" + cond + ")", nil
	case "folder":
		if c.table == Events {
			cond, _ := c.match("folder", n.Field, v)
			return "(idx, sub) IN (SELECT idx, sub FROM mail_access WHERE " + cond + ")", nil
		}
	}
	col := columns[n.Field][ti]
	if col == "" {
		return "", bad("%s is not a column of %s", n.Field, c.table)
	}
	return c.match(col, n.Field, v)
}

// match compares col with a value: exactly, or with * wildcards; lower-
// cased or without regard to case as the field wants.
func (c *compiler) match(col, field, v string) (string, error) {
	if lowered[field] {
		v = strings.ToLower(v)
	}
	pat, wild := likePattern(v)
	switch {
	case wild && caseless[field]:
		return col + " ILIKE " + c.arg(pat) + ` ESCAPE '\'`, nil
	case wild:
		return col + " LIKE " + c.arg(pat) + ` ESCAPE '\'`, nil
	case caseless[field]:
		return "lower(" + col + ") = " + c.arg(strings.ToLower(v)), nil
	default:
		return col + " = " + c.arg(v), nil
	}
}

// probe returns a condition on a column with a lookup index that every
// row matching n satisfies, when n is such a term or a conjunction holding
// one. The engine probes an index only when that column's condition is
// the scan's only filter, so the probe runs alone in a materialized CTE
// and the whole condition is applied to its few rows afterwards.
func probe(n *Node, table Table) (string, []any, bool) {
	switch n.Op {
	case "term":
		return probeTerm(n, table)
	case "and":
		for _, k := range n.Kids {
			if k.Op == "term" {
				if s, a, ok := probeTerm(k, table); ok {
					return s, a, true
				}
			}
		}
	}
	return "", nil, false
}

func probeTerm(n *Node, table Table) (string, []any, bool) {
	if table == Alerts || strings.Contains(n.Value, "*") {
		return "", nil, false
	}
	switch {
	case n.Field == "token":
		return "token = ?", []any{n.Value}, true
	case n.Field == "ip" && table == Events:
		sh, sl, eh, el, err := ipRange(n.Value)
		if err != nil || sh != eh || sl != el {
			return "", nil, false
		}
		return "ip_lo = CAST(? AS UBIGINT)", []any{strconv.FormatUint(sl, 10)}, true
	case n.Field == "message" && table == MailAccess:
		return "message_key = CAST(? AS UBIGINT)", []any{strconv.FormatUint(messageKey(n.Value), 10)}, true
	}
	return "", nil, false
}

// selectFrom returns what a search selects from: the table, or the rows its
// probe finds (prefix then names them); args go before the query's own.
func selectFrom(table Table, n *Node) (prefix, src string, args []any) {
	cond, args, ok := probe(n, table)
	if !ok {
		return "", string(table), nil
	}
	return "WITH probe AS MATERIALIZED (SELECT * FROM " + string(table) + " WHERE " + cond + ") ", "probe", args
}
