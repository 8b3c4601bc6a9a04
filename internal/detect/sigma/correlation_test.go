package sigma

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// Base rules over Graph-shape sign-ins, shared by the correlation tests.
const signinRules = `title: Failed sign-in
id: 11111111-0000-4000-8000-000000000001
name: failed_signin
logsource:
    product: azure
    service: signinlogs
detection:
    selection:
        ResultType: 50126
    condition: selection
level: low
---
title: Successful sign-in
id: 11111111-0000-4000-8000-000000000002
name: ok_signin
logsource:
    product: azure
    service: signinlogs
detection:
    selection:
        ResultType: 0
    condition: selection
level: informational
`

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func signin(t testing.TB, user, ip string, code int, off time.Duration) *event.Event {
	e := mkEvent(t, "entra.signin", fmt.Sprintf(`{"userPrincipalName":%q,"ipAddress":%q,"status":{"errorCode":%d},"id":"%s-%d"}`, user, ip, code, user, off))
	e.IP = ip
	e.RecordID = fmt.Sprintf("%s-%d", user, off)
	e.Failed = code != 0
	return at(e, t0.Add(off), user)
}

func corrRuleset(t *testing.T, corr string) *Ruleset {
	t.Helper()
	rs, ref := compile(t, Options{}, map[string]string{"base.yml": signinRules, "corr.yml": corr})
	for _, r := range ref {
		t.Fatalf("refused %s: %s", r.File, r.Reason)
	}
	return rs
}

func count(ds []string, title string) int {
	n := 0
	for _, d := range ds {
		if d == title {
			n++
		}
	}
	return n
}

func TestEventCount(t *testing.T) {
	rs := corrRuleset(t, `title: Brute force
correlation:
    type: event_count
    rules: [failed_signin]
    group-by: [user]
    timespan: 10m
    condition:
        gte: 3
level: high
`)
	got := titles(rs,
		signin(t, "a@x", "1.1.1.1", 50126, 0),
		signin(t, "b@x", "1.1.1.1", 50126, time.Minute),
		signin(t, "a@x", "1.1.1.1", 50126, 2*time.Minute),
		signin(t, "a@x", "1.1.1.1", 50126, 9*time.Minute),  // a: third within 10m → fires
		signin(t, "b@x", "1.1.1.1", 50126, 20*time.Minute), // b: outside the window of the first
		signin(t, "b@x", "1.1.1.1", 50126, 21*time.Minute),
	)
	if n := count(got, "Brute force"); n != 1 {
		t.Fatalf("fired %d times, want 1: %v", n, got)
	}
	// Referenced rules do not generate their own detections by default.
	if n := count(got, "Failed sign-in"); n != 0 {
		t.Errorf("base rule emitted %d standalone detections", n)
	}
}

func TestEventCountDetail(t *testing.T) {
	rs := corrRuleset(t, "title: Brute force\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 10m\n    condition:\n        gt: 1\n")
	var ds []Detection
	for i := 0; i < 2; i++ {
		rs.Match(signin(t, "a@x", "1.1.1.1", 50126, time.Duration(i)*time.Minute), func(d Detection) { ds = append(ds, d) })
	}
	if len(ds) != 1 || ds[0].Correlation == nil {
		t.Fatalf("got %+v", ds)
	}
	c := ds[0].Correlation
	if c.Count != 2 || len(c.Events) != 2 || c.Group[0] != (MatchedField{"user", "a@x"}) || c.Events[1].RecordID != "a@x-60000000000" {
		t.Errorf("correlation detail: %+v", c)
	}
}

func TestValueCount(t *testing.T) {
	rs := corrRuleset(t, `title: Password spray
correlation:
    type: value_count
    rules: [failed_signin]
    group-by: [src_ip]
    timespan: 1h
    condition:
        field: user
        gte: 3
`)
	same := titles(rs,
		signin(t, "a@x", "9.9.9.9", 50126, 0),
		signin(t, "a@x", "9.9.9.9", 50126, time.Minute),
		signin(t, "a@x", "9.9.9.9", 50126, 2*time.Minute),
		signin(t, "b@x", "9.9.9.9", 50126, 3*time.Minute),
	)
	if count(same, "Password spray") != 0 {
		t.Errorf("two distinct users fired: %v", same)
	}
	rs = corrRuleset(t, strings.Replace(`title: Password spray
correlation:
    type: value_count
    rules: [failed_signin]
    group-by: [src_ip]
    timespan: 1h
    condition:
        field: user
        gte: 3
`, "", "", 1))
	got := titles(rs,
		signin(t, "a@x", "9.9.9.9", 50126, 0),
		signin(t, "b@x", "9.9.9.9", 50126, time.Minute),
		signin(t, "c@x", "8.8.8.8", 50126, 2*time.Minute),
		signin(t, "c@x", "9.9.9.9", 50126, 3*time.Minute),
	)
	if count(got, "Password spray") != 1 {
		t.Errorf("three users from one IP: %v", got)
	}
}

