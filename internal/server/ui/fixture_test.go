package ui_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
)

// Payloads put where log fields land: each would run script, navigate or
// inject markup if any context left it unescaped.
const (
	xssUA      = `Mozilla/5.0 <script>window.__pwned=1</script>`
	xssUPN     = `"><img src=x onerror="window.__pwned=2">@contoso.example`
	xssFolder  = `Inbox</td><svg onload="location='/ui/logout'">`
	xssSubject = `Invoice <iframe srcdoc="<script>parent.__pwned=3</script>"></iframe>`
	xssMsgID   = `<a@b>'"><script>window.__pwned=4</script>`
	xssIP      = `javascript:window.__pwned=5`
	xssTitle   = `Mail read by </title><script>window.__pwned=6</script>`
)

// payloads must never appear verbatim: each holds markup. (xssIP holds
// none; it is harmless as text and checked where it becomes a link.)
var payloads = []string{xssUA, xssUPN, xssFolder, xssSubject, xssMsgID, xssTitle}

// PayloadIncident is the incident whose every field is hostile.
const payloadIncident = "INC-payload"

// hostile returns events and an incident whose every log-derived field
// carries a payload.
func hostile(at time.Time) ([]*event.Event, *incident.Incident) {
	b := event.NewBuilder()
	var evs []*event.Event
	for i := range 3 {
		e := &event.Event{Time: at.Add(time.Duration(i) * time.Minute), Source: "m365.ual", Operation: "MailItemsAccessed",
			User: xssUPN, IP: xssIP, UserAgent: xssUA, Mailbox: xssUPN, Folders: []string{xssFolder},
			MessageIDs: []string{xssMsgID}, AppID: `"onmouseover="window.__pwned=7`, RecordID: "rec-x" + string(rune('0'+i))}
		b.AddString("Subject", []byte(xssSubject))
		b.Finish(e)
		evs = append(evs, e)
	}
	first, last := at, at.Add(2*time.Minute)
	inc := &incident.Incident{ID: payloadIncident, Severity: alert.High, Title: xssTitle, Signals: []string{"D1"},
		Score: 60, Confidence: "One signal about " + xssUPN,
		Reasons: []incident.Reason{{Signal: "D1", Level: alert.High, Evidence: xssTitle, Count: 1, Counts: true, Points: 60,
			Means: "read by " + xssUA, Benign: "unless " + xssFolder}},
		Actors:    incident.Actors{IPs: []string{xssIP}, Users: []string{xssUPN}, Apps: []string{`"onmouseover="window.__pwned=7`}},
		Mailboxes: []string{xssUPN}, FirstSeen: first, LastSeen: last, Raised: first, AlertCount: 1,
		Timeline: []incident.TimelineEntry{{First: first, Last: last, Count: 1, Signal: "D1", Title: xssTitle, Level: alert.High, Mailbox: xssUPN}},
		Impact: incident.Impact{Mailboxes: []string{xssUPN}, Messages: []string{xssMsgID}, MessageCount: 1, FolderCount: 1, Accesses: 3,
			FirstAccess: &first, LastAccess: &last, IncompleteReasons: []string{xssFolder},
			PerMailbox: []incident.MailboxImpact{{Mailbox: xssUPN, MessageCount: 1, Accesses: 3, FirstAccess: first, LastAccess: last,
				Folders: []incident.FolderImpact{{Path: xssFolder, MessageCount: 1, FirstAccess: first, LastAccess: last}}}},
			Reads: []incident.MessageRead{{Mailbox: xssUPN, Folder: xssFolder, MessageID: "=HYPERLINK(\"http://x\")" + xssMsgID,
				FirstAccess: first, LastAccess: last, Count: 3, IP: xssIP, ClientApp: xssUA}},
			AccessTimes: []time.Time{first, first.Add(time.Minute), last}}}
	return evs, inc
}

type recorder struct {
	mu      sync.Mutex
	changes []ui.Change
}

func (r *recorder) record(_ context.Context, c ui.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
	return nil
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	u     *ui.UI
	keys  map[auth.Role]string
	store *auth.Store
	rec   *recorder
	now   *time.Time
	tests []string // sinks test-delivered
}

func newEnv(t *testing.T, secure bool) *env {
	t.Helper()
	ks, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, keys: map[auth.Role]string{}, store: ks, rec: &recorder{}}
	for _, r := range []auth.Role{auth.RoleIngest, auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin} {
		plain, _, err := ks.Create(string(r)+`-<b>key</b>`, r)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[r] = plain
	}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	evs, inc := hostile(at)
	data := memdata.New(memdata.Options{Incidents: []*incident.Incident{inc}, Events: evs,
		Alerts: []alert.Alert{{Time: at, Signal: "D1", Level: alert.High, Title: xssTitle, RecordIDs: []string{"rec-x0"}}},
		Rules: []ui.Rule{{ID: "D1", Title: "Token no sign-in issued", Level: "high", Kind: "behaviour", Loaded: true, Enabled: true},
			{ID: "bad-rule", Title: xssTitle, Level: "low", Kind: "sigma", Refused: xssFolder}},
		Sinks:      []ui.Sink{{Name: "soc-webhook", Kind: "webhook", Target: "https://soc.example/hook?x=" + xssFolder}},
		Collectors: []ui.Collector{{Name: "m365", Source: "m365.ual", Configured: true, Detail: xssUA}},
		Learning:   ui.Learning{From: at.Add(-14 * 24 * time.Hour), Until: at.Add(-7 * 24 * time.Hour), Done: true},
		Record:     e.rec.record,
		TestSink: func(_ context.Context, name string) error {
			e.tests = append(e.tests, name)
			return nil
		}})
	now := time.Now()
	e.now = &now
	e.u, err = ui.New(ui.Options{Keys: ks, Data: data, Secure: secure, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return *e.now }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, e.u.Handler())
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// client is a browser-like client: a cookie jar and no redirects followed.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) get(c *http.Client, path string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) post(c *http.Client, path string, form url.Values, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login logs a fresh client in with the role's API key.
func (e *env) login(r auth.Role) *http.Client {
	e.t.Helper()
	c := e.client()
	resp, body := e.post(c, "/ui/login", url.Values{"key": {e.keys[r]}})
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login as %s: %d %s", r, resp.StatusCode, body)
	}
	return c
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (e *env) csrf(c *http.Client) string {
	e.t.Helper()
	_, body := e.get(c, "/ui/")
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no CSRF token on the overview:\n%s", body)
	}
	return m[1]
}
