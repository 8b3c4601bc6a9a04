// Package parallel runs per-item work on several goroutines while keeping
// the items' order: detection's stateless half (decoding, rule matching)
// spreads over the cores, and its ordered half still sees every event in
// the order it was produced.
package parallel
