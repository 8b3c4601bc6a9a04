package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Log is the narrow interface the rest of vigil depends on, so that a
// replicated backend (NATS JetStream) can stand in for the local journal.
type Log interface {
	// AppendBatch stores entries and returns one Ack per entry, in order,
	// only once all of them are durable.
	AppendBatch(ctx context.Context, entries []Entry) ([]Ack, error)
	// Size is the number of acknowledged entries.
	Size() uint64
	// Read calls fn with each entry from index from up to Size at the call.
	Read(ctx context.Context, from uint64, fn func(index uint64, e *Entry) error) error
	// Checkpoint returns a signed checkpoint covering every acknowledged entry.
	Checkpoint(ctx context.Context) (Checkpoint, error)
	Close() error
}

var _ Log = (*Journal)(nil)

// Defaults for Options.
const (
	DefaultSegmentSize        = 64 << 20
	DefaultSegmentAge         = 24 * time.Hour
	DefaultRetention          = 180 * 24 * time.Hour
	DefaultCheckpointInterval = 10 * time.Second
	DefaultMaxBatchBytes      = 8 << 20
)

// Options configures Open. The zero value uses the defaults.
type Options struct {
	// SegmentSize starts a new segment once the active one holds this many
	// bytes (default 64 MiB).
	SegmentSize int64
	// SegmentAge starts a new segment once the active one is this old
	// (default 24 h), so retention can expire whole days.
	SegmentAge time.Duration
	// Compress stores each block as zstd (hashes cover the uncompressed
	// entries, so integrity does not depend on the compressor).
	Compress bool
	// Retention is how long Expire keeps raw entries (default 180 days).
	Retention time.Duration
	// CheckpointInterval signs a checkpoint this often when the journal
	// grew (default 10 s; negative: only on Checkpoint and Close).
	CheckpointInterval time.Duration
	// MaxBatchBytes bounds one group commit (default 8 MiB).
	MaxBatchBytes int
	// DedupMemoryKeys bounds the (source, record id) keys deduplication
	// keeps in memory (default DefaultDedupMemoryKeys: two 96 MiB tables
	// taking turns once the first is full). Older keys are moved to
	// sorted run files under DIR/dedup whose Bloom filters are mapped
	// rather than read into the heap.
	DedupMemoryKeys int
	// Origin names the log in its checkpoints; used only when the signing
	// key is created (default "vigil.local/journal/<random>").
	Origin string
	Logger *slog.Logger
	// Now returns the time; tests set it.
	Now func() time.Time

	// noSync skips fsync; only tests that build throwaway journals set it.
	noSync bool
}

