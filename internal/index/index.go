package index

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/vigil-audit/vigil/internal/journal"
)

// DirName is the index's directory inside a journal directory.
const DirName = "index"

const dbFile = "events.duckdb"

// Index is an open investigation index.
type Index struct {
	db       *sql.DB
	path     string
	readOnly bool

	retention  time.Duration
	lastExpire time.Time // of this process; the first update expires

	// detMu orders the writes to alerts (detection's, and the links an
	// update adds): the engine fails one of two transactions that change
	// the same rows.
	detMu sync.Mutex

	// enrich fills rows' ASN and country (UseNetworks); nil: none.
	enrich enricher

	// threshold is the engine's checkpoint threshold, as SET takes it;
	// inBulk says bulk replaced it for now.
	threshold string
	inBulk    bool

	// tailClean says no row lies past the recorded position: the last
	// update of this process recorded the position of everything it
	// wrote. Only the writing process (one at a time) writes rows, and
	// only its updates (one at a time) touch this.
	tailClean bool

	// stepHook, when set (benchmarks), is called before each step of an
	// update with the step's name; the func it returns, after it.
	stepHook func(step string) func()
}

// step brackets one step of an update for stepHook.
func (x *Index) step(name string) func() {
	if x.stepHook == nil {
		return func() {}
	}
	return x.stepHook(name)
}

// Options configure Open.
type Options struct {
	// ReadOnly opens for queries only: the engine refuses writes, file
	// access (COPY, read_csv, ATTACH) and configuration changes.
	ReadOnly bool
	// Threads bounds the engine's worker threads (0: GOMAXPROCS).
	Threads int
	// Fresh drops every table first, whatever schema version the index
	// had: for reindex.
	Fresh bool
	// Retention drops the rows of journal entries received longer ago
	// than this, after updates (0: keep everything). The journal keeps
	// what its own retention says; the index only forgets.
	Retention time.Duration
	// MemoryLimit bounds the engine's buffer pool in bytes (0:
	// DefaultMemoryLimit); past it the engine spills to a temporary
	// directory beside the index. Without a bound DuckDB takes up to 80 %
	// of the machine's memory, which a server that runs for months must
	// not.
	MemoryLimit int64
}

// DefaultMemoryLimit is the engine's buffer pool when Options.MemoryLimit
// is 0. The lookup indexes must fit in it while they are built.
const DefaultMemoryLimit = 4 << 30

// checkpointThreshold is the write-ahead log size at which the engine
// writes the tables' changes into the database file: 256 MiB, or an
// eighth of the buffer pool if that is less (the changes wait in memory
// until then), never below the engine's default of 16 MiB. Each
// checkpoint re-compresses the tables' last, partly filled row groups
// whatever it adds, so at the default updates of 10,000 entries paid for
// one about every other update: 30–40 % of their CPU
// (BenchmarkIncremental, docs/deps.md). The log is replayed when the
// index is next opened after a crash.
func checkpointThreshold(memoryLimit int64) int64 {
	return max(min(256<<20, memoryLimit/8), 16<<20)
}

// bulkThreshold is the engine's default checkpoint threshold, for bulk
// loads (bulkEntries).
const bulkThreshold = "16MiB"

// ErrNoIndex says the journal has no index yet.
var ErrNoIndex = errors.New("no index (run vigil reindex --data DIR)")

// ErrLocked says another process holds the index open for writing (the
// engine allows one writer process, and no readers beside it): a running
// vigil serve or vigil collect keeps it for as long as it runs, vigil
// ingest and vigil reindex while they update it.
var ErrLocked = errors.New("index: open for writing by another process (a running vigil serve answers searches through its API: GET /api/v1/search, /api/v1/timeline; otherwise retry when the ingest or reindex is done)")

// Path returns the index directory of the journal in dataDir.
func Path(dataDir string) string { return filepath.Join(dataDir, DirName) }

