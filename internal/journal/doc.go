// Package journal owns vigil's source of truth: an append-only,
// tamper-evident log of every ingested audit record, kept verbatim.
//
// # What it guarantees
//
//   - Durability: Append returns an entry's index only after the entry is
//     written and fsynced. Concurrent appenders are batched into one write
//     and one fsync (group commit).
//   - Integrity: every block of entries is framed with its length and a
//     CRC32C; every entry is a leaf of an RFC 6962 Merkle tree whose root
//     is published in Ed25519-signed checkpoints (C2SP signed-note format).
//     Anyone holding a checkpoint can check that a later journal extends
//     it (consistency proof) and that an entry is in it (inclusion proof).
//   - Crash safety: a write torn by a crash can only hold unacknowledged
//     entries; Open cuts it back to the last complete block and logs what
//     it cut. Anything else that does not add up (a bad block before the
//     tail, missing acknowledged entries, a root that disagrees with a
//     signed checkpoint) is reported as *Damage and never repaired
//     silently.
//   - Deduplication: an entry whose (Source, RecordID) was stored before,
//     at any time in the journal's history (expired entries included), is
//     acknowledged with the original's index and not stored again. For a
//     record without an id of its own, callers pass ContentID, the hash of
//     its canonical form, as the RecordID. Its memory does not grow with
//     the journal: the newest Options.DedupMemoryKeys keys (default 2^21,
//     in a 96 MiB table; once it first fills, a second table of that size
//     takes turns with it while it is written out) are in memory, older ones in sorted run files with a blocked Bloom
//     filter each, the filter mapped read-only (page cache, not heap),
//     merged in the background so that about log2(entries/bound) runs
//     exist. A new key costs one filter probe (one cache line) per run;
//     about 0.1 % pass a filter and cost a search of that run: one 3 KiB
//     read, at the window its mapped fences (every 128th key) point to.
//   - Retention: Expire deletes whole old segments; their leaf hashes stay,
//     so verification and proofs keep working for what remains.
//
// # On disk (see docs/journal.md for the byte layout)
//
//	DIR/segments/<first index>.seg  blocks of entries, the only truth
//	DIR/leaves, DIR/tiles, DIR/ids  leaf hashes, 256-leaf subtree hashes and
//	                                dedup keys: derived, rebuilt from the
//	                                segments when behind
//	DIR/dedup/<lo>-<hi>.run         sorted dedup keys of entries [lo, hi):
//	                                derived from ids; missing, torn or
//	                                half-written runs are rebuilt by Open
//	DIR/checkpoints                 every signed checkpoint, in order
//	DIR/expired                     signed note: entries below N were expired
//	DIR/journal.key, journal.pub    signing key (0600) and its verifier key
//
// Verify checks a journal directory without opening it for writing; it is
// independent of Open's recovery so it can judge a journal on its own. It
// checks the dedup runs Open would use against the ids file (a run that
// disagrees is damage, since Open trusts a run whose checksums hold) and
// notes the ones Open would discard. A key found in a run is also
// confirmed against the ids file before an append is acknowledged as its
// duplicate.
//
// # Concurrency
//
// A Journal is safe for concurrent use. One process at a time may open a
// directory (an exclusive lock file enforces it). Readers see only entries
// that were acknowledged.
//
// The package knows nothing of vendor formats or events: callers hand it
// raw bytes and metadata. Other packages should depend on the narrow Log
// interface so that another backend (e.g. NATS JetStream) can stand in.
package journal
