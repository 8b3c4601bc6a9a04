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
