package event_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// MailAccessOf reads sessions and access properties from its one parse of
// the record; they must be what the flattened fields say.
func TestMailAccessOfAgreesWithFields(t *testing.T) {
	paths := []string{"../source/testdata"}
	if _, err := os.Stat("../../../shared/data/otrf-security-datasets"); err == nil {
		paths = append(paths, filepath.Join("../../../shared/data/otrf-security-datasets", "OfficeActivityEvents.json"))
	} else {
		t.Log("../shared/data absent: real OfficeActivity samples skipped")
	}
	n := 0
	_, err := source.ReadPaths(t.Context(), paths, source.Options{}, func(e *event.Event) error {
		a, ok := event.MailAccessOf(e)
		if !ok {
			return nil
		}
		n++
		h, _ := event.MailAccessHeader(e)
		h.Folders = a.Folders
		if !reflect.DeepEqual(a, h) {
			t.Errorf("%s line %d:\nraw    %+v\nfields %+v", e.Origin.File, e.Origin.Line, a, h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("only %d mail accesses in the samples", n)
	}
}

// A mail access's properties and sessions are read whatever the case of
// their names and values, from a Name/Value list or an object, with a
// throttling flag that is a JSON boolean, and session ids once each.
func TestMailAccessProperties(t *testing.T) {
	for _, tc := range []struct {
		name, props     string
		sync, throttled bool
	}{
		{"list", `[{"Name":"MailAccessType","Value":"Sync"},{"Name":"IsThrottled","Value":"True"}]`, true, true},
		{"list, other case", `[{"Name":"mailaccesstype","Value":"SYNC"},{"Name":"isthrottled","Value":"true"}]`, true, true},
		{"object, boolean", `{"MailAccessType":"Bind","IsThrottled":true}`, false, true},
		{"object, other case", `{"MAILACCESSTYPE":"sync","IsThrottled":"False"}`, true, false},
		{"values not strings", `[{"Name":"MailAccessType","Value":1},{"Name":"IsThrottled","Value":null},{"Name":"IsThrottled"}]`, false, false},
	} {
		rec := `{"CreationTime":"2026-01-05T10:00:00","Id":"r1","Operation":"MailItemsAccessed","RecordType":50,"UserId":"a@c","MailboxOwnerUPN":"a@c",` +
			`"SessionId":"s1","AppAccessContext":{"AADSessionId":"s2"},"appAccessContext":{"AADSessionId":"s1"},` +
			`"OperationProperties":` + tc.props + `,"Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<m@c>"}]}]}`
		evs, err := source.NewDecoder(nil, nil).Decode([]byte(rec), event.Origin{})
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: %v", tc.name, err)
		}
		a, ok := event.MailAccessOf(evs[0])
		if !ok || a.Sync != tc.sync || a.Throttled != tc.throttled {
			t.Errorf("%s: sync %v throttled %v (ok %v), want %v %v", tc.name, a.Sync, a.Throttled, ok, tc.sync, tc.throttled)
		}
		if want := []string{"s2", "s1"}; !reflect.DeepEqual(a.SessionIDs, want) {
			t.Errorf("%s: sessions %q, want %q", tc.name, a.SessionIDs, want)
		}
	}
}
