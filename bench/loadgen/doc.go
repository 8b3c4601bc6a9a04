// Command loadgen pushes simulated Microsoft 365 audit records to a
// running vigil serve as fast as it acknowledges them, and checks a data
// directory afterwards. bench/load.sh drives it.
//
//	loadgen push  --url URL --key-file F --duration 300s --acked FILE [--pid N]
//	loadgen check --data DIR --acked FILE [--alerts FILE]
//
// push reports events/s, ack latency (p50/p99 per request), detection
// lag, alert latency (from the acknowledgment of a record that fires a
// rule to the alert appearing in /api/v1/alerts) and the server's RSS,
// every interval and at the end; it writes the id ranges of every
// acknowledged request to --acked. check reads the journal and says
// whether every acknowledged record is in it exactly once, and whether
// the alert file sink holds any message twice.
package main
