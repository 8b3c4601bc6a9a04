// Package server owns vigil's long-running HTTP side: push ingest into the
// journal, the JSON API over incidents, alerts, sources and the journal's
// checkpoints and proofs, health and metrics, and the alerts it sends out
// (through sink). It wires parts other packages own; it decodes nothing
// itself (source does), stores nothing itself (journal does) and decides
// nothing about what is an intrusion (detect and incident do).
//
// # What it guarantees
//
//   - An ingest request is answered 200 only after every record it carried
//     is durable in the journal (or was already there: a duplicate) or is
//     kept in the quarantine file with its reason.
//   - Deny by default: every endpoint but /healthz needs an API key whose
//     role allows it (auth); denied requests are logged without the key.
//     The web interface under /ui/ (package ui, when Deps.UI is set) needs
//     a session made from such a key or a one-time login link; only its
//     login form and embedded assets are open.
//   - Bounded: request bodies have a size limit (413 past it), each key a
//     request rate (429), and ingest answers 429 with Retry-After while
//     detection lags too far behind the journal, instead of buffering.
//   - Listening on anything but loopback requires TLS.
package server
