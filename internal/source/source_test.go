package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

func readAll(t *testing.T, paths []string, opts Options) ([]*event.Event, Stats, []Reject) {
	t.Helper()
	var q bytes.Buffer
	opts.Quarantine = &q
	var evs []*event.Event
	st, err := ReadPaths(context.Background(), paths, opts, func(e *event.Event) error {
		evs = append(evs, e)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadPaths(%v): %v", paths, err)
	}
	var rej []Reject
	dec := json.NewDecoder(&q)
	for dec.More() {
		var r Reject
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		rej = append(rej, r)
	}
	if int64(len(rej)) != st.Quarantined {
		t.Fatalf("quarantine has %d records, stats say %d", len(rej), st.Quarantined)
	}
	return evs, st, rej
}

func TestUALNormalization(t *testing.T) {
	evs, st, rej := readAll(t, []string{"testdata/ual_mailitemsaccessed.jsonl"}, Options{})
	if len(rej) != 0 || len(evs) != 2 {
		t.Fatalf("got %d events, %d rejects (%v)", len(evs), len(rej), rej)
	}
	e := evs[0]
	want := map[string]string{
		"source": e.Source, "user": e.User, "mailbox": e.Mailbox, "app": e.AppID, "clientapp": e.ClientAppID,
		"ip": e.IP, "session": e.SessionID, "token": e.TokenID, "id": e.RecordID, "tenant": e.Tenant, "op": e.Operation,
	}
	for k, v := range map[string]string{
		"source": "m365.ual", "user": "alice@contoso.com", "mailbox": "alice@contoso.com",
		"app": "00000002-0000-0ff1-ce00-000000000000", "clientapp": "9199bf20-a13f-4107-85dc-02114787ef48",
		"ip": "203.0.113.7", "session": "f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f", "token": "q1w2e3r4t5y6u7i8o9p0",
		"id": "5b2f6a3c-0c0e-4a55-9d2e-1f7f0b0a1c11", "tenant": "11111111-2222-3333-4444-555555555555", "op": "MailItemsAccessed",
	} {
		if want[k] != v {
			t.Errorf("%s = %q, want %q", k, want[k], v)
		}
	}
	if !e.Time.Equal(time.Date(2023, 6, 16, 3, 12, 44, 0, time.UTC)) {
		t.Errorf("time = %v", e.Time)
	}
	if strings.Join(e.MessageIDs, ",") != "<AM0PR01MB0001@contoso.com>,<AM0PR01MB0002@contoso.com>" || e.ItemCount != 2 {
		t.Errorf("messages = %v (%d)", e.MessageIDs, e.ItemCount)
	}
	if got := e.Get("OperationProperties.MailAccessType"); got != "Bind" {
		t.Errorf("MailAccessType = %q", got)
	}
	if !bytes.HasPrefix(e.Raw, []byte(`{"CreationTime":"2023-06-16T03:12:44"`)) || e.Origin.Line != 1 {
		t.Errorf("raw/origin wrong: %q line %d", e.Raw[:40], e.Origin.Line)
	}
	// Sync access: folders but no message ids; IPv6 with port.
	s := evs[1]
	if s.IP != "2001:db8::5" || len(s.MessageIDs) != 0 || strings.Join(s.Folders, "|") != `\Inbox|\Sent Items` || s.Origin.Line != 2 {
		t.Errorf("sync record: ip %q messages %v folders %v line %d", s.IP, s.MessageIDs, s.Folders, s.Origin.Line)
	}
	if st.Sources["m365.ual"] != 2 {
		t.Errorf("sources = %v", st.Sources)
	}
}

func TestSentinelOfficeActivity(t *testing.T) {
	evs, _, rej := readAll(t, []string{"testdata/otrf_officeactivity_mailitemsaccessed.json"}, Options{})
	if len(rej) != 0 || len(evs) != 1 {
		t.Fatalf("got %d events, %d rejects", len(evs), len(rej))
	}
	e := evs[0]
	if e.Operation != "MailItemsAccessed" || e.Mailbox != "pgustavo@simulandlabs.com" || e.IP != "1.2.3.4" ||
		e.AppID != "00000003-0000-0000-c000-000000000000" || len(e.MessageIDs) == 0 {
		t.Errorf("op %q mailbox %q ip %q app %q messages %d", e.Operation, e.Mailbox, e.IP, e.AppID, len(e.MessageIDs))
	}
	// Folders is a JSON string in Sentinel; its content is reachable by path.
	if n := len(e.Values(event.Intern("Folders.FolderItems.InternetMessageId"))); n != len(e.MessageIDs) {
		t.Errorf("flattened message ids %d, normalized %d", n, len(e.MessageIDs))
	}
}

func TestGoogleWorkspaceActivities(t *testing.T) {
	evs, _, rej := readAll(t, []string{"testdata/gws_activities.json"}, Options{})
	if len(rej) != 0 || len(evs) != 3 {
		t.Fatalf("got %d events, %d rejects %v", len(evs), len(rej), rej)
	}
	cases := []struct{ source, op, user, ip, app string }{
		{"gws.login", "login_failure", "carol@example.org", "198.51.100.23", ""},
		{"gws.login", "login_challenge", "carol@example.org", "198.51.100.23", ""},
		{"gws.token", "authorize", "carol@example.org", "198.51.100.23", "1234567890-abc.apps.googleusercontent.com"},
	}
	for i, c := range cases {
		e := evs[i]
		if e.Source != c.source || e.Operation != c.op || e.User != c.user || e.IP != c.ip || e.AppID != c.app {
			t.Errorf("event %d: %s %s %s %s %s", i, e.Source, e.Operation, e.User, e.IP, e.AppID)
		}
	}
	if !evs[0].Failed || evs[1].Failed {
		t.Errorf("failed flags: %v %v", evs[0].Failed, evs[1].Failed)
	}
	// Parameters by name, at the top level and under parameters.
	if evs[0].Get("login_type") != "google_password" || evs[0].Get("events.parameters.login_type") != "google_password" {
		t.Errorf("login_type not flattened: %v", evs[0].Fields())
	}
	// One event's parameters must not leak into its sibling.
	if evs[1].Get("login_type") != "" {
		t.Errorf("sibling event has login_type %q", evs[1].Get("login_type"))
	}
	if evs[0].Get("eventService") != "login.googleapis.com" || evs[0].Get("eventName") != "login_failure" {
		t.Errorf("eventService/eventName = %q/%q", evs[0].Get("eventService"), evs[0].Get("eventName"))
	}
	if got := len(evs[1].Values(event.Intern("login_challenge_method"))); got != 2 {
		t.Errorf("multiValue gave %d values", got)
	}
	// The Reports API collector's key: uniqueQualifier alone repeats across activities.
	if evs[0].RecordID != "login|2024-03-04T08:15:30.123Z|-4567890123456789" {
		t.Errorf("record id %q", evs[0].RecordID)
	}
}

func TestPurviewCSV(t *testing.T) {
	evs, st, rej := readAll(t, []string{"testdata/purview_export.csv"}, Options{})
	if len(evs) != 2 || len(rej) != 1 {
		t.Fatalf("got %d events, %d rejects", len(evs), len(rej))
	}
	if evs[0].Operation != "New-InboxRule" || evs[0].Get("Parameters.ForwardTo") != "drop@attacker.example" || evs[0].Origin.Line != 2 {
		t.Errorf("first row: %s %q line %d", evs[0].Operation, evs[0].Get("Parameters.ForwardTo"), evs[0].Origin.Line)
	}
	// Raw is the audit record of the AuditData cell, so it decodes again
	// on its own (as when replayed from the journal).
	if !strings.HasPrefix(string(evs[0].Raw), `{"CreationTime":"2023-06-16T05:00:00","Id":"aa11"`) {
		t.Errorf("raw is not the AuditData record: %q", evs[0].Raw)
	}
	again, err := NewDecoder(nil, nil).Decode(evs[0].Raw, event.Origin{})
	if err != nil || len(again) != 1 || again[0].Get("Parameters.ForwardTo") != "drop@attacker.example" {
		t.Errorf("raw does not decode again: %v", err)
	}
	if rej[0].Line != 4 || !strings.Contains(rej[0].Reason, "AuditData is not JSON") || st.Reasons["purview CSV"] != 1 {
		t.Errorf("reject: %+v reasons %v", rej[0], st.Reasons)
	}
}

func TestGenericCSVRowsDecodeAgain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "risk.csv")
	os.WriteFile(p, []byte("\xef\xbb\xbf\"Activity\",\"DetectedDateTime\",\"IPAddress\",\"Id\",\"RiskEventType\",\"UserPrincipalName\",\"AdditionalInfo\"\n"+
		"\"signin\",\"1/26/2025 8:20:44 PM\",\"192.0.2.7\",\"r1\",\"anonymizedIPAddress\",\"Dana@x.org\",\"[{\"\"Key\"\":\"\"userAgent\"\",\"\"Value\"\":\"\"curl\"\"}]\"\n"), 0o644)
	evs, _, rej := readAll(t, []string{p}, Options{})
	if len(rej) != 0 || len(evs) != 1 {
		t.Fatalf("%d events, rejects %v", len(evs), rej)
	}
	e := evs[0]
	if e.Source != "entra.risk" || e.Operation != "anonymizedIPAddress" || e.User != "dana@x.org" || e.IP != "192.0.2.7" ||
		!e.Time.Equal(time.Date(2025, 1, 26, 20, 20, 44, 0, time.UTC)) || e.Get("AdditionalInfo.userAgent") != "curl" {
		t.Errorf("risk row: %s %s %s %s %v %q", e.Source, e.Operation, e.User, e.IP, e.Time, e.Get("AdditionalInfo.userAgent"))
	}
	again, err := NewDecoder(nil, nil).Decode(e.Raw, event.Origin{})
	if err != nil || len(again) != 1 || again[0].Source != "entra.risk" || again[0].Get("RiskEventType") != "anonymizedIPAddress" {
		t.Errorf("row JSON %s does not decode again: %v", e.Raw, err)
	}
}

