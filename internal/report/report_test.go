package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/browsertest"
	"github.com/vigil-audit/vigil/internal/source"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
)

var t0 = time.Date(2026, 3, 16, 1, 0, 0, 0, time.UTC)

// sample builds a report with one incident whose impact is known.
func sample(t *testing.T) *Report {
	t.Helper()
	alerts := []alert.Alert{
		{Time: t0, Signal: "D1", Title: "Mail read with a token and session no sign-in issued", Level: alert.High, Tenant: "t", Mailbox: "vip@x",
			User: "vip@x", Actors: []alert.Actor{{Kind: alert.ActorToken, Value: "forged"}}, RecordIDs: []string{"r1"}},
		{Time: t0.Add(time.Hour), Signal: "D9", Title: "Audit logging weakened: <script>", Level: alert.High, Tenant: "t", Posture: true},
	}
	incs := incident.Group(incident.DefaultConfig(), alerts)
	acc := []event.MailAccess{
		{Time: t0, Tenant: "t", Mailbox: "vip@x", TokenID: "forged", IP: "198.18.9.9", RecordID: "r1",
			Folders: []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<a@x>", "=cmd|'/c calc'!A1"}}}},
		{Time: t0.Add(2 * time.Hour), Tenant: "t", Mailbox: "vip@x", TokenID: "forged", Sync: true, RecordID: "r2",
			Folders: []event.FolderRead{{Path: `\Sent Items`}}},
		{Time: t0.Add(3 * time.Hour), Tenant: "t", Mailbox: "other@x", TokenID: "legit", RecordID: "r3",
			Folders: []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<b@x>"}}}},
	}
	incident.Assess(incs, acc)
	return &Report{Title: "test", Alerts: AlertSlice(alerts), Incidents: incs, Reads: reads(acc), Events: 10, Sources: map[string]int{"m365.ual": 10}, From: t0, To: t0.Add(3 * time.Hour)}
}

func reads(acc []event.MailAccess) incident.Histogram {
	var h incident.Histogram
	for _, a := range acc {
		h.Add(a.Time)
	}
	return h
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	r := sample(t)
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	// incidents.json: an array with the documented keys.
	var incs []map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, IncidentsFile))
	if err := json.Unmarshal(b, &incs); err != nil || len(incs) != 1 {
		t.Fatalf("incidents.json: %v %s", err, b)
	}
	for _, k := range []string{"id", "severity", "signals", "actors", "first_seen", "last_seen", "impact"} {
		if _, ok := incs[0][k]; !ok {
			t.Errorf("incident lacks %q", k)
		}
	}
	imp := incs[0]["impact"].(map[string]any)
	if imp["message_count"].(float64) != 2 || imp["evidence_complete"].(bool) || len(imp["mailboxes"].([]any)) != 1 {
		t.Errorf("impact %v", imp)
	}
	// impact.csv: one row per message, formula-looking ids defused.
	f, _ := os.Open(filepath.Join(dir, ImpactFile))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 {
		t.Fatalf("impact.csv: %v %v", err, rows)
	}
	if rows[2][4] != "'=cmd|'/c calc'!A1" && rows[1][4] != "'=cmd|'/c calc'!A1" {
		t.Errorf("formula not defused: %v", rows)
	}
	// detections.jsonl: every alert, with the hunt keys and its incident.
	lines := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(dir, DetectionsFile))), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d detections", len(lines))
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &d); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "rule_id", "title", "level", "tags", "source", "user", "operation", "record_id", "incident_id"} {
		if _, ok := d[k]; !ok {
			t.Errorf("detection lacks %q: %s", k, lines[0])
		}
	}
	html := readFile(t, filepath.Join(dir, HTMLFile))
	for _, want := range []string{r.Incidents[0].ID, "<svg", "Evidence incomplete", "Sent Items", "&lt;script&gt;"} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// Self-contained: nothing is fetched.
	for _, bad := range []string{"<script", "src=\"http", "href=\"http", "@import", "url(http"} {
		if strings.Contains(html, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
}

func TestNoIncidents(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteIncidents(&buf, nil); err != nil || strings.TrimSpace(buf.String()) != "[]" {
		t.Fatalf("%q %v", buf.String(), err)
	}
	buf.Reset()
	if err := WriteHTML(&buf, &Report{}); err != nil || !strings.Contains(buf.String(), "No incidents") {
		t.Fatalf("empty report: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChromiumRenders opens report.html in headless Chromium and checks a
// real page was drawn. CI installs chromium and fails without it;
// elsewhere the test skips.
func TestChromiumRenders(t *testing.T) {
	chromium := browsertest.Chromium(t)
	dir := t.TempDir()
	if err := Write(dir, sample(t)); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "out.png")
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--screenshot="+png, "--window-size=1280,2000", "file://"+filepath.Join(dir, HTMLFile))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	b, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 20000 {
		t.Fatalf("screenshot is %d bytes: not a rendered page", len(b))
	}
}

// Every impact.csv cell that comes from a record is neutralised, not only
// the message id.
func TestImpactCSVNeutralisesEveryCell(t *testing.T) {
	inc := &incident.Incident{ID: "INC-1", Severity: alert.High}
	inc.Impact.Reads = []incident.MessageRead{{Mailbox: "=mb@x", Folder: `+\Inbox`, MessageID: "<a@x>", FirstAccess: t0, LastAccess: t0,
		Count: 1, ClientApp: "@SUM(1)", IP: "-1+cmd|' /C calc'!A0", RecordIDs: []string{"=r1", "r2"}}}
	var buf bytes.Buffer
	if err := WriteImpactCSV(&buf, []*incident.Incident{inc}); err != nil {
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
	if rows[1][2] != "'=mb@x" || rows[1][9] != "'-1+cmd|' /C calc'!A0" {
		t.Errorf("row %q: want the values kept behind a quote", rows[1])
	}
}

// Application ids show their published names, addresses their network,
// and identifier lists wrap between values, never inside one.
func TestActorsLabelledAndWrapped(t *testing.T) {
	r := sample(t)
	inc := r.Incidents[0]
	inc.Actors.IPs = []string{"198.18.9.9", "2001:db8::1"}
	inc.Actors.Apps = []string{"00000002-0000-0ff1-ce00-000000000000"}
	inc.Actors.ClientApps = []string{"d3590ed6-52b3-4102-aeff-aad2292ab01c", "5a95e683-08ad-424e-a441-1d1aec52c02c"}
	for i := range 8 {
		inc.Actors.Sessions = append(inc.Actors.Sessions, strings.Repeat(string(rune('a'+i)), 36))
	}
	r.DescribeIP = func(ip string) string {
		if ip == "198.18.9.9" {
			return "AS64500 Example Hosting · NL · hosting"
		}
		return ""
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{
		`<span class="id"><code>00000002-0000-0ff1-ce00-000000000000</code> <span class="muted">Office 365 Exchange Online</span></span>`,
		`<span class="id"><code>d3590ed6-52b3-4102-aeff-aad2292ab01c</code> <span class="muted">Microsoft Office</span></span>`,
		`<span class="id"><code>5a95e683-08ad-424e-a441-1d1aec52c02c</code></span>`,
		`<span class="id"><code>198.18.9.9</code> <span class="muted">AS64500 Example Hosting · NL · hosting</span></span>`,
		`<span class="id"><code>2001:db8::1</code></span>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	for _, s := range inc.Actors.Sessions {
		if !strings.Contains(html, `<span class="id"><code>`+s+`</code></span>`) {
			t.Errorf("session %s is not its own unbreakable item", s)
		}
	}
	if strings.Contains(html, "break-all") {
		t.Error("report.html still breaks identifiers anywhere (word-break:break-all)")
	}
}

func chartLabels(svg string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`<text[^>]*class="tk"[^>]*>([^<]*)</text>`).FindAllStringSubmatch(svg, -1) {
		out = append(out, m[1])
	}
	return out
}

// Time axes say the year: on the first label, and where a span crosses
// into a new year.
func TestChartAxisCarriesYear(t *testing.T) {
	within := []time.Time{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)}
	labels := strings.Join(chartLabels(string(overviewChart(hist(within), within, time.Time{}, time.Time{}))), "|")
	if !strings.Contains(labels, "2026-03-01") {
		t.Errorf("axis within one year lacks the year on its first label: %s", labels)
	}
	across := []time.Time{time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)}
	labels = strings.Join(chartLabels(string(overviewChart(hist(across), across, time.Time{}, time.Time{}))), "|")
	if !strings.Contains(labels, "2025-12-") || !strings.Contains(labels, "2026-01-") {
		t.Errorf("axis across a new year does not name both years: %s", labels)
	}
}

// A series with nothing in it says "none" instead of drawing a 0–0 axis.
func TestChartEmptySeriesSaysNone(t *testing.T) {
	all := []time.Time{t0, t0.Add(time.Hour)}
	svg := string(overviewChart(hist(all), nil, time.Time{}, time.Time{}))
	if !strings.Contains(svg, "Reads by incident actors: none") {
		t.Errorf("empty series not labelled none:\n%s", svg)
	}
	if n := strings.Count(svg, `text-anchor="end">0</text>`); n != 1 {
		t.Errorf("%d zero ticks drawn; want only the non-empty panel's", n)
	}
}

// Axis labels never overlap: at most as many as fit the plot width at
// their font size.
func TestChartLabelsFit(t *testing.T) {
	for _, span := range []time.Duration{time.Hour, 36 * time.Hour, 21 * 24 * time.Hour, 400 * 24 * time.Hour} {
		ts := []time.Time{t0, t0.Add(span)}
		labels := chartLabels(string(overviewChart(hist(ts), ts, time.Time{}, time.Time{})))
		width := 0.0
		for _, l := range labels {
			width += float64(len(l))*chartTickFont*0.62 + 12
		}
		if width > chartPlotWidth {
			t.Errorf("span %s: %d labels need %.0f units, the plot has %d", span, len(labels), width, chartPlotWidth)
		}
	}
}

func hist(ts []time.Time) *incident.Histogram {
	var h incident.Histogram
	for _, t := range ts {
		h.Add(t)
	}
	return &h
}

// Detections no incident took are shown with who, what and when, and a
// green "no incidents" box never sits above high detections.
func TestDetectionsOutsideIncidents(t *testing.T) {
	var as []alert.Alert
	for i := range 30 {
		as = append(as, alert.Alert{Time: t0.Add(time.Duration(i) * time.Minute), Signal: "D4", Title: "Mail read from a hosting network", Level: alert.High,
			Tenant: "t", User: fmt.Sprintf("u%d@x", i%3), Mailbox: fmt.Sprintf("u%d@x", i%3), RecordIDs: []string{fmt.Sprintf("rec-%d", i)},
			Fields: map[string]string{"src_ip": "198.18.9.9", "asn": "16276"}})
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, &Report{Alerts: AlertSlice(as), Events: 100}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{"Detections outside incidents", "30 detections", "u0@x, u1@x, u2@x", "src_ip=198.18.9.9 (30)", "rec-19", "First 20 of 30", "30 high or critical detections"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(page, "rec-20") {
		t.Error("more than 20 rows shown for one rule")
	}
	if strings.Contains(page, `class="panel ok">No incidents`) {
		t.Error("green no-incidents box above high detections")
	}
}

// The report says what it was made from, and copies the quarantine.
func TestReportStatesInputs(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.jsonl")
	os.WriteFile(q, []byte(`{"file":"a.json","reason":"bad"}`+"\n"), 0o600)
	r := sample(t)
	r.Inputs = Inputs{Files: []string{"exports/a.json", "exports/b.csv"}, Records: 12, Quarantined: 1, Reasons: map[string]int64{"json": 1}, QuarantineFile: q,
		Skipped: []source.Skipped{{Path: "exports/notes.docx", Reason: "not a log file extension"}}, Damaged: []source.Damage{{File: "exports/c.json.gz", Read: 4096, Reason: "unexpected EOF"}}}
	r.Learning, r.Version, r.Generated = 7*24*time.Hour, "1.2.3", t0.Add(48*time.Hour)
	out := filepath.Join(dir, "report")
	if err := Write(out, r); err != nil {
		t.Fatal(err)
	}
	page := readFile(t, filepath.Join(out, HTMLFile))
	for _, want := range []string{"2 files, 12 records", "1 records quarantined", "q.jsonl", "vigil 1.2.3", "generated 2026-03-18", "not judged before 2026-03-23", "exports/b.csv"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if got := readFile(t, filepath.Join(out, QuarantineFile)); !strings.Contains(got, `"reason":"bad"`) {
		t.Errorf("quarantine copy: %q", got)
	}
	if got := readFile(t, filepath.Join(out, SkippedFile)); !strings.Contains(got, "skipped\texports/notes.docx\tnot a log file extension\n") || !strings.Contains(got, "damaged\texports/c.json.gz\tunexpected EOF (read 4096 bytes)") {
		t.Errorf("skipped.txt: %q", got)
	}
	if got := readFile(t, filepath.Join(out, InputsFile)); !strings.Contains(got, "exports/a.json\nexports/b.csv\n") {
		t.Errorf("inputs.txt: %q", got)
	}
}

// Two incidents that read the same message count it once in the totals.
func TestTotalsCountUniqueMessages(t *testing.T) {
	r := sample(t)
	dup := *r.Incidents[0]
	dup.ID = "INC-other"
	r.Incidents = append(r.Incidents, &dup)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	want := r.Incidents[0].Impact.MessageCount
	if !strings.Contains(buf.String(), fmt.Sprintf(`<div class="n">%d</div><div class="l">Messages read</div>`, want)) {
		t.Errorf("messages card does not show %d unique messages", want)
	}
}