func (o *Options) fill() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SegmentAge <= 0 {
		o.SegmentAge = DefaultSegmentAge
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.DedupMemoryKeys <= 0 {
		o.DedupMemoryKeys = DefaultDedupMemoryKeys
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrClosed is returned by operations on a closed journal.
var ErrClosed = errors.New("journal: closed")

// Stats counts what a Journal did since Open.
type Stats struct {
	Appended   uint64 // entries stored
	Duplicates uint64 // entries acknowledged as duplicates
	Commits    uint64 // group commits (write + fsync)
}

// Journal is an open journal directory. See the package comment.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File
	keys *keys

	reqs     chan *appendReq
	closeMu  sync.RWMutex // held for reading while sending to reqs
	closed   bool
	stop     chan struct{}
	done     chan struct{}
	cpDone   chan struct{}
	closeErr error
	once     sync.Once

	// Owned by the committer goroutine (and by Open before it starts).
	seg        *os.File
	segFile    segFile
	segSize    int64
	segCreated time.Time
	segMinRecv int64
	segMaxRecv int64
	segEntries uint64
	wbuf, zbuf []byte
	zenc       *zstd.Encoder
	dedup      *dedupSet
	next       uint64
	written    chan *commitGroup // committer → syncLoop
	unwritten  atomic.Int64      // requests sent to the committer and not yet handed to syncLoop

	// Owned by syncLoop.
	leafBuf []Hash
	keyBuf  []byte
	tileBuf []Hash

	failMu sync.Mutex
	failed error // set once; every later append fails with it

	mu     sync.RWMutex // guards the fields below
	tree   tree
	store  hashStore
	ids    *os.File
	idsN   uint64
	stats  Stats
	expire uint64 // entries below this were expired

	cpMu     sync.Mutex // serializes checkpoint writes
	cpFile   *os.File
	latest   Checkpoint
	expireMu sync.Mutex
}

type appendReq struct {
	buf    []byte // uvarint-length-prefixed entry encodings, back to back
	ends   []int
	leaves []Hash
	keys   []dedupKey
	recv   []int64
	acks   []Ack
	err    error
	done   chan struct{}
	lh     *leafHasher
}

var reqPool = sync.Pool{New: func() any {
	return &appendReq{done: make(chan struct{}, 1), lh: newLeafHasher()}
}}

// Open opens or creates the journal in dir, recovering from a crash: a
// torn tail is cut back (and logged); derived files that lag behind the
// segments are rebuilt. Anything else that does not add up is returned as
// a *Damage and the journal is not opened.
func Open(ctx context.Context, dir string, opts Options) (*Journal, error) {
	opts.fill()
	if err := os.MkdirAll(filepath.Join(dir, segDir), 0o700); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{dir: dir, opts: opts, log: opts.Logger, lock: lock}
	if err := j.recover(ctx); err != nil {
		j.closeFiles()
		return nil, err
	}
	if opts.Compress {
		j.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			j.closeFiles()
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
	}
	j.reqs = make(chan *appendReq, 256)
	j.written = make(chan *commitGroup, 64)
	j.stop = make(chan struct{})
	j.done = make(chan struct{})
	j.cpDone = make(chan struct{})
	j.dedup.fail = func(err error) { j.fail(err) }
	j.dedup.confirm = j.confirmKey
	j.dedup.start()
	go j.run()
	go j.checkpointLoop()
	return j, nil
}

func (j *Journal) closeFiles() {
	if j.dedup != nil {
		j.dedup.close()
	}
	for _, f := range []*os.File{j.seg, j.ids, j.cpFile, j.lock} {
		if f != nil {
			f.Close()
		}
	}
	for _, h := range []*hashFile{j.store.leaves, j.store.tiles} {
		if h != nil {
			h.f.Close()
		}
	}
}

func (j *Journal) recover(ctx context.Context) error {
	dir := j.dir
	var err error
	var created bool
	if j.keys, created, err = loadOrCreateKeys(dir, j.opts.Origin); err != nil {
		return err
	}
	if created {
		j.log.Info("journal: created signing key", "dir", dir, "origin", j.keys.signer.Name(), "verifier", filepath.Join(dir, PublicKeyFile))
	}

	// Checkpoints.
	cpPath := filepath.Join(dir, checkpointsFile)
	cps, good, cerr := readCheckpoints(dir, j.keys.verifier)
	if cerr != nil {
		if !errors.Is(cerr, errShortFrame) && !errors.Is(cerr, errChecksum) {
			return &Damage{Kind: "bad checkpoint", Offset: -1, Entry: -1, Detail: cerr.Error()}
		}
		if st, err := os.Stat(cpPath); err == nil {
			j.log.Warn("journal: cut torn checkpoint record", "file", cpPath, "offset", good, "bytes", st.Size()-int64(good), "reason", cerr.Error())
		}
		if err := os.Truncate(cpPath, int64(good)); err != nil {
			return fmt.Errorf("cut torn checkpoint record: %w", err)
		}
	}
	for i := 1; i < len(cps); i++ {
		if cps[i].Size < cps[i-1].Size {
			return &Damage{Kind: "checkpoint rollback", Offset: -1, Entry: -1,
				Detail: fmt.Sprintf("checkpoint %d has size %d after one of size %d", i, cps[i].Size, cps[i-1].Size)}
		}
	}
	if len(cps) > 0 {
		j.latest = cps[len(cps)-1]
	}
	if j.cpFile, err = os.OpenFile(cpPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return fmt.Errorf("open checkpoints: %w", err)
	}

	// Expiry.
	var exp expiry
	if b, err := os.ReadFile(filepath.Join(dir, expiredFile)); err == nil {
		if exp, err = parseExpiry(b, j.keys.verifier); err != nil {
			return &Damage{Kind: "bad expiry note", Offset: -1, Entry: -1, Detail: err.Error()}
		}
		j.expire = exp.below
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read expiry note: %w", err)
	}

	// Segments.
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	for len(segs) > 1 && segs[1].first <= j.expire {
		// Left over from an Expire cut short after it signed the note.
		if err := os.Remove(segs[0].path); err != nil {
			return fmt.Errorf("remove expired segment: %w", err)
		}
		j.log.Info("journal: removed expired segment", "segment", segs[0].name)
		segs = segs[1:]
	}
	if len(segs) == 0 {
		if j.latest.Size > j.expire {
			return &Damage{Kind: "missing segment", Offset: -1, Entry: int64(j.expire),
				Detail: fmt.Sprintf("no segments, but checkpoint covers %d entries", j.latest.Size)}
		}
		if err := j.createSegment(j.expire); err != nil {
			return err
		}
		segs, err = listSegments(dir)
		if err != nil {
			return err
		}
	}
	if segs[0].first > j.expire {
		return &Damage{Kind: "missing segment", Segment: segs[0].name, Offset: -1, Entry: int64(j.expire),
			Detail: fmt.Sprintf("entries [%d, %d) are missing and were not expired", j.expire, segs[0].first)}
	}
	for i := 0; i+1 < len(segs); i++ {
		si, end, err := readSealFrame(segs[i].path)
		if err != nil {
			return &Damage{Kind: "truncated segment", Segment: segs[i].name, Offset: -1, Entry: -1,
				Detail: "segment is not the last but has no intact seal: " + err.Error()}
		}
		if end != segs[i+1].first || si.entries != end-segs[i].first {
			return &Damage{Kind: "missing segment", Segment: segs[i+1].name, Offset: -1, Entry: int64(end),
				Detail: fmt.Sprintf("previous segment ends at entry %d, this one starts at %d", end, segs[i+1].first)}
		}
	}
	last := segs[len(segs)-1]
	data, err := os.ReadFile(last.path)
	if err != nil {
		return fmt.Errorf("read segment: %w", err)
	}
	scan, err := scanSegment(last.name, data, nil)
	if err != nil {
		return err
	}
	if scan.good == 0 { // header torn: the segment was being created
		scan.first, scan.end = last.first, last.first
	}
	n := scan.end
	// A torn-looking last frame that held acknowledged entries is damage.
	missing := func(detail string) error {
		d := &Damage{Kind: "missing entries", Segment: last.name, Offset: int64(scan.good), Entry: int64(n), Detail: detail}
		if scan.torn != nil {
			d.Kind = damageKind(scan.torn)
			d.Detail = scan.torn.Error() + "; the bad frame held acknowledged entries (" + detail + ")"
		}
		return d
	}

	// Derived files.
	if j.store.leaves, err = openHashFile(filepath.Join(dir, "leaves"), os.O_RDWR|os.O_CREATE); err != nil {
		return err
	}
	if j.store.tiles, err = openHashFile(filepath.Join(dir, "tiles"), os.O_RDWR|os.O_CREATE); err != nil {
		return err
	}
	if j.ids, err = os.OpenFile(filepath.Join(dir, "ids"), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("open ids: %w", err)
	}
	st, err := j.ids.Stat()
	if err != nil {
		return fmt.Errorf("stat ids: %w", err)
	}
	j.idsN = uint64(st.Size()) / idSize
	if l := j.store.leaves.n; l > n {
		return missing(fmt.Sprintf("leaf hashes exist for %d entries but the segments hold %d: acknowledged entries were cut or removed", l, n))
	}
	if j.idsN > n {
		return missing(fmt.Sprintf("dedup keys exist for %d entries but the segments hold %d", j.idsN, n))
	}
	from := min(j.store.leaves.n, j.idsN, last.first)
	if from < j.expire {
		return &Damage{Kind: "missing leaf hashes", Offset: -1, Entry: int64(from),
			Detail: fmt.Sprintf("leaf hashes end at %d, below the expired range end %d; they cannot be rebuilt", from, j.expire)}
	}
	if err := j.catchUp(ctx, segs, from, n, last.first); err != nil {
		return err
	}
	if j.expire > 0 {
		sum, err := idsDigest(j.ids, j.expire)
		if err != nil {
			return &Damage{Kind: "missing dedup keys", Offset: -1, Entry: -1, Detail: err.Error()}
		}
		if sum != exp.idsSum {
			return &Damage{Kind: "dedup key mismatch", Offset: -1, Entry: -1,
				Detail: fmt.Sprintf("the dedup keys of the %d expired entries differ from those the expiry note signed", j.expire)}
		}
	}
	if j.tree, err = j.store.treeAt(n); err != nil {
		return fmt.Errorf("rebuild tree: %w", err)
	}
	if err := j.loadDedup(); err != nil {
		return err
	}
	if j.latest.Note != nil {
		if j.latest.Size > n {
			return missing(fmt.Sprintf("the latest checkpoint covers %d entries, the segments hold %d", j.latest.Size, n))
		}
		root, err := j.store.rootAt(j.latest.Size)
		if err != nil {
			return fmt.Errorf("root at checkpoint size: %w", err)
		}
		if root != j.latest.Root {
			return &Damage{Kind: "root mismatch", Offset: -1, Entry: -1,
				Detail: fmt.Sprintf("tree of %d entries has root %s, the signed checkpoint says %s", j.latest.Size, root, j.latest.Root)}
		}
	}

	// Active segment.
	if scan.torn != nil {
		j.log.Warn("journal: cut torn tail", "segment", last.name, "offset", scan.good,
			"bytes", len(data)-scan.good, "entries_kept", n-last.first, "reason", scan.torn.Error())
		if scan.good == 0 {
			if err := os.Remove(last.path); err != nil {
				return fmt.Errorf("remove torn segment: %w", err)
			}
			if err := j.createSegment(last.first); err != nil {
				return err
			}
		} else if err := truncateSync(last.path, int64(scan.good)); err != nil {
			return err
		}
	}
	j.next = n
	if scan.sealed {
		if err := j.createSegment(n); err != nil {
			return err
		}
	} else if j.seg == nil {
		if j.seg, err = os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("open active segment: %w", err)
		}
		j.segFile = last
		j.segSize = int64(scan.good)
		if scan.good == 0 {
			j.segSize = segHeaderSize
		}
		j.segCreated = j.opts.Now()
		if st, err := j.seg.Stat(); err == nil {
			j.segCreated = st.ModTime()
		}
	}
	if j.latest.Note == nil || j.latest.Size < n {
		if _, err := j.Checkpoint(ctx); err != nil {
			return err
		}
	}
	return nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// catchUp recomputes leaf hashes and dedup keys for entries [from, n),
// checks them against what the derived files already hold and appends
// what they lack; then it does the same for tiles. Entries from active
// onwards also set the active segment's received-time range.
func (j *Journal) catchUp(ctx context.Context, segs []segFile, from, n, active uint64) error {
	lh := newLeafHasher()
	leaves := j.store.leaves
	var pendL []Hash
	var pendK []byte
	keyBuf := make([]byte, idSize)
	flush := func() error {
		if err := leaves.writeAt(leaves.n, pendL); err != nil {
			return err
		}
		if _, err := j.ids.WriteAt(pendK, int64(j.idsN)*idSize); err != nil {
			return fmt.Errorf("write ids: %w", err)
		}
		j.idsN += uint64(len(pendK) / idSize)
		pendL, pendK = pendL[:0], pendK[:0]
		return nil
	}
	j.segMinRecv, j.segMaxRecv, j.segEntries = 0, 0, 0
	err := readEntries(ctx, segs, from, n, func(i uint64, enc []byte, e *Entry) error {
		h := lh.sum(enc)
		k := makeDedupKey(e.Source, e.RecordID)
		if i >= active {
			r := e.Received.UnixNano()
			if j.segMinRecv == 0 || r < j.segMinRecv {
				j.segMinRecv = r
			}
			j.segMaxRecv = max(j.segMaxRecv, r)
			j.segEntries++
		}
		if i < leaves.n {
			stored, err := leaves.get(i)
			if err != nil {
				return err
			}
			if stored != h {
				return &Damage{Kind: "leaf hash mismatch", Offset: -1, Entry: int64(i),
					Detail: "the leaves file disagrees with the segment (one of them was altered)"}
			}
		} else {
			pendL = append(pendL, h)
		}
		if i < j.idsN {
			if _, err := j.ids.ReadAt(keyBuf, int64(i)*idSize); err != nil {
				return fmt.Errorf("read ids: %w", err)
			}
			if getKey(keyBuf) != k {
				return &Damage{Kind: "dedup key mismatch", Offset: -1, Entry: int64(i),
					Detail: "the ids file disagrees with the segment"}
			}
		} else {
			pendK = append(pendK, make([]byte, idSize)...)
			putKey(pendK[len(pendK)-idSize:], k)
		}
		if len(pendL) >= 1<<16 || len(pendK) >= idSize<<16 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if j.idsN != n || leaves.n != n {
		return fmt.Errorf("journal: after rebuild the ids file has %d keys and leaves %d hashes, want %d", j.idsN, leaves.n, n)
	}
	// Tiles: recompute from the leaves for every tile touched.
	tiles := j.store.tiles
	want := n >> tileLevel
	if tiles.n > want {
		j.log.Warn("journal: dropping tile hashes beyond the entries", "tiles", tiles.n, "want", want)
		if err := tiles.truncate(want); err != nil {
			return err
		}
	}
	var buf []Hash
	for t := min(tiles.n, from>>tileLevel); t < want; t++ {
		buf, err = leaves.getRange(t<<tileLevel, (t+1)<<tileLevel, buf)
		if err != nil {
			return err
		}
		h := reducePerfect(buf)
		if t < tiles.n {
			stored, err := tiles.get(t)
			if err != nil {
				return err
			}
			if stored != h {
				return &Damage{Kind: "tile hash mismatch", Offset: -1, Entry: int64(t << tileLevel),
					Detail: fmt.Sprintf("tiles file disagrees with leaves [%d, %d)", t<<tileLevel, (t+1)<<tileLevel)}
			}
			continue
		}
		if err := tiles.writeAt(t, []Hash{h}); err != nil {
			return err
		}
	}
	return nil
}

// loadDedup opens the dedup runs that cover the oldest entries and reads
// the keys of the rest from the ids file into the recent table, freezing
// it into runs whenever it fills. The ids file is complete here.
func (j *Journal) loadDedup() error {
	d := newDedupSet(j.dir, j.opts.DedupMemoryKeys)
	d.log = j.log
	j.dedup = d
	runs, from, err := loadRuns(j.dir, j.idsN, j.log)
	if err != nil {
		return err
	}
	d.runs, d.recentLo = runs, from
	buf := make([]byte, 1<<20)
	for off := from * idSize; off < j.idsN*idSize; {
		n := min(uint64(len(buf)), j.idsN*idSize-off)
		if _, err := j.ids.ReadAt(buf[:n], int64(off)); err != nil {
			return fmt.Errorf("read ids: %w", err)
		}
		for p := uint64(0); p < n; p += idSize {
			k := getKey(buf[p:])
			if k.isZero() {
				continue
			}
			i := (off + p) / idSize
			if d.recent.n >= d.bound {
				r, err := writeRunFromTable(j.dir, d.recentLo, i, d.recent)
				if err != nil {
					return fmt.Errorf("journal: rebuild dedup run: %w", err)
				}
				d.runs = append(d.runs, r)
				d.recent.reset()
				d.recentLo = i
			}
			d.recent.insert(k, i)
		}
		off += n
	}
	return nil
}

// confirmKey checks that entry index carried k, as a dedup run says.
func (j *Journal) confirmKey(k dedupKey, index uint64) error {
	j.mu.RLock()
	n := j.idsN
	j.mu.RUnlock()
	if index >= n {
		// Not recorded yet: the run was written from the table moments ago.
		return nil
	}
	var b [idSize]byte
	if _, err := j.ids.ReadAt(b[:], int64(index)*idSize); err != nil {
		return fmt.Errorf("read ids: %w", err)
	}
	if getKey(b[:]) != k {
		return fmt.Errorf("it names entry %d for a key the ids file does not hold there; remove the run and reopen the journal to rebuild it", index)
	}
	return nil
}

// readEntries calls fn with each entry in [from, to) of the segments,
// stopping at the first bad frame.
func readEntries(ctx context.Context, segs []segFile, from, to uint64, fn func(i uint64, enc []byte, e *Entry) error) error {
	var scratch []byte
	for k, s := range segs {
		if from >= to {
			return nil
		}
		if k+1 < len(segs) && segs[k+1].first <= from {
			continue
		}
		_, err := segmentEntries(ctx, s, from, to, &scratch, func(i uint64, enc []byte, e *Entry) error {
			from = i + 1
			return fn(i, enc, e)
		})
		if err != nil {
			return err
		}
	}
	if from < to {
		return fmt.Errorf("journal: entries [%d, %d) not found in the segments", from, to)
	}
	return nil
}

// segmentEntries reads segment s and calls fn with each entry in
// [from, to) of its intact frames, in order; a frame or entry that does
// not decode is Damage. scratch keeps the decompression buffer from one
// call to the next; e and enc are valid only during fn.
func segmentEntries(ctx context.Context, s segFile, from, to uint64, scratch *[]byte, fn func(i uint64, enc []byte, e *Entry) error) (segScan, error) {
	if err := ctx.Err(); err != nil {
		return segScan{}, err
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return segScan{}, fmt.Errorf("read segment: %w", err)
	}
	return scanSegment(s.name, data, func(off int, f *frame) error {
		if f.end() <= from || f.first >= to {
			return nil
		}
		p, err := f.entriesPayload(*scratch)
		if err != nil {
			return &Damage{Kind: damageKind(err), Segment: s.name, Offset: int64(off), Entry: int64(f.first), Detail: err.Error()}
		}
		if f.typ == frameEntriesZstd {
			*scratch = p
		}
		return splitEntries(p, f.count, func(i int, enc []byte) error {
			idx := f.first + uint64(i)
			if idx < from || idx >= to {
				return nil
			}
			e, err := decodeEntry(enc)
			if err != nil {
				return &Damage{Kind: "malformed entry", Segment: s.name, Offset: int64(off), Entry: int64(idx), Detail: err.Error()}
			}
			return fn(idx, enc, &e)
		})
	})
}

func (j *Journal) createSegment(first uint64) error {
	sf := segFile{name: segName(first), first: first}
	sf.path = filepath.Join(j.dir, segDir, sf.name)
	f, err := os.OpenFile(sf.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if _, err := f.Write(appendSegHeader(nil, first)); err != nil {
		f.Close()
		return fmt.Errorf("write segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync segment: %w", err)
	}
	if err := syncDir(filepath.Join(j.dir, segDir)); err != nil {
		f.Close()
		return err
	}
	if j.seg != nil {
		j.seg.Close()
	}
	j.seg, j.segFile, j.segSize, j.segCreated = f, sf, segHeaderSize, j.opts.Now()
	j.segMinRecv, j.segMaxRecv, j.segEntries = 0, 0, 0
	return nil
}

// Append stores one entry; see AppendBatch.
func (j *Journal) Append(ctx context.Context, e Entry) (Ack, error) {
	acks, err := j.AppendBatch(ctx, []Entry{e})
	if err != nil {
		return Ack{}, err
	}
	return acks[0], nil
}

// AppendBatch stores entries and returns, once they are all durable, one
// Ack per entry: its index, or the index of the entry that first carried
// its (Source, RecordID) with Duplicate set. Entries with a zero Received
// time get the current time. If ctx ends while the batch is being
// written, AppendBatch returns an error and the entries may or may not
// have been stored.
func (j *Journal) AppendBatch(ctx context.Context, entries []Entry) ([]Ack, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := reqPool.Get().(*appendReq)
	r.buf, r.ends, r.leaves, r.keys, r.recv = r.buf[:0], r.ends[:0], r.leaves[:0], r.keys[:0], r.recv[:0]
	r.err = nil
	now := time.Time{}
	for i := range entries {
		e := &entries[i]
		if err := checkEntry(e); err != nil {
			reqPool.Put(r)
			return nil, fmt.Errorf("journal: entry %d (source %q, record %q): %w", i, e.Source, e.RecordID, err)
		}
		if e.Received.IsZero() {
			if now.IsZero() {
				now = j.opts.Now()
			}
			c := *e
			c.Received = now
			e = &c
		}
		r.buf = binary.AppendUvarint(r.buf, uint64(encodedEntrySize(e)))
		start := len(r.buf)
		r.buf = appendEntry(r.buf, e)
		r.ends = append(r.ends, len(r.buf))
		r.leaves = append(r.leaves, r.lh.sum(r.buf[start:]))
		r.keys = append(r.keys, makeDedupKey(e.Source, e.RecordID))
		r.recv = append(r.recv, e.Received.UnixNano())
	}
	if len(entries) == 0 {
		reqPool.Put(r)
		return nil, nil
	}
	j.closeMu.RLock()
	if j.closed {
		j.closeMu.RUnlock()
		reqPool.Put(r)
		return nil, ErrClosed
	}
	j.unwritten.Add(1)
	select {
	case j.reqs <- r:
		j.closeMu.RUnlock()
	case <-ctx.Done():
		j.unwritten.Add(-1)
		j.closeMu.RUnlock()
		reqPool.Put(r)
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		// The committer still owns r; leave it to the garbage collector.
		return nil, fmt.Errorf("journal: %w while waiting for the write; the entries may or may not be stored", ctx.Err())
	}
	if r.err != nil {
		err := r.err
		reqPool.Put(r)
		return nil, err
	}
	acks := append([]Ack(nil), r.acks...)
	reqPool.Put(r)
	return acks, nil
}

// The append path is a two-stage pipeline so that writing one block
// overlaps the fsync of the blocks before it:
//
//   - run (the committer) takes every request waiting, deduplicates them,
//     writes them as one frame and hands the group to syncLoop;
//   - syncLoop takes every group written so far, makes them durable with
//     one fsync, updates the tree and derived files and acknowledges the
//     groups in order.
//
// A group is acknowledged only by an fsync that started after its write
// returned, and never before the groups written ahead of it, so a
// duplicate is never acknowledged before the entry it points to is
// durable.

// commitGroup is one committer step: the requests it took and the frame
// it wrote for them.
type commitGroup struct {
	reqs    []*appendReq
	seg     *os.File // file the frame went to; nil when nothing was written
	first   uint64   // index of the frame's first entry
	count   uint64
	dups    uint64
	err     error
	drained chan struct{} // set on a barrier: closed once the groups before it are finished
}

var groupPool = sync.Pool{New: func() any { return new(commitGroup) }}

// run is the committer.
func (j *Journal) run() {
	defer close(j.done)
	synced := make(chan struct{})
	go j.syncLoop(synced)
	defer func() {
		close(j.written)
		<-synced
	}()
	var batch []*appendReq
	for {
		var r *appendReq
		select {
		case r = <-j.reqs:
		case <-j.stop:
			// Close has stopped new sends; commit what was already sent.
			for {
				select {
				case r := <-j.reqs:
					j.commit([]*appendReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], r)
		size := len(r.buf)
		// Appenders acknowledged by the last commit are about to send
		// again; yielding once lets them join this commit instead of
		// each paying for an fsync of its own.
		runtime.Gosched()
	drain:
		for size < j.opts.MaxBatchBytes {
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
				size += len(r.buf)
			default:
				break drain
			}
		}
		j.commit(batch)
	}
}

func (j *Journal) fail(err error) error {
	j.failMu.Lock()
	defer j.failMu.Unlock()
	if j.failed == nil {
		j.failed = fmt.Errorf("journal: failed, no further appends: %w", err)
		j.log.Error("journal: write failed; refusing further appends", "dir", j.dir, "error", err.Error())
	}
	return j.failed
}

// failure returns the error that failed the journal, or nil.
func (j *Journal) failure() error {
	j.failMu.Lock()
	defer j.failMu.Unlock()
	return j.failed
}

// drainSyncer waits until every group handed to syncLoop is finished.
func (j *Journal) drainSyncer() {
	g := groupPool.Get().(*commitGroup)
	*g = commitGroup{reqs: g.reqs[:0], drained: make(chan struct{})}
	ch := g.drained
	j.written <- g
	<-ch
}

// commit writes batch as one frame and hands it to syncLoop.
func (j *Journal) commit(batch []*appendReq) {
	g := groupPool.Get().(*commitGroup)
	*g = commitGroup{reqs: append(g.reqs[:0], batch...)}
	defer func() {
		j.unwritten.Add(-int64(len(g.reqs)))
		j.written <- g
	}()
	if g.err = j.failure(); g.err != nil {
		return
	}
	if j.next > j.segFile.first && (j.segSize >= j.opts.SegmentSize || j.opts.Now().Sub(j.segCreated) >= j.opts.SegmentAge) {
		// The seal must count only durable entries and the derived files
		// must be complete before they are synced, so let the syncer
		// catch up first.
		j.drainSyncer()
		if g.err = j.failure(); g.err != nil {
			return
		}
		if err := j.rotate(); err != nil {
			g.err = j.fail(err)
			return
		}
	}
	first := j.next
	next := first
	w := append(j.wbuf[:0], make([]byte, frameHeader)...)
	minR, maxR := j.segMinRecv, j.segMaxRecv
	var dups uint64
	j.dedup.begin()
	err := func() error {
		for _, r := range batch {
			r.acks = r.acks[:0]
			start := 0
			for i, end := range r.ends {
				k := r.keys[i]
				if !k.isZero() {
					idx, ok, err := j.dedup.lookup(k)
					if err != nil {
						return err
					}
					if ok {
						r.acks = append(r.acks, Ack{Index: idx, Duplicate: true})
						start = end
						dups++
						continue
					}
					// Inserted before the write: if the write fails the
					// journal fails as a whole, so no stale key survives.
					if err := j.dedup.insert(k, next); err != nil {
						return err
					}
				}
				w = append(w, r.buf[start:end]...)
				if rv := r.recv[i]; minR == 0 || rv < minR {
					minR = rv
				}
				maxR = max(maxR, r.recv[i])
				r.acks = append(r.acks, Ack{Index: next})
				next++
				start = end
			}
		}
		return nil
	}()
	j.dedup.end()
	j.wbuf = w
	if err != nil {
		g.err = j.fail(err)
		return
	}
	g.dups = dups
	count := next - first
	if count == 0 {
		return
	}
	raw := w[frameHeader:]
	typ := byte(frameEntries)
	if j.zenc != nil {
		j.zbuf = j.zenc.EncodeAll(raw, append(j.zbuf[:0], make([]byte, frameHeader)...))
		w, typ = j.zbuf, frameEntriesZstd
	}
	binary.LittleEndian.PutUint32(w[0:], uint32(len(w)-frameHeader))
	w[8] = typ
	binary.LittleEndian.PutUint64(w[9:], first)
	binary.LittleEndian.PutUint32(w[17:], uint32(count))
	binary.LittleEndian.PutUint32(w[21:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(w[4:], crc32.Checksum(w[8:], castagnoli))
	if _, err := j.seg.Write(w); err != nil {
		g.err = j.fail(fmt.Errorf("write segment %s: %w", j.segFile.name, err))
		return
	}
	j.segSize += int64(len(w))
	j.segMinRecv, j.segMaxRecv = minR, maxR
	j.segEntries += count
	j.next = next
	g.seg, g.first, g.count = j.seg, first, count
}

// syncLoop is the second pipeline stage: it makes written groups durable
// and acknowledges them.
func (j *Journal) syncLoop(done chan struct{}) {
	defer close(done)
	var gs []*commitGroup
	for g := range j.written {
		gs = append(gs[:0], g)
		// Appenders acknowledged by the last fsync are about to send
		// again; yielding lets them reach the committer first.
		runtime.Gosched()
	more:
		for {
			select {
			case g, ok := <-j.written:
				if !ok {
					break more
				}
				gs = append(gs, g)
			default:
				break more
			}
		}
		if j.unwritten.Load() > 0 && gs[len(gs)-1].drained == nil {
			// Requests are on their way to the disk (typically from the
			// appenders just acknowledged): let this fsync cover them
			// too, instead of splitting appenders into cohorts that
			// take turns at the disk. (Not after a barrier: the
			// committer sends nothing more until it is passed.)
			if g, ok := <-j.written; ok {
				gs = append(gs, g)
			}
		}
		j.finish(gs)
	}
}

// finish makes gs durable with one fsync, records their leaves and
// acknowledges their requests, in order.
func (j *Journal) finish(gs []*commitGroup) {
	// After a failure nothing more is acknowledged: a later fsync may
	// report success for data an earlier failed one lost.
	err := j.failure()
	var synced *os.File
	for _, g := range gs {
		if err != nil {
			break
		}
		if g.seg == nil || g.seg == synced {
			continue
		}
		// Normally all groups share one file: rotation drains the
		// syncer before it closes the active segment.
		if serr := j.sync(g.seg); serr != nil {
			err = j.fail(fmt.Errorf("sync segment %s: %w", g.seg.Name(), serr))
		}
		synced = g.seg
	}
	leaves := j.leafBuf[:0]
	keys := j.keyBuf[:0]
	var first, count, dups uint64
	for _, g := range gs {
		if g.err == nil {
			g.err = err
		}
		if g.err != nil {
			continue
		}
		dups += g.dups
		if g.seg == nil {
			continue
		}
		if count == 0 {
			first = g.first
		}
		count += g.count
		for _, r := range g.reqs {
			for i, a := range r.acks {
				if a.Duplicate {
					continue
				}
				leaves = append(leaves, r.leaves[i])
				keys = append(keys, make([]byte, idSize)...)
				putKey(keys[len(keys)-idSize:], r.keys[i])
			}
		}
	}
	j.leafBuf, j.keyBuf = leaves, keys
	if count > 0 {
		j.record(first, leaves, keys, dups)
	} else if dups > 0 {
		j.mu.Lock()
		j.stats.Duplicates += dups
		j.mu.Unlock()
	}
	for _, g := range gs {
		for _, r := range g.reqs {
			r.err = g.err
			r.done <- struct{}{}
		}
		if g.drained != nil {
			close(g.drained)
		}
		g.reqs = g.reqs[:0]
		groupPool.Put(g)
	}
}

// record adds durable entries [first, first+len(leaves)) to the tree and
// the derived files. The derived files need no fsync here: Open rebuilds
// them from the segments when they lag.
func (j *Journal) record(first uint64, leaves []Hash, keys []byte, dups uint64) {
	next := first + uint64(len(leaves))
	if err := j.store.leaves.writeAtUnlocked(first, leaves); err != nil {
		j.fail(err)
	} else if _, err := j.ids.WriteAt(keys, int64(first)*idSize); err != nil {
		j.fail(fmt.Errorf("write ids: %w", err))
	}
	j.mu.Lock()
	tiles := j.tileBuf[:0]
	tileFirst := uint64(0)
	for i := range leaves {
		j.tree.push(leaves[i], func(index uint64, h Hash) {
			if len(tiles) == 0 {
				tileFirst = index
			}
			tiles = append(tiles, h)
		})
	}
	j.tileBuf = tiles
	j.store.leaves.n = next
	j.idsN = next
	j.stats.Appended += uint64(len(leaves))
	j.stats.Duplicates += dups
	j.stats.Commits++
	j.mu.Unlock()
	if len(tiles) > 0 {
		if err := j.store.tiles.writeAtUnlocked(tileFirst, tiles); err != nil {
			j.fail(err)
			return
		}
		j.mu.Lock()
		j.store.tiles.n = tileFirst + uint64(len(tiles))
		j.mu.Unlock()
	}
}

func (j *Journal) sync(f *os.File) error {
	if j.opts.noSync {
		return nil
	}
	return f.Sync()
}

// rotate seals the active segment and starts the next one. The derived
// files are synced first so that Open never needs to read a sealed
// segment to rebuild them.
func (j *Journal) rotate() error {
	w := appendSealFrame(nil, j.next, j.segEntries, j.segMinRecv, j.segMaxRecv)
	if _, err := j.seg.Write(w); err != nil {
		return fmt.Errorf("seal segment %s: %w", j.segFile.name, err)
	}
	if err := j.seg.Sync(); err != nil {
		return fmt.Errorf("sync segment %s: %w", j.segFile.name, err)
	}
	if err := j.syncDerived(); err != nil {
		return err
	}
	return j.createSegment(j.next)
}

func (j *Journal) syncDerived() error {
	for _, f := range []*os.File{j.store.leaves.f, j.store.tiles.f, j.ids} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	}
	return nil
}

// Size returns the number of acknowledged entries (including expired ones).
func (j *Journal) Size() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.tree.size
}

// Expired is the first entry whose raw bytes the journal still holds:
// entries below it were expired by retention (Expire) and Read refuses them.
func (j *Journal) Expired() uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.expire
}

// Stats returns counters since Open.
func (j *Journal) Stats() Stats {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.stats
}

// Root returns the current size and Merkle root.
func (j *Journal) Root() (uint64, Hash) {
	j.mu.RLock()
	t := j.tree.clone()
	j.mu.RUnlock()
	return t.size, t.root()
}

// Checkpoint signs and records a checkpoint of every acknowledged entry,
// or returns the latest one when nothing was appended since.
func (j *Journal) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, err
	}
	j.cpMu.Lock()
	defer j.cpMu.Unlock()
	j.mu.RLock()
	t := j.tree.clone()
	j.mu.RUnlock()
	if j.latest.Note != nil && j.latest.Size == t.size {
		return j.latest, nil
	}
	c, err := j.keys.sign(t.size, t.root())
	if err != nil {
		return Checkpoint{}, err
	}
	if _, err := j.cpFile.Write(appendCheckpointRecord(nil, c.Note)); err != nil {
		return Checkpoint{}, fmt.Errorf("write checkpoint: %w", err)
	}
	if err := j.sync(j.cpFile); err != nil {
		return Checkpoint{}, fmt.Errorf("sync checkpoints: %w", err)
	}
	j.latest = c
	return c, nil
}

// Latest returns the latest signed checkpoint without signing a new one.
func (j *Journal) Latest() Checkpoint {
	j.cpMu.Lock()
	defer j.cpMu.Unlock()
	return j.latest
}

// VerifierKey returns the verifier key for this journal's checkpoints.
func (j *Journal) VerifierKey() string { return j.keys.vkey }

func (j *Journal) checkpointLoop() {
	defer close(j.cpDone)
	if j.opts.CheckpointInterval < 0 {
		<-j.stop
		return
	}
	t := time.NewTicker(j.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if _, err := j.Checkpoint(context.Background()); err != nil {
				j.log.Error("journal: periodic checkpoint failed", "dir", j.dir, "error", err.Error())
			}
		}
	}
}

// LeafHash returns the Merkle leaf hash of entry index.
func (j *Journal) LeafHash(index uint64) (Hash, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if index >= j.tree.size {
		return Hash{}, fmt.Errorf("journal: entry %d of %d", index, j.tree.size)
	}
	return j.store.leaves.get(index)
}

// InclusionProof returns the RFC 6962 inclusion proof of entry index in
// the tree of the given size.
func (j *Journal) InclusionProof(index, size uint64) ([]Hash, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if size > j.tree.size {
		return nil, fmt.Errorf("journal: tree size %d exceeds the journal's %d", size, j.tree.size)
	}
	p, err := j.store.inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("journal: inclusion proof for %d in %d: %w", index, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the RFC 6962 consistency proof from size1 to size2.
func (j *Journal) ConsistencyProof(size1, size2 uint64) ([]Hash, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if size2 > j.tree.size {
		return nil, fmt.Errorf("journal: tree size %d exceeds the journal's %d", size2, j.tree.size)
	}
	p, err := j.store.consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("journal: consistency proof %d→%d: %w", size1, size2, err)
	}
	return p, nil
}

// RootAt returns the Merkle root of the first size entries.
func (j *Journal) RootAt(size uint64) (Hash, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if size > j.tree.size {
		return Hash{}, fmt.Errorf("journal: tree size %d exceeds the journal's %d", size, j.tree.size)
	}
	return j.store.rootAt(size)
}

// ErrExpired is returned when reading entries whose raw bytes were expired.
var ErrExpired = errors.New("journal: entries expired")

// Read calls fn with each acknowledged entry from index from on, up to the
// size when Read was called. e and its Raw are valid only during fn.
func (j *Journal) Read(ctx context.Context, from uint64, fn func(index uint64, e *Entry) error) error {
	j.mu.RLock()
	size, expired := j.tree.size, j.expire
	j.mu.RUnlock()
	if from < expired {
		return fmt.Errorf("%w: entries below %d (asked for %d)", ErrExpired, expired, from)
	}
	if from >= size {
		return nil
	}
	segs, err := listSegments(j.dir)
	if err != nil {
		return err
	}
	return readEntries(ctx, segs, from, size, func(i uint64, _ []byte, e *Entry) error { return fn(i, e) })
}

// Replay reads the journal in dir without opening it for writing: it
// calls fn with each entry from index from up to the last intact block.
// It checks frame checksums but not the Merkle tree (that is Verify's
// job), so it can run alongside a writer.
func Replay(ctx context.Context, dir string, from uint64, fn func(index uint64, e *Entry) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return nil
	}
	if from < segs[0].first {
		return fmt.Errorf("%w: entries below %d (asked for %d)", ErrExpired, segs[0].first, from)
	}
	var scratch []byte
	for k, s := range segs {
		if k+1 < len(segs) && segs[k+1].first <= from {
			continue
		}
		scan, err := segmentEntries(ctx, s, from, math.MaxUint64, &scratch, func(i uint64, _ []byte, e *Entry) error { return fn(i, e) })
		if err != nil {
			return err
		}
		if k+1 < len(segs) && (scan.torn != nil || scan.end != segs[k+1].first) {
			return &Damage{Kind: "missing entries", Segment: s.name, Offset: int64(scan.good), Entry: int64(scan.end),
				Detail: fmt.Sprintf("segment ends at entry %d, next starts at %d", scan.end, segs[k+1].first)}
		}
	}
	return nil
}

// Close commits appends already handed over, signs a final checkpoint,
// syncs the derived files and releases the directory.
func (j *Journal) Close() error {
	j.once.Do(func() {
		j.closeMu.Lock()
		j.closed = true
		j.closeMu.Unlock()
		close(j.stop)
		<-j.done
		<-j.cpDone
		var errs []error
		if j.failure() == nil {
			if _, err := j.Checkpoint(context.Background()); err != nil {
				errs = append(errs, err)
			}
			if err := j.syncDerived(); err != nil {
				errs = append(errs, err)
			}
		}
		if j.zenc != nil {
			j.zenc.Close()
		}
		j.closeFiles()
		j.closeErr = errors.Join(errs...)
	})
	return j.closeErr
}
