// Package index owns vigil's investigation index: a derived, rebuildable
// analytical copy of the journal's events in DuckDB tables (events,
// mail_access, signins, audits, alerts, incidents; docs/search.md), the
// query language of `vigil search` compiled to SQL over them, read-only
// SQL for power users, and entity timelines.
//
// The journal stays the truth. The index records how far into the journal
// it has read (the next journal index), catches up from there (Update) and
// can be thrown away and rebuilt (Rebuild) with the same result. Rows are
// keyed by journal index and the event's number within its record, so the
// raw record is always fetched from the journal, never from the index.
// Alerts and incidents are not decoded from the journal: detection writes
// them (PutDetections), keyed by a stable alert id so a replay adds no row
// twice, and each alert is linked to its event through its record id.
//
// One process at a time may open an index for writing; read-only opens
// (search, timeline) may share it with each other but not with a writer.
package index
