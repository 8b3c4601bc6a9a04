// Package collect pulls audit records from vendor APIs into the journal,
// exactly once. It owns what every API collector has in common: windows,
// watermarks, deduplication by the source's record id, gap records,
// throttling, retries, clock skew and restart safety. The sub-packages own
// one API each (o365: Office 365 Management Activity API; graph: Microsoft
// Graph sign-ins, directory audits and risk detections, and the audit log
// query that backfills the Unified Audit Log beyond 7 days; gws: Google
// Workspace Reports API) and know nothing of watermarks or the journal;
// auth owns the OAuth client credentials of Entra and Google; setup turns a
// vigil.yaml into collectors; fake holds in-process fake APIs for tests.
//
// # What it guarantees
//
//   - Nothing lost to late delivery: each poll covers
//     [watermark − overlap, now − settle) in windows of at most the API's
//     limit; the watermark advances only after every page of a window is
//     durable in the journal, and it is never ahead of now − settle.
//   - Nothing twice: records are deduplicated on the source's record id
//     (UAL Id, Graph id, Workspace applicationName|id.time|id.uniqueQualifier)
//     before the journal, against a per-source set kept for a horizon of
//     at least 8 days and pruned by it (memory is bounded by the records
//     of that horizon, never by the journal's size).
//   - Restart safety: the state (watermark, seen ids) is written
//     atomically after the window's records are durable, together with the
//     journal size at that moment; on start the collector re-reads its own
//     entries appended after that size, so a run killed anywhere between
//     fetch, append and commit never stores a record twice or loses one.
//   - Gaps are evidence: expired content, clamped windows, truncated
//     results, disabled subscriptions and a busy source gone quiet are
//     appended to the journal as collector.gap records and counted.
//   - Throttling never drops data: a token bucket per tenant × API; 429,
//     403 AF429 and Google 503 honour Retry-After, otherwise jittered
//     exponential back-off up to 5 minutes; attempts are bounded, and a
//     window that could not be read is simply read again on the next poll.
//   - Clock skew is measured from each response's Date header and windows
//     are computed on the server's clock.
//
// Secrets and access tokens never appear in logs or errors: requests are
// logged by method, host and path only.
//
// The package must not decide what a record means (internal/source does)
// nor how records are stored (internal/journal does).
package collect
