package timeline

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/alert"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() []alert.Alert {
	t0 := time.Date(2023, 6, 16, 3, 0, 0, 0, time.UTC)
	return []alert.Alert{
		{Time: t0.Add(2 * time.Hour), Signal: "r2", Title: "Inbox rule forwards externally", Tags: []string{"attack.t1114.003"}, Level: alert.High,
			Source: "m365.ual", User: "eve@contoso.com", Operation: "New-InboxRule", RecordIDs: []string{"aa11"}, Author: "vigil",
			Fields: map[string]string{"Operation": "New-InboxRule", "Parameters.ForwardTo": "drop@attacker.example"}},
		{Time: t0, Signal: "r1", Title: "Password spray", Source: "entra.signin", Group: "ipAddress=192.0.2.50", Count: 25, Level: alert.Medium},
		{Time: t0.Add(2 * time.Hour), Signal: "r1", Title: "Same time, other rule", Source: "m365.ual", User: "a@b", Level: alert.Low},
	}
}

func TestSortIsByTimeThenRule(t *testing.T) {
	ds := sample()
	Sort(ds)
	var got []string
	for _, d := range ds {
		got = append(got, d.Signal+"/"+d.Title)
	}
	want := "r1/Password spray,r1/Same time, other rule,r2/Inbox rule forwards externally"
	if strings.Join(got, ",") != want {
		t.Errorf("order %q", got)
	}
}

func TestGolden(t *testing.T) {
	now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	defer func() { now = time.Now }()
	for _, format := range Formats {
		ds := sample()
		Sort(ds)
		var buf bytes.Buffer
		if err := Write(&buf, format, ds); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "hunt."+format)
		if *update {
			os.WriteFile(golden, buf.Bytes(), 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s output differs from %s:\n%s", format, golden, buf.String())
		}
	}
}

func TestJSONLKeys(t *testing.T) {
	ds := sample()
	var buf bytes.Buffer
	if err := Write(&buf, "jsonl", ds); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"time", "rule_id", "title", "level", "tags", "source", "user", "operation", "record_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks key %q: %s", i, k, line)
			}
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	ds := []alert.Alert{{Time: time.Unix(0, 0), Title: `<script>alert(1)</script>`, User: `"><img src=x>`}}
	var buf bytes.Buffer
	if err := Write(&buf, "html", ds); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>alert") || strings.Contains(buf.String(), "<img src=x>") {
		t.Error("HTML output does not escape record content")
	}
}

func TestUnknownFormat(t *testing.T) {
	if err := Write(&bytes.Buffer{}, "xml", nil); err == nil {
		t.Error("Write accepted an unknown format")
	}
}

// Shortened titles and matched values are cut between characters, never
// inside one: table and CSV output stay valid UTF-8.
func TestShorteningKeepsUTF8(t *testing.T) {
	for _, format := range []string{"table", "csv"} {
		for cut := range 4 { // move the cut point across a multi-byte character
			ds := sample()
			ds[0].Title = strings.Repeat("x", cut) + strings.Repeat("é", 40)
			ds[0].Fields["Parameters.ForwardTo"] = strings.Repeat("x", cut) + strings.Repeat("日", 40)
			var buf bytes.Buffer
			if err := Write(&buf, format, ds); err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid(buf.Bytes()) {
				t.Errorf("%s output with a cut %d bytes in is not valid UTF-8", format, cut)
			}
		}
	}
}

func TestChartToleratesUnsortedAndUntimed(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := []alert.Alert{{Time: t0.Add(3 * time.Hour)}, {}, {Time: t0}}
	bars, unit := chart(ds, 900, 100)
	if unit != "minute" && unit != "hour" || len(bars) == 0 || len(bars) > 200 {
		t.Fatalf("%d bars per %s", len(bars), unit)
	}
	total := 0
	for _, b := range bars {
		total += b.Count
	}
	if total != 2 {
		t.Errorf("bars count %d detections, want the 2 with a time", total)
	}
	if b, _ := chart([]alert.Alert{{}}, 900, 100); b != nil {
		t.Errorf("untimed detections drew %d bars", len(b))
	}
}

