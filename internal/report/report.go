package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/source"

	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/timeline"
)

// Report is everything one hunt found.
type Report struct {
	Title     string
	Alerts    Alerts               // every detection, walked in time order
	Incidents []*incident.Incident // with impact assessed
	Reads     incident.Histogram   // every mail read over time, for the chart
	Events    int                  // events examined
	Sources   map[string]int       // events per source
	From, To  time.Time            // event-time range of the input
	// DescribeIP, if set, names an address's network for people
	// ("AS64500 Example Hosting · NL · hosting"); "" when unknown.
	DescribeIP func(ip string) string
	Inputs     Inputs
	// Learning is the behaviours' baseline period: D2 and D4 judge
	// nothing before From+Learning.
	Learning  time.Duration
	Version   string
	Generated time.Time
}

// Alerts is a run's detections, walked in time order (then Key) without
// holding them all: a month of a tenant's alerts is read back from disk.
type Alerts interface {
	Len() int
	Each(fn func(*alert.Alert) error) error
}

// AlertSlice is alerts held in memory; Each walks them sorted.
type AlertSlice []alert.Alert

// Len is the number of alerts.
func (s AlertSlice) Len() int { return len(s) }

// Each calls fn with each alert in time order.
func (s AlertSlice) Each(fn func(*alert.Alert) error) error {
	as := append([]alert.Alert(nil), s...)
	alert.Sort(as)
	for i := range as {
		if err := fn(&as[i]); err != nil {
			return err
		}
	}
	return nil
}

// each walks r's alerts; a report without any has none.
func (r *Report) each(fn func(*alert.Alert) error) error {
	if r.Alerts == nil {
		return nil
	}
	return r.Alerts.Each(fn)
}

// Inputs say what a report was made from.
type Inputs struct {
	Files          []string
	Records        int64
	Quarantined    int64
	Reasons        map[string]int64 // quarantined records by reason
	QuarantineFile string           // where the run wrote them ("" if none)
	Late           int64            // events behind the reordering window
	Future         int64            // events dated after the run's clock (single-event rules only)
	Skipped        []source.Skipped // directory entries not read, with the reason
	Damaged        []source.Damage  // inputs not read to their end
}

// File names written by Write.
const (
	DetectionsFile = "detections.jsonl"
	IncidentsFile  = "incidents.json"
	ImpactFile     = "impact.csv"
	HTMLFile       = "report.html"
	InputsFile     = "inputs.txt"
	QuarantineFile = "quarantine.jsonl"
	SkippedFile    = "skipped.txt"
)

// Write writes the four report files into dir, creating it.
func Write(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	files := []struct {
		name string
		fn   func(io.Writer) error
	}{
		{DetectionsFile, func(w io.Writer) error { return WriteDetections(w, r.each, r.Incidents) }},
		{IncidentsFile, func(w io.Writer) error { return WriteIncidents(w, r.Incidents) }},
		{ImpactFile, func(w io.Writer) error { return WriteImpactCSV(w, r.Incidents) }},
		{HTMLFile, func(w io.Writer) error { return WriteHTML(w, r) }},
		{InputsFile, func(w io.Writer) error { return writeInputs(w, r) }},
	}
	if len(r.Inputs.Skipped)+len(r.Inputs.Damaged) > 0 {
		files = append(files, struct {
			name string
			fn   func(io.Writer) error
		}{SkippedFile, func(w io.Writer) error { return writeSkipped(w, r.Inputs) }})
	}
	if q := r.Inputs.QuarantineFile; q != "" && r.Inputs.Quarantined > 0 {
		files = append(files, struct {
			name string
			fn   func(io.Writer) error
		}{QuarantineFile, func(w io.Writer) error { return copyFile(w, q) }})
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.fn); err != nil {
			return err
		}
	}
	return nil
}

// writeInputs lists the files read, one a line, after a summary.
func writeInputs(w io.Writer, r *Report) error {
	in := r.Inputs
	fmt.Fprintf(w, "# vigil %s, generated %s\n", r.Version, r.Generated.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "# %d files, %d records, %d events, %d quarantined", len(in.Files), in.Records, r.Events, in.Quarantined)
	if in.Quarantined > 0 {
		fmt.Fprintf(w, " (%s, copied to %s)", in.QuarantineFile, QuarantineFile)
	}
	if n := len(in.Skipped) + len(in.Damaged); n > 0 {
		fmt.Fprintf(w, "; %d inputs skipped or damaged (%s)", n, SkippedFile)
	}
	fmt.Fprintf(w, "\n# event time %s to %s\n", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
	for _, f := range in.Files {
		fmt.Fprintln(w, sanitize.Line(f))
	}
	return nil
}

// writeSkipped lists, one a line and escaped (names are attacker-chosen),
// the inputs not read and those not read to their end.
func writeSkipped(w io.Writer, in Inputs) error {
	for _, sk := range in.Skipped {
		if _, err := fmt.Fprintf(w, "skipped\t%s\t%s\n", sanitize.Line(sk.Path), sanitize.Line(sk.Reason)); err != nil {
			return err
		}
	}
	for _, d := range in.Damaged {
		if _, err := fmt.Fprintf(w, "damaged\t%s\t%s (read %d bytes)\n", sanitize.Line(d.File), sanitize.Line(d.Reason), d.Read); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func writeFile(path string, fn func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := fn(bw); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	// Rename so a reader never sees half a file.
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// detectionLine is one line of detections.jsonl: the line of
// `vigil hunt --format jsonl` and the incident the alert belongs to.
type detectionLine struct {
	timeline.Line
	IncidentID string `json:"incident_id,omitempty"`
}

// WriteDetections writes one JSON object per alert, in the order each
// walks them (time order), each naming the incident it belongs to, if
// any.
func WriteDetections(w io.Writer, each func(func(*alert.Alert) error) error, incs []*incident.Incident) error {
	owner := map[string]string{}
	for _, inc := range incs {
		for i := range inc.Alerts {
			owner[inc.Alerts[i].Key()] = inc.ID
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return each(func(a *alert.Alert) error {
		l := detectionLine{Line: timeline.NewLine(*a), IncidentID: owner[a.Key()]}
		return enc.Encode(&l)
	})
}

// WriteIncidents writes the incidents as one indented JSON array ("[]"
// when there are none).
func WriteIncidents(w io.Writer, incs []*incident.Incident) error {
	if incs == nil {
		incs = []*incident.Incident{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(incs)
}

// ImpactHeader is the header row of impact.csv.
var ImpactHeader = []string{"incident_id", "severity", "mailbox", "folder", "internet_message_id", "first_access", "last_access", "access_count", "client_app_id", "client_ip", "record_ids"}

// WriteImpactCSV writes one row per message an incident's actor read.
func WriteImpactCSV(w io.Writer, incs []*incident.Incident) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ImpactHeader); err != nil {
		return err
	}
	for _, inc := range incs {
		for _, r := range inc.Impact.Reads {
			// Mailboxes, folders, message ids, apps and IPs come from the
			// attacker's side of the world: no cell may become a formula.
			row := []string{inc.ID, inc.Severity.String(), r.Mailbox, r.Folder, r.MessageID, r.FirstAccess.UTC().Format(time.RFC3339),
				r.LastAccess.UTC().Format(time.RFC3339), strconv.Itoa(r.Count), r.ClientApp, r.IP, strings.Join(r.RecordIDs, ";")}
			if err := cw.Write(sanitize.CSVRow(row)); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
