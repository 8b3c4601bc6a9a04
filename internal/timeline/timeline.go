package timeline

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/sanitize"
)

// Level is a Sigma severity level.
type Level int

// Levels in increasing severity.
const (
	Informational Level = iota
	Low
	Medium
	High
	Critical
)

var levelNames = []string{"informational", "low", "medium", "high", "critical"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "unknown"
}

// ParseLevel parses a level name (case-insensitive; "info" is accepted).
func ParseLevel(s string) (Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "info" {
		return Informational, nil
	}
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown level %q (want one of %s)", s, strings.Join(levelNames, ", "))
}

// Field is one field value that made a rule match.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Detection is one hit on the timeline.
type Detection struct {
	Time      time.Time `json:"time"`
	RuleID    string    `json:"rule_id"`
	Title     string    `json:"title"`
	Level     string    `json:"level"`
	Tags      []string  `json:"tags"`
	Author    string    `json:"author,omitempty"` // the rule's author, kept as the rule licence asks
	Source    string    `json:"source"`
	Tenant    string    `json:"tenant,omitempty"`
	User      string    `json:"user"`
	Operation string    `json:"operation"`
	RecordID  string    `json:"record_id"`
	IP        string    `json:"ip,omitempty"`
	Fields    []Field   `json:"fields,omitempty"`
	// Correlation hits name the group and how many events it counted.
	Group  string `json:"group,omitempty"`
	Count  int64  `json:"count,omitempty"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	level  Level
	seqNum int
}

// SetLevel records the numeric level used for filtering and sorting.
func (d *Detection) SetLevel(l Level) { d.level = l; d.Level = l.String() }

// LevelValue returns the numeric level.
func (d *Detection) LevelValue() Level { return d.level }

// Sort orders detections by time, then rule, then input order, so the
// output is the same for the same input.
func Sort(ds []Detection) {
	for i := range ds {
		ds[i].seqNum = i
	}
	slices.SortStableFunc(ds, func(a, b Detection) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.RuleID, b.RuleID), cmp.Compare(a.seqNum, b.seqNum))
	})
}

// Formats lists the output formats.
var Formats = []string{"table", "csv", "jsonl", "html"}

// Write renders ds in format to w.
func Write(w io.Writer, format string, ds []Detection) error {
	switch format {
	case "table":
		return writeTable(w, ds)
	case "csv":
		return writeCSV(w, ds)
	case "jsonl":
		return writeJSONL(w, ds)
	case "html":
		return writeHTML(w, ds)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

const timeLayout = "2006-01-02T15:04:05Z07:00"

func fieldsString(fs []Field) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		v := f.Value
		if len(v) > 80 {
			v = prefix(v, 77) + "..."
		}
		parts[i] = f.Name + "=" + v
	}
	return strings.Join(parts, " ")
}

func writeTable(w io.Writer, ds []Detection) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tLEVEL\tTITLE\tSOURCE\tUSER\tOPERATION\tMATCHED")
	for _, d := range ds {
		user := d.User
		if d.Group != "" {
			user = d.Group
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.UTC().Format(timeLayout), d.Level, clip(d.Title, 60),
			clip(d.Source, 40), clip(user, 40), clip(d.Operation, 40), clip(fieldsString(d.Fields), 100))
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
func writeCSV(w io.Writer, ds []Detection) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"time", "rule_id", "title", "level", "tags", "source", "tenant", "user", "operation", "record_id", "ip", "group", "count", "matched", "file", "line", "author"})
	for _, d := range ds {
		count := ""
		if d.Count > 0 {
			count = fmt.Sprint(d.Count)
		}
		line := ""
		if d.Line > 0 {
			line = fmt.Sprint(d.Line)
		}
		_ = cw.Write(sanitize.CSVRow([]string{d.Time.UTC().Format(time.RFC3339Nano), d.RuleID, d.Title, d.Level, strings.Join(d.Tags, " "),
			d.Source, d.Tenant, d.User, d.Operation, d.RecordID, d.IP, d.Group, count, fieldsString(d.Fields), d.File, line, d.Author}))
	}
	cw.Flush()
	return cw.Error()
}

func writeJSONL(w io.Writer, ds []Detection) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range ds {
		d := ds[i]
		d.Time = d.Time.UTC()
		if d.Tags == nil {
			d.Tags = []string{}
		}
		if err := enc.Encode(&d); err != nil {
			return err
		}
	}
	return nil
}
