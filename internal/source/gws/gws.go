// Package gws decodes Google Workspace Admin SDK Reports API activity
// records (kind admin#reports#activity). An activity holds one or more
// events; each becomes one vigil event carrying the activity's actor,
// address and ids, the event's type and name, and its parameters by name.
//
// It also decodes activities flattened one event per record, as SIEM
// pipelines and data lakes export them: the event's name, type and
// parameters at the top level beside actor, id and ipAddress, parameters
// either the API's list of {name, value|intValue|boolValue|multiValue} or
// an object of name to value, and id.time in RFC 3339 or as
// "YYYY-MM-DD HH:MM:SS[.fffffffff]" (UTC). Such a record gives the same
// event as the activity it came from, except that it has no RecordID:
// id.uniqueQualifier names the whole activity, which the export split into
// several records, so it does not identify the record (it stays a source
// field).
package gws

import (
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// FlatIndex is the index Decode gives the event of a flattened record.
const FlatIndex = -1

// Detect reports whether v is a Reports API activity or one event of one
// flattened to a record of its own.
func Detect(v *fastjson.Value) bool {
	if record.Str(v, "kind") == "admin#reports#activity" {
		return true
	}
	if v.Get("id", "applicationName") == nil {
		return false
	}
	return v.Get("events") != nil || flat(v)
}

// flat reports whether v is one event flattened to a record: a string
// name at the top level and no events[].
func flat(v *fastjson.Value) bool {
	n := v.Get("name")
	return v.Get("events") == nil && n != nil && n.Type() == fastjson.TypeString
}

// Decode builds one event per item of v's events[] and hands each, with
// its index, to emit; a flattened record gives one event, with index
// FlatIndex. Source fields come from Flatten with that index.
func Decode(v *fastjson.Value, emit func(e *event.Event, index int)) error {
	t, err := timeOf(v)
	if err != nil {
		return err
	}
	app := record.Str(v, "id", "applicationName")
	if app == "" {
		return fmt.Errorf("activity has no id.applicationName")
	}
	if flat(v) {
		e := newEvent(v, v, t, app)
		e.RecordID = ""
		emit(e, FlatIndex)
		return nil
	}
	evs := v.GetArray("events")
	if len(evs) == 0 {
		return fmt.Errorf("activity has no events (nor an event's name at the top level)")
	}
	for i, ev := range evs {
		emit(newEvent(v, ev, t, app), i)
	}
	return nil
}

// recordID is applicationName|id.time|id.uniqueQualifier, the key the
// Reports API collector deduplicates by: uniqueQualifier alone repeats
// across activities at different times, and a record collected from the
// API and the same record read from an export must get one journal entry.
func recordID(v *fastjson.Value, app string) string {
	uq, ts := record.Str(v, "id", "uniqueQualifier"), record.Str(v, "id", "time")
	if uq == "" || ts == "" {
		return ""
	}
	return app + "|" + ts + "|" + uq
}

// newEvent builds the event of ev (an item of events[], or the flattened
// record itself) of activity v.
func newEvent(v, ev *fastjson.Value, t time.Time, app string) *event.Event {
	e := &event.Event{
		Time:      t,
		Source:    "gws." + strings.ToLower(app),
		Tenant:    record.Str(v, "id", "customerId"),
		Operation: record.Str(ev, "name"),
		User:      strings.ToLower(record.Str(v, "actor", "email")),
		IP:        record.IP(record.Str(v, "ipAddress")),
		RecordID:  recordID(v, app),
		UserAgent: record.Str(v, "networkInfo", "userAgent"),
	}
	eachParam(ev.Get("parameters"), func(name string, val *fastjson.Value) {
		switch name {
		case "client_id", "app_id", "oauth_client_id":
			e.AppID = record.Str(val)
		case "app_name":
			if e.ServicePrincipal == "" {
				e.ServicePrincipal = record.Str(val)
			}
		case "login_failure_type":
			e.Failed = true
		case "message_id", "rfc2822_message_id":
			if id := record.Str(val); id != "" {
				e.MessageIDs = append(e.MessageIDs, id)
			}
		}
	})
	if e.Operation == "login_failure" {
		e.Failed = true
	}
	e.ItemCount = len(e.MessageIDs)
	return e
}

// timeOf reads id.time: RFC 3339 or "YYYY-MM-DD HH:MM:SS[.f]" (a trailing
// " UTC", as data warehouses print timestamps, is allowed), or the
// {"value": epoch ms, ...} object Google's Java client serializes it to
// (as Defender's CloudAppEvents RawEventData carries it).
func timeOf(v *fastjson.Value) (time.Time, error) {
	x := v.Get("id", "time")
	if x != nil && x.Type() == fastjson.TypeObject {
		ms := x.Get("value")
		if ms == nil || ms.Type() != fastjson.TypeNumber {
			return time.Time{}, fmt.Errorf("field id.time: an object without a numeric value (epoch milliseconds)")
		}
		n, err := ms.Int64()
		if err != nil || n <= 0 {
			return time.Time{}, fmt.Errorf("field id.time: value %s is not epoch milliseconds", ms.MarshalTo(nil))
		}
		return time.UnixMilli(n).UTC(), nil
	}
	s := record.Str(v, "id", "time")
	if s == "" {
		return time.Time{}, fmt.Errorf("no timestamp field (looked for id.time)")
	}
	t, err := record.ParseTime(strings.TrimSuffix(s, " UTC"))
	if err != nil {
		return time.Time{}, fmt.Errorf("field id.time: %w", err)
	}
	return t, nil
}

// eachParam calls fn with each parameter's name and value: from the API's
// list of {name, value|intValue|...} (every value key present), or from
// an object of name to value.
func eachParam(ps *fastjson.Value, fn func(name string, val *fastjson.Value)) {
	if ps == nil {
		return
	}
	switch ps.Type() {
	case fastjson.TypeArray:
		a, _ := ps.Array()
		for _, p := range a {
			name := record.Str(p, "name")
			if name == "" {
				continue
			}
			for _, vk := range paramValueKeys {
				if pv := p.Get(vk); pv != nil {
					fn(name, pv)
				}
			}
		}
	case fastjson.TypeObject:
		o, _ := ps.Object()
		o.Visit(func(k []byte, x *fastjson.Value) {
			if len(k) > 0 {
				fn(string(k), x)
			}
		})
	}
}

// paramValueKeys are the keys a Reports API parameter keeps its value in.
var paramValueKeys = []string{"value", "intValue", "boolValue", "multiValue", "multiIntValue", "messageValue"}

// Flatten adds the source fields of event index of activity v: the
// activity's fields except the other events, the event under "events.",
// its parameters also at the top level under their own names, and
// eventName/eventType/eventService as Workspace logs exported through
// Cloud Logging name them (SigmaHQ's rules use those names). A flattened
// record (FlatIndex) keeps its own fields and gets the same names.
func Flatten(b *event.Builder, v *fastjson.Value, index int) {
	var ev *fastjson.Value
	if index == FlatIndex {
		ev = v
		b.Flatten("", v)
		for _, k := range []string{"name", "type", "parameters"} {
			if x := v.Get(k); x != nil {
				b.Flatten("events."+k, x)
			}
		}
	} else {
		evs := v.GetArray("events")
		if index < 0 || index >= len(evs) {
			return
		}
		ev = evs[index]
		o, _ := v.Object()
		o.Visit(func(k []byte, c *fastjson.Value) {
			if string(k) != "events" {
				b.Flatten(string(k), c)
			}
		})
		b.Flatten("events", ev)
	}
	eachParam(ev.Get("parameters"), func(name string, val *fastjson.Value) { b.Flatten(name, val) })
	b.AddString("eventName", []byte(record.Str(ev, "name")))
	b.AddString("eventType", []byte(record.Str(ev, "type")))
	b.AddString("eventService", []byte(strings.ToLower(record.Str(v, "id", "applicationName"))+".googleapis.com"))
}
