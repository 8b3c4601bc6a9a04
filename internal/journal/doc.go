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
//   - Deduplication: an entry whose (Source, RecordID) was stored before is
//     acknowledged with the original's index and not stored again. For a
//     record without an id of its own, callers pass ContentID, the hash of
//     its canonical form, as the RecordID.
//   - Retention: Expire deletes whole old segments; their leaf hashes stay,
//     so verification and proofs keep working for what remains.
//
// # On disk (see docs/journal.md for the byte layout)
//
//	DIR/segments/<first index>.seg  blocks of entries, the only truth
//	DIR/leaves, DIR/tiles, DIR/ids  leaf hashes, 256-leaf subtree hashes and
//	                                dedup keys: derived, rebuilt from the
//	                                segments when behind
//	DIR/checkpoints                 every signed checkpoint, in order
//	DIR/expired                     signed note: entries below N were expired
//	DIR/journal.key, journal.pub    signing key (0600) and its verifier key
//
// Verify checks a journal directory without opening it for writing; it is
// independent of Open's recovery so it can judge a journal on its own.
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
