package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/incident"
)

var t0 = time.Date(2026, 3, 16, 1, 0, 0, 0, time.UTC)

// sample builds a report with one incident whose impact is known.
func sample(t *testing.T) *Report {
	t.Helper()
	alerts := []incident.Alert{
		{Time: t0, Signal: "D1", Title: "Mail read with a token and session no sign-in issued", Level: "high", Tenant: "t", Mailbox: "vip@x",
			User: "vip@x", Actors: []incident.Actor{{Kind: incident.ActorToken, Value: "forged"}}, RecordIDs: []string{"r1"}},
		{Time: t0.Add(time.Hour), Signal: "D9", Title: "Audit logging weakened: <script>", Level: "high", Tenant: "t", Posture: true},
	}
	incs := incident.Group(incident.DefaultConfig(), alerts)
	acc := []incident.Access{
		{Time: t0, Tenant: "t", Mailbox: "vip@x", TokenID: "forged", IP: "198.18.9.9", RecordID: "r1",
			Folders: []incident.FolderRead{{Path: `\Inbox`, Messages: []string{"<a@x>", "=cmd|'/c calc'!A1"}}}},
		{Time: t0.Add(2 * time.Hour), Tenant: "t", Mailbox: "vip@x", TokenID: "forged", Sync: true, RecordID: "r2",
			Folders: []incident.FolderRead{{Path: `\Sent Items`}}},
		{Time: t0.Add(3 * time.Hour), Tenant: "t", Mailbox: "other@x", TokenID: "legit", RecordID: "r3",
			Folders: []incident.FolderRead{{Path: `\Inbox`, Messages: []string{"<b@x>"}}}},
	}
	incident.Assess(incs, acc)
	return &Report{Title: "test", Alerts: alerts, Incidents: incs, Accesses: acc, Events: 10, Sources: map[string]int{"m365.ual": 10}, From: t0, To: t0.Add(3 * time.Hour)}
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
// real page was drawn. CI installs chromium; elsewhere the test skips.
func TestChromiumRenders(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed at /usr/bin/chromium")
	}
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
	inc := &incident.Incident{ID: "INC-1", Severity: "high"}
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
