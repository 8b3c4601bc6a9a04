package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/source"
)

// FuzzIngest pushes arbitrary bodies (gzip or not) through the ingest
// handler. It must never crash, must answer 200 or a 4xx, and on 200 its
// counts must be exactly what the journal and the quarantine file gained;
// every quarantined record is kept with its reason; when the body is JSON
// lines of objects, accepted+duplicates+quarantined is the number of lines;
// pushing the same body again stores nothing new and reports every stored
// record as a duplicate.
func FuzzIngest(f *testing.F) {
	for _, name := range []string{"ual_mailitemsaccessed.jsonl", "mixed_bad.jsonl", "gws_activities.json",
		"graph_signins_page.json", "purview_export.csv", "case_duplicates.jsonl", "json_in_strings.jsonl"} {
		b, err := os.ReadFile(filepath.Join("..", "source", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(`[{"Id":"1","CreationTime":"2024-01-01T00:00:00","Operation":"MailItemsAccessed"}, 1, "x"]`), false)
	f.Add([]byte(`{"value":[{"Id":"a"},{}]}`), false)
	f.Add([]byte("{\n"), false)

	dir := f.TempDir()
	j, err := journal.Open(f.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { j.Close() })
	ks, err := auth.Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	key, _, err := ks.Create("fuzz", auth.RoleIngest)
	if err != nil {
		f.Fatal(err)
	}
	qpath := filepath.Join(dir, "quarantine.jsonl")
	s, err := New(Config{RatePerKey: 1e9, Burst: 1 << 30, MaxBodyBytes: 1 << 20},
		Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, qpath), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	quarantined := func() int {
		b, err := os.ReadFile(qpath)
		if err != nil && !os.IsNotExist(err) {
			f.Fatal(err)
		}
		return bytes.Count(b, []byte("\n"))
	}
	// newRejects reads the quarantine lines after the first n.
	newRejects := func(t *testing.T, n int) []source.Reject {
		b, err := os.ReadFile(qpath)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
		var out []source.Reject
		for i, l := range lines {
			if i < n || len(l) == 0 {
				continue
			}
			var r source.Reject
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatalf("quarantine line %d is not a reject: %v: %q", i+1, err, l)
			}
			out = append(out, r)
		}
		return out
	}
	push := func(t *testing.T, body []byte, gz bool) (int, IngestResult, string) {
		req := httptest.NewRequestWithContext(t.Context(), "POST", "/api/v1/ingest", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if gz {
			var zb bytes.Buffer
			zw := gzip.NewWriter(&zb)
			zw.Write(body)
			zw.Close()
			req = httptest.NewRequestWithContext(t.Context(), "POST", "/api/v1/ingest", &zb)
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var res IngestResult
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatalf("200 with an unreadable answer %q: %v", rec.Body.Bytes(), err)
			}
		}
		return rec.Code, res, rec.Body.String()
	}
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		// A hang is a failure too: crash the worker so the input is kept.
		watchdog := time.AfterFunc(20*time.Second, func() { panic("ingest did not answer within 20s") })
		defer watchdog.Stop()
		size0, q0 := j.Size(), quarantined()
		code, res, msg := push(t, body, gz)
		if code != http.StatusOK {
			if code < 400 || code > 499 {
				t.Fatalf("answered %d: %s", code, msg)
			}
			if j.Size() != size0 {
				t.Fatalf("answered %d (%s) but the journal grew by %d", code, msg, j.Size()-size0)
			}
			return
		}
		if res.Accepted < 0 || res.Duplicates < 0 || res.Quarantined < 0 {
			t.Fatalf("negative counts %+v", res)
		}
		if got := int64(j.Size() - size0); got != res.Accepted {
			t.Fatalf("accepted %d but the journal gained %d", res.Accepted, got)
		}
		if got := int64(quarantined() - q0); got != res.Quarantined {
			t.Fatalf("quarantined %d but the quarantine file gained %d records", res.Quarantined, got)
		}
		for _, r := range newRejects(t, q0) {
			if r.Reason == "" {
				t.Fatalf("quarantined record kept without a reason: %+v", r)
			}
		}
		if n, ok := objectLines(body); ok {
			if got := res.Accepted + res.Duplicates + res.Quarantined; got != int64(n) {
				t.Fatalf("%d JSON-object lines but accepted+duplicates+quarantined = %d (%+v)", n, got, res)
			}
		}
		// The same body again: nothing new, every stored record a duplicate.
		size1, q1 := j.Size(), quarantined()
		code2, res2, msg2 := push(t, body, gz)
		if code2 != http.StatusOK {
			t.Fatalf("the same body answered %d the second time: %s", code2, msg2)
		}
		if res2.Accepted != 0 || j.Size() != size1 {
			t.Fatalf("the same body stored %d new records the second time (%+v then %+v)", res2.Accepted, res, res2)
		}
		if res2.Duplicates != res.Accepted+res.Duplicates || res2.Quarantined != res.Quarantined {
			t.Fatalf("second push %+v, first %+v: duplicates must be the first's accepted+duplicates", res2, res)
		}
		if got := int64(quarantined() - q1); got != res2.Quarantined {
			t.Fatalf("quarantined %d but the quarantine file gained %d records", res2.Quarantined, got)
		}
	})
}

// objectLines counts the lines of body when it is JSON lines of plain
// objects (no envelope keys, so the autodetection cannot read it as one
// document of many records): every line must then be accounted for.
func objectLines(body []byte) (int, bool) {
	n := 0
	for l := range bytes.Lines(body) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		var m map[string]json.RawMessage
		if l[0] != '{' || json.Unmarshal(l, &m) != nil {
			return 0, false
		}
		if _, ok := m["value"]; ok {
			return 0, false
		}
		if _, ok := m["records"]; ok {
			return 0, false
		}
		n++
	}
	return n, n > 1
}