func TestGraphEnvelope(t *testing.T) {
	evs, _, rej := readAll(t, []string{"testdata/graph_signins_page.json"}, Options{})
	if len(rej) != 0 || len(evs) != 2 {
		t.Fatalf("got %d events, %d rejects", len(evs), len(rej))
	}
	e := evs[0]
	if e.Source != "entra.signin" || e.User != "alice@contoso.com" || e.TokenID != "q1w2e3r4t5y6u7i8o9p0" ||
		e.SessionID != "f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f" || e.ASN != 64500 || e.Country != "DE" || e.Failed {
		t.Errorf("signin: %+v", e)
	}
	if !evs[1].Failed || evs[1].Result != "50126" {
		t.Errorf("failed sign-in: failed=%v result=%q", evs[1].Failed, evs[1].Result)
	}
}

func TestBadRecordsAreQuarantinedNotDropped(t *testing.T) {
	evs, st, rej := readAll(t, []string{"testdata/mixed_bad.jsonl"}, Options{})
	if len(evs) != 2 || evs[0].RecordID != "m1" || evs[1].RecordID != "m4" {
		t.Fatalf("good records: %d", len(evs))
	}
	if st.Records != 7 || st.Quarantined != 5 {
		t.Errorf("records %d quarantined %d", st.Records, st.Quarantined)
	}
	wantLines := []int{2, 3, 4, 5, 6}
	for i, r := range rej {
		if r.Line != wantLines[i] || r.Reason == "" || r.Record == "" || r.File != "testdata/mixed_bad.jsonl" {
			t.Errorf("reject %d: %+v", i, r)
		}
	}
	if !strings.Contains(rej[2].Reason, `unrecognized timestamp "yesterday"`) {
		t.Errorf("bad timestamp reason: %s", rej[2].Reason)
	}
	if !strings.Contains(rej[4].Reason, "supply a field mapping") {
		t.Errorf("unknown format reason: %s", rej[4].Reason)
	}
}