func TestTemporal(t *testing.T) {
	corr := "title: Both\ncorrelation:\n    type: temporal\n    rules: [failed_signin, ok_signin]\n    group-by: [user]\n    timespan: 5m\n"
	for _, c := range []struct {
		name string
		evs  func() []*event.Event
		want int
	}{
		{"fail then ok", func() []*event.Event {
			return []*event.Event{signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 0, time.Minute)}
		}, 1},
		{"ok then fail", func() []*event.Event {
			return []*event.Event{signin(t, "a@x", "", 0, 0), signin(t, "a@x", "", 50126, time.Minute)}
		}, 1},
		{"too far apart", func() []*event.Event {
			return []*event.Event{signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 0, 6*time.Minute)}
		}, 0},
		{"different users", func() []*event.Event {
			return []*event.Event{signin(t, "a@x", "", 50126, 0), signin(t, "b@x", "", 0, time.Minute)}
		}, 0},
	} {
		rs := corrRuleset(t, corr)
		if got := count(titles(rs, c.evs()...), "Both"); got != c.want {
			t.Errorf("%s: fired %d, want %d", c.name, got, c.want)
		}
	}
}

func TestTemporalConditionExpression(t *testing.T) {
	rs := corrRuleset(t, "title: Either\ncorrelation:\n    type: temporal\n    rules: [failed_signin, ok_signin]\n    group-by: [user]\n    timespan: 5m\n    condition: failed_signin or ok_signin\n")
	if got := count(titles(rs, signin(t, "a@x", "", 0, 0)), "Either"); got != 1 {
		t.Errorf("fired %d", got)
	}
}

func TestTemporalOrdered(t *testing.T) {
	corr := "title: Fail then success\ncorrelation:\n    type: temporal_ordered\n    rules: [failed_signin, ok_signin]\n    group-by: [user]\n    timespan: 5m\n"
	rs := corrRuleset(t, corr)
	if got := count(titles(rs, signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 0, time.Minute)), "Fail then success"); got != 1 {
		t.Errorf("in order: fired %d", got)
	}
	rs = corrRuleset(t, corr)
	if got := count(titles(rs, signin(t, "a@x", "", 0, 0), signin(t, "a@x", "", 50126, time.Minute)), "Fail then success"); got != 0 {
		t.Errorf("reversed: fired %d", got)
	}
	rs = corrRuleset(t, corr)
	if got := count(titles(rs, signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 0, 10*time.Minute)), "Fail then success"); got != 0 {
		t.Errorf("too late: fired %d", got)
	}
}

// TestChainedCorrelation is the spec's example: many failed logins (an
// event_count correlation) followed by a success, as temporal_ordered.
func TestChainedCorrelation(t *testing.T) {
	corr := `title: Many failures then success
correlation:
    type: temporal_ordered
    rules:
        - many_failed
        - ok_signin
    group-by: [user]
    timespan: 10m
level: high
---
title: Many failed sign-ins
name: many_failed
correlation:
    type: event_count
    rules: [failed_signin]
    group-by: [user]
    timespan: 10m
    condition:
        gte: 3
`
	rs := corrRuleset(t, corr)
	var evs []*event.Event
	for i := 0; i < 3; i++ {
		evs = append(evs, signin(t, "a@x", "", 50126, time.Duration(i)*time.Minute))
	}
	evs = append(evs, signin(t, "a@x", "", 0, 4*time.Minute), signin(t, "b@x", "", 0, 4*time.Minute))
	got := titles(rs, evs...)
	if count(got, "Many failures then success") != 1 || count(got, "Many failed sign-ins") != 0 {
		t.Errorf("got %v", got)
	}
	// Two failures only: no chain.
	rs = corrRuleset(t, corr)
	got = titles(rs, signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 50126, time.Minute), signin(t, "a@x", "", 0, 2*time.Minute))
	if len(got) != 0 {
		t.Errorf("got %v", got)
	}
}

func TestAliases(t *testing.T) {
	rs := corrRuleset(t, `title: Same address
correlation:
    type: temporal
    rules: [failed_signin, ok_signin]
    group-by: [addr]
    timespan: 5m
    aliases:
        addr:
            failed_signin: ipAddress
            ok_signin: src_ip
`)
	got := titles(rs, signin(t, "a@x", "5.5.5.5", 50126, 0), signin(t, "b@x", "5.5.5.5", 0, time.Minute))
	if count(got, "Same address") != 1 {
		t.Errorf("got %v", got)
	}
}

func TestGenerate(t *testing.T) {
	rs := corrRuleset(t, "title: C\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 5m\n    condition:\n        gte: 2\n    generate: true\n")
	got := titles(rs, signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 50126, time.Minute))
	if count(got, "Failed sign-in") != 2 || count(got, "C") != 1 {
		t.Errorf("got %v", got)
	}
}

