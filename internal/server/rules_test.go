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
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/source"
)

// postRule posts the Rules page's switch form; csrf "" leaves the token out.
func (f *uiFixture) postRule(t *testing.T, c *http.Client, csrf, id, enabled, reason string) (int, string) {
	t.Helper()
	form := url.Values{"enabled": {enabled}, "reason": {reason}}
	if csrf != "" {
		form.Set("csrf", csrf)
	}
	req, _ := http.NewRequest("POST", f.hs.URL+"/ui/rules/"+id, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.hs.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// api calls the JSON API with a role's key.
func (f *uiFixture) api(t *testing.T, method, path string, r auth.Role, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, f.hs.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.keys[r])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// entries returns the journal's entries from index from.
func entries(t *testing.T, j journal.Log, from uint64) []journal.Entry {
	t.Helper()
	var out []journal.Entry
	if err := j.Read(t.Context(), from, func(_ uint64, en *journal.Entry) error {
		out = append(out, journal.Entry{Source: en.Source, RecordID: en.RecordID, Raw: append([]byte(nil), en.Raw...)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// readSwitches plays detection's part: the watcher reads the journal's
// new entries (the fixture's watcher does not run).
func (f *uiFixture) readSwitches(t *testing.T) {
	t.Helper()
	p := detect.New(detect.Config{Mute: f.sw.Mute}, nil)
	dec := source.NewDecoder(nil, nil)
	if err := f.j.Read(t.Context(), f.w.Offset(), func(i uint64, en *journal.Entry) error {
		d := &decoded{index: i, en: en}
		f.w.decode(p, dec, d)
		f.w.consume(p, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func ruleOf(t *testing.T, d ui.Data, id string) ui.Rule {
	t.Helper()
	rs, err := d.Rules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rs, func(r ui.Rule) bool { return r.ID == id })
	if i < 0 {
		t.Fatalf("no rule %s among %+v", id, rs)
	}
	return rs[i]
}

// Only an admin switches rules, on the page (with the form's CSRF token)
// and through the API; each switch is one journal entry naming who, when
// and why, pending until detection reads it, then shown with who and when.
func TestRuleSwitchRolesAndJournal(t *testing.T) {
	f := newUIFixture(t)
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleAnalyst} {
		c, csrf := f.login(t, r)
		if code, body := f.postRule(t, c, csrf, "D1", "false", ""); code != http.StatusForbidden || !strings.Contains(body, "role "+string(r)+" may not do this") {
			t.Errorf("%s disabling on the page: %d, want 403 naming the role", r, code)
		}
		if code, _ := f.api(t, "POST", "/api/v1/rules/D1/disable", r, ""); code != http.StatusForbidden {
			t.Errorf("%s disabling through the API: %d, want 403", r, code)
		}
		if code, _ := f.api(t, "GET", "/api/v1/rules", r, ""); code != http.StatusOK {
			t.Errorf("%s listing the rules: %d, want 200", r, code)
		}
		if page := f.get(t, c, "/ui/rules"); strings.Contains(page, `action="/ui/rules/D1"`) {
			t.Errorf("%s is offered the switch form", r)
		}
	}
	if code, _ := f.api(t, "POST", "/api/v1/rules/D1/disable", auth.RoleIngest, ""); code != http.StatusForbidden {
		t.Errorf("ingest key disabling: %d, want 403", code)
	}
	ad, csrf := f.login(t, auth.RoleAdmin)
	if code, body := f.postRule(t, ad, "", "D1", "false", ""); code != http.StatusForbidden || !strings.Contains(body, "CSRF token is missing") {
		t.Errorf("admin without the CSRF token: %d, want 403", code)
	}
	if code, _ := f.postRule(t, ad, "not-the-token", "D1", "false", ""); code != http.StatusForbidden {
		t.Errorf("admin with a wrong CSRF token: %d, want 403", code)
	}
	if f.j.Size() != 0 {
		t.Fatalf("refused switches reached the journal (%d entries)", f.j.Size())
	}

	// The admin disables D1 on the page, with a reason carrying markup.
	reason := `noisy after the <script>alert(1)</script> roll-out`
	code, _ := f.postRule(t, ad, csrf, "D1", "false", reason)
	if code != http.StatusSeeOther {
		t.Fatalf("admin disabling: %d, want 303", code)
	}
	es := entries(t, f.j, 0)
	var rec ruleRecord
	if len(es) != 1 || es[0].Source != RuleSource || json.Unmarshal(es[0].Raw, &rec) != nil ||
		rec.Operation != "RuleDisabled" || rec.Rule != "D1" || rec.User != "admin-key" || rec.Reason != reason || rec.Time.IsZero() {
		t.Fatalf("journal holds %+v, want one RuleDisabled of D1 by admin-key with the reason", es)
	}
	page := f.get(t, ad, "/ui/rules?done=disabled")
	if !strings.Contains(page, "Rule disabled: recorded in the journal") || !strings.Contains(page, `class="badge warn pending">disabling<`) {
		t.Errorf("the page does not show the switch pending:\n%s", page)
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Errorf("the reason reached the page unescaped")
	}
	if r := ruleOf(t, f.d, "D1"); !r.Enabled || r.Pending == nil || r.Pending.Enabled || r.Pending.Index != 0 {
		t.Errorf("before detection read it: %+v, want enabled with a pending disable at entry 0", r)
	}
	// A second disable while the first is pending is moot, on the page
	// and through the API; nothing more is journaled.
	if code, _ := f.postRule(t, ad, csrf, "D1", "false", ""); code != http.StatusConflict {
		t.Errorf("disabling twice on the page: %d, want 409", code)
	}
	if code, body := f.api(t, "POST", "/api/v1/rules/D1/disable", auth.RoleAdmin, ""); code != http.StatusConflict || !strings.Contains(body, "already disabled") {
		t.Errorf("disabling twice through the API: %d %s, want 409", code, body)
	}

	f.readSwitches(t)
	r := ruleOf(t, f.d, "D1")
	if r.Enabled || r.Pending != nil || r.Change.Actor != "admin-key" || r.Change.Reason != reason || r.Change.Index != 0 {
		t.Errorf("after detection read it: %+v, want disabled by admin-key", r)
	}
	page = f.get(t, ad, "/ui/rules")
	if !strings.Contains(page, `class="badge st-lagging">disabled<`) || !strings.Contains(page, `<span class="muted">by <span class="who">admin-key</span>`) ||
		!strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(page, ">Enable<") {
		t.Errorf("the page does not show D1 disabled by admin-key with the escaped reason:\n%s", page)
	}
	// Detection drops D1's alerts now, and counts them.
	if !f.sw.Mute(&alert.Alert{Signal: "D1"}) || f.sw.Mute(&alert.Alert{Signal: "D2"}) {
		t.Errorf("Mute does not drop D1 alone")
	}
	if r := ruleOf(t, f.d, "D1"); r.Suppressed != 1 {
		t.Errorf("suppressed %d, want 1", r.Suppressed)
	}

	// Through the API: refusals, then the admin enables D1 again.
	for _, tc := range []struct {
		path, body string
		code       int
		says       string
	}{
		{"/api/v1/rules/nope/enable", "", http.StatusNotFound, "not found"},
		{"/api/v1/rules/bad-rule/disable", "", http.StatusConflict, "refused at start"},
		{"/api/v1/rules/D1/enable", `{"reason": "` + strings.Repeat("x", ui.MaxRuleReason+1) + `"}`, http.StatusBadRequest, "at most"},
		{"/api/v1/rules/D1/enable", `{"why": "x"}`, http.StatusBadRequest, "unknown field"},
	} {
		if code, body := f.api(t, "POST", tc.path, auth.RoleAdmin, tc.body); code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("POST %s: %d %s, want %d saying %q", tc.path, code, body, tc.code, tc.says)
		}
	}
	if f.j.Size() != 1 {
		t.Fatalf("refused switches reached the journal (%d entries)", f.j.Size())
	}
	code, body := f.api(t, "POST", "/api/v1/rules/D1/enable", auth.RoleAdmin, `{"reason": "tuned"}`)
	var sw apiSwitch
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &sw) != nil || !sw.Enabled || sw.JournalIndex != 1 || sw.Actor != "admin-key" {
		t.Fatalf("admin enabling through the API: %d %s, want 202 with the switch at entry 1", code, body)
	}
	code, body = f.api(t, "GET", "/api/v1/rules", auth.RoleViewer, "")
	var list struct{ Rules []apiRule }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Rules) != 2 {
		t.Fatalf("GET /api/v1/rules: %d %s", code, body)
	}
	if d1 := list.Rules[0]; d1.ID != "D1" || d1.Enabled || d1.Suppressed != 1 || d1.Changed == nil || d1.Changed.Enabled ||
		d1.Pending == nil || !d1.Pending.Enabled || d1.Pending.Reason != "tuned" {
		t.Errorf("API lists D1 as %+v (changed %+v, pending %+v), want disabled with a pending enable", d1, d1.Changed, d1.Pending)
	}
	if bad := list.Rules[1]; bad.Loaded || bad.Refused != "unknown modifier" {
		t.Errorf("API lists the refused rule as %+v", bad)
	}
	f.readSwitches(t)
	if r := ruleOf(t, f.d, "D1"); !r.Enabled || r.Pending != nil || r.Change.Reason != "tuned" || r.Suppressed != 1 {
		t.Errorf("after detection read the enable: %+v", r)
	}
	if f.sw.Mute(&alert.Alert{Signal: "D1"}) {
		t.Errorf("D1 still muted after it was enabled")
	}
	if page := f.get(t, ad, "/ui/rules"); !strings.Contains(page, `re-enabled by <span class="who">admin-key</span>`) || !strings.Contains(page, `+ <span class="suppressed">1</span> suppressed`) {
		t.Errorf("the page does not show D1 re-enabled with its suppressed hit:\n%s", page)
	}
	// The switches are searchable journal entries, but no log source of
	// the overview.
	if res, err := f.d.Search(t.Context(), "source:vigil.rules", 10); err != nil || res.Total != 2 {
		t.Errorf("search for the switches: %d found (%v), want 2", res.Total, err)
	}
	if ov, _ := f.d.Overview(t.Context()); len(ov.Ingest) != 0 || len(ov.Sources) != 0 {
		t.Errorf("rule switches reached the overview's sources: %+v", ov.Sources)
	}

	// A server without switches keeps its rules fixed.
	d := NewUIData(UIOptions{Journal: f.j, Rules: []ui.Rule{{ID: "D1", Loaded: true, Enabled: true}}, Logger: slog.New(slog.DiscardHandler)})
	d.Watch(f.w)
	if err := d.SetRule(t.Context(), &ui.RuleChange{Rule: "D1"}); !errors.Is(err, ui.ErrUnsupported) {
		t.Errorf("SetRule without switches: %v, want ErrUnsupported", err)
	}
	if r := ruleOf(t, d, "D1"); !r.Fixed {
		t.Errorf("without switches D1 is not fixed: %+v", r)
	}
}

const cutRule = "bbbbbbbb-0000-4000-8000-000000000001"

// cutRig is a journal watched by a pipeline with one Sigma rule on every
// mail read, whose alerts make an incident, and a state directory.
type cutRig struct {
	j     *journal.Journal
	state string
	rules []ui.Rule
}

func (r *cutRig) ruleset(t *testing.T) *sigma.Ruleset {
	t.Helper()
	rs, refused, err := sigma.Load(fstest.MapFS{"r.yml": {Data: fmt.Appendf(nil, `title: mail read
id: %s
level: high
logsource: {product: m365, service: exchange}
detection:
  sel: {Operation: MailItemsAccessed}
  condition: sel
`, cutRule)}}, sigma.Options{}, ".")
	if err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	return rs
}

// start is a server's start: new switches, UI data and watcher over the
// journal and the state directory.
func (r *cutRig) start(t *testing.T) (*Watcher, *UIData, *RuleSwitches) {
	t.Helper()
	sw := NewRuleSwitches()
	quiet := slog.New(slog.DiscardHandler)
	d := NewUIData(UIOptions{Journal: r.j, Rules: r.rules, Switches: sw, Logger: quiet})
	ic := incident.Config{Window: 24 * time.Hour, SingleSignals: []string{cutRule}, MinLevel: "medium"}
	w := NewWatcher(r.j, WatcherOptions{
		NewPipeline: func(s detect.Sink) *detect.Pipeline {
			return detect.New(detect.Config{Rules: r.ruleset(t), Incidents: &ic, TempDir: r.state, Mute: sw.Mute}, s)
		},
		Logger: quiet, StateDir: r.state, Refresh: 20 * time.Millisecond, SnapshotEvery: time.Hour,
		OnEntry: d.Entry, OnAlert: d.Alert, Rules: sw,
	})
	d.Watch(w)
	return w, d, sw
}

// catchUp runs the watcher until it has read the journal, then stops it
// gracefully (a snapshot).
func catchUp(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for w.Ready() != nil || w.Lag() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("detection did not catch up: %v, lag %d", w.Ready(), w.Lag())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("watcher stopped with %v", err)
	}
}

// alertedRecords are the records the rule's kept alerts name, sorted.
func alertedRecords(w *Watcher) []string {
	var out []string
	for _, a := range w.AlertList() {
		if a.Signal == cutRule {
			out = append(out, a.RecordIDs...)
		}
	}
	slices.Sort(out)
	return out
}

func recordIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// A rule disabled at journal entry N raises alerts for the records before
// N and none for those after, though they are minutes apart (within the
// reordering window) and arrive in one stream; the incident holds only the
// alerts before. A restart keeps the rule disabled (from the snapshot,
// and from the journal when there is no snapshot), and enabling it brings
// its alerts back from the entry of the switch.
func TestRuleSwitchCutsAtItsJournalEntry(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	r := &cutRig{j: j, state: filepath.Join(dir, "detect"), rules: []ui.Rule{{ID: cutRule, Kind: "sigma", Level: "high", Loaded: true, Enabled: true}}}
	appendRecords := func(prefix string, n int, start time.Time) {
		t.Helper()
		dec := source.NewDecoder(nil, nil)
		var es []journal.Entry
		for _, line := range bytes.Split(bytes.TrimSpace(ualRecords(t, n, prefix, "eve@contoso.example", "198.51.100.9", start)), []byte("\n")) {
			evs, err := dec.Decode(line, event.Origin{File: "test"})
			if err != nil || len(evs) != 1 {
				t.Fatalf("record: %d events (%v)", len(evs), err)
			}
			es = append(es, source.Entry(evs[0]))
		}
		if _, err := j.AppendBatch(t.Context(), es); err != nil {
			t.Fatal(err)
		}
	}
	setRule := func(d *UIData, enabled bool, reason string) uint64 {
		t.Helper()
		ch := ui.RuleChange{Rule: cutRule, Enabled: enabled, Actor: "admin-key", Reason: reason}
		if err := d.SetRule(t.Context(), &ch); err != nil {
			t.Fatal(err)
		}
		return ch.Index
	}
	incidentAlerts := func(w *Watcher) int {
		t.Helper()
		incs := w.IncidentList()
		if len(incs) != 1 {
			t.Fatalf("%d incidents, want 1", len(incs))
		}
		return incs[0].AlertCount
	}

	// Ten reads, the switch at entry 10, ten more reads a minute apart
	// from the first ten: one stream detection reads in one go.
	w, d, _ := r.start(t)
	appendRecords("a", 10, t0)
	if n := setRule(d, false, "noisy"); n != 10 {
		t.Fatalf("the switch is entry %d, want 10", n)
	}
	appendRecords("b", 10, t0.Add(10*time.Minute))
	catchUp(t, w)
	if got := alertedRecords(w); !slices.Equal(got, recordIDs("a", 10)) {
		t.Fatalf("alerts on %v, want the 10 records before the switch", got)
	}
	if n := incidentAlerts(w); n != 10 {
		t.Errorf("the incident holds %d alerts, want the 10 before the switch", n)
	}
	rule := ruleOf(t, d, cutRule)
	if rule.Enabled || rule.Suppressed != 10 || rule.Hits != 10 || rule.Change.Index != 10 || rule.Change.Reason != "noisy" {
		t.Errorf("after the run: %+v, want disabled at entry 10 with 10 hits and 10 suppressed", rule)
	}

	// A restart resumes from the snapshot with the rule still disabled.
	w, d, sw := r.start(t)
	appendRecords("c", 5, t0.Add(20*time.Minute))
	catchUp(t, w)
	if w.Resumed() != 21 {
		t.Fatalf("the restart resumed from %d, want the snapshot at 21", w.Resumed())
	}
	if got := alertedRecords(w); !slices.Equal(got, recordIDs("a", 10)) {
		t.Errorf("after a restart, alerts on %v, want still only the 10 before the switch", got)
	}
	if ch, muted, ok := sw.State(cutRule); !ok || ch.Enabled || ch.Actor != "admin-key" || muted != 15 {
		t.Errorf("after a restart the switch is %+v (ok %v), %d suppressed; want disabled by admin-key, 15 suppressed", ch, ok, muted)
	}

	// Enabled again: alerts from the entry of the switch on.
	at := setRule(d, true, "")
	appendRecords("d", 3, t0.Add(25*time.Minute))
	catchUp(t, w)
	if want := append(recordIDs("a", 10), recordIDs("d", 3)...); !slices.Equal(alertedRecords(w), want) {
		t.Errorf("after enabling at entry %d, alerts on %v, want %v", at, alertedRecords(w), want)
	}
	if n := incidentAlerts(w); n != 13 {
		t.Errorf("the incident holds %d alerts, want 13", n)
	}

	// Without a snapshot, the journal alone rebuilds the same: a full
	// replay applies both switches where they stand.
	if err := os.Remove(filepath.Join(r.state, snapshotFile)); err != nil {
		t.Fatal(err)
	}
	w, d, _ = r.start(t)
	catchUp(t, w)
	if w.Resumed() != 0 {
		t.Fatalf("resumed from %d without a snapshot", w.Resumed())
	}
	if want := append(recordIDs("a", 10), recordIDs("d", 3)...); !slices.Equal(alertedRecords(w), want) {
		t.Errorf("a full replay alerts on %v, want %v", alertedRecords(w), want)
	}
	if rule := ruleOf(t, d, cutRule); !rule.Enabled || rule.Suppressed != 15 || rule.Hits != 13 || rule.Change.Index != at {
		t.Errorf("after a full replay: %+v, want enabled at entry %d, 13 hits and 15 suppressed", rule, at)
	}
}
