package source

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// flattenActivity splits a Reports API activity into one record per event
// as SIEM pipelines export it: name, type and parameters at the top level
// beside the activity's other fields. mapParams turns the parameter list
// into an object of name to value; timeLayout rewrites id.time.
func flattenActivity(t *testing.T, activity []byte, mapParams bool, timeLayout string) [][]byte {
	t.Helper()
	var a map[string]any
	if err := json.Unmarshal(activity, &a); err != nil {
		t.Fatal(err)
	}
	evs, _ := a["events"].([]any)
	delete(a, "events")
	if timeLayout != "" {
		id := a["id"].(map[string]any)
		id["time"] = activityTime(t, id["time"]).Format(timeLayout)
	}
	var out [][]byte
	for _, x := range evs {
		ev := x.(map[string]any)
		rec := map[string]any{}
		for k, v := range a {
			rec[k] = v
		}
		for k, v := range ev {
			rec[k] = v
		}
		if ps, ok := ev["parameters"].([]any); ok && mapParams {
			m := map[string]any{}
			for _, p := range ps {
				p := p.(map[string]any)
				for _, vk := range []string{"value", "intValue", "boolValue", "multiValue"} {
					if v, ok := p[vk]; ok {
						m[p["name"].(string)] = v
					}
				}
			}
			rec["parameters"] = m
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// activityTime reads id.time as the test's inputs hold it: RFC 3339, or
// the Java client's {"value": epoch ms} object.
func activityTime(t *testing.T, v any) time.Time {
	switch x := v.(type) {
	case string:
		tm, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	case map[string]any:
		return time.UnixMilli(int64(x["value"].(float64))).UTC()
	}
	t.Fatalf("id.time %v", v)
	return time.Time{}
}

// normFields is every normalized field of an event but its record id.
func normFields(e *event.Event) map[string]any {
	return map[string]any{
		"time": e.Time, "tenant": e.Tenant, "source": e.Source, "operation": e.Operation, "result": e.Result,
		"failed": e.Failed, "user": e.User, "app_id": e.AppID, "client_app_id": e.ClientAppID,
		"service_principal": e.ServicePrincipal, "ip": e.IP, "user_agent": e.UserAgent, "session": e.SessionID,
		"token": e.TokenID, "mailbox": e.Mailbox, "folders": e.Folders, "messages": e.MessageIDs, "items": e.ItemCount,
	}
}

// checkFlattened decodes an activity and its flattened records in every
// variant and requires the same normalized events and rule-visible fields.
func checkFlattened(t *testing.T, name string, activity []byte) {
	t.Helper()
	d := NewDecoder(nil, nil)
	want, err := d.Decode(activity, event.Origin{File: name})
	if err != nil {
		t.Fatalf("%s: the activity does not decode: %v", name, err)
	}
	var act struct {
		ID struct {
			UniqueQualifier json.Number     `json:"uniqueQualifier"`
			ApplicationName string          `json:"applicationName"`
			Time            json.RawMessage `json:"time"`
		} `json:"id"`
		Events []struct {
			Parameters []struct {
				Name string `json:"name"`
			} `json:"parameters"`
		} `json:"events"`
	}
	dec := json.NewDecoder(strings.NewReader(string(activity)))
	dec.UseNumber()
	if err := dec.Decode(&act); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(act.Events) || len(want) == 0 {
		t.Fatalf("%s: %d events from an activity of %d", name, len(want), len(act.Events))
	}
	for i, w := range want {
		// The collector's key when id.time is a string; the Java client's
		// {value: ms} form has none (ingest then keys by content).
		wantID := ""
		var ts string
		if json.Unmarshal(act.ID.Time, &ts) == nil {
			wantID = act.ID.ApplicationName + "|" + ts + "|" + act.ID.UniqueQualifier.String()
		}
		if w.Time.IsZero() || w.RecordID != wantID {
			t.Fatalf("%s: activity event %d: time %v, record id %q", name, i, w.Time, w.RecordID)
		}
	}
	for _, mapParams := range []bool{false, true} {
		for _, layout := range []string{"", time.RFC3339Nano, "2006-01-02 15:04:05.000000000", "2006-01-02 15:04:05"} {
			variant := fmt.Sprintf("%s (map parameters %v, id.time %q)", name, mapParams, layout)
			recs := flattenActivity(t, activity, mapParams, layout)
			for i, rec := range recs {
				if layout == "" && strings.Contains(string(rec), `"dateOnly"`) {
					continue // covered by the activity itself
				}
				got, err := d.Decode(rec, event.Origin{File: variant, Index: i})
				if err != nil {
					t.Fatalf("%s record %d: %v\n%s", variant, i, err, rec)
				}
				if len(got) != 1 {
					t.Fatalf("%s record %d: %d events", variant, i, len(got))
				}
				g, w := got[0], want[i]
				wn, gn := normFields(w), normFields(g)
				if layout == "2006-01-02 15:04:05" {
					wn["time"] = w.Time.Truncate(time.Second)
				}
				if !reflect.DeepEqual(gn, wn) {
					t.Errorf("%s record %d:\n got %v\nwant %v", variant, i, gn, wn)
				}
				if g.RecordID != "" {
					t.Errorf("%s record %d: record id %q; a flattened record has none of its own", variant, i, g.RecordID)
				}
				names := []string{"eventName", "eventType", "eventService", "id.applicationName", "actor.email", "ipAddress", "events.name", "events.type"}
				for _, p := range act.Events[i].Parameters {
					names = append(names, p.Name, "events.parameters."+p.Name)
				}
				for _, n := range names {
					if gv, wv := g.Get(n), w.Get(n); gv != wv {
						t.Errorf("%s record %d: field %s = %q, the activity's event has %q", variant, i, n, gv, wv)
					}
				}
			}
		}
	}
}

func TestGWSFlattenedFixture(t *testing.T) {
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	b, err := os.ReadFile("testdata/gws_activities.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	for i, a := range page.Items {
		checkFlattened(t, fmt.Sprintf("gws_activities.json item %d", i), a)
	}
}

// The real Reports API activity Defender for Cloud Apps captured in
// CloudAppEvents.RawEventData (id.time as the Java client's object,
// uniqueQualifier as a number), and its flattened forms.
func TestGWSFlattenedReal(t *testing.T) {
	path := filepath.Join(sharedData(t), "graph2otel-live-fixtures", "defender_cloudapp_identitylogon_advancedhunting.jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Properties struct {
				RawEventData json.RawMessage `json:"RawEventData"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(r.Properties.RawEventData), "admin#reports#activity") {
			continue
		}
		n++
		checkFlattened(t, "RawEventData", r.Properties.RawEventData)
		evs, err := NewDecoder(nil, nil).Decode(r.Properties.RawEventData, event.Origin{})
		if err != nil {
			t.Fatal(err)
		}
		e := evs[0]
		if e.Source != "gws.token" || e.Operation != "activity" || e.User != "rob@rob-knight.com" || e.IP != "52.252.113.251" ||
			e.AppID != "77377267392-9l01lg5gpscp40cc30cc5gke03n6uu3b.apps.googleusercontent.com" || e.ServicePrincipal != "OpenAI" ||
			!e.Time.Equal(time.UnixMilli(1784393869239)) || e.RecordID != "" || e.Tenant != "C015ajidn" {
			t.Errorf("real activity decoded as %+v", normFields(e))
		}
	}
	if n == 0 {
		t.Fatalf("%s holds no Workspace activity", path)
	}
}

// The flattened fixture reads, through framing and detection, as the same
// events as the activities it was made from.
func TestGWSFlattenedReadPaths(t *testing.T) {
	acts, _, rej := readAll(t, []string{"testdata/gws_activities.json"}, Options{})
	flat, _, rej2 := readAll(t, []string{"testdata/gws_flattened.jsonl"}, Options{})
	if len(rej) != 0 || len(rej2) != 0 || len(acts) != 3 || len(flat) != len(acts) {
		t.Fatalf("%d activity events, %d flattened; rejects %v %v", len(acts), len(flat), rej, rej2)
	}
	for i := range acts {
		if a, f := normFields(acts[i]), normFields(flat[i]); !reflect.DeepEqual(a, f) {
			t.Errorf("event %d:\nflattened %v\nactivity  %v", i, f, a)
		}
		if flat[i].RecordID != "" || acts[i].RecordID == "" {
			t.Errorf("event %d: record ids %q (flattened) and %q (activity)", i, flat[i].RecordID, acts[i].RecordID)
		}
	}
}
