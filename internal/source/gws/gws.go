// Package gws decodes Google Workspace Admin SDK Reports API activity
// records (kind admin#reports#activity). An activity holds one or more
// events; each becomes one vigil event carrying the activity's actor,
// address and ids, the event's type and name, and its parameters by name.
package gws

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Detect reports whether v is a Reports API activity.
func Detect(v *fastjson.Value) bool {
	if record.Str(v, "kind") == "admin#reports#activity" {
		return true
	}
	return v.Get("id", "applicationName") != nil && v.Get("events") != nil
}

// Decode builds one event per item of v's events[] and hands each, with
// its index, to emit. Source fields come from Flatten with that index.
func Decode(v *fastjson.Value, emit func(e *event.Event, index int)) error {
	t, _, err := record.TimeOf(v, "id.time")
	if err != nil {
		return err
	}
	app := record.Str(v, "id", "applicationName")
	if app == "" {
		return fmt.Errorf("activity has no id.applicationName")
	}
	evs := v.GetArray("events")
	if len(evs) == 0 {
		return fmt.Errorf("activity has no events")
	}
	for i, ev := range evs {
		e := &event.Event{
			Time:      t,
			Source:    "gws." + strings.ToLower(app),
			Tenant:    record.Str(v, "id", "customerId"),
			Operation: record.Str(ev, "name"),
			User:      strings.ToLower(record.Str(v, "actor", "email")),
			IP:        record.IP(record.Str(v, "ipAddress")),
			RecordID:  record.Str(v, "id", "uniqueQualifier"),
			UserAgent: record.Str(v, "networkInfo", "userAgent"),
		}
		for _, p := range ev.GetArray("parameters") {
			switch record.Str(p, "name") {
			case "client_id", "app_id", "oauth_client_id":
				e.AppID = record.Str(p, "value")
			case "app_name":
				if e.ServicePrincipal == "" {
					e.ServicePrincipal = record.Str(p, "value")
				}
			case "login_failure_type":
				e.Failed = true
			case "message_id", "rfc2822_message_id":
				if id := record.Str(p, "value"); id != "" {
					e.MessageIDs = append(e.MessageIDs, id)
				}
			}
		}
		if e.Operation == "login_failure" {
			e.Failed = true
		}
		e.ItemCount = len(e.MessageIDs)
		emit(e, i)
	}
	return nil
}

// paramValueKeys are the keys a Reports API parameter keeps its value in.
var paramValueKeys = []string{"value", "intValue", "boolValue", "multiValue", "multiIntValue", "messageValue"}

// Flatten adds the source fields of event index of activity v: the
// activity's fields except the other events, the event under "events.",
// its parameters also at the top level under their own names, and
// eventName/eventType/eventService as Workspace logs exported through
// Cloud Logging name them (SigmaHQ's rules use those names).
func Flatten(b *event.Builder, v *fastjson.Value, index int) {
	evs := v.GetArray("events")
	if index < 0 || index >= len(evs) {
		return
	}
	ev := evs[index]
	o, _ := v.Object()
	o.Visit(func(k []byte, c *fastjson.Value) {
		if string(k) != "events" {
			b.Flatten(string(k), c)
		}
	})
	b.Flatten("events", ev)
	for _, p := range ev.GetArray("parameters") {
		name := record.Str(p, "name")
		if name == "" {
			continue
		}
		for _, vk := range paramValueKeys {
			if pv := p.Get(vk); pv != nil {
				b.Flatten(name, pv)
			}
		}
	}
	b.AddString("eventName", []byte(record.Str(ev, "name")))
	b.AddString("eventType", []byte(record.Str(ev, "type")))
	b.AddString("eventService", []byte(strings.ToLower(record.Str(v, "id", "applicationName"))+".googleapis.com"))
}
