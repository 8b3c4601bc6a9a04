package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/index"
)

// collectFixture is a fake tenant served on 127.0.0.1 on the real clock,
// the records it serves (also written as files under files/), and a
// vigil.yaml pointing at it.
type collectFixture struct {
	dir, config, files string
	srv                *fake.Server
}

const (
	fxTenant = "6f1b4a2e-0000-4000-8000-00000000c0de"
	fxClient = "0b9d3c1a-0000-4000-8000-0000000a9915"
)

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// retime replaces the value of a time field (found by its JSON text) so
// the record falls inside the first collection window.
func retime(t *testing.T, raw []byte, field string, to time.Time, format string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var old string
	if f, ok := strings.CutPrefix(field, "id."); ok {
		old, _ = m["id"].(map[string]any)[f].(string)
	} else {
		old, _ = m[field].(string)
	}
	if old == "" {
		t.Fatalf("record has no %s: %s", field, raw)
	}
	return bytes.Replace(raw, []byte(`"`+old+`"`), []byte(`"`+to.UTC().Format(format)+`"`), 1)
}

func newCollectFixture(t *testing.T) *collectFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &collectFixture{dir: dir, config: filepath.Join(dir, "vigil.yaml"), files: filepath.Join(dir, "files")}
	if err := os.Mkdir(fx.files, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := fake.NewServer(collect.SystemClock{}, 1)
	t.Cleanup(srv.Close)
	fx.srv = srv
	srv.TenantID, srv.ClientID, srv.Secret = fxTenant, fxClient, "file-secret-value"
	_, key := fake.NewCert()
	srv.ServiceAccount, srv.ServiceKey, srv.Subject = "vigil@project.iam.gserviceaccount.com", &key.PublicKey, "admin@example.org"
	now := time.Now()

	// UAL: the decoder fixtures' Management API records and the AuditData
	// of the Purview export, in one Exchange blob listed an hour ago.
	var ual [][]byte
	for _, f := range []string{"ual_mailitemsaccessed.jsonl", "plaso_microsoft_audit_log.jsonl"} {
		b, err := os.ReadFile(filepath.Join(decoderFixtures, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			ual = append(ual, compact(t, l))
		}
	}
	cf, err := os.Open(filepath.Join(decoderFixtures, "purview_export.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	rows, err := csv.NewReader(cf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := slices.Index(rows[0], "AuditData")
	for _, r := range rows[1:] {
		if json.Valid([]byte(r[col])) { // the fixture also holds a malformed row
			ual = append(ual, compact(t, []byte(r[col])))
		}
	}
	srv.AddBlob(&fake.Blob{ID: "blob-1", ContentType: "Audit.Exchange", Available: now.Add(-time.Hour), Records: ual})

	// Graph sign-ins of the fixture page, two hours ago.
	var page struct{ Value []json.RawMessage }
	b, err := os.ReadFile(filepath.Join(decoderFixtures, "graph_signins_page.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	var signins [][]byte
	for i, r := range page.Value {
		at := now.Add(-2*time.Hour + time.Duration(i)*time.Minute).Truncate(time.Second)
		raw := retime(t, compact(t, r), "createdDateTime", at, time.RFC3339)
		signins = append(signins, raw)
		srv.AddGraph("auditLogs/signIns", &fake.Item{Raw: raw, Time: at, Available: at, EventType: "interactiveUser"})
	}

	// Workspace activities of the fixture, four hours ago.
	var acts struct{ Items []json.RawMessage }
	if b, err = os.ReadFile(filepath.Join(decoderFixtures, "gws_activities.json")); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &acts); err != nil {
		t.Fatal(err)
	}
	var gwsRecs [][]byte
	for i, r := range acts.Items {
		at := now.Add(-4*time.Hour + time.Duration(i)*time.Minute).Truncate(time.Millisecond)
		raw := retime(t, compact(t, r), "id.time", at, "2006-01-02T15:04:05.000Z")
		var a struct {
			ID struct{ ApplicationName string }
		}
		_ = json.Unmarshal(raw, &a)
		gwsRecs = append(gwsRecs, raw)
		srv.AddActivity(a.ID.ApplicationName, &fake.Item{Raw: raw, Time: at, Available: at})
	}
	for name, recs := range map[string][][]byte{"ual.jsonl": ual, "signins.jsonl": signins, "gws.jsonl": gwsRecs} {
		if err := os.WriteFile(filepath.Join(fx.files, name), append(bytes.Join(recs, []byte("\n")), '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Credentials and config.
	if err := os.WriteFile(filepath.Join(dir, "contoso.secret"), []byte("file-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": srv.ServiceAccount, "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": srv.URL + "/token"})
	if err := os.WriteFile(filepath.Join(dir, "sa.json"), sa, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data: ./data
tenants:
  - name: contoso
    microsoft:
      tenant_id: %s
      client_id: %s
      client_secret_file: contoso.secret
      login_url: %[3]s
      manage_url: %[3]s
      graph_url: %[3]s
      sources: [audit.exchange, signins]
    google:
      customer_id: C0123abcd
      service_account_file: sa.json
      subject: admin@example.org
      token_url: %[3]s/token
      reports_url: %[3]s
      applications: [login, token]
`, fxTenant, fxClient, srv.URL)
	if err := os.WriteFile(fx.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return fx
}

// detections returns hunt's JSON-lines detections as sorted
// "rule|record|time|user" strings.
func detections(t *testing.T, out string) []string {
	t.Helper()
	var ds []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var d struct {
			Time     time.Time `json:"time"`
			RuleID   string    `json:"rule_id"`
			RecordID string    `json:"record_id"`
			User     string    `json:"user"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		ds = append(ds, d.RuleID+"|"+d.RecordID+"|"+d.Time.UTC().Format(time.RFC3339)+"|"+d.User)
	}
	slices.Sort(ds)
	return ds
}

// TestCollectThenHunt: vigil collect --once pulls a tenant's records from
// the three APIs into the journal, every one decodes (0 quarantined), and
// vigil hunt --journal over it finds exactly what vigil hunt finds over the
// same records as files. A second run stores nothing new.
func TestCollectThenHunt(t *testing.T) {
	fx := newCollectFixture(t)
	code, out, errs := runVigil(t, "collect", "--config", fx.config, "--once", "--since", "6h", "--log-format", "json")
	if code != 0 {
		t.Fatalf("collect exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"audit.exchange", "signins", "gws.login", "gws.token", "WATERMARK"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(errs, "file-secret-value") {
		t.Error("the client secret appears in the logs")
	}
	data := filepath.Join(fx.dir, "data")
	indexHoldsJournal(t, data)
	q1, q2 := filepath.Join(fx.dir, "q1.jsonl"), filepath.Join(fx.dir, "q2.jsonl")
	code, fromJournal, errs := runVigil(t, "hunt", "--format", "jsonl", "--quarantine", q1, "--journal", data)
	if code != 0 {
		t.Fatalf("hunt --journal exit %d: %s", code, errs)
	}
	if _, err := os.Stat(q1); err == nil {
		b, _ := os.ReadFile(q1)
		t.Errorf("records from the journal were quarantined:\n%s", b)
	}
	code, fromFiles, errs2 := runVigil(t, "hunt", "--format", "jsonl", "--quarantine", q2, fx.files)
	if code != 0 {
		t.Fatalf("hunt exit %d: %s", code, errs2)
	}
	a, b := detections(t, fromJournal), detections(t, fromFiles)
	if len(b) == 0 {
		t.Fatal("hunt over the files finds nothing; the comparison would prove nothing")
	}
	if !slices.Equal(a, b) {
		t.Errorf("hunt --journal found\n%s\nhunt over files found\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}

	// Again: nothing new, exit 0.
	code, out, errs = runVigil(t, "collect", "--config", fx.config, "--once", "--quiet")
	if code != 0 {
		t.Fatalf("second collect exit %d\n%s\n%s", code, out, errs)
	}
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 5 && f[5] != "0" {
			t.Errorf("second run stored records again: %q", l)
		}
	}
}

// TestCollectExitCodes: 2 for config and usage errors (naming key and
// line), 1 when a source records a gap or fails.
func TestCollectExitCodes(t *testing.T) {
	fx := newCollectFixture(t)
	cfg, _ := os.ReadFile(fx.config)
	bad := filepath.Join(fx.dir, "bad.yaml")
	_ = os.WriteFile(bad, bytes.Replace(cfg, []byte("      sources:"), []byte("      sorces:"), 1), 0o600)
	if code, _, errs := runVigil(t, "collect", "--config", bad, "--once"); code != 2 || !strings.Contains(errs, `bad.yaml:11: unknown key "sorces"`) {
		t.Errorf("unknown key: exit %d, %s", code, errs)
	}
	if code, _, errs := runVigil(t, "collect", "--once"); code != 2 || !strings.Contains(errs, "--config FILE is required") {
		t.Errorf("no config: exit %d, %s", code, errs)
	}
	if code, _, errs := runVigil(t, "collect", "--config", fx.config, "--since", "yesterday"); code != 2 || !strings.Contains(errs, "--since") {
		t.Errorf("bad --since: exit %d, %s", code, errs)
	}
	if code, _, errs := runVigil(t, "collect", "--config", fx.config, "--tenant", "fabrikam", "--once"); code != 2 || !strings.Contains(errs, `no tenant named "fabrikam"`) {
		t.Errorf("unknown tenant: exit %d, %s", code, errs)
	}
	// An expired blob is a gap: exit 1, and the summary says so.
	fx.srv.ExpireBlob("blob-1")
	code, out, errs := runVigil(t, "collect", "--config", fx.config, "--once", "--since", "6h", "--tenant", "contoso", "--no-index")
	if code != 1 || !strings.Contains(out, "gap(s): expired") {
		t.Errorf("expired content: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(index.Path(filepath.Join(fx.dir, "data"))); err == nil {
		t.Error("collect --no-index created the index")
	}
	// A permission taken away: exit 1 naming the permission.
	fx.srv.Deny = "graph"
	if code, out, _ := runVigil(t, "collect", "--config", fx.config, "--once"); code != 1 || !strings.Contains(out, "AuditLog.Read.All") {
		t.Errorf("missing permission: exit %d\n%s", code, out)
	}
}

// TestCollectUntilInterrupted: without --once the collectors poll until
// the context ends (SIGINT/SIGTERM in main), then the summary is printed
// and the exit status is 0.
func TestCollectUntilInterrupted(t *testing.T) {
	fx := newCollectFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"collect", "--config", fx.config, "--since", "6h"}, &out, &errb) }()
	// The first polls store the fixture's records; then stop.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if s, err := os.Stat(filepath.Join(fx.dir, "data", "collect", "contoso", "gws.token.state")); err == nil && s.Size() > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("collect did not stop when interrupted")
	}
	if !strings.Contains(out.String(), "gws.token") || !strings.Contains(out.String(), "WATERMARK") {
		t.Errorf("no summary after the interrupt:\n%s", out.String())
	}
	indexHoldsJournal(t, filepath.Join(fx.dir, "data"))
}

// indexHoldsJournal checks that the index of the journal in data holds
// every entry, each as events or an unindexed row.
func indexHoldsJournal(t *testing.T, data string) {
	t.Helper()
	x, err := index.Open(t.Context(), index.Path(data), index.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("index after collect: %v", err)
	}
	defer x.Close()
	st, err := x.Status(t.Context(), data)
	if err != nil {
		t.Fatal(err)
	}
	if st.Journal == 0 || st.Behind != 0 || st.Next != st.Journal || st.Events < st.Journal-st.Unindexed {
		t.Fatalf("index after collect: %+v", st)
	}
}
