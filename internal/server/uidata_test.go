package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// uiFixture is a server with the live web interface data over a journal,
// and a watcher that holds one incident (its pipeline is not run: the
// test plays detection's part through Entry and Incident).
type uiFixture struct {
	j    *journal.Journal
	w    *Watcher
	d    *UIData
	sw   *RuleSwitches
	hs   *httptest.Server
	keys map[auth.Role]string
}

// newUIFixture runs without an index, as vigil serve --no-index: the
// pages scan the records detection read.
func newUIFixture(t *testing.T) *uiFixture { return newUIFixtureWith(t, false) }

// newUIFixtureWith follows the journal with an investigation index when
// indexed, as vigil serve does by default.
func newUIFixtureWith(t *testing.T, indexed bool) *uiFixture {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "journal")
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(t.Context(), data, journal.Options{Logger: quiet, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var fol *index.Follower
	if indexed {
		x, err := index.Open(t.Context(), index.Path(data), index.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if fol, err = index.NewFollower(x, data, j, quiet); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { fol.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; x.Close() })
	}
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &uiFixture{j: j, keys: map[auth.Role]string{}}
	for _, r := range []auth.Role{auth.RoleIngest, auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin} {
		if f.keys[r], _, err = ks.Create(string(r)+"-key", r); err != nil {
			t.Fatal(err)
		}
	}
	f.sw = NewRuleSwitches()
	f.d = NewUIData(UIOptions{Journal: j, Index: fol, Rules: []ui.Rule{{ID: "D1", Kind: "behaviour", Loaded: true, Enabled: true},
		{ID: "bad-rule", Kind: "sigma", Title: "bad.yml", Refused: "unknown modifier"}},
		Switches: f.sw, Learning: 24 * time.Hour, Logger: quiet})
	f.w = NewWatcher(j, WatcherOptions{Logger: slog.New(slog.DiscardHandler), OnEntry: f.d.Entry, OnAlert: f.d.Alert, Rules: f.sw})
	f.d.Watch(f.w)
	f.w.Incident(detect.Update{Kind: detect.Opened, Incident: &incident.Incident{ID: "INC-1", Title: "forged token",
		Severity: alert.Critical, Raised: t0, FirstSeen: t0, LastSeen: t0.Add(time.Hour)}})
	in := NewIngester(j, filepath.Join(dir, "q.jsonl"))
	if fol != nil {
		in.Notify = fol.Wake
	}
	s, err := New(Config{}, Deps{Journal: j, Keys: ks, Ingest: in, Views: f.w, Index: fol, UI: f.d, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.hs = httptest.NewServer(s.Handler())
	t.Cleanup(f.hs.Close)
	return f
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// login logs a browser in with the role's key and returns it with the
// session's CSRF token.
func (f *uiFixture) login(t *testing.T, r auth.Role) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(f.hs.URL+"/ui/login", url.Values{"key": {f.keys[r]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s login: %d", r, resp.StatusCode)
	}
	page := f.get(t, c, "/ui/incidents/INC-1")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the incident page:\n%s", page)
	}
	return c, m[1]
}

func (f *uiFixture) get(t *testing.T, c *http.Client, path string) string {
	t.Helper()
	resp, err := c.Get(f.hs.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
	}
	return string(b)
}

func (f *uiFixture) triage(t *testing.T, c *http.Client, csrf, status, note string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", f.hs.URL+"/ui/incidents/INC-1/triage",
		strings.NewReader(url.Values{"csrf": {csrf}, "status": {status}, "note": {note}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.hs.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Roles from the API keys apply to sessions: a viewer reads but cannot
// triage, an analyst can; the change is a journal entry that detection
// reads once, and a server restarted over the journal shows it again.
func TestUITriageJournaledAndReplayed(t *testing.T) {
	f := newUIFixture(t)
	vw, vcsrf := f.login(t, auth.RoleViewer)
	if code := f.triage(t, vw, vcsrf, "acknowledged", ""); code != http.StatusForbidden {
		t.Errorf("viewer triage: %d, want 403", code)
	}
	if f.j.Size() != 0 {
		t.Fatalf("a refused change reached the journal (%d entries)", f.j.Size())
	}
	an, csrf := f.login(t, auth.RoleAnalyst)
	if code := f.triage(t, an, csrf, "acknowledged", "taking this"); code != http.StatusSeeOther {
		t.Fatalf("analyst triage: %d, want 303", code)
	}
	if page := f.get(t, an, "/ui/incidents/INC-1"); !strings.Contains(page, `id="status">acknowledged<`) || !strings.Contains(page, "taking this") {
		t.Errorf("the incident page does not show the change")
	}
	if f.j.Size() != 1 {
		t.Fatalf("journal holds %d entries after one change, want 1", f.j.Size())
	}
	var entry journal.Entry
	if err := f.j.Read(t.Context(), 0, func(_ uint64, en *journal.Entry) error {
		entry = journal.Entry{Source: en.Source, RecordID: en.RecordID, Raw: append([]byte(nil), en.Raw...)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var rec struct{ Source, User, Incident, Status, Note string }
	if err := json.Unmarshal(entry.Raw, &rec); err != nil || entry.Source != TriageSource || rec.Incident != "INC-1" ||
		rec.Status != "acknowledged" || rec.Note != "taking this" || rec.User != "analyst-key" {
		t.Fatalf("journaled %s %s (%v)", entry.Source, entry.Raw, err)
	}
	// Detection reading the entry does not apply it a second time; the
	// change is searchable, but no log source of the overview.
	f.d.Entry(0, &entry, []*event.Event{{Time: time.Now(), Source: TriageSource, Operation: "IncidentTriaged", User: "analyst-key"}})
	if res, err := f.d.Search(t.Context(), "source:vigil.triage", 10); err != nil || res.Total != 1 {
		t.Errorf("search for the change: %d (%v)", res.Total, err)
	}
	if ov, _ := f.d.Overview(t.Context()); !ov.SeriesFrom.IsZero() || len(ov.Ingest) != 0 {
		t.Errorf("the change's time reached the overview: series from %s, %d sources", ov.SeriesFrom, len(ov.Ingest))
	}
	c, _, _ := f.d.Case(t.Context(), "INC-1")
	if c.Status != "acknowledged" || c.Owner != "analyst-key" || len(c.History) != 1 {
		t.Errorf("after detection read the change: status %q owner %q, %d changes, want 1", c.Status, c.Owner, len(c.History))
	}

	// A restart: new data fed from the journal, as the watcher replays it.
	d2 := NewUIData(UIOptions{Journal: f.j, Logger: slog.New(slog.DiscardHandler)})
	d2.Watch(f.w)
	if err := f.j.Read(t.Context(), 0, func(i uint64, en *journal.Entry) error { d2.Entry(i, en, nil); return nil }); err != nil {
		t.Fatal(err)
	}
	c2, _, _ := d2.Case(t.Context(), "INC-1")
	if c2.Status != "acknowledged" || c2.Owner != "analyst-key" || len(c2.History) != 1 || c2.History[0].Note != "taking this" {
		t.Errorf("after a restart: %+v", c2)
	}
	if err := d2.Triage(t.Context(), ui.Change{Incident: "INC-404", Status: "resolved", Actor: "x"}); !errors.Is(err, ui.ErrNotFound) {
		t.Errorf("triage of an unknown incident: %v", err)
	}
}

// The pages read the watcher's live views: records as detection reads
// them, alerts as they are raised, the signed checkpoint of the journal.
func TestUILiveViews(t *testing.T) {
	f := newUIFixture(t)
	acks, err := f.j.AppendBatch(t.Context(), []journal.Entry{{Source: "m365.ual", Origin: "test", RecordID: "r1", Raw: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	for h := range 3 {
		f.d.Entry(acks[0].Index, &journal.Entry{Source: "m365.ual"}, []*event.Event{{Time: t0.Add(time.Duration(h) * time.Hour),
			Source: "m365.ual", Operation: "MailItemsAccessed", User: "amir@contoso.example", IP: "203.0.113.7", RecordID: "r1"}})
	}
	f.w.Alert(&alert.Alert{Signal: "D1", Level: alert.High, Time: t0, RecordIDs: []string{"r1"}})
	vw, _ := f.login(t, auth.RoleViewer)
	if page := f.get(t, vw, "/ui/search?q="+url.QueryEscape("ip:203.0.113.7")); !strings.Contains(page, `id="count">3<`) {
		t.Errorf("search over the records detection read does not find the 3")
	}
	tl, err := f.d.Timeline(t.Context(), ui.TimelineQuery{Entity: ui.Entity{Kind: "user", Value: "amir@contoso.example"}, Limit: 10})
	if err != nil || tl.Total != 3 || tl.Rows[0].Signal != "D1" {
		t.Errorf("timeline: %d records, signal %q (%v)", tl.Total, tl.Rows[0].Signal, err)
	}
	rs, _ := f.d.Rules(t.Context())
	if len(rs) != 2 || rs[0].ID != "D1" || rs[0].Hits != 1 || rs[0].Fixed || !rs[0].Enabled {
		t.Errorf("rules %+v, want D1 with one hit, enabled, switchable", rs)
	}
	in, err := f.d.Integrity(t.Context())
	if err != nil || !in.Verified || in.Size != 1 {
		t.Errorf("integrity: %+v (%v)", in, err)
	}
	ov, err := f.d.Overview(t.Context())
	if err != nil || ov.Events != 1 || ov.Step != time.Hour || len(ov.Alerts) != 3 || ov.Alerts[0] != 1 || ov.Incidents[0] != 1 {
		t.Errorf("overview: %d entries, step %s, alerts %v, incidents %v (%v)", ov.Events, ov.Step, ov.Alerts, ov.Incidents, err)
	}
	if !ov.Learning.From.Equal(t0) || ov.Learning.Done {
		t.Errorf("learning %+v: from the first record, a day long, not done after 3 hours", ov.Learning)
	}
}

// ualRecords are n MailItemsAccessed records of user from ip, a minute
// apart from start, built on the decoder's fixture; their ids are
// prefix-0, prefix-1, ...
func ualRecords(t *testing.T, n int, prefix, user, ip string, start time.Time) []byte {
	t.Helper()
	line, _, _ := bytes.Cut(fixtureBytes(t, "ual_mailitemsaccessed.jsonl"), []byte("\n"))
	var b bytes.Buffer
	for i := range n {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		rec["Id"] = fmt.Sprintf("%s-%d", prefix, i)
		rec["CreationTime"] = start.Add(time.Duration(i) * time.Minute).Format("2006-01-02T15:04:05")
		rec["UserId"], rec["MailboxOwnerUPN"], rec["ClientIPAddress"], rec["ClientIP"] = user, user, ip, ip
		out, _ := json.Marshal(rec)
		b.Write(out)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (f *uiFixture) ingest(t *testing.T, body []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.hs.URL+"/api/v1/ingest", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.keys[auth.RoleIngest])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d %s", resp.StatusCode, b)
	}
}

// With an index (vigil serve's default) the search and timeline pages
// answer through it: records pushed through the ingest API are found
// without detection having read them, counted in full past the rows
// shown, and a bad query points at its term, escaped.
func TestUISearchThroughIndex(t *testing.T) {
	f := newUIFixtureWith(t, true)
	if f.d.ev != nil {
		t.Fatal("with an index the pages still keep records in memory")
	}
	f.ingest(t, ualRecords(t, 25, "eve", "eve@contoso.example", "198.51.100.9", t0))
	f.ingest(t, ualRecords(t, 5, "alice", "alice@contoso.example", "203.0.113.7", t0.Add(30*time.Minute)))
	f.w.Alert(&alert.Alert{Signal: "D1", Level: alert.High, Time: t0, RecordIDs: []string{"eve-0"}})

	vw, _ := f.login(t, auth.RoleViewer)
	page := f.get(t, vw, "/ui/search?q="+url.QueryEscape("ip:198.51.100.9"))
	if !strings.Contains(page, `id="count">25<`) {
		t.Errorf("the search page does not count the 25 records pushed from 198.51.100.9")
	}
	if !strings.Contains(page, `sev-high">D1<`) {
		t.Errorf("the search page does not mark the record the alert names")
	}
	if strings.Contains(page, "in-memory") || !strings.Contains(page, "investigation index") {
		t.Errorf("the search page's help does not say it searches the index")
	}

	// The language of vigil search: OR, NOT, CIDR; rows bounded, counts
	// not.
	for _, tc := range []struct {
		q           string
		limit, rows int
		total       int
	}{
		{"ip:198.51.100.0/24 OR user:alice@contoso.example", 500, 30, 30},
		{"op:MailItemsAccessed NOT user:eve@contoso.example", 500, 5, 5},
		{"user:eve@contoso.example", 10, 10, 25},
	} {
		res, err := f.d.Search(t.Context(), tc.q, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.q, err)
		}
		sum := 0
		for _, c := range res.Counts {
			sum += c
		}
		if len(res.Rows) != tc.rows || res.Total != tc.total || sum != tc.total || res.Step != time.Hour {
			t.Errorf("%s: %d rows, %d total, %d counted per %s; want %d rows, %d in total and counted per hour",
				tc.q, len(res.Rows), res.Total, sum, res.Step, tc.rows, tc.total)
		}
		if !slices.IsSortedFunc(res.Rows, func(a, b ui.Row) int { return a.Time.Compare(b.Time) }) {
			t.Errorf("%s: rows not in time order", tc.q)
		}
	}

	// A bad query: the column and the term, escaped, nothing run.
	q := "ip:198.51.100.9 OR ipx:<b>1"
	page = f.get(t, vw, "/ui/search?q="+url.QueryEscape(q))
	if !strings.Contains(page, `role="alert">query: at column 20, &#34;ipx:&lt;b&gt;1&#34;: unknown field`) {
		t.Errorf("the page does not point at the bad term, escaped:\n%s", page)
	}
	if strings.Contains(page, "<b>1") {
		t.Errorf("the bad term reached the page unescaped")
	}
	if _, err := f.d.Search(t.Context(), q, 10); !errors.Is(err, ui.ErrQuery) {
		t.Errorf("a bad query: %v, want an ErrQuery", err)
	}

	// The timeline: the whole count past the rows shown, pivots, the
	// alert's mark; around a time, context before and after.
	tl, err := f.d.Timeline(t.Context(), ui.TimelineQuery{Entity: ui.Entity{Kind: "user", Value: "eve@contoso.example"}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if tl.Total != 25 || len(tl.Rows) != 10 || tl.Rows[0].Signal != "D1" || tl.Rows[1].Signal != "" ||
		!slices.Contains(tl.Related, ui.Entity{Kind: "ip", Value: "198.51.100.9"}) || len(tl.Cases) != 0 {
		t.Errorf("timeline of eve: %d in total, %d rows, related %v, cases %v", tl.Total, len(tl.Rows), tl.Related, tl.Cases)
	}
	tl, err = f.d.Timeline(t.Context(), ui.TimelineQuery{Entity: ui.Entity{Kind: "ip", Value: "198.51.100.9"},
		Around: t0.Add(12 * time.Minute), Window: 2 * time.Minute, Context: 3, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var at []string
	for _, r := range tl.Rows {
		at = append(at, r.At)
	}
	if want := []string{"before", "before", "before", "", "", "", "", "", "after", "after", "after"}; tl.Total != 5 || !slices.Equal(at, want) {
		t.Errorf("timeline around 09:12 ±2m: %d in the window, rows %q, want 5 and %q", tl.Total, at, want)
	}
	page = f.get(t, vw, "/ui/timeline?kind=ip&value=198.51.100.9")
	if !strings.Contains(page, `id="total">25<`) || !strings.Contains(page, "eve@contoso.example") {
		t.Errorf("the timeline page does not show the 25 records from 198.51.100.9")
	}
	if _, err := f.d.Timeline(t.Context(), ui.TimelineQuery{Entity: ui.Entity{Kind: "ip", Value: "not-an-ip"}, Limit: 10}); !errors.Is(err, ui.ErrQuery) {
		t.Errorf("a timeline of a malformed address: %v, want an ErrQuery", err)
	}
	// Triage changes are journal entries: the index holds them too.
	an, csrf := f.login(t, auth.RoleAnalyst)
	if code := f.triage(t, an, csrf, "acknowledged", "taking this"); code != http.StatusSeeOther {
		t.Fatalf("analyst triage: %d, want 303", code)
	}
	if res, err := f.d.Search(t.Context(), "source:vigil.triage op:IncidentTriaged", 10); err != nil || res.Total != 1 || res.Rows[0].User != "analyst-key" {
		t.Errorf("search for the triage change: %+v (%v)", res, err)
	}
	if resp, err := vw.Get(f.hs.URL + "/ui/timeline?kind=ip&value=" + url.QueryEscape("<i>x")); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "&lt;i&gt;x") || strings.Contains(string(b), "<i>x") {
			t.Errorf("timeline page of a malformed address: %d, want 400 naming it escaped:\n%s", resp.StatusCode, b)
		}
	}
}

// An index that cannot catch up (here: nobody runs its follower) is not
// waited for without end: the page answers from what is indexed and says
// how many journal entries that leaves out.
func TestUISearchIndexBehind(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "journal")
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(t.Context(), data, journal.Options{Logger: quiet, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	x, err := index.Open(t.Context(), index.Path(data), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	fol, err := index.NewFollower(x, data, j, quiet)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(fixtureBytes(t, "ual_mailitemsaccessed.jsonl"), []byte("\n"))
	if _, err := j.AppendBatch(t.Context(), []journal.Entry{{Source: "m365.ual", Origin: "test", RecordID: "a", Raw: line},
		{Source: "m365.ual", Origin: "test", RecordID: "b", Raw: line}}); err != nil {
		t.Fatal(err)
	}
	d := NewUIData(UIOptions{Journal: j, Index: fol, IndexWait: 50 * time.Millisecond, Logger: quiet})
	res, err := d.Search(t.Context(), "op:MailItemsAccessed", 10)
	if err != nil || res.Total != 0 || !strings.Contains(res.Note, "2 journal entries behind") {
		t.Errorf("search over an index 2 entries behind: %d found, note %q (%v)", res.Total, res.Note, err)
	}
	tl, err := d.Timeline(t.Context(), ui.TimelineQuery{Entity: ui.Entity{Kind: "user", Value: "alice@contoso.com"}, Limit: 10})
	if err != nil || tl.Total != 0 || !strings.Contains(tl.Note, "2 journal entries behind") {
		t.Errorf("timeline over an index 2 entries behind: %d found, note %q (%v)", tl.Total, tl.Note, err)
	}
	if err := fol.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Search(t.Context(), "op:MailItemsAccessed", 10); err != nil || res.Total != 2 || res.Note != "" {
		t.Errorf("after the index caught up: %d found, note %q (%v)", res.Total, res.Note, err)
	}
}

// regroup plays the watcher's refresh: the grouping of alerts as it
// stands replaces the incidents served.
func (f *uiFixture) regroup(t *testing.T, as ...alert.Alert) []*incident.Incident {
	t.Helper()
	incs := incident.Group(incident.DefaultConfig(), as)
	cur := map[string]*incident.Incident{}
	for _, inc := range incs {
		cur[inc.ID] = inc
	}
	f.w.mu.Lock()
	f.w.incidents = cur
	f.w.mu.Unlock()
	return incs
}

// Triage follows an incident into the one it merges into: the survivor
// carries the changes of both, in the order they were made (the latest
// status set on either is its status), each note marked with the incident
// it was written on; an old link opens the survivor. The same after a
// restart, and again when the survivor's own id changes (an earlier alert
// joins it).
func TestTriageFollowsMerges(t *testing.T) {
	f := newUIFixture(t)
	mb := "amir@contoso.example"
	ipA, ipB := alert.Actor{Kind: alert.ActorIP, Value: "198.51.100.1"}, alert.Actor{Kind: alert.ActorIP, Value: "198.51.100.2"}
	d1 := func(at time.Time, rec string, actors ...alert.Actor) alert.Alert {
		return alert.Alert{Time: at, Raised: at, Signal: "D1", Title: "mail read by a new app", Level: alert.High, Mailbox: mb, RecordIDs: []string{rec}, Actors: actors}
	}
	vw, _ := f.login(t, auth.RoleViewer)
	a, b := d1(t0, "a", ipA), d1(t0.Add(2*time.Hour), "b", ipB)
	incs := f.regroup(t, a, b)
	if len(incs) != 2 {
		t.Fatalf("%d incidents before the merge, want 2", len(incs))
	}
	idA, idB := incident.IDOf(&a), incident.IDOf(&b)
	for _, ch := range []ui.Change{
		{Incident: idA, Status: "false_positive", Note: "the migration tool", Actor: "alice", At: t0.Add(3 * time.Hour)},
		{Incident: idB, Status: "acknowledged", Note: "B reads the CFO's mail", Actor: "bob", At: t0.Add(4 * time.Hour)},
		{Incident: idB, Note: "token revoked", Actor: "bob", At: t0.Add(5 * time.Hour)},
	} {
		if err := f.d.Triage(t.Context(), ch); err != nil {
			t.Fatal(err)
		}
	}
	check := func(d *UIData, when string, id string) {
		t.Helper()
		cs, err := d.Cases(t.Context())
		if err != nil || len(cs) != 1 || cs[0].ID != id {
			t.Fatalf("%s: %d cases (%v), want only %s", when, len(cs), err, id)
		}
		c := cs[0]
		var from []string
		for _, h := range c.History {
			from = append(from, h.From)
		}
		// A's own change is now A's too unless A itself was merged away.
		wantFrom := []string{"", idB, idB}
		if id != idA {
			wantFrom[0] = idA
		}
		if c.Status != "acknowledged" || c.Owner != "bob" || len(c.History) != 3 || c.History[1].Note != "B reads the CFO's mail" || !slices.Equal(from, wantFrom) {
			t.Errorf("%s: status %q owner %q, history from %q; want acknowledged by bob (the latest status), A's note and B's two, marked %q",
				when, c.Status, c.Owner, from, wantFrom)
		}
		if old, ok, err := d.Case(t.Context(), idB); err != nil || !ok {
			t.Errorf("%s: the old link to %s opens nothing (%v), want %s", when, idB, err, id)
		} else if old.ID != id {
			t.Errorf("%s: the old link to %s opens %s, want %s", when, idB, old.ID, id)
		}
	}

	// A later alert from both addresses chains B into A, which started first.
	c := d1(t0.Add(6*time.Hour), "c", ipA, ipB)
	if incs := f.regroup(t, a, b, c); len(incs) != 1 || incs[0].ID != idA {
		t.Fatalf("after the merge: %d incidents, want only %s", len(incs), idA)
	}
	check(f.d, "after the merge", idA)
	if page := f.get(t, vw, "/ui/incidents/"+idA); !strings.Contains(page, `<span class="muted from">on `+idB+`, since merged into this incident</span>`) ||
		!strings.Contains(page, `id="status">acknowledged<`) {
		t.Errorf("the incident page does not show the merged status and where the notes came from:\n%s", page)
	}

	// A restart: triage rebuilt from the journal, incidents as they stand.
	d2 := NewUIData(UIOptions{Journal: f.j, Logger: slog.New(slog.DiscardHandler)})
	d2.Watch(f.w)
	if err := f.j.Read(t.Context(), 0, func(i uint64, en *journal.Entry) error { d2.Entry(i, en, nil); return nil }); err != nil {
		t.Fatal(err)
	}
	check(d2, "after a restart", idA)

	// An alert earlier than A's first joins: the incident takes its id;
	// the triage of A and B follows.
	e := d1(t0.Add(-time.Hour), "e", ipA)
	idE := incident.IDOf(&e)
	if incs := f.regroup(t, a, b, c, e); len(incs) != 1 || incs[0].ID != idE {
		t.Fatalf("after an earlier alert joined: %d incidents, want only %s", len(incs), idE)
	}
	check(f.d, "after the id changed", idE)
}

// relay stands for a cluster's stream: what a node appends waits there
// until the journal node's sequencer (sequence) journals it.
type relay struct {
	mu      sync.Mutex
	waiting []journal.Entry
}

func (r *relay) AppendBatch(_ context.Context, es []journal.Entry) ([]journal.Ack, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	acks := make([]journal.Ack, len(es))
	for i, e := range es {
		e.Raw = bytes.Clone(e.Raw)
		r.waiting = append(r.waiting, e)
		acks[i] = journal.Ack{Index: uint64(len(r.waiting) - 1)}
	}
	return acks, nil
}
func (r *relay) Size() uint64 { return 0 }
func (r *relay) Read(context.Context, uint64, func(uint64, *journal.Entry) error) error {
	return errors.New("relay: not read")
}
func (r *relay) Checkpoint(context.Context) (journal.Checkpoint, error) {
	return journal.Checkpoint{}, errors.New("relay: no checkpoint")
}
func (r *relay) Close() error { return nil }

// sequence journals what waits in the stream and gives the journal node's
// pages the new entries, as its watcher does.
func (r *relay) sequence(t *testing.T, j *journal.Journal, d *UIData) {
	t.Helper()
	r.mu.Lock()
	es := r.waiting
	r.waiting = nil
	r.mu.Unlock()
	from := j.Size()
	if len(es) > 0 {
		if _, err := j.AppendBatch(t.Context(), es); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Read(t.Context(), from, func(i uint64, en *journal.Entry) error { d.Entry(i, en, nil); return nil }); err != nil {
		t.Fatal(err)
	}
}

// In a cluster, triage goes through the stream: a change made on an
// ingest node is journaled by the journal node (never in the ingest
// node's own journal), shown on both nodes, applied once; the journal
// node's own changes take the same way; the ingest node shows the last
// known triage when the journal node does not answer; and the journal
// read again from the start holds every change.
func TestTriageThroughTheStream(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	open := func() *journal.Journal {
		j, err := journal.Open(t.Context(), filepath.Join(t.TempDir(), "journal"), journal.Options{Logger: quiet, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		return j
	}
	withIncident := func(d *UIData, j *journal.Journal) {
		w := NewWatcher(j, WatcherOptions{Logger: quiet, OnEntry: d.Entry})
		w.Incident(detect.Update{Kind: detect.Opened, Incident: &incident.Incident{ID: "INC-1", Title: "forged token",
			Severity: alert.Critical, Raised: t0, FirstSeen: t0, LastSeen: t0}})
		d.Watch(w)
	}
	stream := &relay{}
	jj, ij := open(), open() // the journal node's journal; the ingest node's own (unused in a cluster)
	jd := NewUIData(UIOptions{Journal: jj, ChangeLog: stream, Logger: quiet})
	withIncident(jd, jj)
	journalUp := true
	forward := func(ctx context.Context, q JournalQuery) (JournalAnswer, error) {
		if !journalUp {
			return JournalAnswer{}, ErrNoJournalNode
		}
		a, ok := jd.AnswerJournalQuery(ctx, q)
		if !ok {
			return JournalAnswer{Status: http.StatusNotFound}, nil
		}
		return a, nil
	}
	id := NewUIData(UIOptions{Journal: ij, ChangeLog: stream, Forward: forward, Logger: quiet})
	withIncident(id, ij)
	want := func(d *UIData, node, status, owner string, notes ...string) {
		t.Helper()
		c, ok, err := d.Case(t.Context(), "INC-1")
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", node, ok, err)
		}
		var got []string
		for _, h := range c.History {
			got = append(got, h.Note)
		}
		if c.Status != status || c.Owner != owner || !slices.Equal(got, notes) {
			t.Errorf("%s: status %q owner %q notes %q; want %q %q %q", node, c.Status, c.Owner, got, status, owner, notes)
		}
	}

	if err := id.Triage(t.Context(), ui.Change{Incident: "INC-1", Status: "acknowledged", Note: "on it", Actor: "ana", At: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if ij.Size() != 0 || len(stream.waiting) != 1 {
		t.Fatalf("the ingest node's change: %d entries in its own journal, %d in the stream; want 0 and 1", ij.Size(), len(stream.waiting))
	}
	want(id, "ingest node before the journal node has it", "acknowledged", "ana", "on it")
	want(jd, "journal node before it journaled it", "open", "")
	stream.sequence(t, jj, jd)
	want(jd, "journal node", "acknowledged", "ana", "on it")
	want(id, "ingest node", "acknowledged", "ana", "on it")

	if err := jd.Triage(t.Context(), ui.Change{Incident: "INC-1", Status: "resolved", Note: "token revoked", Actor: "bo", At: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if jj.Size() != 1 {
		t.Fatalf("the journal node appended its change to its journal directly (%d entries), not through the stream", jj.Size())
	}
	stream.sequence(t, jj, jd)
	want(jd, "journal node after its own change came back", "resolved", "ana", "on it", "token revoked")
	want(id, "ingest node after the journal node's change", "resolved", "ana", "on it", "token revoked")

	journalUp = false
	want(id, "ingest node, journal node down", "resolved", "ana", "on it", "token revoked")
	if err := id.Triage(t.Context(), ui.Change{Incident: "INC-1", Status: "acknowledged", Note: "reopened", Actor: "ana", At: t0.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	want(id, "ingest node's change while the journal node is down", "acknowledged", "ana", "on it", "token revoked", "reopened")
	journalUp = true
	want(id, "ingest node, the journal node back without the change", "acknowledged", "ana", "on it", "token revoked", "reopened")
	stream.sequence(t, jj, jd)
	want(id, "ingest node, the change journaled", "acknowledged", "ana", "on it", "token revoked", "reopened")
	if len(id.pending) != 0 {
		t.Errorf("%d changes still pending on the ingest node once journaled", len(id.pending))
	}

	// The journal read again from the start (a restart, or a journal
	// rebuilt from the stream): every change, once.
	d2 := NewUIData(UIOptions{Journal: jj, Logger: quiet})
	withIncident(d2, jj)
	if err := jj.Read(t.Context(), 0, func(i uint64, en *journal.Entry) error { d2.Entry(i, en, nil); return nil }); err != nil {
		t.Fatal(err)
	}
	want(d2, "the journal replayed", "acknowledged", "ana", "on it", "token revoked", "reopened")
}
