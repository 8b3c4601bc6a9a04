package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// servedVigil is a `vigil serve` running in-process on loopback.
type servedVigil struct {
	url, key string
	done     chan int
	cancel   context.CancelFunc
	stdout   *lines
	stderr   *syncBuffer // its log
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }

var listenRe = regexp.MustCompile(`listening on (http://\S+) `)
var keyRe = regexp.MustCompile(`(?m)^\s+(vgl_\S+)$`)

func startServe(t *testing.T, args ...string) *servedVigil {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	outR, outW := io.Pipe()
	var errb syncBuffer
	s := &servedVigil{done: make(chan int, 1), cancel: cancel, stdout: &lines{}, stderr: &errb}
	go func() {
		s.done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), outW, &errb)
		outW.Close()
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			s.stdout.add(sc.Text())
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	select {
	case s.url = <-urlc:
	case code := <-s.done:
		t.Fatalf("vigil serve exited %d before listening:\n%s", code, errb.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("vigil serve did not start:\n%s", errb.String())
	}
	if m := keyRe.FindStringSubmatch(errb.String()); m != nil {
		s.key = m[1]
	}
	return s
}

func (s *servedVigil) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		if code != 0 {
			t.Fatalf("vigil serve exited %d after SIGTERM-like cancel", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("vigil serve did not shut down")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func (s *servedVigil) get(t *testing.T, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// simulatedFeed simulates a tenant into logs and returns its ground truth
// and its records (raw JSON, one per record) in time order, as a live feed
// delivers them.
func simulatedFeed(t *testing.T, cfg simulate.Config, logs string) (*simulate.Truth, [][]byte) {
	t.Helper()
	truth, err := simulate.Run(t.Context(), cfg, logs)
	if err != nil {
		t.Fatal(err)
	}
	paths := truth.LogPaths(logs)
	type rec struct {
		t   time.Time
		raw []byte
	}
	var recs []rec
	var prev *event.Event
	if _, err := source.ReadPaths(t.Context(), paths, source.Options{}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		recs = append(recs, rec{e.Time, bytes.Clone(bytes.TrimSpace(e.Raw))})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return a.t.Compare(b.t) })
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.raw
	}
	return truth, out
}

// The end-to-end test: a simulated tenant pushed in chunks, the
// forged-token incident in the API with exact impact, delivered to a
// webhook (valid Standard Webhooks signature) and a syslog listener; a
// restart repeats no alert.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates and detects a tenant")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	// Records arrive roughly in time order, as they do from a live feed.
	truth, recs := simulatedFeed(t, simulate.Config{Users: 30, Days: 21, Seed: 3,
		Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs)
	want := map[string]bool{}
	for _, ct := range truth.Campaigns {
		for _, mi := range ct.Impact {
			for _, m := range mi.MessageIDs {
				want[m] = true
			}
		}
	}

	// Receivers: a webhook and a syslog listener on loopback.
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := sink.DecodeSecret(secret)
	var hookMu sync.Mutex
	var hookIDs []string
	var hookErr error
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := sink.Verify([][]byte{key}, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute)
		hookMu.Lock()
		defer hookMu.Unlock()
		if err != nil && hookErr == nil {
			hookErr = err
		}
		hookIDs = append(hookIDs, r.Header.Get("webhook-id"))
	})}
	hookLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go hook.Serve(hookLn)
	defer hook.Close()
	syslogLn, _ := net.Listen("tcp", "127.0.0.1:0")
	defer syslogLn.Close()
	syslogGot := make(chan string, 100)
	go func() {
		for {
			c, err := syslogLn.Accept()
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('|')
					if err != nil {
						return
					}
					syslogGot <- l
				}
			}()
		}
	}()
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret), 0o600)
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`data: data
server:
  networks: [%s]
  sinks:
    - type: webhook
      url: http://%s/vigil
      secret_file: hook.secret
      allow_private: true
    - type: syslog
      address: %s
      plain: true
    - type: file
      path: alerts.jsonl
`, filepath.Join(logs, simulate.NetworksFile), hookLn.Addr(), syslogLn.Addr())), 0o600)

	s := startServe(t, "--config", cfg)
	if s.key == "" {
		t.Fatal("no admin key printed at first start")
	}
	// Push the tenant's records in chunks of 5000, as a log shipper would.
	var body bytes.Buffer
	n, pushed, accepted := 0, 0, 0
	push := func() {
		var resp *http.Response
		var res struct{ Accepted, Duplicates, Quarantined int }
		// A shipper waits out 429 (detection behind) and sends again.
		for try := 0; ; try++ {
			req, _ := http.NewRequestWithContext(t.Context(), "POST", s.url+"/api/v1/ingest", bytes.NewReader(body.Bytes()))
			req.Header.Set("Authorization", "Bearer "+s.key)
			var err error
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests || try == 120 {
				break
			}
			time.Sleep(time.Second)
		}
		if resp.StatusCode != 200 || res.Quarantined != 0 {
			t.Fatalf("push: %s %+v", resp.Status, res)
		}
		pushed += res.Accepted + res.Duplicates
		accepted += res.Accepted
		body.Reset()
		n = 0
	}
	for _, r := range recs {
		body.Write(r)
		body.WriteByte('\n')
		if n++; n == 5000 {
			push()
		}
	}
	push()

	// Wait for detection to catch up and the incident's impact to settle.
	var incs struct {
		Incidents []struct {
			ID       string
			Severity string
			Impact   struct{ Messages []string }
		}
	}
	var got map[string]bool
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var ready map[string]any
		code := s.get(t, "/readyz", &ready)
		s.get(t, "/api/v1/incidents?severity=high", &incs)
		got = map[string]bool{}
		for _, inc := range incs.Incidents {
			for _, m := range inc.Impact.Messages {
				got[m] = true
			}
		}
		if code == 200 && ready["detection_lag"] == float64(0) && len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settled incident: ready %d %v, %d of %d messages", code, ready, len(got), len(want))
		}
		time.Sleep(500 * time.Millisecond)
	}
	for m := range want {
		if !got[m] {
			t.Errorf("message %s the intruder read is not in the impact", m)
		}
	}
	for m := range got {
		if !want[m] {
			t.Errorf("message %s in the impact was not read by the intruder", m)
		}
	}
	// The index took rows from detection's decoding rather than decoding
	// every entry again (the rest of this test checks what it holds).
	shared := metric(t, s, "vigil_index_shared_entries_total")
	t.Logf("index: %v entries from detection's decoding", shared)
	if shared <= 0 {
		t.Errorf("vigil_index_shared_entries_total %v: the index decoded every entry itself", shared)
	}
	// The investigation index follows the journal: the search API finds
	// who read each message the intruder read.
	for _, m := range slices.Sorted(maps.Keys(want))[:min(5, len(want))] {
		var a struct{ Rows []map[string]any }
		path := "/api/v1/search?table=mail_access&wait=30s&q=" + url.QueryEscape(`message:"`+m+`"`)
		if code := s.get(t, path, &a); code != 200 || len(a.Rows) == 0 {
			t.Fatalf("search for message %s: %d, %d rows", m, code, len(a.Rows))
		}
	}
	var countBefore struct{ Rows []map[string]any }
	s.get(t, "/api/v1/search?count=true&wait=30s", &countBefore)
	critical := ""
	for _, inc := range incs.Incidents {
		if inc.Severity == "critical" {
			critical = inc.ID
		}
	}
	if critical == "" {
		t.Fatalf("no critical incident: %+v", incs.Incidents)
	}
	// The sinks heard of it.
	deadline = time.Now().Add(30 * time.Second)
	for {
		hookMu.Lock()
		ids := slices.Clone(hookIDs)
		herr := hookErr
		hookMu.Unlock()
		if herr != nil {
			t.Fatalf("webhook signature: %v", herr)
		}
		if slices.Contains(ids, critical+"/opened") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook never told of %s/opened; got %v", critical, ids)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case l := <-syslogGot:
		if !regexp.MustCompile(`^\d+ <\d+>1 \S+ \S+ vigil \d+ incident\.\w+ - CEF:0\|$`).MatchString(l) {
			t.Fatalf("syslog frame %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no syslog message")
	}
	// The view settles: regrouping runs on the refresh period (2 s), so an
	// incident list read while it ran may still merge. Take the list two
	// refreshes apart until it stays the same.
	settled := func(s *servedVigil) []string {
		t.Helper()
		var prev []string
		deadline := time.Now().Add(time.Minute)
		for {
			var v struct{ Incidents []struct{ ID string } }
			s.get(t, "/api/v1/incidents?severity=high", &v)
			var ids []string
			for _, inc := range v.Incidents {
				ids = append(ids, inc.ID)
			}
			slices.Sort(ids)
			if prev != nil && slices.Equal(ids, prev) {
				return ids
			}
			if time.Now().After(deadline) {
				t.Fatalf("the incident list never settled: %v then %v", prev, ids)
			}
			prev = ids
			time.Sleep(4500 * time.Millisecond)
		}
	}
	beforeIDs := settled(s)
	// Detection's alerts are in the index: the intrusion's D1 alerts (high;
	// the incident they make is critical) by level and rule, over the
	// alerts table and over the events they were raised on.
	var al, ev struct {
		Rows      []map[string]any
		Truncated bool
	}
	if code := s.get(t, "/api/v1/search?table=alerts&limit=10000&q="+url.QueryEscape("level:high AND rule:D1"), &al); code != 200 || len(al.Rows) == 0 {
		t.Fatalf("alerts level:high rule:D1: %d, %d rows", code, len(al.Rows))
	}
	for _, a := range al.Rows {
		if a["level"] != "high" || a["rule"] != "D1" || a["idx"] == nil {
			t.Fatalf("alert row %v", a)
		}
	}
	if code := s.get(t, "/api/v1/search?limit=10000&q="+url.QueryEscape("level:high rule:D1"), &ev); code != 200 || len(ev.Rows) == 0 {
		t.Fatalf("events of the D1 alerts: %d, %d rows for %d alerts", code, len(ev.Rows), len(al.Rows))
	}
	evIdx := map[float64]bool{}
	for _, e := range ev.Rows {
		evIdx[e["idx"].(float64)] = true
	}
	for _, a := range al.Rows {
		if !evIdx[a["idx"].(float64)] {
			t.Errorf("the event of alert %v is not found by level:high rule:D1", a)
		}
	}
	s.stop(t)
	// detections counts what the index holds, the server stopped.
	detections := func() string {
		t.Helper()
		x, err := index.Open(t.Context(), index.Path(filepath.Join(dir, "data")), index.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		res, err := x.SQL(t.Context(), `SELECT (SELECT count(*) FROM alerts), (SELECT count(DISTINCT (rule, time, record_id, title, mailbox)) FROM alerts),
			(SELECT count(*) FROM incidents WHERE severity = 'critical' AND status <> 'merged' AND messages_read > 0),
			(SELECT count(*) FROM alerts WHERE incident IN (SELECT id FROM incidents WHERE severity = 'critical'))`, 1)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Rows[0]...)
	}
	detBefore := detections()
	var na, nd, ncrit, ncritAlerts int
	if _, err := fmt.Sscan(detBefore, &na, &nd, &ncrit, &ncritAlerts); err != nil || na < len(al.Rows) || nd != na || ncrit == 0 || ncritAlerts == 0 {
		t.Fatalf("index after the first run: alerts, distinct alerts, critical incidents with impact, their alerts = %s (%v)", detBefore, err)
	}
	hookMu.Lock()
	before := len(hookIDs)
	hookMu.Unlock()

	// A restart replays the journal: same incidents, nothing sent twice.
	s2 := startServe(t, "--config", cfg)
	s2.key = s.key
	deadline = time.Now().Add(3 * time.Minute)
	for {
		var ready map[string]any
		if s2.get(t, "/readyz", &ready) == 200 && ready["detection_lag"] == float64(0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted server never caught up")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if afterIDs := settled(s2); !slices.Equal(afterIDs, beforeIDs) {
		t.Errorf("after restart incidents %v, before %v", afterIDs, beforeIDs)
	}
	// The restarted index resumed where it stopped: same events, none twice.
	var countAfter struct{ Rows []map[string]any }
	s2.get(t, "/api/v1/search?count=true&wait=30s", &countAfter)
	if len(countBefore.Rows) != 1 || len(countAfter.Rows) != 1 || countAfter.Rows[0]["count"] != countBefore.Rows[0]["count"] {
		t.Errorf("events in the index before the restart %v, after %v", countBefore.Rows, countAfter.Rows)
	}
	s2.stop(t)
	// The restart replayed its snapshot's alerts into the index: no row twice.
	if detAfter := detections(); detAfter != detBefore {
		t.Errorf("index detections after the restart %s, before %s", detAfter, detBefore)
	}
	x, err := index.Open(t.Context(), index.Path(filepath.Join(dir, "data")), index.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	dup, err := x.SQL(t.Context(), "SELECT count(*) - count(DISTINCT (idx, sub)) AS repeated, count(DISTINCT idx) + (SELECT count(*) FROM unindexed) AS entries FROM events", 1)
	x.Close()
	if err != nil || fmt.Sprint(dup.Rows[0][0]) != "0" || fmt.Sprint(dup.Rows[0][1]) != fmt.Sprint(accepted) {
		t.Errorf("index after restart: %v %v; %d entries acknowledged", dup, err, accepted)
	}
	hookMu.Lock()
	after := slices.Clone(hookIDs)
	hookMu.Unlock()
	if len(after) != before {
		t.Errorf("the restart re-sent %d alerts: %v", len(after)-before, after[before:])
	}
	seen := map[string]bool{}
	for _, id := range after {
		if seen[id] {
			t.Errorf("alert %s delivered twice", id)
		}
		seen[id] = true
	}
	// Every acknowledged record is in the journal exactly once.
	res, err := journal.Verify(t.Context(), filepath.Join(dir, "data"), journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if res.Entries != uint64(accepted) || accepted == 0 || pushed < accepted {
		t.Fatalf("journal holds %d entries; %d acknowledged as new of %d pushed", res.Entries, accepted, pushed)
	}
}
