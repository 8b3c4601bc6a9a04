// Package memdata answers the web UI's Data from one detection run held in
// memory: the incidents with their impact, the alerts and the decoded
// events. It serves `vigil serve --demo` and the UI's browser tests, where
// the tenant is simulated and small. Its timelines and search scan the
// events it holds, so its memory grows with them: a server over a real
// journal answers these from the search index instead. Events, the record
// store behind search and timelines, can also be fed live and bounded.
//
// Triage changes are kept in memory and handed to Options.Record first,
// which journals them; a change Record refuses is not applied.
package memdata
