package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-audit/vigil/internal/browsertest"
	"github.com/vigil-audit/vigil/internal/simulate"
)

var loginLinkRe = regexp.MustCompile(`(?m)^\s+(http://\S+/ui/login\?token=\S+)$`)

// text is everything vigil serve printed on stdout so far.
func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

// waitLine waits for stdout to hold a line matching re.
func (s *servedVigil) waitLine(t *testing.T, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := re.FindStringSubmatch(s.stdout.text()); m != nil {
			return m
		}
	}
	t.Fatalf("vigil serve printed no line matching %s:\n%s", re, s.stdout.text())
	return nil
}

// A browser against a real `vigil serve --demo`: the one-time link
// printed at start logs in, the queue leads to the forged-token
// incident, whose impact per mailbox is the simulation's truth; a pivot
// from the intruder's address reaches its timeline; an analyst's status
// change is journaled and is there again after a restart.
func TestServeDemoBrowser(t *testing.T) {
	chrome := browsertest.Chromium(t)
	dir := t.TempDir()
	args := []string{"--data", dir, "--demo", "--demo-users", "20", "--demo-days", "7", "--demo-duration", "3s"}
	s := startServe(t, args...)
	link := s.waitLine(t, loginLinkRe, 10*time.Second)[1]
	s.waitLine(t, regexp.MustCompile(`replay finished`), 3*time.Minute)
	truth, err := simulate.LoadTruth(filepath.Join(dir, "demo-logs", simulate.TruthFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	read := map[string]bool{}
	for _, ct := range truth.Campaigns {
		for _, mi := range ct.Impact {
			want[mi.Mailbox] += len(mi.MessageIDs)
			for _, m := range mi.MessageIDs {
				read[m] = true
			}
		}
	}
	// Detection settles: caught up, and the campaign's messages in the
	// incidents (the API shows what the pages show).
	type apiIncident struct {
		ID     string
		Impact struct{ Messages []string }
	}
	var camp []string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		var ready map[string]any
		var incs struct{ Incidents []apiIncident }
		code := s.get(t, "/readyz", &ready)
		s.get(t, "/api/v1/incidents", &incs)
		camp = camp[:0]
		got := 0
		for _, inc := range incs.Incidents {
			n := 0
			for _, m := range inc.Impact.Messages {
				if read[m] {
					n++
				}
			}
			if n > 0 {
				camp = append(camp, inc.ID)
				got += n
			}
		}
		if code == 200 && ready["detection_lag"] == float64(0) && got >= len(read) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detection did not settle: ready %d %v, %d of %d messages in incidents", code, ready, got, len(read))
		}
	}

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(chrome),
		chromedp.NoSandbox, chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		for range 3 { // a node found while a navigation ends may be gone: ask again
			v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
			if err == nil {
				return strings.TrimSpace(v)
			}
			time.Sleep(100 * time.Millisecond)
		}
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return strings.TrimSpace(v)
	}
	// Screenshots of every page, 1400 and 800 px wide, as artefacts.
	shots := os.Getenv("VIGIL_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		for _, w := range []int64{1400, 800} {
			do("viewport", chromedp.EmulateViewport(w, 1000))
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatalf("screenshot %s: %v", name, err)
			}
			if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("serve-%s-%d.png", name, w)), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		do("viewport", chromedp.EmulateViewport(1400, 1000))
	}
	// The page's own measures: request start to response end (the
	// server's answer), navigation start to load end.
	times := map[string][2]time.Duration{}
	measure := func(name string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); eval(`document.readyState`) != "complete"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not finish loading", name)
			}
		}
		m, err := chromedp.Run(ctx, chromedp.Evaluate[struct{ Answer, Loaded float64 }](`(() => {
			const n = performance.getEntriesByType("navigation")[0];
			return {Answer: n.responseEnd - n.requestStart, Loaded: n.loadEventEnd - n.startTime}; })()`))
		if err != nil {
			t.Fatal(err)
		}
		times[name] = [2]time.Duration{time.Duration(m.Answer * float64(time.Millisecond)), time.Duration(m.Loaded * float64(time.Millisecond))}
		shot(name)
	}

	do("open the login link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`#link-login button`)))
	do("log in", chromedp.Click(chromedp.CSS(`#link-login button`)), chromedp.WaitVisible(chromedp.CSS(`header nav`)))
	measure("overview")
	do("queue", chromedp.Navigate(s.url+"/ui/incidents"), chromedp.WaitVisible(chromedp.CSS(`table.queue`)))
	measure("incidents")
	do("open the campaign's incident", chromedp.Click(chromedp.CSS(`table.queue a[href="/ui/incidents/`+camp[0]+`"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))
	measure("incident")
	shown := map[string]string{}
	for i, id := range camp {
		if i > 0 {
			do("open "+id, chromedp.Navigate(s.url+"/ui/incidents/"+id), chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))
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

	// Pivot from the intruder's address to its timeline.
	do("back", chromedp.Navigate(s.url+"/ui/incidents/"+camp[0]), chromedp.WaitVisible(chromedp.CSS(`#impact-messages`)))
	ip := eval(`document.querySelector("a[data-entity=ip]").textContent`)
	if !slices.ContainsFunc(truth.Campaigns, func(c simulate.CampaignTruth) bool { return slices.Contains(c.Actor.IPs, ip) }) {
		t.Errorf("the first IP on the incident page, %q, is not the intruder's", ip)
	}
	do("pivot", chromedp.Click(chromedp.CSS(`a[data-entity=ip]`)), chromedp.WaitVisible(chromedp.CSS(`#entity`)))
	measure("timeline")
	if entity, total := eval(`document.querySelector("#entity").textContent`), eval(`document.querySelector("#total").textContent`); entity != ip || total == "0" || total == "" {
		t.Errorf("pivot from %s: timeline of %q with %q records", ip, entity, total)
	}
	// The pages answer through the index serve follows: the same counts
	// as its search API once the index has caught up.
	var api struct{ Rows []struct{ Count float64 } }
	if code := s.get(t, "/api/v1/search?count=true&wait=30s&q="+url.QueryEscape("ip:"+ip), &api); code != 200 || len(api.Rows) != 1 || api.Rows[0].Count == 0 {
		t.Fatalf("API count of ip:%s: %d %+v", ip, code, api)
	}
	apiCount := fmt.Sprint(api.Rows[0].Count)
	if total := eval(`document.querySelector("#total").textContent`); total != apiCount {
		t.Errorf("timeline of %s: %s records, the index's search API counts %s", ip, total, apiCount)
	}
	do("search", chromedp.Navigate(s.url+"/ui/search?q=ip%3A"+ip), chromedp.WaitVisible(chromedp.CSS(`#count`)))
	measure("search")
	if n, help := eval(`document.querySelector("#count").textContent`), eval(`document.querySelector("main p.muted").textContent`); n != apiCount || !strings.Contains(help, "investigation index") {
		t.Errorf("search ip:%s: %s records, the index's search API counts %s; help %q", ip, n, apiCount, help)
	}
	// A bad query points at its term, shown as text: the markup in it
	// is not a node, its handler never runs.
	term := "ipx:<img/src=x/onerror=document.title=1>"
	bad := "ip:" + ip + " OR " + term
	do("bad search", chromedp.Navigate(s.url+"/ui/search?q="+url.QueryEscape(bad)), chromedp.WaitVisible(chromedp.CSS(`#results p.error`)))
	shot("search-error")
	col := fmt.Sprint(len("ip:"+ip+" OR ") + 1)
	if msg, imgs, title := eval(`document.querySelector("#results p.error").textContent`), eval(`String(document.querySelectorAll("main img").length)`),
		eval(`document.title`); !strings.Contains(msg, "at column "+col+`, "`+term+`"`) || !strings.Contains(msg, "unknown field") || imgs != "0" || title == "1" {
		t.Errorf("bad query: error %q (want column %s and the term), %s images, title %q", msg, col, imgs, title)
	}

	// The status change, journaled.
	do("acknowledge", chromedp.Navigate(s.url+"/ui/incidents/"+camp[0]), chromedp.WaitVisible(chromedp.CSS(`#triage`)),
		chromedp.SetValue(chromedp.CSS(`#status-select`), "acknowledged"), chromedp.SendKeys(chromedp.CSS(`#note`), "taking this"),
		chromedp.Click(chromedp.CSS(`#triage button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	if st := eval(`document.querySelector("#status").textContent`); st != "acknowledged" {
		t.Errorf("after the change the status is %q", st)
	}
	for _, p := range []string{"rules", "integrity", "admin"} {
		do(p, chromedp.Navigate(s.url+"/ui/"+p), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
		measure(p)
	}
	// An admin disables a rule with a reason: journaled, shown with who
	// and why (or pending for the moment detection takes to read it).
	do("rules again", chromedp.Navigate(s.url+"/ui/rules"), chromedp.WaitVisible(chromedp.CSS(`#rules`)))
	rule := eval(`document.querySelector("#rules tbody tr form").closest("tr").dataset.rule`)
	row := `#rules tr[data-rule="` + rule + `"]`
	do("disable "+rule, chromedp.SendKeys(chromedp.CSS(row+` input[name=reason]`), "too noisy here"),
		chromedp.Click(chromedp.CSS(row+` button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	if st := eval(`document.querySelector('` + row + ` td.state').textContent`); !strings.Contains(st, "disabled by login-link") && !strings.Contains(st, "disabling by login-link") {
		t.Errorf("after disabling %s its state reads %q", rule, st)
	}
	// Once detection has read it: disabled, by whom and why.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var rs struct{ Rules []struct{ ID, Pending any } }
		if code := s.get(t, "/api/v1/rules", &rs); code != 200 {
			t.Fatalf("GET /api/v1/rules: %d", code)
		}
		if slices.ContainsFunc(rs.Rules, func(r struct{ ID, Pending any }) bool { return r.ID == rule && r.Pending == nil }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detection did not apply the switch of %s", rule)
		}
	}
	do("rules after the switch", chromedp.Navigate(s.url+"/ui/rules"), chromedp.WaitVisible(chromedp.CSS(`#rules`)))
	if st := eval(`document.querySelector('` + row + ` td.state').textContent`); !strings.Contains(st, "disabled by login-link") || !strings.Contains(st, "too noisy here") {
		t.Errorf("once applied, the state of %s reads %q", rule, st)
	}
	shot("rules-disabled")
	names := make([]string, 0, len(times))
	for n := range times {
		names = append(names, n)
	}
	slices.Sort(names)
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%-10s %8s %8s\n", n, times[n][0].Round(100*time.Microsecond), times[n][1].Round(100*time.Microsecond))
	}
	t.Logf("page times on vigil serve --demo (answer: request start to response end; loaded: navigation start to load end):\n%s", sb.String())
	t.Logf("screenshots in %s", shots)
	s.stop(t)

	// A restart replays the journal: the change is still there. (--demo
	// again, for its network table; its records are duplicates now.)
	s2 := startServe(t, args...)
	s2.key = s.key // printed at the first start only
	link2 := s2.waitLine(t, loginLinkRe, 10*time.Second)[1]
	if link2 == link {
		t.Errorf("the restart printed the same login link")
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		var ready map[string]any
		if s2.get(t, "/readyz", &ready) == 200 && s2.get(t, "/api/v1/incidents/"+camp[0], nil) == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart %s is not back", camp[0])
		}
	}
	// The first start's link, on the new port: spent, and its session
	// store is gone with the process.
	do("spent link", chromedp.Navigate(s2.url+strings.TrimPrefix(link, s.url)), chromedp.WaitVisible(chromedp.CSS(`#link-login button`)), chromedp.Click(chromedp.CSS(`#link-login button`)),
		chromedp.WaitVisible(chromedp.CSS(`main p.error`)))
	if body := eval(`document.querySelector("main p.error").textContent`); !strings.Contains(body, "used already or has expired") {
		t.Errorf("the first start's login link still works after the restart: %s", body)
	}
	do("log in again", chromedp.Navigate(link2), chromedp.WaitVisible(chromedp.CSS(`#link-login button`)), chromedp.Click(chromedp.CSS(`#link-login button`)),
		chromedp.WaitVisible(chromedp.CSS(`header nav`)))
	do("incident after restart", chromedp.Navigate(s2.url+"/ui/incidents/"+camp[0]), chromedp.WaitVisible(chromedp.CSS(`#status`)))
	if st, hist := eval(`document.querySelector("#status").textContent`), eval(`document.querySelector("main").textContent`); st != "acknowledged" || !strings.Contains(hist, "taking this") {
		t.Errorf("after a restart the incident is %q; its note kept: %v", st, strings.Contains(hist, "taking this"))
	}
	var rules struct {
		Rules []struct {
			ID      string
			Enabled bool
			Changed *struct{ Actor, Reason string }
		}
	}
	if code := s2.get(t, "/api/v1/rules", &rules); code != 200 {
		t.Fatalf("GET /api/v1/rules after the restart: %d", code)
	}
	if i := slices.IndexFunc(rules.Rules, func(r struct {
		ID      string
		Enabled bool
		Changed *struct{ Actor, Reason string }
	}) bool {
		return r.ID == rule
	}); i < 0 || rules.Rules[i].Enabled || rules.Rules[i].Changed == nil || rules.Rules[i].Changed.Reason != "too noisy here" {
		t.Errorf("after a restart rule %s is not disabled with its reason: %+v", rule, rules.Rules)
	}
	s2.stop(t)
}
