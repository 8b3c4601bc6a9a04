package report

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/appid"

	"github.com/vigil-audit/vigil/internal/incident"
)

// MaxMessagesShown caps the message list per mailbox in the HTML page;
// impact.csv always has every message.
const MaxMessagesShown = 100

type signalCount struct {
	Signal string
	Title  string
	Count  int
}

type htmlIncident struct {
	*incident.Incident
	Chart template.HTML
	// Identifier lists, each value with what is known about it, drawn as
	// one unbreakable item each so lines wrap between values.
	Mailboxes, ClientApps, Apps, IPs, Sessions, Tokens, Users []idLabel
	MoreSessions, MoreTokens                                  int
}

// idLabel is one identifier and, when known, what it names.
type idLabel struct {
	Value, Note string
}

func labels(vs []string, note func(string) string) []idLabel {
	out := make([]idLabel, len(vs))
	for i, v := range vs {
		out[i].Value = v
		if note != nil {
			out[i].Note = note(v)
		}
	}
	return out
}

func appName(id string) string {
	if a, ok := appid.Lookup(id); ok {
		return a.Name
	}
	return ""
}

func newHTMLIncident(inc *incident.Incident, describeIP func(string) string) htmlIncident {
	h := htmlIncident{Incident: inc, Chart: incidentChart(inc)}
	a := inc.Actors
	h.Mailboxes = labels(inc.Mailboxes, nil)
	h.ClientApps = labels(a.ClientApps, appName)
	h.Apps = labels(a.Apps, appName)
	h.IPs = labels(a.IPs, describeIP)
	h.Sessions = labels(firstN(a.Sessions, 12), nil)
	h.MoreSessions = more(a.Sessions, 12)
	h.Tokens = labels(firstN(a.Tokens, 12), nil)
	h.MoreTokens = more(a.Tokens, 12)
	h.Users = labels(a.Users, nil)
	return h
}

