package index

// schemaVersion changes whenever a table changes; an index of another
// version is refused with a message to run reindex.
const schemaVersion = "4"

// The tables, as documented in docs/search.md. Times are UTC TIMESTAMPs.
// (idx, sub) names an event: its journal index and its number within the
// record (a Workspace activity holds several events); (idx, sub, n) names
// a mail_access row, n counting the event's rows from 0.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS events (
		idx UBIGINT NOT NULL, sub INTEGER NOT NULL,
		time TIMESTAMP, received TIMESTAMP,
		kind VARCHAR NOT NULL, tenant VARCHAR, source VARCHAR NOT NULL, op VARCHAR, result VARCHAR, failed BOOLEAN,
		actor VARCHAR, app VARCHAR, client_app VARCHAR, service_principal VARCHAR,
		ip VARCHAR, ip_hi UBIGINT, ip_lo UBIGINT, asn UINTEGER, country VARCHAR, user_agent VARCHAR,
		session VARCHAR, token VARCHAR, mailbox VARCHAR, record_id VARCHAR, items INTEGER)`,
	`CREATE TABLE IF NOT EXISTS mail_access (
		idx UBIGINT NOT NULL, sub INTEGER NOT NULL, n INTEGER NOT NULL, time TIMESTAMP,
		mailbox VARCHAR, folder VARCHAR, internet_message_id VARCHAR, message_key UBIGINT, access_type VARCHAR NOT NULL, throttled BOOLEAN,
		actor VARCHAR, app VARCHAR, client_app VARCHAR, ip VARCHAR, ip_hi UBIGINT, ip_lo UBIGINT, asn UINTEGER, country VARCHAR,
		session VARCHAR, token VARCHAR)`,
	`CREATE TABLE IF NOT EXISTS unindexed (idx UBIGINT NOT NULL, source VARCHAR, reason VARCHAR NOT NULL)`,
	// alerts and incidents are written by detection (vigil serve, vigil
	// reindex), not decoded from entries: an alert's id is stable across
	// replays (see alertID), (idx, sub) the event it was raised on when
	// its record is in the index.
	`CREATE TABLE IF NOT EXISTS alerts (
		id VARCHAR PRIMARY KEY, idx UBIGINT, sub INTEGER, time TIMESTAMP, raised TIMESTAMP,
		rule VARCHAR NOT NULL, title VARCHAR, level VARCHAR NOT NULL, level_rank TINYINT NOT NULL,
		tenant VARCHAR, source VARCHAR, op VARCHAR, record_id VARCHAR,
		actor VARCHAR, mailbox VARCHAR, ip VARCHAR, ip_hi UBIGINT, ip_lo UBIGINT,
		session VARCHAR, token VARCHAR, app VARCHAR, client_app VARCHAR, incident VARCHAR)`,
	`CREATE TABLE IF NOT EXISTS incidents (
		id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL, severity VARCHAR NOT NULL, score INTEGER,
		first_seen TIMESTAMP, last_seen TIMESTAMP, raised TIMESTAMP, title VARCHAR, tenant VARCHAR,
		signals VARCHAR[], mailboxes VARCHAR[], alert_count INTEGER,
		messages_read BIGINT, mailboxes_read INTEGER, accesses BIGINT, evidence_complete BOOLEAN)`,
	`CREATE OR REPLACE VIEW signins AS SELECT idx, sub, time, source, op, result, failed, actor, app, client_app,
		ip, asn, country, user_agent, session, token, tenant FROM events WHERE kind = 'signin'`,
	`CREATE OR REPLACE VIEW audits AS SELECT idx, sub, time, source, op, result, failed, actor, app, client_app,
		service_principal, ip, asn, country, user_agent, session, token, mailbox, items, tenant FROM events WHERE kind = 'audit'`,
}

// lookupIndexes are ART indexes for the point lookups of an
// investigation: everything one IP did (ip_lo holds an IPv4 address whole),
// what one token did and touched, who read one message. Without them each
// is a scan of the whole column, which grows with the journal; with them
// the engine probes the index when few rows match, and scans otherwise.
// A rebuild drops them and builds them once after the load, which is
// cheaper than keeping them up to date row by row.
var lookupIndexes = []struct{ name, table, column string }{
	{"events_ip_lo", "events", "ip_lo"},
	{"events_token", "events", "token"},
	{"mail_access_token", "mail_access", "token"},
	{"mail_access_message_key", "mail_access", "message_key"},
}

// Tables lists what a power user may query, for help and errors.
var Tables = []string{"events", "mail_access", "signins", "audits", "alerts", "incidents"}

// dropAll empties an index of any version before a rebuild.
var dropAll = []string{
	`DROP VIEW IF EXISTS signins`, `DROP VIEW IF EXISTS audits`,
	`DROP TABLE IF EXISTS events`, `DROP TABLE IF EXISTS mail_access`, `DROP TABLE IF EXISTS unindexed`,
	`DROP TABLE IF EXISTS alerts`, `DROP TABLE IF EXISTS incidents`, `DROP TABLE IF EXISTS meta`,
	// Frees the dropped blocks now, so the rebuild reuses them instead of
	// growing the file.
	`CHECKPOINT`,
}
