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

// Decode builds one event per item of v's events[] and hands each to
// finish, which must complete it from b (b.Finish) before Decode builds
// the next.
func Decode(v *fastjson.Value, b *event.Builder, finish func(*event.Event)) error {
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
	o, _ := v.Object()
	for _, ev := range evs {
		e := &event.Event{
			Time:      t,
			Source:    "gws." + strings.ToLower(app),
			Tenant:    record.Str(v, "id", "customerId"),
			Operation: record.Str(ev, "name"),
			User:      strings.ToLower(record.Str(v, "actor", "email")),
			IP:        record.IP(record.Str(v, "ipAddress")),
			RecordID:  record.Str(v, "id", "uniqueQualifier"),
		}
		o.Visit(func(k []byte, c *fastjson.Value) {
			if string(k) != "events" {
				b.Flatten(string(k), c)
			}
		})
		b.Flatten("events", ev)
		params := ev.GetArray("parameters")
		// Parameters also sit at the top level under their own names, and
		// the event under eventName/eventService, as the Workspace logs
		// exported through Cloud Logging name them (SigmaHQ's rules use
		// those names).
		for _, p := range params {
			name := record.Str(p, "name")
			if name == "" {
				continue
			}
			for _, vk := range []string{"value", "intValue", "boolValue", "multiValue", "multiIntValue", "messageValue"} {
				if pv := p.Get(vk); pv != nil {
					b.Flatten(name, pv)
				}
			}
			switch name {
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
		b.AddString("eventName", []byte(e.Operation))
		b.AddString("eventType", []byte(record.Str(ev, "type")))
		b.AddString("eventService", []byte(strings.ToLower(app)+".googleapis.com"))
		if e.Operation == "login_failure" {
			e.Failed = true
		}
		e.UserAgent = record.Str(v, "networkInfo", "userAgent")
		e.ItemCount = len(e.MessageIDs)
		finish(e)
	}
	return nil
}
