// Package scale measures vigil's cluster mode on one machine: a 3-node
// NATS JetStream cluster in-process (internal/cluster/natstest), push
// ingest publishing to the R3 stream, one sequencer and journal per
// tenant, and 1, 2 or 4 detection workers sharing the tenants. The
// measurement is BenchmarkScale (run by bench/scale.sh, never by CI's
// test command); this file's package holds the accounting it needs (CPU
// from getrusage and /proc/stat, CPU per stage from a labelled profile,
// percentiles, the printed tables), which has unit tests of its own.
package scale
