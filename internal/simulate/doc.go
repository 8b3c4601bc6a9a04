// Package simulate generates a synthetic cloud tenant's audit logs with
// labelled intrusion campaigns and benign confounders, and the exact
// ground truth (truth.json) that detection tests and benchmarks score
// against.
//
// It owns the tenant model (users, mailboxes, devices, networks, apps),
// the record writers for the real vendor shapes (Microsoft 365 Unified
// Audit Log, Entra ID sign-ins, Google Workspace Reports activities), the
// simulated networks (written as networks.csv in internal/netinfo's
// format), and the Truth types. It does not decode, store or detect anything: tests decode its
// output with internal/source like real data.
//
// Generation is a time-ordered merge of lazy streams (one per user day,
// session, campaign step), so memory stays constant in the number of days
// and output is byte-identical for a given Config and seed.
package simulate
