package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
)

var pages = []string{"/ui/", "/ui/incidents", "/ui/incidents/" + payloadIncident,
	"/ui/timeline?kind=ip&value=" + url.QueryEscape(xssIP), "/ui/timeline?kind=user&value=" + url.QueryEscape(xssUPN),
	"/ui/search?q=" + url.QueryEscape("op:MailItemsAccessed"), "/ui/rules", "/ui/integrity", "/ui/admin"}

func TestPagesNeedASession(t *testing.T) {
	e := newEnv(t, false)
	c := e.client()
	for _, p := range pages {
		resp, _ := e.get(c, p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
			t.Errorf("%s without a session: %d → %q, want 303 to /ui/login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, body := e.post(c, "/ui/incidents/"+payloadIncident+"/triage", url.Values{"status": {"resolved"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not logged in") {
		t.Errorf("triage without a session: %d, want 401 not logged in", resp.StatusCode)
	}
}

func TestOneTimeLoginLink(t *testing.T) {
	e := newEnv(t, true)
	tok := e.u.LoginToken(auth.RoleAnalyst)
	c := e.client()
	// Opening the link (as a chat client's previewer does) spends nothing.
	for range 2 {
		resp, body := e.get(c, "/ui/login?token="+tok)
		if resp.StatusCode != 200 || !strings.Contains(body, `name="token" value="`+tok+`"`) || len(resp.Cookies()) != 0 {
			t.Fatalf("opening the login link: %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
	}
	resp, _ := e.post(c, "/ui/login", url.Values{"token": {tok}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login link: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || !ck[0].Secure || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/ui/" {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure (TLS), SameSite=Strict, Path /ui/", ck)
	}
	if resp, body := e.get(c, "/ui/incidents"); resp.StatusCode != 200 || !strings.Contains(body, payloadIncident) ||
		resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("after login: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	// Spent: a second use (another browser) is refused with its reason.
	resp, body := e.post(e.client(), "/ui/login", url.Values{"token": {tok}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already or has expired") {
		t.Errorf("second use of the link: %d %s", resp.StatusCode, body)
	}
	// Expired before use.
	tok2 := e.u.LoginToken(auth.RoleViewer)
	*e.now = e.now.Add(16 * time.Minute)
	if resp, _ := e.post(e.client(), "/ui/login", url.Values{"token": {tok2}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired link: %d, want 401", resp.StatusCode)
	}
	// A forged token, and a real one from another origin, are refused.
	if resp, _ := e.post(e.client(), "/ui/login", url.Values{"token": {"x" + tok[1:]}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: %d, want 401", resp.StatusCode)
	}
	tok3 := e.u.LoginToken(auth.RoleViewer)
	if resp, _ := e.post(e.client(), "/ui/login", url.Values{"token": {tok3}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site token login: %d, want 403", resp.StatusCode)
	}
}

func TestKeyLogin(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct {
		key, why string
	}{
		{"", "no API key"},
		{"vgl_000000000000_nope", "invalid API key"},
		{e.keys[auth.RoleIngest], "an ingest key cannot log in"},
	} {
		resp, body := e.post(e.client(), "/ui/login", url.Values{"key": {tc.key}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, tc.why) {
			t.Errorf("login with %q: %d, want 401 %q", tc.key, resp.StatusCode, tc.why)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("refused login set a cookie")
		}
	}
	resp, _ := e.post(e.client(), "/ui/login", url.Values{"key": {e.keys[auth.RoleViewer]}})
	if ck := resp.Cookies(); len(ck) != 1 || ck[0].Secure || !ck[0].HttpOnly {
		t.Errorf("cookie without TLS: %+v, want HttpOnly and not Secure", ck)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("HSTS without TLS: %q", h)
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleAnalyst)
	tok := e.csrf(c)
	resp, _ := e.post(c, "/ui/incidents/"+payloadIncident+"/triage", url.Values{"csrf": {tok}, "status": {"resolved"}},
		"Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	resp, _ = e.post(e.client(), "/ui/login", url.Values{"key": {e.keys[auth.RoleAdmin]}}, "Origin", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin login: %d, want 403", resp.StatusCode)
	}
	if len(e.rec.changes) != 0 {
		t.Errorf("a refused request was journaled: %+v", e.rec.changes)
	}
}

func TestTriageNeedsCSRFAndRole(t *testing.T) {
	e := newEnv(t, false)
	path := "/ui/incidents/" + payloadIncident + "/triage"
	an := e.login(auth.RoleAnalyst)
	tok := e.csrf(an)
	for _, tc := range []struct {
		name, csrf string
	}{{"missing", ""}, {"wrong", tok[:len(tok)-2] + "xx"}} {
		resp, body := e.post(an, path, url.Values{"csrf": {tc.csrf}, "status": {"resolved"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF token is missing or wrong") {
			t.Errorf("%s CSRF token: %d, want 403 naming the token", tc.name, resp.StatusCode)
		}
	}
	// Another session's token is not this session's.
	other := e.csrf(e.login(auth.RoleAnalyst))
	if resp, _ := e.post(an, path, url.Values{"csrf": {other}, "status": {"resolved"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", resp.StatusCode)
	}
	vw := e.login(auth.RoleViewer)
	resp, body := e.post(vw, path, url.Values{"csrf": {e.csrf(vw)}, "status": {"resolved"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "role viewer may not do this") {
		t.Errorf("viewer triage: %d, want 403 role viewer", resp.StatusCode)
	}
	if len(e.rec.changes) != 0 {
		t.Fatalf("refused changes were journaled: %+v", e.rec.changes)
	}
	resp, body = e.post(an, path, url.Values{"csrf": {tok}, "status": {"bogus"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "status: want one of") {
		t.Errorf("bad status: %d", resp.StatusCode)
	}
	resp, _ = e.post(an, path, url.Values{"csrf": {tok}, "status": {"acknowledged"}, "note": {"<b>looking</b> " + xssSubject}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("analyst triage: %d", resp.StatusCode)
	}
	if len(e.rec.changes) != 1 || e.rec.changes[0].Status != "acknowledged" || e.rec.changes[0].Actor != "analyst-<b>key</b>" {
		t.Fatalf("journaled %+v, want one acknowledged change by analyst-<b>key</b>", e.rec.changes)
	}
	_, page := e.get(an, resp.Header.Get("Location"))
	if !strings.Contains(page, "Recorded in the journal.") {
		t.Errorf("no note that the change was recorded")
	}
	if _, forged := e.get(an, "/ui/incidents/"+payloadIncident+"?done=Call+0800+now"); strings.Contains(forged, "Call 0800") {
		t.Errorf("a crafted link puts its words on the page")
	}
	if !strings.Contains(page, `id="status">acknowledged<`) || !strings.Contains(page, "&lt;b&gt;looking&lt;/b&gt;") {
		t.Errorf("incident page does not show the new status and the escaped note")
	}
}

func TestAdminOnly(t *testing.T) {
	e := newEnv(t, false)
	an := e.login(auth.RoleAnalyst)
	if resp, body := e.get(an, "/ui/admin"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "role analyst may not do this") {
		t.Errorf("analyst on admin: %d", resp.StatusCode)
	}
	if resp, _ := e.post(an, "/ui/admin/keys", url.Values{"csrf": {e.csrf(an)}, "name": {"x"}, "role": {"admin"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("analyst creating a key: %d, want 403", resp.StatusCode)
	}
	ad := e.login(auth.RoleAdmin)
	tok := e.csrf(ad)
	resp, body := e.post(ad, "/ui/admin/keys", url.Values{"csrf": {tok}, "name": {"siem"}, "role": {"viewer"}})
	m := regexp.MustCompile(`id="new-key">(vgl_[^<]+)<`).FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("create key: %d, no key shown", resp.StatusCode)
	}
	k, err := e.store.Authenticate(m[1])
	if err != nil || k.Name != "siem" || k.Role != auth.RoleViewer {
		t.Fatalf("shown key does not authenticate as siem/viewer: %v %+v", err, k)
	}
	// The viewer logged in with it loses its session when it is revoked.
	vw := e.client()
	e.post(vw, "/ui/login", url.Values{"key": {m[1]}})
	if resp, _ := e.post(ad, "/ui/admin/keys/"+k.ID+"/revoke", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := e.get(vw, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("session of a revoked key still works: %d", resp.StatusCode)
	}
	if resp, _ := e.post(ad, "/ui/admin/sinks/soc-webhook/test", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther || len(e.tests) != 1 {
		t.Errorf("sink test: %d, deliveries %v", resp.StatusCode, e.tests)
	}
	if resp, body := e.post(ad, "/ui/admin/sinks/nope/test", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no sink") {
		t.Errorf("unknown sink: %d", resp.StatusCode)
	}
	if resp, _ := e.post(ad, "/ui/rules/D1", url.Values{"csrf": {tok}, "enabled": {"false"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("disable rule: %d", resp.StatusCode)
	}
	if _, body := e.get(ad, "/ui/rules"); !strings.Contains(body, ">Enable<") {
		t.Errorf("rule not shown disabled")
	}
}

func TestSessionExpiryAndLogout(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	*e.now = e.now.Add(29 * time.Minute)
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != 200 {
		t.Fatalf("within the idle limit: %d", resp.StatusCode)
	}
	*e.now = e.now.Add(31 * time.Minute)
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("idle past 30 min: %d, want 303 to login", resp.StatusCode)
	}
	// Absolute limit: active all along, still ends after 12 h.
	c = e.login(auth.RoleViewer)
	for range 25 {
		*e.now = e.now.Add(29 * time.Minute)
		e.get(c, "/ui/")
	}
	if resp, _ := e.get(c, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("session older than 12 h: %d, want 303", resp.StatusCode)
	}
	c = e.login(auth.RoleViewer)
	tok := e.csrf(c)
	if resp, _ := e.post(c, "/ui/logout", url.Values{"csrf": {"x"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without the CSRF token: %d, want 403", resp.StatusCode)
	}
	u, _ := url.Parse(e.srv.URL + "/ui/")
	old := c.Jar.Cookies(u)
	e.post(c, "/ui/logout", url.Values{"csrf": {tok}})
	// The old cookie is dead on the server, not only deleted in the browser.
	c2 := e.client()
	c2.Jar.SetCookies(u, old)
	if resp, _ := e.get(c2, "/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("cookie still valid after logout: %d", resp.StatusCode)
	}
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>`)
	tagRe        = regexp.MustCompile(`(?i)<[a-z][a-z0-9-]*((?:\s+[^\s=>"']+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>"']+))?)*)\s*/?>`)
	attrRe       = regexp.MustCompile(`(?i)\s+([^\s=>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>"']+))?`)
)

// badAttrs lists the event-handler and style attributes of every tag, and
// URL attributes starting with javascript:, as a browser would parse them.
func badAttrs(body string) []string {
	var bad []string
	for _, tag := range tagRe.FindAllStringSubmatch(body, -1) {
		for _, a := range attrRe.FindAllStringSubmatch(tag[1], -1) {
			name := strings.ToLower(a[1])
			val := strings.ToLower(strings.Trim(a[2], `"'`))
			if strings.HasPrefix(name, "on") || name == "style" || name == "srcdoc" ||
				(name == "href" || name == "src" || name == "action") && strings.HasPrefix(strings.TrimSpace(val), "javascript:") {
				bad = append(bad, tag[0])
			}
		}
	}
	return bad
}

// TestPagesEscapeLogFields renders every page over records whose user
// agents, subjects, folders, UPNs, message ids, IPs and titles carry
// markup, and checks that no payload reaches the page as markup, that the
// only scripts are the embedded ones, and the headers forbid the rest.
func TestPagesEscapeLogFields(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleAdmin)
	for _, p := range pages {
		resp, body := e.get(c, p)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
			continue
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		for _, s := range inlineScript.FindAllString(body, -1) {
			if s != `<script src="/ui/static/htmx.min.js">` {
				t.Errorf("%s: script element %q", p, s)
			}
		}
		if bad := badAttrs(body); len(bad) > 0 {
			t.Errorf("%s: tags with handler, style or script URL attributes: %q", p, bad)
		}
		for _, x := range payloads {
			if strings.Contains(body, x) {
				t.Errorf("%s: payload %q unescaped", p, x)
			}
		}
	}
	// The payloads are shown (escaped), not dropped.
	_, body := e.get(c, "/ui/incidents/"+payloadIncident)
	for _, want := range []string{"Inbox&lt;/td&gt;&lt;svg onload=", "&#34;&gt;&lt;img src=x onerror="} {
		if !strings.Contains(body, want) {
			t.Errorf("incident page lacks escaped %q", want)
		}
	}
	// A hostile IP in a link stays in the query string.
	if !strings.Contains(body, `href="/ui/timeline?kind=ip&amp;value=javascript%3awindow.__pwned%3d5"`) {
		t.Errorf("IP link not query-escaped")
	}
	_, body = e.get(c, "/ui/timeline?kind=ip&value="+url.QueryEscape(xssIP))
	if !strings.Contains(body, "Invoice &lt;iframe") || !strings.Contains(body, "Mozilla/5.0 &lt;script&gt;") || !strings.Contains(body, `id="total">3<`) {
		t.Errorf("timeline lacks the escaped subject or its 3 records")
	}
}

func TestMessageExport(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	resp, body := e.get(c, "/ui/incidents/"+payloadIncident+"/messages.csv")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"'=HYPERLINK(`) {
		t.Errorf("csv: want header and one row with the formula neutralised:\n%s", body)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="INC-payload-messages.csv"` {
		t.Errorf("disposition %q", cd)
	}
	resp, body = e.get(c, "/ui/incidents/"+payloadIncident+"/messages.json")
	var got struct {
		Messages []struct {
			MessageID string `json:"message_id"`
			Accesses  int    `json:"accesses"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Messages) != 1 || got.Messages[0].Accesses != 3 ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("json: %v %s %+v", err, resp.Header.Get("Content-Type"), got)
	}
	if resp, body := e.get(c, "/ui/incidents/nope"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `no incident &#34;nope&#34;`) {
		t.Errorf("unknown incident: %d", resp.StatusCode)
	}
}

func TestSearchQueryErrors(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	resp, body := e.get(c, "/ui/search?q="+url.QueryEscape("colour:<b>red</b>"))
	if resp.StatusCode != 200 || !strings.Contains(body, `unknown field &#34;colour&#34;`) {
		t.Errorf("bad field: %d, want the reason on the page", resp.StatusCode)
	}
	_, body = e.get(c, "/ui/search?q="+url.QueryEscape("ip:"+xssIP))
	if !strings.Contains(body, `id="count">3<`) {
		t.Errorf("search by hostile IP did not find its 3 records")
	}
}

func TestHtmxErrorsReplaceMain(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/ui/timeline?kind=colour&value=red", nil)
	req.Header.Set("HX-Request", "true")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("HX-Retarget") != "main" || resp.Header.Get("HX-Reselect") != "main" {
		t.Errorf("htmx error answer: %d, retarget %q reselect %q", resp.StatusCode, resp.Header.Get("HX-Retarget"), resp.Header.Get("HX-Reselect"))
	}
	if resp, body := e.get(c, "/ui/timeline?kind=colour&value=red"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "kind: want one of") {
		t.Errorf("plain error answer: %d", resp.StatusCode)
	}
}

func TestTimelineAround(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	base := "/ui/timeline?kind=ip&value=" + url.QueryEscape(xssIP)
	_, body := e.get(c, base+"&around=2026-03-02T09:01:00Z&window=30s")
	if !strings.Contains(body, `id="total">1<`) || !strings.Contains(body, "Within 30 s of 2026-03-02 09:01:00Z") || strings.Count(body, ` ctx">`) != 2 ||
		!strings.Contains(body, `<span class="badge">before</span>`) || !strings.Contains(body, `<span class="badge">after</span>`) {
		t.Errorf("around 09:01 ±30s: want one record and one of context on each side:\n%s", body)
	}
	// Each time links to the records around it, the entity escaped in the query.
	if !strings.Contains(body, `href="/ui/timeline?kind=ip&amp;value=javascript%3awindow.__pwned%3d5&amp;around=2026-03-02T09%3a00%3a00Z"`) {
		t.Errorf("no escaped around link")
	}
	for q, why := range map[string]string{"&around=yesterday": "around: want an RFC 3339 time", "&around=2026-03-02T09:01:00Z&window=40d": "window: want a duration"} {
		if resp, body := e.get(c, base+q); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, why) {
			t.Errorf("%s: %d, want 400 %q", q, resp.StatusCode, why)
		}
	}
}

func TestRulesOrder(t *testing.T) {
	e := newEnv(t, false)
	c := e.login(auth.RoleViewer)
	_, body := e.get(c, "/ui/rules")
	// D1 fired (one alert), bad-rule was refused: D1 first, then bad-rule with its reason, escaped.
	d1, bad := strings.Index(body, `<td class="id">D1</td>`), strings.Index(body, `<td class="id">bad-rule</td>`)
	if d1 < 0 || bad < 0 || d1 > bad || !strings.Contains(body, "refused</span> Inbox&lt;/td&gt;") {
		t.Errorf("rules page: D1 at %d, bad-rule at %d, or the refusal reason missing", d1, bad)
	}
	if strings.Contains(body, ">Disable<") {
		t.Errorf("a viewer is offered the rule switch")
	}
}

// failing answers every read with an error, as a data source that broke.
type failing struct{ ui.Data }

func (failing) Overview(context.Context) (ui.Overview, error) {
	return ui.Overview{}, errors.New("index unavailable: <b>disk</b> full")
}

func TestDataErrors(t *testing.T) {
	e := newEnv(t, false)
	ks := e.store
	u, err := ui.New(ui.Options{Keys: ks, Data: failing{memdata.New(memdata.Options{})}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	e.srv = srv
	c := e.login(auth.RoleViewer)
	resp, body := e.get(c, "/ui/")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "index unavailable: &lt;b&gt;disk&lt;/b&gt; full") {
		t.Errorf("overview over broken data: %d, want 500 with the escaped reason", resp.StatusCode)
	}
}

func TestLongMessageListCut(t *testing.T) {
	ks, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := ks.Create("v", auth.RoleViewer)
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	inc := &incident.Incident{ID: "INC-big", Severity: alert.High, FirstSeen: at, LastSeen: at}
	for i := range 1200 {
		inc.Impact.Reads = append(inc.Impact.Reads, incident.MessageRead{Mailbox: "a@x", Folder: "Inbox", MessageID: fmt.Sprintf("<m%d@x>", i), FirstAccess: at, LastAccess: at, Count: 1})
	}
	inc.Impact.MessageCount = len(inc.Impact.Reads)
	u, err := ui.New(ui.Options{Keys: ks, Data: memdata.New(memdata.Options{Incidents: []*incident.Incident{inc}}), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	e := &env{t: t, srv: srv}
	c := e.client()
	e.post(c, "/ui/login", url.Values{"key": {key}})
	_, body := e.get(c, "/ui/incidents/INC-big")
	if n := strings.Count(body, "&lt;m"); n != 500 || !strings.Contains(body, "The first 500 are listed; the exports hold all 1200.") {
		t.Errorf("message list: %d rows shown", n)
	}
	_, csv := e.get(c, "/ui/incidents/INC-big/messages.csv")
	if n := strings.Count(csv, "\n"); n != 1201 {
		t.Errorf("export: %d lines, want header and 1200", n)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	ks, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := ks.Create("admin", auth.RoleAdmin)
	var logs strings.Builder
	u, err := ui.New(ui.Options{Keys: ks, Data: memdata.New(memdata.Options{}), Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	e := &env{t: t, srv: srv}
	tok := u.LoginToken(auth.RoleAdmin)
	c := e.client()
	e.get(c, "/ui/login?token="+tok)
	e.post(c, "/ui/login", url.Values{"token": {tok}})
	e.post(e.client(), "/ui/login", url.Values{"token": {tok}}) // refused: spent
	e.post(e.client(), "/ui/login", url.Values{"key": {key}})
	e.post(e.client(), "/ui/login", url.Values{"key": {key + "x"}})
	csrf := e.csrf(c)
	_, created := e.post(c, "/ui/admin/keys", url.Values{"csrf": {csrf}, "name": {"new"}, "role": {"viewer"}})
	newKey := regexp.MustCompile(`id="new-key">(vgl_[^<]+)<`).FindStringSubmatch(created)
	if newKey == nil {
		t.Fatal("no key created")
	}
	e.post(c, "/ui/admin/keys", url.Values{"csrf": {"forged"}, "name": {"new2"}, "role": {"viewer"}})
	u2, _ := url.Parse(srv.URL + "/ui/")
	cookie := c.Jar.Cookies(u2)[0].Value
	out := logs.String()
	for name, secret := range map[string]string{"login token": tok, "API key": key, "API key secret part": key[len(key)-20:], "session cookie": cookie, "CSRF token": csrf, "created key": newKey[1]} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s is in the log", name)
		}
	}
	if !strings.Contains(out, "logged in") || !strings.Contains(out, "login refused") || !strings.Contains(out, "CSRF token missing or wrong") {
		t.Errorf("log lacks the logins and refusals:\n%s", out)
	}
}

func TestSessionRateLimit(t *testing.T) {
	ks, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := ks.Create("v", auth.RoleViewer)
	u, err := ui.New(ui.Options{Keys: ks, Data: memdata.New(memdata.Options{}), Logger: slog.New(slog.DiscardHandler), RatePerSession: 0.001, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	e := &env{t: t, srv: srv}
	c := e.client()
	e.post(c, "/ui/login", url.Values{"key": {key}})
	for i := range 3 {
		if resp, _ := e.get(c, "/ui/rules"); resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i, resp.StatusCode)
		}
	}
	resp, body := e.get(c, "/ui/rules")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "too many requests") {
		t.Errorf("past the burst: %d, want 429 with Retry-After", resp.StatusCode)
	}
	// Another session has its own budget.
	c2 := e.client()
	e.post(c2, "/ui/login", url.Values{"key": {key}})
	if resp, _ := e.get(c2, "/ui/rules"); resp.StatusCode != 200 {
		t.Errorf("another session: %d", resp.StatusCode)
	}
}