func TestFramingVariants(t *testing.T) {
	dir := t.TempDir()
	line1 := `{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"MailboxLogin","RecordType":2,"UserId":"a@x"}`
	line2 := `{"CreationTime":"2023-06-16T06:00:01","Id":"b","Operation":"MailboxLogin","RecordType":2,"UserId":"b@x"}`
	pretty := "[\n  " + strings.ReplaceAll(line1, ",", ",\n    ") + ",\n  " + line2 + "\n]\n"
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	files := map[string]string{
		"lines.jsonl":        line1 + "\n\n" + line2,
		"crlf.jsonl":         line1 + "\r\n" + line2 + "\r\n",
		"bom.json":           "\xef\xbb\xbf" + pretty,
		"array.json":         "[" + line1 + "," + line2 + "]",
		"concat.json":        strings.ReplaceAll(line1, ",", ",\n") + "\n" + strings.ReplaceAll(line2, ",", ",\n"),
		"records.json":       `{"records":[` + line1 + "," + line2 + `]}`,
		"lines.jsonl.gz":     gz(line1 + "\n" + line2 + "\n"),
		"linearrays.jsonl":   "[" + line1 + "]\n[" + line2 + "]\n",
		"eventhub.jsonl.gz":  gz(`{"records":[` + line1 + "]}\n" + `{"records":[` + line2 + "]}\n"),
		"pretty_bom_gz.json": gz("\xef\xbb\xbf" + pretty),
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		evs, _, rej := readAll(t, []string{p}, Options{})
		if len(rej) != 0 || len(evs) != 2 || evs[0].RecordID != "a" || evs[1].RecordID != "b" {
			t.Errorf("%s: %d events, rejects %v", name, len(evs), rej)
		}
	}
	// A directory is walked for log files only, in name order.
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# not a log"), 0o644)
	os.WriteFile(filepath.Join(dir, "truth.json"), []byte(`{"campaigns":[]}`), 0o644)
	os.WriteFile(filepath.Join(dir, ".vigilignore"), []byte("# ground truth, not a log\ntruth.json\n"), 0o644)
	evs, st, rej := readAll(t, []string{dir}, Options{Workers: 3})
	if len(rej) != 0 || len(evs) != 2*len(files) || st.Files != len(files) {
		t.Errorf("dir: %d events, %d files, rejects %v", len(evs), st.Files, rej)
	}
}

func TestTruncatedArrayQuarantinesTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cut.json")
	os.WriteFile(p, []byte(`[{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"X","RecordType":2},
{"CreationTime":"2023-06-16T06:00:01","Id":"b","Operation":"X","Rec`), 0o644)
	evs, _, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 1 || len(rej) != 1 || rej[0].Line != 2 || !strings.Contains(rej[0].Reason, "truncated") {
		t.Errorf("events %d rejects %+v", len(evs), rej)
	}
}

func TestStdinAndOrderAcrossWorkers(t *testing.T) {
	var b strings.Builder
	const n = 5000
	for i := range n {
		b.WriteString(`{"time":"2024-01-01T00:00:00Z","seq":`)
		b.WriteString(strings.Repeat(" ", i%7))
		b.WriteString(itoa(i))
		b.WriteString("}\n")
	}
	var evs []*event.Event
	st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: strings.NewReader(b.String()), Workers: 4},
		func(e *event.Event) error { evs = append(evs, e); return nil })
	if err != nil || len(evs) != n || st.Sources["json"] != n {
		t.Fatalf("err %v events %d sources %v", err, len(evs), st.Sources)
	}
	for i, e := range evs {
		if e.Get("seq") != itoa(i) {
			t.Fatalf("event %d has seq %s: order not preserved", i, e.Get("seq"))
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDecoderSingleRecord(t *testing.T) {
	d := NewDecoder(nil, nil)
	evs, err := d.Decode([]byte(`{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"MailboxLogin","RecordType":2,"UserId":"A@x"}`), event.Origin{File: "journal", Index: 7})
	if err != nil || len(evs) != 1 || evs[0].User != "a@x" || evs[0].Origin.Index != 7 || evs[0].Get("RecordType") != "2" {
		t.Fatalf("decode: %v %+v", err, evs)
	}
	if _, err := d.Decode([]byte(`{"broken`), event.Origin{}); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("bad record: %v", err)
	}
}

func TestSelfDescribedRecords(t *testing.T) {
	// A vigil token audit event, as token.AuditLog writes it.
	line := `{"id":"7f3c2a","time":"2026-11-24T10:00:00Z","source":"vigil.token","operation":"TokenRejected","result":"failure","reason":"key_scope","kid":"msa-2016","iss":"https://login.microsoftonline.com/t1/v2.0","tid":"t1","appid":"a1","uti":"u1","tenant":"t1","app_id":"a1","token_id":"u1","client_ip":"203.0.113.9:50000","user_agent":"python-requests/2.31"}`
	d := NewDecoder(nil, nil)
	evs, err := d.Decode([]byte(line), event.Origin{})
	if err != nil || len(evs) != 1 {
		t.Fatal(err)
	}
	e := evs[0]
	if e.Source != "vigil.token" || e.Operation != "TokenRejected" || !e.Failed || e.Tenant != "t1" || e.AppID != "a1" ||
		e.TokenID != "u1" || e.IP != "203.0.113.9" || e.RecordID != "7f3c2a" || e.Get("kid") != "msa-2016" {
		t.Errorf("token audit event: %+v", e)
	}
	// Without those names a generic record keeps source "json".
	evs, err = d.Decode([]byte(`{"timestamp":"2026-11-24T10:00:00Z","msg":"x"}`), event.Origin{})
	if err != nil || evs[0].Source != "json" {
		t.Errorf("plain record: %v %+v", err, evs)
	}
}

func TestEmptyPageIsNotAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "last-page.json")
	os.WriteFile(p, []byte(`{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns","value":[]}`), 0o644)
	evs, st, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 0 || len(rej) != 0 || st.Records != 0 {
		t.Errorf("empty page: %d events, %d records, rejects %v", len(evs), st.Records, rej)
	}
}

func TestCancelWhileStdinBlocks(t *testing.T) {
	pr, pw := io.Pipe() // never closed: a read blocks for ever
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		pw.Write([]byte(`{"time":"2024-01-01T00:00:00Z","a":1}` + "\n"))
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := ReadPaths(ctx, []string{"-"}, Options{Stdin: pr}, func(*event.Event) error { return nil })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadPaths did not return after cancel while its reader was blocked")
	}
}

func TestOffsetsCountTheBOM(t *testing.T) {
	line := `{"CreationTime":"2023-06-16T06:00:00","Id":"a","Operation":"X","RecordType":2}`
	p := filepath.Join(t.TempDir(), "bom.jsonl")
	content := "\xef\xbb\xbf" + line + "\n" + `{"broken` + "\n"
	os.WriteFile(p, []byte(content), 0o644)
	evs, _, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 1 || len(rej) != 1 {
		t.Fatalf("%d events, %d rejects", len(evs), len(rej))
	}
	if evs[0].Origin.Offset != 3 || rej[0].Offset != int64(strings.Index(content, `{"broken`)) {
		t.Errorf("offsets %d and %d, want byte positions in the file (after a 3-byte BOM)", evs[0].Origin.Offset, rej[0].Offset)
	}
}
