// Package cluster runs vigil serve across several processes around a NATS
// JetStream cluster instead of on one machine (see docs/scale.md).
//
// # Data flow
//
//   - Ingest (push, collectors, gateway) hands decoded journal entries to a
//     Publisher, which publishes each to the replicated stream (default
//     VIGIL_RAW) on subject raw.<tenant>.<source>, with Nats-Msg-Id set to
//     the hash of the tenant and the entry's dedupe key (Source, RecordID). The ingest is
//     acknowledged only when every entry's publish acknowledgement came
//     back: with replicas 3 that is a quorum of two nodes holding it.
//   - A Sequencer per tenant is the only writer of that tenant's
//     tamper-evident journal. It reads the tenant's subjects through a
//     durable consumer with explicit acks, appends in stream order, and acks
//     a message only after the journal commit that holds it. Every journal
//     entry it writes records the stream sequence it came from, so a
//     restarted sequencer knows where the journal stands; redeliveries are
//     absorbed by the journal's own dedupe by record id. It confirms its
//     lease before every commit, journal query answer and sink delivery
//     (ConfirmLease), and when caught up marks how far its journal holds
//     the tenant's messages (bucket vigil_journal_marks), which the check
//     for messages the stream discarded starts from.
//   - A Detector is a detection worker. Per tenant it takes a lease
//     (bucket vigil_detect_leases), reads the tenant's subjects in stream
//     order through a consumer of its own (fetching ahead, decoding and
//     preparing on every core) into a detect.Pipeline, and sends
//     alerts and incident updates to the stream VIGIL_ALERTS in atomic
//     batches fenced by its holder record, each with a
//     stable Nats-Msg-Id and guarded past the duplicate window by a
//     first-writer-wins KV bucket (vigil_alert_ids). It snapshots the
//     pipeline (portable: the access log's contents included) with its
//     stream position to the object store vigil_detect; a worker taking
//     the tenant over restores that and reads on from the next message.
//     After a refresh that changed which incidents exist it sends their
//     list, so readers drop incidents that merged or dissolved.
//   - The journal's read routes (checkpoint, proof, search, timeline) are
//     answered by the node holding the journal lease on the subject
//     vigil.journal.<tenant>.query (ServeJournalQueries), only while it
//     can confirm that lease; other nodes ask
//     it (AskJournal) after authenticating the caller themselves.
//
// The journal stays the truth: proofs, checkpoints and vigil verify work
// exactly as on one machine. The stream is the replicated, acknowledged
// buffer in front of it.
//
// Without a cluster: section in vigil.yaml nothing here runs and vigil
// serve is a single process.
package cluster
