package detect

import (
	"bytes"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// eventLess is the total order events are processed in: time, then
// source, record id and the verbatim bytes, so that equal times do not
// fall back on arrival order.
func eventLess(a, b *event.Event) bool {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c < 0 // most events differ in time: no key to build
	}
	return compareKey(keyOf(a), keyOf(b)) < 0
}

// sortKey is what events are ordered by.
type sortKey struct {
	Time     time.Time
	Source   string
	RecordID string
	Op       string // events of one record (a Workspace activity) differ here
	Raw      []byte
}

func keyOf(e *event.Event) sortKey {
	return sortKey{e.Time, e.Source, e.RecordID, e.Operation, e.Raw}
}

func compareKey(a, b sortKey) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	if c := strings.Compare(a.RecordID, b.RecordID); c != 0 {
		return c
	}
	if c := strings.Compare(a.Op, b.Op); c != 0 {
		return c
	}
	return bytes.Compare(a.Raw, b.Raw)
}
