package detect

import (
	"slices"
	"strings"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
)

// sigmaAlert is the Alert of a Sigma detection. Values are cloned: they
// may point into input buffers an alert must not keep alive.
func sigmaAlert(d sigma.Detection) alert.Alert {
	lv, err := alert.ParseLevel(d.Level)
	if err != nil {
		lv = alert.Informational // the compiler accepts rules without a level
	}
	a := alert.Alert{Time: d.Time, Signal: d.RuleID, Title: d.Title, Level: lv, Tags: d.Tags, Author: d.Author}
	if e := d.Event; e != nil {
		a.Tenant, a.Source, a.Operation, a.User, a.IP = strings.ToLower(e.Tenant), e.Source, e.Operation, strings.ToLower(e.User), e.IP
		a.File, a.Line = e.Origin.File, e.Origin.Line
		if e.RecordID != "" {
			a.RecordIDs = []string{strings.Clone(e.RecordID)}
		}
		if a.Time.IsZero() {
			a.Time = e.Time
		}
	}
	for _, f := range d.Fields {
		v := strings.Clone(f.Value)
		if old, ok := a.Fields[f.Field]; ok && old != v {
			v = old + ", " + v // an array: every matching value
		}
		a.Set(f.Field, v)
	}
	if c := d.Correlation; c != nil {
		groups := make([]string, len(c.Group))
		for i, g := range c.Group {
			groups[i] = g.Field + "=" + g.Value // a new string
		}
		a.Group = strings.Join(groups, " ")
		a.Count = int64(c.Count)
		if a.Source == "" && len(d.Rule.Sources) > 0 {
			a.Source = d.Rule.Sources[0]
		}
		for _, ev := range c.Events {
			if ev.RecordID != "" && !slices.Contains(a.RecordIDs, ev.RecordID) {
				a.RecordIDs = append(a.RecordIDs, strings.Clone(ev.RecordID))
			}
		}
	}
	a.Raised = a.Time
	a.AddActor(alert.ActorIP, a.IP)
	a.AddActor(alert.ActorUser, a.User)
	return a
}