// TestUpperBound: conditions with an upper bound are decided when the
// window closes (a later event of the group, event time moving on, or
// Flush).
func TestUpperBound(t *testing.T) {
	corr := "title: Exactly two\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 10m\n    condition:\n        eq: 2\n"
	rs := corrRuleset(t, corr)
	var mid []string
	rs.Match(signin(t, "a@x", "", 50126, 0), func(d Detection) { mid = append(mid, d.Title) })
	rs.Match(signin(t, "a@x", "", 50126, time.Minute), func(d Detection) { mid = append(mid, d.Title) })
	if len(mid) != 0 {
		t.Fatalf("decided before the window closed: %v", mid)
	}
	var end []string
	rs.Flush(func(d Detection) { end = append(end, d.Title) })
	if count(end, "Exactly two") != 1 {
		t.Errorf("flush: %v", end)
	}
	// Three in the window: no detection; a later window with two: one.
	rs = corrRuleset(t, corr)
	got := titles(rs,
		signin(t, "a@x", "", 50126, 0), signin(t, "a@x", "", 50126, time.Minute), signin(t, "a@x", "", 50126, 2*time.Minute),
		signin(t, "a@x", "", 50126, 30*time.Minute), signin(t, "a@x", "", 50126, 31*time.Minute),
		signin(t, "z@x", "", 0, 2*time.Hour), // moves event time on
	)
	if count(got, "Exactly two") != 1 {
		t.Errorf("got %v", got)
	}
}

func TestLateEvents(t *testing.T) {
	rs := corrRuleset(t, "title: C\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 5m\n    condition:\n        gte: 2\n")
	got := titles(rs, signin(t, "a@x", "", 50126, time.Hour), signin(t, "a@x", "", 50126, 0))
	if len(got) != 0 || rs.Stats().Late != 1 {
		t.Errorf("got %v, stats %+v", got, rs.Stats())
	}
	// Out of order but within the window still counts.
	rs = corrRuleset(t, "title: C\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 5m\n    condition:\n        gte: 2\n")
	got = titles(rs, signin(t, "a@x", "", 50126, 3*time.Minute), signin(t, "a@x", "", 50126, time.Minute))
	if count(got, "C") != 1 {
		t.Errorf("got %v", got)
	}
}

func TestCorrelationRefusals(t *testing.T) {
	cases := []struct{ name, corr, reason string }{
		{"unknown type", "title: C\ncorrelation:\n    type: value_sum\n    rules: [failed_signin]\n    timespan: 5m\n    condition:\n        gte: 2\n", `unsupported correlation type "value_sum"`},
		{"unknown rule", "title: C\ncorrelation:\n    type: event_count\n    rules: [nope]\n    timespan: 5m\n    condition:\n        gte: 2\n", `unknown rule "nope"`},
		{"bad timespan", "title: C\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    timespan: 5 minutes\n    condition:\n        gte: 2\n", "timespan"},
		{"no condition", "title: C\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    timespan: 5m\n", "needs a condition"},
		{"value_count no field", "title: C\ncorrelation:\n    type: value_count\n    rules: [failed_signin]\n    timespan: 5m\n    condition:\n        gte: 2\n", "needs condition.field"},
		{"cycle", "title: A\nname: ca\ncorrelation:\n    type: event_count\n    rules: [cb]\n    timespan: 5m\n    condition:\n        gte: 2\n---\ntitle: B\nname: cb\ncorrelation:\n    type: event_count\n    rules: [ca]\n    timespan: 5m\n    condition:\n        gte: 2\n", "cycle"},
		{"alias missing rule", "title: C\ncorrelation:\n    type: temporal\n    rules: [failed_signin, ok_signin]\n    group-by: [addr]\n    timespan: 5m\n    aliases:\n        addr:\n            failed_signin: ipAddress\n", `alias "addr" has no field`},
		{"chain group-by", "title: O\ncorrelation:\n    type: event_count\n    rules: [inner]\n    group-by: [src_ip]\n    timespan: 5m\n    condition:\n        gte: 2\n---\ntitle: I\nname: inner\ncorrelation:\n    type: event_count\n    rules: [failed_signin]\n    group-by: [user]\n    timespan: 5m\n    condition:\n        gte: 2\n", "not a group-by field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ref := compile(t, Options{}, map[string]string{"base.yml": signinRules, "corr.yml": c.corr})
			found := false
			for _, r := range ref {
				found = found || strings.Contains(r.Reason, c.reason)
			}
			if !found {
				t.Errorf("want refusal containing %q, got %+v", c.reason, ref)
			}
		})
	}
	// A correlation over a refused rule is refused too.
	_, ref := compile(t, Options{}, map[string]string{
		"bad.yml":  "title: Bad\nname: bad\nlogsource:\n    product: m365\ndetection:\n    sel:\n        F|nope: x\n    condition: sel\n",
		"corr.yml": "title: C\ncorrelation:\n    type: event_count\n    rules: [bad]\n    timespan: 5m\n    condition:\n        gte: 2\n",
	})
	if len(ref) != 2 || !strings.Contains(ref[1].Reason, "refused rule") {
		t.Errorf("got %+v", ref)
	}
}