// hostile is a detection whose record-derived text tries formula injection
// in a spreadsheet and escape sequences in a terminal.
func hostile() []alert.Alert {
	return []alert.Alert{{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Signal: "r", Title: "Title \x1b]0;owned\x07", Level: alert.High,
		Source: "m365.ual", Tenant: "+tenant", User: "=HYPERLINK(\"http://x.example\",\"click\")", Operation: "@SUM(1)\x1b[2J",
		RecordIDs: []string{"-1+cmd|' /C calc'!A0"}, IP: "\t=1+1", Group: "\r=2",
		Fields: map[string]string{"UserAgent": "\x1b[31mred\u009b0m"}, File: "=file.json", Author: "-author"}}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "csv", hostile()); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("%v %v", err, rows)
	}
	for i, cell := range rows[1] {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
			t.Errorf("column %s = %q starts a formula", rows[0][i], cell)
		}
	}
	if rows[1][7] != `'=HYPERLINK("http://x.example","click")` {
		t.Errorf("user cell %q: want the value kept behind a quote", rows[1][7])
	}
}

func TestTableEscapesControls(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "table", hostile()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\x07") || strings.ContainsRune(out, '\u009b') {
		t.Errorf("table output carries control characters: %q", out)
	}
	if !strings.Contains(out, `Title \x1b]0;owned\x07`) || !strings.Contains(out, `\x1b[31mred\u009b0m`) {
		t.Errorf("table output does not show the escaped controls: %q", out)
	}
}

func TestHTMLHasCSP(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "html", hostile()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`) {
		t.Error("timeline HTML lacks the report's Content-Security-Policy")
	}
}

// Matched application ids show their published names; long values wrap
// between values; the chart fits narrow windows.
func TestHTMLPresentation(t *testing.T) {
	ds := sample()
	ds[0].Fields["AppId"] = "00000002-0000-0ff1-ce00-000000000000"
	var buf bytes.Buffer
	if err := Write(&buf, "html", ds); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `AppId=00000002-0000-0ff1-ce00-000000000000 <small>Office 365 Exchange Online</small>`) {
		t.Error("timeline HTML does not name a well-known application id")
	}
	if strings.Contains(out, "break-all") {
		t.Error("timeline HTML breaks values anywhere (word-break:break-all)")
	}
	if !strings.Contains(out, `<svg width="100%"`) || regexp.MustCompile(`[^-]width:900px|width="900"`).MatchString(out) {
		t.Error("timeline chart has a fixed width wider than an 800 px window")
	}
}

func TestHTMLChartSaysNone(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "html", []alert.Alert{{Title: "untimed"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Detections over time: none") {
		t.Error("a chart with nothing to draw does not say none")
	}
}

// The table, CSV and JSONL are written while the alerts are walked, not
// after: a month of alerts read back from disk is never held.
func TestWriteEachStreams(t *testing.T) {
	a := alert.Alert{Time: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Signal: "D1", Level: alert.High, Title: "t", RecordIDs: []string{"r"}}
	for _, format := range []string{"table", "csv", "jsonl"} {
		var out bytes.Buffer
		n, before := 0, -1
		err := WriteEach(&out, format, func(fn func(*alert.Alert) error) error {
			for range 3 * tableBlock {
				if err := fn(&a); err != nil {
					return err
				}
				if n++; n == 2*tableBlock {
					before = out.Len()
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(out.String(), "\n"); lines != 3*tableBlock+boolInt(format != "jsonl") {
			t.Errorf("%s: %d lines for %d alerts", format, lines, 3*tableBlock)
		}
		if before < out.Len()/3 {
			t.Errorf("%s: %d of %d bytes written after two thirds of the alerts: the output was held", format, before, out.Len())
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
