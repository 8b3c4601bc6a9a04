// Package sink owns delivering vigil's alerts to people and systems: signed
// webhooks (Standard Webhooks v1), syslog (RFC 5424 over TCP or TLS with
// octet counting, CEF or JSON bodies), email over SMTP and a JSON-lines
// file, behind a persisted outbox that retries on a fixed ladder.
//
// # What it guarantees
//
//   - At least once, deduplicated by id: a Message handed to an Outbox is on
//     disk before Enqueue returns and stays there until a sink accepts it; a
//     second Message with the same id is not queued again, so a receiver
//     sees one delivery per incident state change (webhooks carry the id as
//     `webhook-id`, the receiver's idempotency key).
//   - Bounded retries: the Standard Webhooks ladder (immediately, 5 s, 5 m,
//     30 m, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, with jitter), Retry-After
//     honoured; a webhook answering 410 Gone is disabled and its messages
//     are kept as failed, never silently dropped.
//   - No request forgery: webhook connections are refused to loopback,
//     private, link-local, CGNAT and other non-public addresses unless the
//     sink is configured with allow_private; the check is made on the
//     address actually dialled, after DNS, so a name that resolves to
//     169.254.169.254 is refused too. Redirects are not followed.
//   - TLS across networks: webhooks need https, syslog TLS and SMTP
//     STARTTLS unless the receiver is on loopback.
//   - Secrets (webhook signing keys, SMTP passwords) never appear in errors
//     or logs.
//
// The package knows nothing of incidents or events: callers hand it a
// Message with an id, a type, a time and a JSON payload.
package sink
