// Package source turns audit-log files into events. It owns framing —
// plain or gzip input, UTF-8 BOM, JSON lines, JSON arrays, concatenated or
// pretty-printed JSON, {"value":[...]} / {"records":[...]} envelopes and
// CSV exports — and per-record format detection, handing each record to
// the decoder of its format (sub-packages m365, entra, gws, inboxrule,
// jsonl).
//
// A record that cannot be decoded never stops the rest of its file and is
// never dropped silently: it is counted by reason in Stats and written,
// with file, line, offset and reason, to the quarantine writer.
//
// Decoding runs on several goroutines; ReadPaths still hands events to its
// callback one at a time, in input order.
package source