// Open opens the index in dir (usually Path(dataDir)), creating it unless
// opts.ReadOnly.
func Open(ctx context.Context, dir string, opts Options) (*Index, error) {
	file := filepath.Join(dir, dbFile)
	if opts.ReadOnly {
		if _, err := os.Stat(file); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, ErrNoIndex
			}
			return nil, fmt.Errorf("index: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	q := url.Values{}
	q.Set("threads", strconv.Itoa(threads))
	limit := opts.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	q.Set("memory_limit", strconv.FormatInt(max(limit>>20, 16), 10)+"MiB")
	// Deny by default: no extension is fetched or loaded, and read-only
	// handles cannot touch files or undo these settings from SQL.
	q.Set("autoinstall_known_extensions", "false")
	q.Set("autoload_known_extensions", "false")
	threshold := strconv.FormatInt(checkpointThreshold(limit)>>20, 10) + "MiB"
	if !opts.ReadOnly {
		q.Set("checkpoint_threshold", threshold)
		q.Set("storage_compatibility_version", storageVersion)
	}
	if opts.ReadOnly {
		q.Set("access_mode", "READ_ONLY")
		q.Set("enable_external_access", "false")
		q.Set("lock_configuration", "true")
	}
	db, err := connect(dir, file+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if !opts.ReadOnly && opts.Fresh {
		// A file of an older storage format is replaced by a new one: the
		// engine keeps writing a file in the format it was created with.
		// The lock on the old file is held until just before, so no
		// writer has it open; one that opened it in the instant between
		// the close and the removal would keep writing a removed file
		// (the index is derived: a reindex puts that right).
		var v sql.NullString
		err := db.QueryRowContext(ctx, `SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()`).Scan(&v)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("index: storage version: %w", err)
		}
		if v.String != storageVersion+"+" {
			if err := db.Close(); err != nil {
				return nil, fmt.Errorf("index: close %s: %w", file, err)
			}
			for _, f := range []string{file, file + ".wal"} {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("index: replace a file of storage version %s: %w", v.String, err)
				}
			}
			if db, err = connect(dir, file+"?"+q.Encode()); err != nil {
				return nil, err
			}
		}
	}
	x := &Index{db: db, path: dir, readOnly: opts.ReadOnly, retention: opts.Retention, threshold: threshold}
	if !opts.Fresh {
		// Refuse another version before touching its tables.
		var v string
		err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema'`).Scan(&v)
		if err == nil && v != schemaVersion {
			db.Close()
			return nil, fmt.Errorf("index: %s has schema version %q, this vigil uses %q: run vigil reindex", dir, v, schemaVersion)
		}
	}
	if !opts.ReadOnly && opts.Fresh {
		for _, s := range dropAll {
			if _, err := db.ExecContext(ctx, s); err != nil {
				db.Close()
				return nil, fmt.Errorf("index: drop old tables: %w", err)
			}
		}
	}
	if !opts.ReadOnly {
		for _, s := range schema {
			if _, err := db.ExecContext(ctx, s); err != nil {
				db.Close()
				return nil, fmt.Errorf("index: create schema: %w", err)
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO meta VALUES ('schema', ?) ON CONFLICT DO NOTHING`, schemaVersion); err != nil {
			db.Close()
			return nil, fmt.Errorf("index: %w", err)
		}
		if !opts.Fresh {
			// An index built before the lookup indexes existed gets them
			// now, once; a fresh one gets them after its rebuild.
			if err := x.createLookupIndexes(ctx); err != nil {
				db.Close()
				return nil, err
			}
		}
	}
	v, err := x.meta(ctx, "schema")
	if err != nil {
		db.Close()
		return nil, err
	}
	if v != schemaVersion {
		db.Close()
		return nil, fmt.Errorf("index: %s has schema version %q, this vigil uses %q: run vigil reindex", dir, v, schemaVersion)
	}
	return x, nil
}

// storageVersion is the engine's storage format of the files Open creates.
// The engine's default is the oldest format it still writes (v0.10.2, for
// older readers), which vigil has no need of: at 1.5.0 its files of a
// rebuild were 24 % smaller and its lookup indexes are written without a
// conversion to the old layout (docs/deps.md). A file made by a DuckDB
// older than this cannot be opened by it; vigil reindex replaces a file
// of an older format.
const storageVersion = "v1.5.0"

// connect opens the engine on dsn (a file and its settings).
func connect(dir, dsn string) (*sql.DB, error) {
	c, err := duckdb.NewConnector(dsn, nil)
	if err != nil {
		if strings.Contains(err.Error(), "Could not set lock") || strings.Contains(err.Error(), "Conflicting lock") {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("index: open %s: %w", filepath.Join(dir, dbFile), err)
	}
	return sql.OpenDB(c), nil
}

// Close closes the index.
func (x *Index) Close() error { return x.db.Close() }

func (x *Index) meta(ctx context.Context, key string) (string, error) {
	var v string
	err := x.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("index: read %s: %w", key, err)
	}
	return v, nil
}

func (x *Index) setMeta(ctx context.Context, key, value string) error {
	_, err := x.db.ExecContext(ctx, `INSERT OR REPLACE INTO meta VALUES (?, ?)`, key, value)
	if err != nil {
		return fmt.Errorf("index: write %s: %w", key, err)
	}
	return nil
}

// Next returns the journal index the index has read up to (exclusive).
func (x *Index) Next(ctx context.Context) (uint64, error) {
	v, err := x.meta(ctx, "next")
	if err != nil || v == "" {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("index: bad next %q: %w", v, err)
	}
	return n, nil
}

// Status says how far the index is behind its journal.
type Status struct {
	Next      uint64 // journal entries [0, Next) are indexed
	Journal   uint64 // entries the journal holds (from its leaves file)
	Events    uint64 // rows in events
	MailRows  uint64 // rows in mail_access
	Unindexed uint64 // journal entries that decoded to no event (see table unindexed)
	Behind    uint64 // Journal - Next, when positive
	// RetainedFrom: retention dropped the rows of journal entries below it.
	RetainedFrom uint64
}

// JournalSize returns the number of entries the journal in dataDir holds,
// read from its leaves file (32 bytes per entry) without opening the
// journal, so it works beside a writer.
func JournalSize(dataDir string) (uint64, error) {
	st, err := os.Stat(filepath.Join(dataDir, "leaves"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("journal size: %w", err)
	}
	return uint64(st.Size()) / 32, nil
}

// Status reports the index's position against the journal in dataDir.
func (x *Index) Status(ctx context.Context, dataDir string) (Status, error) {
	var s Status
	var err error
	if s.Next, err = x.Next(ctx); err != nil {
		return s, err
	}
	if s.Journal, err = JournalSize(dataDir); err != nil {
		return s, err
	}
	if v, err := x.meta(ctx, "retained_from"); err != nil {
		return s, err
	} else if v != "" {
		s.RetainedFrom, _ = strconv.ParseUint(v, 10, 64)
	}
	if s.Journal > s.Next {
		s.Behind = s.Journal - s.Next
	}
	row := x.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM mail_access), (SELECT count(*) FROM unindexed)`)
	if err := row.Scan(&s.Events, &s.MailRows, &s.Unindexed); err != nil {
		return s, fmt.Errorf("index: status: %w", err)
	}
	return s, nil
}

// UpdateStats says what one Update did.
type UpdateStats struct {
	From, To  uint64 // journal entries [From, To) were read
	Expired   uint64 // entries below From that the journal no longer holds (never indexed)
	Events    uint64
	MailRows  uint64
	Unindexed uint64 // entries that decoded to no event, kept in table unindexed with the reason
	Dropped   uint64 // events dropped by retention after the update
	// Shared entries were not decoded by the update: their rows came from
	// detection, which had decoded them (Follower.Offer).
	Shared  uint64
	Elapsed time.Duration
}

// commitEvery bounds the entries between two recorded positions, so an
// interrupted update redoes at most this many.
const commitEvery = 200_000

// Update indexes the journal entries in dataDir that the index has not
// seen yet. It reads the journal without its lock, so it can run beside a
// writer; entries appended meanwhile are picked up by the next Update.
func (x *Index) Update(ctx context.Context, dataDir string) (UpdateStats, error) {
	return x.update(ctx, dataDir, func(ctx context.Context, from uint64, fn func(uint64, *journal.Entry) error) error {
		return journal.Replay(ctx, dataDir, from, fn)
	}, nil, 0)
}

// UpdateFrom is Update for the process that holds the journal open (vigil
// serve, vigil collect): it reads through j, so it indexes only
// acknowledged entries, never a block still being written.
func (x *Index) UpdateFrom(ctx context.Context, dataDir string, j journal.Log) (UpdateStats, error) {
	return x.update(ctx, dataDir, j.Read, nil, 0)
}

type readFunc func(ctx context.Context, from uint64, fn func(uint64, *journal.Entry) error) error

// bulkEntries: an update at least this far behind the journal is a bulk
// load, like a rebuild: it loads whole row groups, which the engine writes
// straight into the database file; for it the engine checkpoints at its
// default log size, which kept the file of a rebuild 10 % smaller and its
// load faster than the larger threshold of incremental updates
// (docs/deps.md).
const bulkEntries = 100_000

// bulk sets the engine's checkpoint threshold to bulkThreshold until
// restore is called; nested calls leave it to the outermost.
func (x *Index) bulk(ctx context.Context) (restore func() error, err error) {
	if x.inBulk || x.threshold == bulkThreshold {
		return func() error { return nil }, nil
	}
	if _, err := x.db.ExecContext(ctx, `SET checkpoint_threshold = '`+bulkThreshold+`'`); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	x.inBulk = true
	return func() error {
		x.inBulk = false
		if _, err := x.db.ExecContext(context.WithoutCancel(ctx), `SET checkpoint_threshold = '`+x.threshold+`'`); err != nil {
			return fmt.Errorf("index: restore the checkpoint threshold: %w", err)
		}
		return nil
	}, nil
}

// errLimit ends a read at update's limit; errCached ends it at an entry
// whose rows are offered.
var (
	errLimit  = errors.New("index: read limit")
	errCached = errors.New("index: rows offered")
)

// readUpTo gives p the entries [from, limit): the rows offered for them
// from cache, the others read from the journal. Offered rows need no
// journal read at all; a run of entries not offered (a restart, a backlog,
// an entry detection did not reach in time) is read from the journal up
// to the next offered entry.
func readUpTo(ctx context.Context, read readFunc, cache *rowCache, p *pipeline, from, limit uint64) error {
	for i := from; i < limit; {
		if r, ok := cache.take(i); ok {
			if err := p.addRows(i, r); err != nil {
				return err
			}
			i++
			continue
		}
		start := i
		err := read(ctx, i, func(idx uint64, e *journal.Entry) error {
			if idx >= limit {
				return errLimit
			}
			if idx > start && cache.has(idx) {
				return errCached
			}
			i = idx + 1
			return p.add(idx, e)
		})
		if err != nil && !errors.Is(err, errLimit) && !errors.Is(err, errCached) {
			return err
		}
		if i == start {
			return fmt.Errorf("index: journal entry %d: not readable though detection read up to %d", start, limit)
		}
	}
	return nil
}

// update indexes the entries from the recorded position on: up to limit
// (0: every entry read gives), taking rows from cache where it has them.
func (x *Index) update(ctx context.Context, dataDir string, read readFunc, cache *rowCache, limit uint64) (st UpdateStats, err error) {
	began := time.Now()
	if x.readOnly {
		return st, errors.New("index: opened read-only")
	}
	done := x.step("position")
	next, err := x.Next(ctx)
	if err != nil {
		return st, err
	}
	first, err := firstEntry(dataDir)
	if err != nil {
		return st, err
	}
	done()
	if first > next {
		st.Expired = first - next
		next = first
	}
	st.From, st.To = next, next
	// Rows past the recorded position belong to an update that was cut
	// short (in this process, or one that stopped); they are redone.
	if !x.tailClean {
		done = x.step("delete")
		for _, t := range []string{"events", "mail_access", "unindexed"} {
			if _, err := x.db.ExecContext(ctx, `DELETE FROM `+t+` WHERE idx >= ?`, next); err != nil {
				return st, fmt.Errorf("index: %w", err)
			}
		}
		done()
	}
	// How far behind: the journal's leaves file may count entries not
	// acknowledged yet, which is near enough to choose how to load.
	size, err := JournalSize(dataDir)
	if err != nil {
		return st, fmt.Errorf("index: %w", err)
	}
	if limit > 0 {
		size = min(size, limit)
	}
	if size >= next+bulkEntries {
		var restore func() error
		if restore, err = x.bulk(ctx); err != nil {
			return st, err
		}
		defer func() {
			if rerr := restore(); err == nil {
				err = rerr
			}
		}()
	}
	// Until the last commit below, rows may lie past the position.
	x.tailClean = false
	w, err := x.newWriter(ctx)
	if err != nil {
		return st, err
	}
	defer w.close()
	commit := func(to uint64) error {
		if err := w.flush(); err != nil {
			return err
		}
		st.To = to
		defer x.step("set next")()
		return x.setMeta(ctx, "next", strconv.FormatUint(to, 10))
	}
	done = x.step("read, decode, stage")
	p := newPipeline(ctx, w, cache, commitEvery, commit)
	if limit > 0 {
		err = readUpTo(ctx, read, cache, p, next, limit)
	} else {
		err = read(ctx, next, p.add)
	}
	if err2 := p.finish(); err == nil {
		err = err2
	}
	done()
	if err == nil {
		err = commit(max(p.next, next))
		x.tailClean = err == nil
	}
	st.Events, st.MailRows, st.Unindexed, st.Shared = w.events, w.mail, w.unindexed, p.shared
	st.Elapsed = time.Since(began)
	if err != nil {
		return st, fmt.Errorf("index: update from journal entry %d: %w", st.To, err)
	}
	if err := w.close(); err != nil {
		return st, err
	}
	if st.To > st.From {
		// Alerts detection wrote before their events were indexed.
		done := x.step("link alerts")
		x.detMu.Lock()
		err := linkAlerts(ctx, x.db, st.From, nil)
		x.detMu.Unlock()
		done()
		if err != nil {
			return st, err
		}
	}
	if st.Expired > 0 {
		if err := x.setMeta(ctx, "expired_unindexed", strconv.FormatUint(first, 10)); err != nil {
			return st, err
		}
	}
	done = x.step("expire")
	ex, err := x.expireDue(ctx)
	done()
	st.Dropped = ex.Dropped
	return st, err
}

// expireDue runs Expire when a retention is set and the last pass of this
// process is expireEvery ago (or there was none).
func (x *Index) expireDue(ctx context.Context) (ExpireStats, error) {
	if x.retention <= 0 || time.Since(x.lastExpire) < expireEvery {
		return ExpireStats{}, nil
	}
	return x.Expire(ctx, time.Now())
}

// expireEvery spaces the retention passes of a long-running follower.
const expireEvery = 10 * time.Minute

// ExpireStats says what Expire dropped.
type ExpireStats struct {
	Below   uint64 // rows of journal entries below this index are gone
	Dropped uint64 // events dropped by this pass
}

// Expire drops the rows of the journal entries received before
// now − Options.Retention. The journal appends in the order it receives,
// so they are a prefix of the journal: every table loses the same entries
// (idx < Below), and a rebuilt index expires exactly the same ones.
func (x *Index) Expire(ctx context.Context, now time.Time) (ExpireStats, error) {
	var st ExpireStats
	if x.readOnly {
		return st, errors.New("index: opened read-only")
	}
	if x.retention <= 0 {
		return st, errors.New("index: no retention configured")
	}
	cutoff := now.Add(-x.retention).UTC()
	// Past the last entry received before the cutoff. Entries that gave
	// no event carry no time; those after it are kept.
	var below sql.NullString
	if err := x.db.QueryRowContext(ctx, `SELECT CAST(max(idx) + 1 AS VARCHAR) FROM events WHERE received < ?`, cutoff).Scan(&below); err != nil {
		return st, fmt.Errorf("index: expire: %w", err)
	}
	if below.Valid {
		n, err := strconv.ParseUint(below.String, 10, 64)
		if err != nil {
			return st, fmt.Errorf("index: expire: %w", err)
		}
		st.Below = n
	}
	prev, err := x.meta(ctx, "retained_from")
	if err != nil {
		return st, err
	}
	if p, _ := strconv.ParseUint(prev, 10, 64); prev != "" && p >= st.Below {
		st.Below = p
		x.lastExpire = now
		return st, nil
	}
	b := strconv.FormatUint(st.Below, 10)
	// Alerts go with the events they were raised on; those linked to no
	// event, and incidents, stay.
	for _, t := range []string{"events", "mail_access", "unindexed", "alerts"} {
		r, err := x.db.ExecContext(ctx, `DELETE FROM `+t+` WHERE idx < CAST(? AS UBIGINT)`, b)
		if err != nil {
			return st, fmt.Errorf("index: expire %s: %w", t, err)
		}
		if n, err := r.RowsAffected(); err == nil && t == "events" {
			st.Dropped = uint64(n)
		}
	}
	if err := x.setMeta(ctx, "retained_from", b); err != nil {
		return st, err
	}
	x.lastExpire = now
	return st, nil
}

func (x *Index) createLookupIndexes(ctx context.Context) error {
	for _, li := range lookupIndexes {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (%s)`, li.name, li.table, li.column)
		if _, err := x.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("index: create lookup index %s: %w", li.name, err)
		}
	}
	return nil
}

func (x *Index) dropLookupIndexes(ctx context.Context) error {
	for _, li := range lookupIndexes {
		if _, err := x.db.ExecContext(ctx, `DROP INDEX IF EXISTS `+li.name); err != nil {
			return fmt.Errorf("index: drop lookup index %s: %w", li.name, err)
		}
	}
	return nil
}

// Rebuild empties the index and indexes the whole journal again.
func (x *Index) Rebuild(ctx context.Context, dataDir string) (st UpdateStats, err error) {
	if x.readOnly {
		return UpdateStats{}, errors.New("index: opened read-only")
	}
	// The lookup indexes built after the load, too, left a file 10 %
	// larger when checkpointed at the incremental threshold.
	restore, err := x.bulk(ctx)
	if err != nil {
		return st, err
	}
	defer func() {
		if rerr := restore(); err == nil {
			err = rerr
		}
	}()
	// Loading without the lookup indexes and building them once at the
	// end is much cheaper than updating them row by row.
	if err := x.dropLookupIndexes(ctx); err != nil {
		return UpdateStats{}, err
	}
	// Detection's rows too: they are written again by whoever runs it
	// (vigil reindex does, after this).
	for _, t := range []string{"events", "mail_access", "unindexed", "alerts", "incidents"} {
		if _, err := x.db.ExecContext(ctx, `DELETE FROM `+t); err != nil {
			return UpdateStats{}, fmt.Errorf("index: %w", err)
		}
	}
	if _, err := x.db.ExecContext(ctx, `DELETE FROM meta WHERE key <> 'schema'`); err != nil {
		return UpdateStats{}, fmt.Errorf("index: %w", err)
	}
	x.lastExpire = time.Time{} // the rebuild expires what the index had expired
	st, err = x.Update(ctx, dataDir)
	if err != nil {
		return st, err
	}
	began := time.Now()
	done := x.step("lookup indexes")
	err = x.createLookupIndexes(ctx)
	done()
	if err != nil {
		return st, err
	}
	// Deleted rows leave free blocks; a checkpoint returns them.
	done = x.step("checkpoint")
	_, err = x.db.ExecContext(ctx, `CHECKPOINT`)
	done()
	st.Elapsed += time.Since(began)
	if err != nil {
		return st, fmt.Errorf("index: checkpoint: %w", err)
	}
	return st, nil
}

// firstEntry returns the index of the first entry the journal still holds
// raw bytes for: the first segment's name (DIR/segments/<first>.seg).
func firstEntry(dataDir string) (uint64, error) {
	des, err := os.ReadDir(filepath.Join(dataDir, "segments"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("index: list journal segments: %w", err)
	}
	first, found := uint64(0), false
	for _, d := range des {
		n, ok := strings.CutSuffix(d.Name(), ".seg")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			continue
		}
		if !found || v < first {
			first, found = v, true
		}
	}
	return first, nil
}

// writer loads rows into events, mail_access and unindexed through the
// engine's appenders, one per table, committed at each flush. For a
// rebuild and for a catch-up this cost 8–10 % less CPU than staging CSV
// for the engine's parallel COPY (docs/deps.md): formatting, writing and
// parsing the CSV cost more than handing the values over. The appenders
// also commit on their own when their buffer fills, so rows may lie past
// the recorded position until the next flush (see Index.tailClean).
type writer struct {
	x                       *Index
	ctx                     context.Context
	events, mail, unindexed uint64
	closed                  bool

	conn *sql.Conn           // the appenders' connection
	apps [3]*duckdb.Appender // events, mail_access, unindexed
	rows [3]int              // appended since the last flush

	// The cells of the last event row and of a mail row. A cell is a
	// value boxed in an interface, an allocation each: a mail row takes
	// the cells it shares with its event's row (the actor, the address,
	// the session...) from there.
	ev   [25]driver.Value
	last *eventRow // the row ev holds
	mr   [20]driver.Value
}

var writerTables = [3]string{"events", "mail_access", "unindexed"}

func (x *Index) newWriter(ctx context.Context) (*writer, error) {
	w := &writer{x: x, ctx: ctx}
	c, err := x.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("index: appender: %w", err)
	}
	w.conn = c
	err = c.Raw(func(dc any) error {
		for i, t := range writerTables {
			a, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", t)
			if err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
			w.apps[i] = a
		}
		return nil
	})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("index: appender: %w", err)
	}
	return w, nil
}

// orNull is a VARCHAR cell: an empty string is NULL, as the queries and
// docs/search.md expect.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return str(s)
}

// timeOrNull is a TIMESTAMP cell: the zero time is NULL.
func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// str renders a string as the engine stores it: valid UTF-8 without NUL
// bytes.
func str(s string) string {
	if !utf8.ValidString(s) {
		// The engine stores only valid UTF-8; the journal keeps the bytes.
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// csvTime, tm and u64 render cells for the CSV that detection stages.
const csvTime = "2006-01-02 15:04:05.999999"

func tm(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(csvTime)
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func (w *writer) appendEvent(r *eventRow) error {
	var hi, lo, asn any
	if r.hasIP {
		hi, lo = r.ipHi, r.ipLo
	}
	if r.asn != 0 {
		asn = r.asn
	}
	w.events++
	w.rows[0]++
	w.ev = [25]driver.Value{r.idx, r.sub, timeOrNull(r.time), timeOrNull(r.received), r.kind, orNull(r.tenant), orNull(r.source),
		orNull(r.op), orNull(r.result), r.failed, orNull(r.actor), orNull(r.app), orNull(r.clientApp), orNull(r.servicePrincipal),
		orNull(r.ip), hi, lo, asn, orNull(r.country), orNull(r.userAgent),
		orNull(r.session), orNull(r.token), orNull(r.mailbox), orNull(r.recordID), r.items}
	w.last = r
	return w.apps[0].AppendRow(w.ev[:]...)
}

// noRow stands for the event row when a mail row's event is not the last
// appended: nothing is shared.
var noRow eventRow

// The cells of events (writer.ev) a mail row may share.
const (
	evTime    = 2
	evActor   = 10
	evApp     = 11
	evClient  = 12
	evIP      = 14
	evCountry = 18
	evSession = 20
	evToken   = 21
)

func (w *writer) appendMail(m *mailRow) error {
	var hi, lo, asn, key any
	if m.messageID != "" {
		key = messageKey(m.messageID)
	}
	w.mail++
	w.rows[1]++
	// cell is the event row's cell i when the mail row has the same value
	// (its event was the last appended), else s's own.
	r := w.last
	ev := r != nil && r.idx == m.idx && r.sub == m.sub
	if !ev {
		r = &noRow
	}
	cell := func(i int, s, evs string) any {
		if ev && s == evs {
			return w.ev[i]
		}
		return orNull(s)
	}
	t := timeOrNull(m.time)
	if ev && m.time.Equal(r.time) && m.hasIP == r.hasIP && m.ipHi == r.ipHi && m.ipLo == r.ipLo && m.asn == r.asn {
		t, hi, lo, asn = w.ev[evTime], w.ev[evIP+1], w.ev[evIP+2], w.ev[evIP+3]
	} else {
		if m.hasIP {
			hi, lo = m.ipHi, m.ipLo
		}
		if m.asn != 0 {
			asn = m.asn
		}
	}
	w.mr = [20]driver.Value{m.idx, m.sub, m.n, t, orNull(m.mailbox), orNull(m.folder), orNull(m.messageID), key,
		m.accessType, m.throttled, cell(evActor, m.actor, r.actor), cell(evApp, m.app, r.app), cell(evClient, m.clientApp, r.clientApp),
		cell(evIP, m.ip, r.ip), hi, lo, asn, cell(evCountry, m.country, r.country), cell(evSession, m.session, r.session),
		cell(evToken, m.token, r.token)}
	return w.apps[1].AppendRow(w.mr[:]...)
}

func (w *writer) appendUnindexed(idx uint64, source, reason string) error {
	w.unindexed++
	w.rows[2]++
	return w.apps[2].AppendRow(idx, orNull(source), str(reason))
}

// flush commits the appended rows.
func (w *writer) flush() error {
	for i, a := range w.apps {
		if w.rows[i] == 0 {
			continue
		}
		done := w.x.step("append " + writerTables[i])
		err := a.FlushWithCancel(w.ctx)
		done()
		if err != nil {
			return fmt.Errorf("index: load %s: %w", writerTables[i], err)
		}
		w.rows[i] = 0
	}
	return nil
}

func (w *writer) close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	for _, a := range w.apps {
		if a != nil {
			// Rows not flushed were not committed: an update that stops
			// leaves them out (closing would append them).
			if err := a.Clear(); err != nil {
				errs = append(errs, err)
			}
			if err := a.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if w.conn != nil {
		if err := w.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// decoded is one journal entry turned into rows.
type decoded struct {
	events []eventRow
	mail   []mailRow
	reason string // why the entry gave no event
	source string
}
