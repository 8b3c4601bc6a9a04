// Package detect owns vigil's one detection pipeline: events go in as
// they arrive (from files, the journal or a live collector), are put in
// event-time order within a bounded reordering window, run through the
// Sigma rules (sigma/) and the stateful behaviours (behavior/), and come
// out as Alerts and incident updates (opened, grew, severity changed,
// impact changed) to a Sink. hunt, hunt --report, demo and the benchmarks
// all run through Pipeline; nothing else wires detectors together.
//
// What it guarantees:
//   - Event time throughout: the result depends on the events, not on the
//     order they arrive in, as long as disorder stays inside the
//     reordering window. Offline runs over inputs each in order merge
//     them as they are decoded (RunOrdered, which refuses an event the
//     window would misplace); source.ReadMerged reads exports newest
//     first back to front, so they are such inputs too. Over unordered
//     exports (and gzip ones newest first) runs put the input in order
//     first with Sorter, which spills sorted runs to a temporary
//     directory and merges them, in memory bounded by the run size, not
//     the input. Both give the same result.
//   - Memory bounded by entities, not events: the behaviours keep state
//     per tenant, mailbox, app, network and token/session (with expiry),
//     and the accesses awaiting late sign-ins beyond a few thousand on
//     disk; the pipeline keeps the alerts of incident groups that may still
//     change and the incidents (settle.go): a group whose alerts are all
//     older than the incident window plus Config.Settle (how late an alert
//     may still be dated) settles, its alerts leave memory (to a spool
//     file of sorted runs that the Result's Alerts merge as a report
//     walks them, never all in memory; or forgotten with
//     ForgetSettled), an incident
//     stays final, and a Tally keeps the actors' breadth for the groups
//     still held; mail accesses go to an access log on disk that the
//     impact pass reads back, keeping only what the incidents' actors
//     read.
//   - Two halves: Prepare (rule matching, mail-access facts) needs no
//     state and runs on many goroutines; ProcessItem sees the events in
//     order. parallel.InOrder joins them. In offline runs the ordered
//     half is itself on two goroutines (split.go): the behaviours on one,
//     the rest on the caller's, their alerts raised in the sequential
//     order, so the result is the same as on one.
//   - Snapshot and resume: SaveState after the last event of a run and
//     LoadState before the first of the next give the same alerts as one
//     run over both.
//
// It decodes no vendor format (source does; Sorter only re-reads records
// it spilled) and formats no output (timeline and report do).
package detect
