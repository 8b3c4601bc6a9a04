package timeline

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/sanitize"
)

// Sort orders alerts by time, then rule, then the rest of their identity,
// so the output is the same for the same input in any order.
func Sort(as []alert.Alert) { alert.Sort(as) }

// Formats lists the output formats.
var Formats = []string{"table", "csv", "jsonl", "html"}

// Write renders ds in format to w.
func Write(w io.Writer, format string, ds []alert.Alert) error {
	return WriteEach(w, format, func(fn func(*alert.Alert) error) error {
		for i := range ds {
			if err := fn(&ds[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteEach renders the alerts each walks, in its order, in format to w.
// The table, CSV and JSONL are written as the alerts come (the table
// aligns its columns per block of tableBlock rows); the HTML page charts
// every alert and holds them all.
func WriteEach(w io.Writer, format string, each func(func(*alert.Alert) error) error) error {
	switch format {
	case "table":
		return writeTable(w, each)
	case "csv":
		return writeCSV(w, each)
	case "jsonl":
		return writeJSONL(w, each)
	case "html":
		var ds []alert.Alert
		if err := each(func(a *alert.Alert) error {
			ds = append(ds, *a)
			return nil
		}); err != nil {
			return err
		}
		return writeHTML(w, ds)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// tableBlock is how many table rows are aligned together.
const tableBlock = 4096

const timeLayout = "2006-01-02T15:04:05Z07:00"

func fieldsString(a *alert.Alert) string {
	names := a.FieldNames()
	parts := make([]string, len(names))
	for i, n := range names {
		v := a.Fields[n]
		if len(v) > 80 {
			v = prefix(v, 77) + "..."
		}
		parts[i] = n + "=" + v
	}
	return strings.Join(parts, " ")
}

func writeTable(w io.Writer, each func(func(*alert.Alert) error) error) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tLEVEL\tTITLE\tSOURCE\tUSER\tOPERATION\tMATCHED")
	rows := 0
	err := each(func(d *alert.Alert) error {
		user := d.User
		if d.Group != "" {
			user = d.Group
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.UTC().Format(timeLayout), d.Level, clip(d.Title, 60),
			clip(d.Source, 40), clip(user, 40), clip(d.Operation, 40), clip(fieldsString(d), 100))
		if rows++; rows%tableBlock == 0 {
			return tw.Flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// clip makes a record-derived value one table cell: controls escaped (a
// record's escape sequences must not reach the terminal, its tabs and
// newlines must not break the columns), then shortened to n bytes.
func clip(s string, n int) string {
	s = sanitize.Line(s)
	if len(s) > n {
		return prefix(s, n-3) + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}

// prefix returns s cut to at most n bytes, between characters.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeCSV writes one row per detection; every cell goes through
// sanitize.CSVCell, so a record cannot plant a formula in a spreadsheet.
func writeCSV(w io.Writer, each func(func(*alert.Alert) error) error) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "rule_id", "title", "level", "tags", "source", "tenant", "user", "operation", "record_id", "ip", "group", "count", "matched", "file", "line", "author"})
	err := each(func(d *alert.Alert) error {
		count := ""
		if d.Count > 0 {
			count = fmt.Sprint(d.Count)
		}
		line := ""
		if d.Line > 0 {
			line = fmt.Sprint(d.Line)
		}
		return cw.Write(sanitize.CSVRow([]string{d.Time.UTC().Format(time.RFC3339Nano), d.Signal, d.Title, d.Level.String(), strings.Join(d.Tags, " "),
			d.Source, d.Tenant, d.User, d.Operation, d.RecordID(), d.IP, d.Group, count, fieldsString(d), d.File, line, d.Author}))
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// Line is one JSON line of a timeline: the alert as it is, with the
// record id of its evidence under the key other tools expect.
type Line struct {
	alert.Alert
	RecordID string `json:"record_id"`
}

// NewLine prepares a for JSON: UTC times, an empty tag list rather than
// null.
func NewLine(a alert.Alert) Line {
	a.Time, a.Raised = a.Time.UTC(), a.Raised.UTC()
	if a.Tags == nil {
		a.Tags = []string{}
	}
	return Line{Alert: a, RecordID: a.RecordID()}
}

func writeJSONL(w io.Writer, each func(func(*alert.Alert) error) error) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return each(func(a *alert.Alert) error {
		l := NewLine(*a)
		return enc.Encode(&l)
	})
}
