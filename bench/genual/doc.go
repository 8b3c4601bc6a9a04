// Command genual writes synthetic but realistic Microsoft 365 Unified Audit
// Log records, in the Management Activity API JSON shape, as JSON lines. It
// exists to feed the hunting benchmark (bench/hunt.sh) with gigabytes of
// input whose mix of operations, field names, field types and record sizes
// resembles a real tenant export.
//
// Output is a pure function of the seed and the size: the same flags give
// the same bytes. Records are in time order. A small fraction of records
// (about 0.3 %) are shaped to trigger the SigmaHQ m365 rules and vigil's
// built-in m365 rules (inbox forwarding rules, mailbox forwarding, FullAccess
// grants, OAuth consent, MFA disabled, federated domain added, Threat
// Intelligence deliveries, compliance alerts, PST exports, throttled
// MailItemsAccessed).
//
// Records are formatted by appending to a byte buffer rather than through
// encoding/json, so generation runs at hundreds of MB/s and does not bottleneck
// the benchmark setup.
package main
