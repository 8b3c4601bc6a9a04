// Package source turns audit-log files into events. It owns framing —
// plain, gzip or zip input, UTF-8 BOM, JSON lines, JSON arrays,
// concatenated or pretty-printed JSON, {"value":[...]} / {"records":[...]}
// envelopes and CSV exports — and per-record format detection, handing
// each record to the decoder of its format (sub-packages m365, entra, gws,
// inboxrule, jsonl).
//
// What it guarantees, whatever the input:
//   - Bounded resources: framing streams, holding one record (at most
//     Limits.MaxRecordBytes of it); a record's depth, fields and array
//     elements are judged on its bytes, without recursion, before it is
//     parsed; compressed inputs are bounded in size and ratio.
//   - Nothing dropped silently: a record that cannot be decoded, or is past
//     a limit, never stops the rest of its input; it is counted by reason in
//     Stats and written, with file, line, offset and reason, to the
//     quarantine writer. Records read = decoded + quarantined. Directory
//     entries not read are listed in Stats.Skipped; an input not read to its
//     end is quarantined, listed in Stats.Damaged, and the other inputs are
//     read.
//
// Decoding runs on several goroutines; ReadPaths still hands events to its
// callback one at a time, in input order. ReadMerged merges inputs each in
// time order by event time; with Options.Reverse it reads inputs newest
// first back to front (reverse.go), with the records and rejects of a
// forward read, last first.
package source
