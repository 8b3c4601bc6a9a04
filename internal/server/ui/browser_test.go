package ui_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/browsertest"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/internal/server/ui/memdata"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/rules"
)

// demoTenant simulates a tenant with a forged-token campaign, runs the
// Sigma rules and behaviours over it like `vigil demo`, and adds the
// hostile records of the escaping tests.
type demoTenant struct {
	truth     *simulate.Truth
	incidents []*incident.Incident
	alerts    []alert.Alert
	events    []*event.Event
	rules     []ui.Rule
}

func simulateTenant(t *testing.T) *demoTenant {
	t.Helper()
	ctx := t.Context()
	logs := filepath.Join(t.TempDir(), "logs")
	truth, err := simulate.Run(ctx, simulate.Config{Users: 20, Days: 7, Seed: 1,
		Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs)
	if err != nil {
		t.Fatal(err)
	}
	paths := truth.LogPaths(logs)
	nets, err := behavior.LoadNetTableFile(filepath.Join(logs, simulate.NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err != nil {
		t.Fatal(err)
	}
	rs, refused := c.Compile()
	d := &demoTenant{truth: truth}
	hot := append(rs.FieldSyms(), event.HotFields...)
	st, err := source.ReadPaths(ctx, paths, source.Options{Hot: hot}, func(e *event.Event) error {
		d.events = append(d.events, e)
		return nil
	})
	if err != nil || st.Quarantined > 0 {
		t.Fatalf("decoding the simulated tenant: %v (%d quarantined)", err, st.Quarantined)
	}
	// Detection as `vigil demo` runs it, over the events in time order
	// (kept for the timelines and search).
	slices.SortStableFunc(d.events, func(a, b *event.Event) int { return a.Time.Compare(b.Time) })
	ic := behavior.DefaultConfig().IncidentConfig()
	pl := detect.New(detect.Config{Rules: rs, Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets}), Incidents: &ic,
		TempDir: t.TempDir()}, nil)
	res, err := detect.RunOffline(ctx, pl, nil, func(emit func(*event.Event) error) error {
		for _, e := range d.events {
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	d.incidents = res.Incidents
	if d.alerts, err = res.Alerts.All(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.Rules() {
		d.rules = append(d.rules, ui.Rule{ID: r.ID, Title: r.Title, Level: r.Level, Kind: "sigma", Loaded: true, Enabled: true})
	}
	for _, r := range refused {
		d.rules = append(d.rules, ui.Rule{ID: r.ID, Title: filepath.Base(r.File), Kind: "sigma", Refused: r.Reason})
	}
	for i := 1; i <= 11; i++ {
		d.rules = append(d.rules, ui.Rule{ID: fmt.Sprintf("D%d", i), Title: "behaviour D" + fmt.Sprint(i), Level: "high", Kind: "behaviour", Loaded: true, Enabled: true})
	}
	hev, hinc := hostile(truth.End.Add(-time.Hour))
	d.events = append(d.events, hev...)
	d.incidents = append(d.incidents, hinc)
	return d
}

// pageTiming is what the browser measured for one page.
type pageTiming struct {
	name           string
	answer, loaded time.Duration
}

// browser drives one tab; every step failing ends the test.
type browser struct {
	t       *testing.T
	ctx     context.Context
	base    string
	shots   string
	timings []pageTiming
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	var s string
	var err error
	// A node found while a navigation finishes may be gone when its text
	// is read: ask again for the new document's.
	for range 3 {
		if s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css))); err == nil || !strings.Contains(err.Error(), "No node with given id") {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

// loaded waits until the document has finished loading.
func (b *browser) loaded() {
	b.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if done, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.readyState === "complete"`)); err == nil && done {
			return
		}
	}
	b.t.Fatal("the page did not finish loading")
}

func (b *browser) location() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// page measures the loaded page and saves its screenshots.
func (b *browser) page(name string) {
	b.t.Helper()
	b.loaded()
	m, err := chromedp.Run(b.ctx, chromedp.Evaluate[struct{ Answer, Loaded float64 }](`(() => {
		const n = performance.getEntriesByType("navigation")[0];
		return {Answer: n.responseEnd - n.requestStart, Loaded: (n.loadEventEnd || n.domContentLoadedEventEnd) - n.startTime}; })()`))
	if err != nil {
		b.t.Fatalf("timing %s: %v", name, err)
	}
	b.timings = append(b.timings, pageTiming{name, time.Duration(m.Answer * float64(time.Millisecond)), time.Duration(m.Loaded * float64(time.Millisecond))})
	b.shot(name)
}

// shot saves the page as seen 1400 and 800 px wide.
func (b *browser) shot(name string) {
	b.t.Helper()
	for _, w := range []int64{1400, 800} {
		b.do("viewport", chromedp.EmulateViewport(w, 1000))
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%s-%d.png", name, w)), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do("viewport", chromedp.EmulateViewport(1400, 1000))
}

func (b *browser) visit(name, path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
	b.page(name)
}

func TestBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	shots := os.Getenv("VIGIL_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	d := simulateTenant(t)

	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	entries := make([]journal.Entry, 0, len(d.events))
	for _, e := range d.events {
		if len(e.Raw) > 0 {
			entries = append(entries, journal.Entry{Source: e.Source, Origin: "simulated", RecordID: e.RecordID, Raw: e.Raw})
		}
	}
	if _, err := j.AppendBatch(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		role auth.Role
	}{{"m365-collector", auth.RoleIngest}, {"soc-analyst", auth.RoleAnalyst}, {"siem-export", auth.RoleViewer}} {
		if _, _, err := ks.Create(k.name, k.role); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	data := memdata.New(memdata.Options{Incidents: d.incidents, Alerts: d.alerts, Events: d.events, Rules: d.rules,
		Learning: ui.Learning{From: d.truth.Start, Until: d.truth.Start.Add(behavior.DefaultConfig().Learning.D()), Done: true},
		Sinks: []ui.Sink{{Name: "soc-webhook", Kind: "webhook", Target: "https://soc.example/hooks/vigil"},
			{Name: "syslog", Kind: "syslog", Target: "tls://siem.example:6514"}},
		Collectors: []ui.Collector{{Name: "m365", Source: "m365.ual", Configured: false, Detail: "replayed demo tenant: nothing is polled"}},
		Integrity: func(ctx context.Context) (ui.Integrity, error) {
			cp, err := j.Checkpoint(ctx)
			if err != nil {
				return ui.Integrity{}, err
			}
			in := ui.Integrity{Origin: cp.Origin, Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]),
				Checkpoint: string(cp.Note), VerifierKey: j.VerifierKey(), SignedAt: time.Now()}
			v, err := journal.NewVerifier(j.VerifierKey())
			if err == nil {
				_, err = journal.ParseCheckpoint(cp.Note, v)
			}
			if err != nil {
				in.VerifyDetail = err.Error()
			} else {
				in.Verified, in.VerifiedAt, in.VerifyDetail = true, time.Now(), "the checkpoint's signature checks with the verifier key"
			}
			return in, nil
		},
		TestSink: func(context.Context, string) error { return nil },
		Record:   rec.record})
	srv, err := server.New(server.Config{}, server.Deps{Journal: j, Keys: ks, Ingest: server.NewIngester(j, filepath.Join(dir, "q.jsonl")),
		UI: data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	login, err := srv.LoginPath(auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}

	// The campaign's incidents: those reporting a message the intruder
	// read, in queue order (most severe first); the test opens the first.
	read := map[[2]string]bool{}
	want := map[string]int{}
	for _, ct := range d.truth.Campaigns {
		for _, mi := range ct.Impact {
			want[mi.Mailbox] += len(mi.MessageIDs)
			for _, m := range mi.MessageIDs {
				read[[2]string{mi.Mailbox, m}] = true
			}
		}
	}
	cases, _ := data.Cases(t.Context())
	var camp []string
	var crit *incident.Incident
	for _, c := range cases {
		if slices.ContainsFunc(c.Impact.Reads, func(r incident.MessageRead) bool { return read[[2]string{r.Mailbox, r.MessageID}] }) {
			camp = append(camp, c.ID)
			if crit == nil {
				crit = c.Incident
			}
		}
	}
	if crit == nil {
		t.Fatal("no incident reports a message the simulated intruder read")
	}

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(chrome),
		chromedp.NoSandbox, chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	b := &browser{t: t, ctx: ctx, base: hs.URL, shots: shots}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a timeout
		t.Fatal(err)
	}

	// Log in through the one-time link: it lands on the overview.
	b.do("login link", chromedp.Navigate(hs.URL+login), chromedp.WaitVisible(chromedp.CSS(`#link-login button`)))
	b.shot("login")
	b.do("login", chromedp.Click(chromedp.CSS(`#link-login button`)), chromedp.WaitVisible(chromedp.CSS(`header nav`)))
	b.page("overview")
	if u, _ := url.Parse(b.location()); u.Path != "/ui/" {
		t.Fatalf("after the login link the browser is at %s, want /ui/", b.location())
	}

	// The queue, then the critical incident from it.
	b.visit("incidents", "/ui/incidents")
	b.do("open the campaign's incident", chromedp.Click(chromedp.CSS(`table.queue a[href="/ui/incidents/`+crit.ID+`"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))
	b.page("incident")
	if path := b.location(); !strings.HasSuffix(path, "/ui/incidents/"+crit.ID) {
		t.Fatalf("clicked into %s, want the campaign's incident %s", path, crit.ID)
	}
	// Impact per mailbox, as the pages of the campaign's incidents show
	// it, must be the simulation's truth: every mailbox the intruder read,
	// with the number of messages, and no other.
	shown := map[string]string{}
	for i, id := range camp {
		if i > 0 {
			b.do("open "+id, chromedp.Navigate(hs.URL+"/ui/incidents/"+id), chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))
		}
		m, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](
			`Object.fromEntries([...document.querySelectorAll("td[data-mailbox]")].map(td => [td.dataset.mailbox, td.textContent]))`))
		if err != nil {
			t.Fatal(err)
		}
		for mb, n := range m {
			if _, dup := shown[mb]; dup {
				t.Errorf("mailbox %s in two of the campaign's incidents", mb)
			}
			shown[mb] = n
		}
	}
	for mb, n := range want {
		if shown[mb] != fmt.Sprint(n) {
			t.Errorf("impact on %s: the pages show %q messages, the simulation's truth is %d", mb, shown[mb], n)
		}
	}
	if len(shown) != len(want) {
		t.Errorf("the campaign's incidents list mailboxes %v, truth %v", shown, want)
	}
	t.Logf("campaign incidents %v; impact shown %v, truth %v", camp, shown, want)
	b.do("back", chromedp.Navigate(hs.URL+"/ui/incidents/"+crit.ID), chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))

	// Pivot from the attacker's IP (the first on the page: an actor, or
	// where a message was read from) to its timeline.
	ip := b.text(`a[data-entity=ip]`)
	b.do("pivot", chromedp.Click(chromedp.CSS(`a[data-entity=ip]`)), chromedp.WaitVisible(chromedp.CSS(`#entity`)))
	b.page("timeline")
	entity, total := b.text(`#entity`), b.text(`#total`)
	if !slices.ContainsFunc(d.truth.Campaigns, func(c simulate.CampaignTruth) bool { return slices.Contains(c.Actor.IPs, ip) }) {
		t.Errorf("the first IP on the incident page, %q, is not the intruder's", ip)
	}
	if entity != ip || total == "0" {
		t.Fatalf("pivot from %q: timeline of %q with %s records", ip, entity, total)
	}

	// Pivot on within the page: from the IP to a user it was seen with;
	// only the timeline is swapped (a page load would clear the marker).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__samePage = true`)); err != nil {
		t.Fatal(err)
	}
	b.do("pivot in page", chromedp.Click(chromedp.CSS(`p.pivots a[href*="kind=user"]`)))
	user := b.text(`#entity`)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(user, "@") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		user = b.text(`#entity`)
	}
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__samePage === true`))
	if err != nil || !same || !strings.Contains(b.location(), "kind=user") || !strings.Contains(user, "@") {
		t.Errorf("pivot to the user %q: same page %v (%v), location %s", user, same, err, b.location())
	}
	b.do("back to the IP", chromedp.Navigate(hs.URL+"/ui/timeline?kind=ip&value="+url.QueryEscape(ip)), chromedp.WaitVisible(chromedp.CSS(`#entity`)))

	// Around its second record: the window and its context.
	b.do("around", chromedp.Click(chromedp.CSS(`table.rows tbody tr:nth-child(2) a[title="records around this one"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/ui/timeline?kind=ip"][href$="`+"value="+url.QueryEscape(ip)+`"]`)))
	b.page("timeline-around")
	if loc := b.location(); !strings.Contains(loc, "around=") {
		t.Errorf("the time link led to %s", loc)
	}

	// Search for the same address: htmx swaps the results in place.
	b.visit("search-empty", "/ui/search")
	b.do("search", chromedp.SendKeys(chromedp.CSS(`#q`), "ip:"+ip), chromedp.Submit(chromedp.CSS(`#q`)), chromedp.WaitVisible(chromedp.CSS(`#count`)))
	if count := b.text(`#count`); count != total {
		t.Errorf("search ip:%s found %s records, its timeline %s", ip, count, total)
	}
	if path := b.location(); !strings.Contains(path, "q=ip%3A") {
		t.Errorf("search did not push its URL: %s", path)
	}
	b.shot("search")
	b.visit("search", "/ui/search?q="+url.QueryEscape("ip:"+ip))

	// Acknowledge the incident.
	b.do("status", chromedp.Navigate(hs.URL+"/ui/incidents/"+crit.ID), chromedp.WaitVisible(chromedp.CSS(`#triage`)),
		chromedp.SetValue(chromedp.CSS(`#status-select`), "acknowledged"), chromedp.SendKeys(chromedp.CSS(`#note`), "taking this"),
		chromedp.Click(chromedp.CSS(`#triage button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	if status := b.text(`#status`); status != "acknowledged" || len(rec.changes) != 1 || rec.changes[0].Incident != crit.ID || rec.changes[0].Status != "acknowledged" {
		t.Errorf("after the change: status %q, journaled %+v", status, rec.changes)
	}

	// Every other page, and the hostile records: nothing may execute.
	for _, p := range [][2]string{{"rules", "/ui/rules"}, {"integrity", "/ui/integrity"}, {"admin", "/ui/admin"},
		{"payload-incident", "/ui/incidents/" + payloadIncident}, {"payload-timeline", "/ui/timeline?kind=ip&value=" + url.QueryEscape(xssIP)},
		{"payload-search", "/ui/search?q=" + url.QueryEscape("op:MailItemsAccessed ip:"+xssIP)}} {
		b.visit(p[0], p[1])
		// Escaping, not only the CSP, must stop them: the DOM holds the
		// one embedded script and no handler attribute.
		bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("*")].flatMap(el =>
			[...el.attributes].filter(a => /^on|^srcdoc$|^style$/i.test(a.name) || /^(href|src|action|formaction)$/i.test(a.name) && /^\s*javascript:/i.test(a.value)).map(a => el.tagName + " " + a.name))
			.concat([...document.scripts].filter(s => !s.src.endsWith("/ui/static/htmx.min.js")).map(s => "SCRIPT " + s.textContent.slice(0, 40)))`))
		if err != nil || len(bad) > 0 {
			t.Errorf("%s: markup from log fields in the DOM: %v %v", p[0], bad, err)
		}
	}
	b.do("settle", chromedp.Sleep(300*time.Millisecond))
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__pwned !== undefined`))
	if err != nil || pwned || !strings.Contains(b.location(), "/ui/search") {
		t.Errorf("a payload ran: __pwned set %v (%v), location %s", pwned, err, b.location())
	}
	timings := b.timings
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-18s %10s %10s\n", "page", "answer", "loaded")
	for _, pt := range timings {
		fmt.Fprintf(&sb, "%-18s %10s %10s\n", pt.name, pt.answer.Round(100*time.Microsecond), pt.loaded.Round(100*time.Microsecond))
	}
	t.Logf("events %d, incidents %d; page times (request start to response end; to load end):\n%s", len(d.events), len(d.incidents), sb.String())
	os.WriteFile(filepath.Join(shots, "timings.txt"), []byte(sb.String()), 0o644)
	t.Logf("screenshots in %s", shots)
}
