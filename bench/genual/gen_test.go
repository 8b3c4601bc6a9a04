package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func generate(t testing.TB, seed uint64, n int64) ([]byte, stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := newGenerator(seed, t0, 500).write(&buf, n)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), st
}

func TestDeterministic(t *testing.T) {
	a, _ := generate(t, 7, 1<<20)
	b, _ := generate(t, 7, 1<<20)
	c, _ := generate(t, 8, 1<<20)
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different output")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same output")
	}
}

// TestRecords checks every line is a JSON object with the UAL common
// schema fields, times never go backwards, sizes are in the 1-2 KB band
// on average, and the attack-shaped operations appear.
func TestRecords(t *testing.T) {
	const size = 32 << 20
	out, st := generate(t, 1, size)
	if int64(len(out)) < size || st.bytes != int64(len(out)) {
		t.Fatalf("wrote %d bytes (stats %d), want at least %d", len(out), st.bytes, size)
	}
	if avg := st.bytes / st.records; avg < 1000 || avg > 2000 {
		t.Errorf("average record size %d bytes, want 1000-2000", avg)
	}
	ops := map[string]int{}
	prev := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		var rec struct {
			CreationTime, Id, Operation, OrganizationId, UserId, Workload string
			RecordType, UserType                                          *int
			Folders                                                       []struct {
				Path        string
				FolderItems []struct{ InternetMessageId string }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if rec.Id == "" || rec.Operation == "" || rec.OrganizationId == "" || rec.UserId == "" || rec.Workload == "" || rec.RecordType == nil || rec.UserType == nil {
			t.Fatalf("line %d: missing a common schema field: %s", line, sc.Bytes())
		}
		if _, err := time.Parse("2006-01-02T15:04:05", rec.CreationTime); err != nil {
			t.Fatalf("line %d: CreationTime: %v", line, err)
		}
		if rec.CreationTime < prev {
			t.Fatalf("line %d: time %s before %s", line, rec.CreationTime, prev)
		}
		prev = rec.CreationTime
		if rec.Operation == "MailItemsAccessed" && (len(rec.Folders) == 0 || rec.Folders[0].Path == "") {
			t.Fatalf("line %d: MailItemsAccessed without Folders", line)
		}
		ops[rec.Operation]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"MailItemsAccessed", "Send", "MailboxLogin", "UserLoggedIn", "UserLoginFailed", "FileAccessed",
		"New-InboxRule", "Set-Mailbox", "Add-MailboxPermission", "TIMailData"} {
		if ops[op] == 0 {
			t.Errorf("no %s record in %d records", op, line)
		}
	}
	if frac := float64(ops["MailItemsAccessed"]) / float64(line); frac < 0.2 || frac > 0.5 {
		t.Errorf("MailItemsAccessed is %.2f of records, want 0.2-0.5", frac)
	}
}

// TestDecodes runs the output through vigil's decoders: every record must
// decode as a UAL event with the normalized fields filled in.
func TestDecodes(t *testing.T) {
	out, st := generate(t, 3, 2<<20)
	path := filepath.Join(t.TempDir(), "ual.jsonl")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var q bytes.Buffer
	var mia, withMsgIDs int
	got, err := source.ReadPaths(context.Background(), []string{path}, source.Options{Quarantine: &q}, func(e *event.Event) error {
		if e.Source != "m365.ual" || e.Time.IsZero() || e.User == "" {
			t.Errorf("record %s: source %q, time %v, user %q", e.RecordID, e.Source, e.Time, e.User)
		}
		if e.Operation == "MailItemsAccessed" {
			mia++
			if len(e.MessageIDs) > 0 {
				withMsgIDs++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Quarantined != 0 {
		t.Fatalf("%d records quarantined: %s", got.Quarantined, strings.SplitN(q.String(), "\n", 2)[0])
	}
	if got.Events != st.records {
		t.Errorf("decoded %d events, generated %d records", got.Events, st.records)
	}
	if mia == 0 || withMsgIDs == 0 {
		t.Errorf("MailItemsAccessed events %d, with message ids %d", mia, withMsgIDs)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "200MiB", want: 200 << 20},
		{in: "500MB", want: 500e6},
		{in: "1.5KiB", want: 1536},
		{in: "4096", want: 4096},
		{in: "abc", bad: true},
		{in: "-1MB", bad: true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want && !tc.bad {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	g := newGenerator(1, t0, 5000)
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		g.buf = g.record(g.buf[:0])
		n += int64(len(g.buf)) + 1
	}
	b.SetBytes(n / int64(b.N))
}

// TestFolderItems checks --folder-items: every MailItemsAccessed Bind
// lists a total of FolderItems within the range, each with a message id,
// Sync records list none, and OperationCount agrees with the list.
func TestFolderItems(t *testing.T) {
	g := newGenerator(5, t0, 500)
	g.itemsMin, g.itemsMax = 10, 50
	var buf bytes.Buffer
	st, err := g.write(&buf, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	if avg := st.bytes / st.records; avg < 2000 || avg > 3500 {
		t.Errorf("average record size %d bytes, want 2000-3500 with 10-50 folder items", avg)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	binds, lo, hi := 0, 1<<30, 0
	for sc.Scan() {
		var rec struct {
			Operation           string
			OperationCount      int
			OperationProperties []struct{ Name, Value string }
			Folders             []struct {
				Path        string
				FolderItems []struct{ InternetMessageId string }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Operation != "MailItemsAccessed" {
			continue
		}
		n := 0
		for _, f := range rec.Folders {
			for _, it := range f.FolderItems {
				if it.InternetMessageId == "" {
					t.Fatalf("folder item without InternetMessageId: %s", sc.Bytes())
				}
				n++
			}
		}
		if rec.OperationProperties[0].Value == "Sync" {
			if n != 0 {
				t.Fatalf("Sync record with %d folder items", n)
			}
			continue
		}
		binds++
		lo, hi = min(lo, n), max(hi, n)
		if n < 10 || n > 50 || rec.OperationCount != n {
			t.Fatalf("Bind record with %d folder items, OperationCount %d: %s", n, rec.OperationCount, sc.Bytes())
		}
	}
	if binds < 100 || lo > 12 || hi < 48 {
		t.Errorf("%d Bind records, items %d-%d: want many, spanning 10-50", binds, lo, hi)
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int
		bad    bool
	}{
		{in: "", lo: 0, hi: 0},
		{in: "10-50", lo: 10, hi: 50},
		{in: "7", lo: 7, hi: 7},
		{in: "50-10", bad: true},
		{in: "0-5", bad: true},
		{in: "a-b", bad: true},
	} {
		lo, hi, err := parseRange(tc.in)
		if (err != nil) != tc.bad || !tc.bad && (lo != tc.lo || hi != tc.hi) {
			t.Errorf("parseRange(%q) = %d, %d, %v", tc.in, lo, hi, err)
		}
	}
}
