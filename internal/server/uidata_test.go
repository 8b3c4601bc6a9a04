package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
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
	hs   *httptest.Server
	keys map[auth.Role]string
}

func newUIFixture(t *testing.T) *uiFixture {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &uiFixture{j: j, keys: map[auth.Role]string{}}
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin} {
		if f.keys[r], _, err = ks.Create(string(r)+"-key", r); err != nil {
			t.Fatal(err)
		}
	}
	f.d = NewUIData(UIOptions{Journal: j, Rules: []ui.Rule{{ID: "D1", Kind: "behaviour", Loaded: true, Enabled: true}},
		Learning: 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
	f.w = NewWatcher(j, WatcherOptions{Logger: slog.New(slog.DiscardHandler), OnEntry: f.d.Entry, OnAlert: f.d.Alert})
	f.d.Watch(f.w)
	f.w.Incident(detect.Update{Kind: detect.Opened, Incident: &incident.Incident{ID: "INC-1", Title: "forged token",
		Severity: alert.Critical, Raised: t0, FirstSeen: t0, LastSeen: t0.Add(time.Hour)}})
	s, err := New(Config{}, Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, filepath.Join(dir, "q.jsonl")), Views: f.w, UI: f.d,
		Logger: slog.New(slog.DiscardHandler)})
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
	if len(rs) != 1 || rs[0].Hits != 1 || !rs[0].Fixed {
		t.Errorf("rules %+v, want D1 with one hit, fixed", rs)
	}
	if err := f.d.SetRule(t.Context(), "D1", false, "admin"); !errors.Is(err, ui.ErrUnsupported) {
		t.Errorf("SetRule: %v, want ErrUnsupported", err)
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
