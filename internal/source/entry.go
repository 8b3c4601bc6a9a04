package source

import (
	"strconv"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
)

// Entry is the journal entry of a decoded record: its source, where it was
// read (file:line), its record id — the source's own id, or the content id
// (journal.ContentID) for records that carry none, so that ingesting the
// same input twice adds nothing — and its raw bytes.
func Entry(e *event.Event) journal.Entry {
	origin := e.Origin.File
	if e.Origin.Line > 0 {
		origin += ":" + strconv.Itoa(e.Origin.Line)
	}
	id := e.RecordID
	if id == "" {
		id = journal.ContentID(e.Raw)
	}
	return journal.Entry{Source: e.Source, Origin: origin, RecordID: id, Raw: e.Raw}
}

// SameRecord reports whether b was decoded from the same record as a: the
// same bytes in memory, from the same place. The journal keeps records,
// not events: the events of one record (a Workspace activity's events[])
// are emitted one after another and make one entry.
func SameRecord(a, b *event.Event) bool {
	return len(a.Raw) > 0 && len(a.Raw) == len(b.Raw) && &a.Raw[0] == &b.Raw[0] &&
		a.Origin == b.Origin && a.Source == b.Source
}