func firstN(xs []string, n int) []string {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

func more(xs []string, n int) int {
	if len(xs) > n {
		return len(xs) - n
	}
	return 0
}

type htmlPage struct {
	Title       string
	From, To    string
	Events      int
	Sources     []signalCount
	AlertCount  int
	BySignal    []signalCount
	Incidents   []htmlIncident
	Overview    template.HTML
	Posture     []alert.Alert
	Messages    int
	Mailboxes   int
	Incomplete  int
	MaxMessages int
	Inputs      Inputs
	FileList    []string
	MoreFiles   int
	Baseline    string
	Version     string
	Generated   string
	Outside     []ruleGroup
	UrgentOut   int // high or critical detections outside incidents
}

// ruleGroup is one rule's detections outside incidents: who, what, when.
type ruleGroup struct {
	Signal, Title string
	Level         alert.Level
	Count         int
	Users         []string
	MoreUsers     int
	First, Last   time.Time
	Values        []string // the most frequent key values
	Rows          []alert.Alert
}

// maxOutsideRows is the rows shown per rule outside incidents.
const maxOutsideRows = 20

// keyFields are the values that say who did it, shown per rule.
var keyFields = []string{"src_ip", "client_app_id", "app_id", "user_agent", "asn", "country", "network_kind", "mailboxes", "query"}

// outside groups by rule the alerts each walks that no incident holds.
func outside(each func(func(*alert.Alert) error) error, incs []*incident.Incident, also func(*alert.Alert)) ([]ruleGroup, int, error) {
	in := map[string]bool{}
	for _, inc := range incs {
		for i := range inc.Alerts {
			in[inc.Alerts[i].Key()] = true
		}
	}
	groups := map[string]*ruleGroup{}
	users := map[string]map[string]bool{}
	values := map[string]map[string]int{}
	urgent := 0
	err := each(func(a *alert.Alert) error {
		also(a)
		if in[a.Key()] || a.Posture {
			return nil
		}
		if a.Level >= alert.High {
			urgent++
		}
		g := groups[a.Signal]
		if g == nil {
			g = &ruleGroup{Signal: a.Signal, Title: a.Title, Level: a.Level, First: a.Time, Last: a.Time}
			groups[a.Signal] = g
			users[a.Signal], values[a.Signal] = map[string]bool{}, map[string]int{}
		}
		g.Count++
		g.Level = max(g.Level, a.Level)
		if a.Time.Before(g.First) {
			g.First = a.Time
		}
		if a.Time.After(g.Last) {
			g.Last = a.Time
		}
		u := a.User
		if u == "" {
			u = a.Mailbox
		}
		if u != "" {
			users[a.Signal][u] = true
		}
		if a.IP != "" {
			values[a.Signal]["ip="+a.IP]++
		}
		for _, k := range keyFields {
			if v := a.Fields[k]; v != "" {
				values[a.Signal][k+"="+v]++
			}
		}
		if len(g.Rows) < maxOutsideRows {
			g.Rows = append(g.Rows, *a)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	var out []ruleGroup
	for sig, g := range groups {
		us := slices.Sorted(maps.Keys(users[sig]))
		if len(us) > 10 {
			g.MoreUsers, us = len(us)-10, us[:10]
		}
		g.Users = us
		vs := slices.Collect(maps.Keys(values[sig]))
		sort.Slice(vs, func(i, j int) bool {
			a, b := values[sig][vs[i]], values[sig][vs[j]]
			return a > b || a == b && vs[i] < vs[j]
		})
		for i, v := range vs {
			if i == 8 {
				break
			}
			g.Values = append(g.Values, v+" ("+strconv.Itoa(values[sig][v])+")")
		}
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Level != out[j].Level {
			return out[i].Level > out[j].Level
		}
		return out[i].Signal < out[j].Signal
	})
	return out, urgent, nil
}

var signalNames = map[string]string{
	"D1": "Token or session no sign-in issued", "D2": "First-seen app reading mail", "D3": "Read volume / throttling",
	"D4": "Network with no sign-in / hosting", "D7": "Script-style client", "D8": "Sensitive search then reads",
	"D9": "Coverage gap / audit disabled", "D11": "IOC match",
}

// WriteHTML renders the self-contained report page.
func WriteHTML(w io.Writer, r *Report) error {
	p := htmlPage{Title: r.Title, Events: r.Events, MaxMessages: MaxMessagesShown, Inputs: r.Inputs, Version: r.Version}
	if r.Alerts != nil {
		p.AlertCount = r.Alerts.Len()
	}
	if p.Version == "" {
		p.Version = "dev"
	}
	if !r.Generated.IsZero() {
		p.Generated = fmtTime(r.Generated)
	}
	p.FileList = r.Inputs.Files
	if len(p.FileList) > 50 {
		p.MoreFiles, p.FileList = len(p.FileList)-50, p.FileList[:50]
	}
	if r.Learning > 0 && !r.From.IsZero() {
		end := r.From.Add(r.Learning)
		p.Baseline = "The behaviours learn each tenant's apps, networks and read volumes from its first " + humanDur(r.Learning) + " of events: " +
			"D2 (apps new to the tenant or a mailbox), D4 (networks new to a user), D3 (read volume) and D7 (script clients) were not judged before " + fmtTime(end) + "."
		if !end.Before(r.To) {
			p.Baseline += " The input ends before that: only D1, D8, D9 and D11 and the Sigma rules judged it."
		}
	}
	// One walk of the alerts: the rules outside incidents, the count per
	// signal and the first posture findings.
	bySig := map[string]int{}
	titles := map[string]string{}
	var err error
	p.Outside, p.UrgentOut, err = outside(r.each, r.Incidents, func(a *alert.Alert) {
		bySig[a.Signal]++
		if _, ok := titles[a.Signal]; !ok {
			titles[a.Signal] = a.Title
		}
		if a.Posture && len(p.Posture) < 50 {
			p.Posture = append(p.Posture, *a)
		}
	})
	if err != nil {
		return err
	}
	if p.Title == "" {
		p.Title = "vigil hunt report"
	}
	if !r.From.IsZero() {
		p.From, p.To = fmtTime(r.From), fmtTime(r.To)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Sources)) {
		p.Sources = append(p.Sources, signalCount{Signal: k, Count: r.Sources[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(bySig)) {
		t := signalNames[k]
		if t == "" {
			t = titles[k] // a Sigma rule: its title
		}
		p.BySignal = append(p.BySignal, signalCount{Signal: k, Title: t, Count: bySig[k]})
	}
	mbs := map[string]bool{}
	msgs := map[string]bool{} // a message two incidents read counts once
	var actorTimes []time.Time
	for _, inc := range r.Incidents {
		for _, rd := range inc.Impact.Reads {
			msgs[rd.Mailbox+"\x00"+rd.MessageID] = true
		}
		for _, m := range inc.Impact.Mailboxes {
			mbs[m] = true
		}
		if !inc.Impact.EvidenceComplete {
			p.Incomplete++
		}
		actorTimes = append(actorTimes, inc.Impact.AccessTimes...)
		p.Incidents = append(p.Incidents, newHTMLIncident(inc, r.DescribeIP))
	}
	p.Mailboxes = len(mbs)
	p.Messages = len(msgs)
	p.Overview = overviewChart(&r.Reads, actorTimes, r.From, r.To)
	return pageTmpl.Execute(w, &p)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// bucketSize picks a bar width giving at most maxBars bars.
func bucketSize(span time.Duration, maxBars int) time.Duration {
	for _, b := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if span/b < time.Duration(maxBars) {
			return b
		}
	}
	return 30 * 24 * time.Hour
}

func bucketize(ts []time.Time, from time.Time, size time.Duration, n int) []int {
	out := make([]int, n)
	for _, t := range ts {
		i := int(t.Sub(from) / size)
		if i >= 0 && i < n {
			out[i]++
		}
	}
	return out
}

// overviewChart draws two panels sharing a time axis: every mail read,
// and the reads attributed to incident actors (on their own scale, or
// they would vanish under ordinary traffic).
func overviewChart(reads *incident.Histogram, actor []time.Time, from, to time.Time) template.HTML {
	if reads.Total == 0 {
		return ""
	}
	ts, counts := reads.Buckets()
	if from.IsZero() || to.IsZero() {
		from, to = ts[0], ts[len(ts)-1].Add(reads.Step-time.Nanosecond)
	}
	size := max(bucketSize(to.Sub(from)+time.Second, 160), reads.Step)
	from = from.Truncate(size)
	n := int(to.Sub(from)/size) + 1
	a := make([]int, n)
	for i, t := range ts {
		if j := int(t.Sub(from) / size); j >= 0 && j < n {
			a[j] += counts[i]
		}
	}
	b := bucketize(actor, from, size, n)
	return svgChart([]panel{{"All mail reads", a, "#8a99ad"}, {"Reads by incident actors", b, "#c0392b"}}, from, size, n)
}

func incidentChart(inc *incident.Incident) template.HTML {
	ts := inc.Impact.AccessTimes
	if len(ts) == 0 {
		return ""
	}
	from, to := ts[0], ts[0]
	for _, t := range ts {
		if t.Before(from) {
			from = t
		}
		if t.After(to) {
			to = t
		}
	}
	size := bucketSize(to.Sub(from)+time.Second, 120)
	from = from.Truncate(size)
	n := int(to.Sub(from)/size) + 1
	return svgChart([]panel{{"Reads by this incident's actors per " + humanDur(size), bucketize(ts, from, size, n), "#c0392b"}}, from, size, n)
}

type panel struct {
	label  string
	counts []int
	color  string
}

func humanDur(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " d"
	case d >= time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h"
	default:
		return strconv.Itoa(int(d/time.Minute)) + " min"
	}
}

// Chart geometry, in viewBox units. The chart is drawn at the page's width:
// about 1100 px at 1400 px and 700 px in an 800 px window, where the
// 16-unit tick labels are still 10 px.
const (
	chartW         = 1100
	chartLeft      = 64
	chartRight     = 16
	chartPlotWidth = chartW - chartLeft - chartRight
	chartTickFont  = 16
	chartLabelFont = 18
)

// svgChart renders bar panels as inline SVG. Only numbers and escaped
// labels go into the markup. A panel with nothing in it says "none"
// rather than drawing a 0–0 axis. Time labels carry the year on the first
// label and wherever the year changes.
func svgChart(ps []panel, from time.Time, size time.Duration, n int) template.HTML {
	const ph, gap, top = 110, 46, 8
	H := top + len(ps)*(ph+gap) + 24
	bw := float64(chartPlotWidth) / float64(n)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %d %d" width="100%%" role="img" xmlns="http://www.w3.org/2000/svg">`, chartW, H)
	for pi, p := range ps {
		y0 := top + pi*(ph+gap) + 24
		max := 0
		for _, c := range p.counts {
			if c > max {
				max = c
			}
		}
		if max == 0 {
			fmt.Fprintf(&sb, `<text x="%d" y="%d" class="pl">%s: none</text>`, chartLeft, y0-8, template.HTMLEscapeString(p.label))
			continue
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="pl">%s (max %d per %s)</text>`, chartLeft, y0-8, template.HTMLEscapeString(p.label), max, humanDur(size))
		fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="ax"/>`, chartLeft, y0+ph, chartW-chartRight, y0+ph)
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="tk" text-anchor="end">%d</text><text x="%d" y="%d" class="tk" text-anchor="end">0</text>`,
			chartLeft-6, y0+12, max, chartLeft-6, y0+ph)
		for i, c := range p.counts {
			if c == 0 {
				continue
			}
			h := float64(ph) * float64(c) / float64(max)
			if h < 1.5 {
				h = 1.5
			}
			x := float64(chartLeft) + float64(i)*bw
			w := bw - 0.6
			if w < 0.8 {
				w = 0.8
			}
			t := from.Add(time.Duration(i) * size)
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d</title></rect>`,
				x, float64(y0+ph)-h, w, h, p.color, t.UTC().Format("2006-01-02 15:04Z"), c)
		}
	}
	// Time axis labels, as many as fit without overlapping at the widest
	// (with-year) form.
	short, long := "01-02", "2006-01-02"
	if size < 24*time.Hour {
		short, long = "01-02 15:04", "2006-01-02 15:04"
	}
	slot := float64(len(long))*chartTickFont*0.62 + 12
	step := max(1, int(math.Ceil(float64(n)/math.Floor(chartPlotWidth/slot))))
	for step > 1 && float64((n+step-1)/step)*slot > chartPlotWidth {
		step++
	}
	yl := H - 6
	prevYear := 0
	for i := 0; i < n; i += step {
		t := from.Add(time.Duration(i) * size).UTC()
		x := float64(chartLeft) + float64(i)*bw
		if x+slot-12 > chartW {
			break
		}
		layout := short
		if t.Year() != prevYear {
			layout = long
		}
		prevYear = t.Year()
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" class="tk">%s</text>`, x, yl, t.Format(layout))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

var funcs = template.FuncMap{
	"t": fmtTime,
	"tp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return fmtTime(*t)
	},
	"join": strings.Join,
	"sig": func(s string) string {
		if n, ok := signalNames[s]; ok {
			return s + " · " + n
		}
		return s
	},
	"folder": func(p string) string {
		if p == "" {
			return "(folder not recorded)"
		}
		return strings.TrimPrefix(p, `\`)
	},
	"firstN": firstN,
	"more":   more,
	"mbmsgs": func(inc *incident.Incident, mb string) []string {
		var out []string
		for _, r := range inc.Impact.Reads {
			if r.Mailbox == mb {
				out = append(out, r.MessageID)
			}
		}
		sort.Strings(out)
		return out
	},
}

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(pageHTML))
