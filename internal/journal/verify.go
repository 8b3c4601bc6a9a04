package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// VerifierKey checks signatures; default: the journal's own
	// journal.pub. For real assurance pass a copy kept elsewhere, since
	// whoever can rewrite the journal can rewrite that file too.
	VerifierKey string
	// Checkpoint, if set, is a signed checkpoint obtained earlier: Verify
	// also proves that the journal extends it.
	Checkpoint []byte
	// Workers hash entries in parallel (default GOMAXPROCS).
	Workers int
}

// VerifyResult is what an intact journal holds.
type VerifyResult struct {
	Entries     uint64 // entries in the tree
	Expired     uint64 // entries whose raw bytes were expired (hashes kept)
	Root        Hash
	Segments    int
	Bytes       int64 // segment bytes read
	EntryBytes  int64 // entry bytes hashed (uncompressed)
	Checkpoints int
	Latest      Checkpoint
	// Given is the checkpoint from VerifyOptions, with the consistency
	// proof from it to Entries.
	Given            *Checkpoint
	ConsistencyProof []Hash
	DedupRuns        int      // dedup run files checked against the ids file
	Notes            []string // benign findings: a torn tail, entries newer than the latest checkpoint
}

// Verify recomputes everything about the journal in dir without changing
// it: every frame's checksum and framing, the sequence of entries across
// segments, every leaf hash, the derived leaves/tiles/ids files, every
// signed checkpoint's root and signature, and the expiry note. The first
// damage found is returned as a *Damage; other errors are I/O errors.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (VerifyResult, error) {
	var res VerifyResult
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	vkey := opts.VerifierKey
	if vkey == "" {
		k, err := ReadVerifierKey(filepath.Join(dir, PublicKeyFile))
		if err != nil {
			return res, err
		}
		vkey = k
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		return res, err
	}

	cps, err := verifyCheckpoints(dir, v, &res)
	if err != nil {
		return res, err
	}
	res.Checkpoints = len(cps)
	res.Latest = cps[len(cps)-1]
	var given *Checkpoint
	if opts.Checkpoint != nil {
		c, err := ParseCheckpoint(opts.Checkpoint, v)
		if err != nil {
			return res, &Damage{Kind: "bad checkpoint", Offset: -1, Entry: -1, Detail: "given checkpoint: " + err.Error()}
		}
		given = &c
	}

	var exp expiry
	if b, err := os.ReadFile(filepath.Join(dir, expiredFile)); err == nil {
		if exp, err = parseExpiry(b, v); err != nil {
			return res, &Damage{Kind: "bad expiry note", Offset: -1, Entry: -1, Detail: err.Error()}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("read expiry note: %w", err)
	}
	expired := exp.below
	res.Expired = expired

	segs, err := listSegments(dir)
	if err != nil {
		return res, err
	}
	for len(segs) > 1 && segs[1].first <= expired {
		segs = segs[1:] // expired, not yet deleted
	}
	if len(segs) == 0 {
		return res, &Damage{Kind: "missing segment", Offset: -1, Entry: int64(expired), Detail: "no segment files"}
	}
	if segs[0].first > expired {
		return res, &Damage{Kind: "missing segment", Segment: segs[0].name, Offset: -1, Entry: int64(expired),
			Detail: fmt.Sprintf("entries [%d, %d) are missing and were not expired", expired, segs[0].first)}
	}

	// The derived files may be missing (Open rebuilds them); the checks
	// below then rest on the segments and checkpoints alone.
	leaves, err := openDerived(filepath.Join(dir, "leaves"))
	if err != nil {
		return res, err
	}
	defer leaves.close()
	tiles, err := openDerived(filepath.Join(dir, "tiles"))
	if err != nil {
		return res, err
	}
	defer tiles.close()
	idsf, err := openDerived(filepath.Join(dir, "ids"))
	if err != nil {
		return res, err
	}
	defer idsf.close()
	ids, idsN := idsf.f, uint64(0)
	if ids != nil {
		st, err := ids.Stat()
		if err != nil {
			return res, fmt.Errorf("stat ids: %w", err)
		}
		idsN = uint64(st.Size()) / idSize
	}

	if expired > 0 {
		if ids == nil {
			return res, &Damage{Kind: "missing dedup keys", Offset: -1, Entry: 0, Detail: "no ids file, but expired entries' keys cannot be rebuilt"}
		}
		sum, err := idsDigest(ids, expired)
		if err != nil {
			return res, &Damage{Kind: "missing dedup keys", Offset: -1, Entry: -1, Detail: err.Error()}
		}
		if sum != exp.idsSum {
			return res, &Damage{Kind: "dedup key mismatch", Offset: -1, Entry: -1,
				Detail: fmt.Sprintf("the dedup keys of the %d expired entries differ from those the expiry note signed", expired)}
		}
	}
	sw := newSweeper(cps, given, tiles)
	if leaves.n < expired {
		return res, &Damage{Kind: "missing leaf hashes", Offset: -1, Entry: int64(leaves.n),
			Detail: fmt.Sprintf("leaf hashes end at %d, the expired range at %d", leaves.n, expired)}
	}
	// The expired range has only its stored leaf hashes; the checkpoints
	// vouch for them.
	var buf []Hash
	for i := uint64(0); i < expired; i += 1 << 16 {
		if buf, err = leaves.getRange(i, min(i+1<<16, expired), buf); err != nil {
			return res, err
		}
		if err := sw.push(buf); err != nil {
			return res, err
		}
	}

	if segs[0].first < expired {
		return res, &Damage{Kind: "bad expiry note", Segment: segs[0].name, Offset: -1, Entry: int64(expired),
			Detail: "the expired range does not end on a segment boundary"}
	}
	next := expired
	hs := &segHasher{workers: opts.Workers}
	// A bad last frame looks like a torn write; if acknowledged entries
	// turn out to be missing, it is the damage to report.
	var torn *Damage
	for k, s := range segs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		isLast := k == len(segs)-1
		if s.first != next {
			kind := "missing segment"
			if s.first < next {
				kind = "overlapping segments"
			}
			return res, &Damage{Kind: kind, Segment: s.name, Offset: -1, Entry: int64(next),
				Detail: fmt.Sprintf("expected a segment starting at entry %d", next)}
		}
		data, err := readInto(hs.buf[:0], s.path)
		if err != nil {
			return res, err
		}
		hs.buf = data
		res.Bytes += int64(len(data))
		scan, err := hs.scan(s.name, data)
		if err != nil {
			var d *Damage
			if errors.As(err, &d) {
				locateDamage(d, data, leaves)
			}
			return res, err
		}
		if scan.torn != nil {
			if !isLast {
				return res, locateDamage(&Damage{Kind: "truncated segment", Segment: s.name, Offset: int64(scan.good), Entry: int64(scan.end),
					Detail: scan.torn.Error()}, data, leaves)
			}
			res.Notes = append(res.Notes, fmt.Sprintf("torn tail of %d bytes in segment %s at offset %d (an unacknowledged write cut by a crash; Open cuts it)",
				len(data)-scan.good, s.name, scan.good))
			torn = locateDamage(&Damage{Kind: damageKind(scan.torn), Segment: s.name, Offset: int64(scan.good), Entry: int64(scan.end), Detail: scan.torn.Error()}, data, leaves)
		}
		if !isLast && !scan.sealed {
			return res, &Damage{Kind: "truncated segment", Segment: s.name, Offset: int64(len(data)), Entry: int64(scan.end),
				Detail: "segment is followed by another but has no seal frame"}
		}
		if scan.good == 0 {
			scan.first, scan.end = s.first, s.first
		}
		if err := hs.hash(ctx); err != nil {
			return res, err
		}
		res.EntryBytes += hs.entryBytes
		// Compare with the derived files where they have the entry.
		if err := hs.compare(s.name, leaves, ids, idsN); err != nil {
			return res, err
		}
		if err := sw.push(hs.leaves); err != nil {
			return res, err
		}
		next = scan.end
	}
	res.Segments = len(segs)
	n := next
	missing := func(d *Damage) *Damage {
		if torn == nil {
			return d
		}
		t := *torn
		t.Detail += "; the bad frame held acknowledged entries (" + d.Detail + ")"
		return &t
	}
	last := segs[len(segs)-1]
	if leaves.n > n {
		return res, missing(&Damage{Kind: "missing entries", Segment: last.name, Offset: -1, Entry: int64(n),
			Detail: fmt.Sprintf("leaf hashes exist for %d entries but the segments hold %d: acknowledged entries were cut or removed", leaves.n, n)})
	}
	if idsN > n {
		return res, missing(&Damage{Kind: "missing entries", Segment: last.name, Offset: -1, Entry: int64(n),
			Detail: fmt.Sprintf("dedup keys exist for %d entries but the segments hold %d", idsN, n)})
	}
	if tiles.n > n>>tileLevel {
		return res, missing(&Damage{Kind: "missing entries", Segment: last.name, Offset: -1, Entry: int64(n),
			Detail: fmt.Sprintf("tile hashes cover %d entries but the segments hold %d", tiles.n<<tileLevel, n)})
	}
	if leaves.n < n || idsN < n || tiles.n < n>>tileLevel {
		res.Notes = append(res.Notes, fmt.Sprintf("derived files lag the segments (leaves %d, ids %d, tiles %d of %d entries); Open rebuilds them",
			leaves.n, idsN, tiles.n<<tileLevel, n))
	}
	if err := sw.finish(n); err != nil {
		var d *Damage
		if errors.As(err, &d) && d.Kind == "missing entries" {
			return res, missing(d)
		}
		return res, err
	}
	res.Entries, res.Root = n, sw.tree.root()
	if err := verifyDedupRuns(ctx, dir, ids, min(idsN, n), &res); err != nil {
		return res, err
	}
	if res.Latest.Size < n {
		res.Notes = append(res.Notes, fmt.Sprintf("entries [%d, %d) are newer than the latest signed checkpoint", res.Latest.Size, n))
	}
	if given != nil {
		res.Given = given
		if leaves.n == n && tiles.n == n>>tileLevel {
			// The derived files were just checked against the entries, so
			// a standard proof from them must verify.
			store := hashStore{leaves: leaves, tiles: tiles}
			p, err := store.consistency(given.Size, n)
			if err != nil {
				return res, fmt.Errorf("consistency proof: %w", err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, given.Size, n, hashSlices(p), given.Root[:], res.Root[:]); err != nil {
				return res, &Damage{Kind: "inconsistent with checkpoint", Offset: -1, Entry: -1,
					Detail: fmt.Sprintf("consistency proof from the given checkpoint (size %d): %v", given.Size, err)}
			}
			res.ConsistencyProof = p
		}
	}
	return res, nil
}

func openDerived(path string) (*hashFile, error) {
	h, err := openHashFile(path, os.O_RDONLY)
	if errors.Is(err, os.ErrNotExist) {
		return &hashFile{name: path}, nil
	}
	return h, err
}

func (h *hashFile) close() {
	if h.f != nil {
		h.f.Close()
	}
}

func hashSlices(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func verifyCheckpoints(dir string, v note.Verifier, res *VerifyResult) ([]Checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &Damage{Kind: "missing checkpoint", Offset: -1, Entry: -1, Detail: "no checkpoints file"}
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	// A record cut short can only come from a power loss mid-write, and
	// Open cuts it; Verify still reports it, since a cut or altered length
	// looks the same.
	notes, good, serr := splitCheckpointRecords(b)
	if serr != nil {
		return nil, &Damage{Kind: "bad checkpoint", Offset: int64(good), Entry: -1, Detail: "checkpoints file: " + serr.Error()}
	}
	if len(notes) == 0 {
		return nil, &Damage{Kind: "missing checkpoint", Offset: -1, Entry: -1, Detail: "the checkpoints file holds none"}
	}
	cps := make([]Checkpoint, len(notes))
	for i, n := range notes {
		c, err := ParseCheckpoint(n, v)
		if err != nil {
			return nil, &Damage{Kind: "bad checkpoint", Offset: -1, Entry: -1, Detail: fmt.Sprintf("checkpoint %d: %v", i, err)}
		}
		if i > 0 && c.Size < cps[i-1].Size {
			return nil, &Damage{Kind: "checkpoint rollback", Offset: -1, Entry: -1,
				Detail: fmt.Sprintf("checkpoint %d has size %d after one of size %d", i, c.Size, cps[i-1].Size)}
		}
		cps[i] = c
	}
	return cps, nil
}

// sweeper builds the tree from leaf hashes in order, checking stored tile
// hashes and every checkpoint's root as their sizes are reached.
type sweeper struct {
	tree    tree
	sizes   []uint64
	roots   map[uint64][]Hash
	tiles   *hashFile
	tileErr error
}

func newSweeper(cps []Checkpoint, given *Checkpoint, tiles *hashFile) *sweeper {
	sw := &sweeper{roots: map[uint64][]Hash{}, tiles: tiles}
	add := func(c Checkpoint) {
		if _, ok := sw.roots[c.Size]; !ok {
			sw.sizes = append(sw.sizes, c.Size)
		}
		sw.roots[c.Size] = append(sw.roots[c.Size], c.Root)
	}
	for _, c := range cps {
		add(c)
	}
	if given != nil {
		add(*given)
	}
	sort.Slice(sw.sizes, func(i, j int) bool { return sw.sizes[i] < sw.sizes[j] })
	return sw
}

func (sw *sweeper) check() error {
	for len(sw.sizes) > 0 && sw.sizes[0] == sw.tree.size {
		root := sw.tree.root()
		for _, want := range sw.roots[sw.sizes[0]] {
			if want != root {
				return &Damage{Kind: "root mismatch", Offset: -1, Entry: -1,
					Detail: fmt.Sprintf("the first %d entries hash to root %s, a signed checkpoint says %s", sw.tree.size, root, want)}
			}
		}
		sw.sizes = sw.sizes[1:]
	}
	return nil
}

func (sw *sweeper) push(hs []Hash) error {
	if err := sw.check(); err != nil {
		return err
	}
	for i := range hs {
		sw.tree.push(hs[i], sw.onTile)
		if sw.tileErr != nil {
			return sw.tileErr
		}
		if err := sw.check(); err != nil {
			return err
		}
	}
	return nil
}

func (sw *sweeper) onTile(index uint64, h Hash) {
	if index >= sw.tiles.n || sw.tileErr != nil {
		return
	}
	stored, err := sw.tiles.get(index)
	if err != nil {
		sw.tileErr = err
		return
	}
	if stored != h {
		sw.tileErr = &Damage{Kind: "tile hash mismatch", Offset: -1, Entry: int64(index << tileLevel),
			Detail: fmt.Sprintf("the tiles file disagrees with entries [%d, %d)", index<<tileLevel, (index+1)<<tileLevel)}
	}
}

func (sw *sweeper) finish(n uint64) error {
	if err := sw.check(); err != nil {
		return err
	}
	if len(sw.sizes) > 0 {
		return &Damage{Kind: "missing entries", Offset: -1, Entry: int64(n),
			Detail: fmt.Sprintf("a signed checkpoint covers %d entries, the journal holds %d", sw.sizes[len(sw.sizes)-1], n)}
	}
	return nil
}

// segHasher checks one segment's frames and hashes its entries on
// several goroutines.
type segHasher struct {
	workers    int
	buf        []byte // the segment's bytes, reused across segments
	name       string
	first      uint64
	encs       [][]byte
	offs       []int // frame offset of each entry, for damage reports
	leaves     []Hash
	keys       []dedupKey
	entryBytes int64
	scratch    [][]byte
}

func (h *segHasher) scan(name string, data []byte) (segScan, error) {
	h.name = name
	h.encs, h.offs, h.entryBytes = h.encs[:0], h.offs[:0], 0
	var z int
	scan, err := scanSegment(name, data, func(off int, f *frame) error {
		if len(h.encs) == 0 {
			h.first = f.first
		}
		var scratch []byte
		if f.typ == frameEntriesZstd {
			if z < len(h.scratch) {
				scratch = h.scratch[z]
			}
		}
		p, err := f.entriesPayload(scratch)
		if err != nil {
			return &Damage{Kind: damageKind(err), Segment: name, Offset: int64(off), Entry: int64(f.first), Detail: err.Error()}
		}
		if f.typ == frameEntriesZstd {
			// Entries alias the decoded payload: keep one buffer per frame.
			if z < len(h.scratch) {
				h.scratch[z] = p
			} else {
				h.scratch = append(h.scratch, p)
			}
			z++
		}
		return splitEntries(p, f.count, func(i int, enc []byte) error {
			h.encs = append(h.encs, enc)
			h.offs = append(h.offs, off)
			h.entryBytes += int64(len(enc))
			return nil
		})
	})
	if err != nil {
		var d *Damage
		if errors.As(err, &d) {
			return scan, err
		}
		return scan, &Damage{Kind: damageKind(err), Segment: name, Offset: -1, Entry: -1, Detail: err.Error()}
	}
	if len(h.encs) == 0 {
		h.first = scan.first
	}
	return scan, nil
}

// hash computes leaf hashes and dedup keys, checking each entry decodes.
func (h *segHasher) hash(ctx context.Context) error {
	n := len(h.encs)
	h.leaves = growHashes(h.leaves, n)
	if cap(h.keys) < n {
		h.keys = make([]dedupKey, n)
	}
	h.keys = h.keys[:n]
	w := min(h.workers, max(1, n/64))
	errs := make([]error, w)
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		lo, hi := n*k/w, n*(k+1)/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			lh := newLeafHasher()
			var scratch [256]byte
			for i := lo; i < hi; i++ {
				if i&1023 == 0 && ctx.Err() != nil {
					errs[k] = ctx.Err()
					return
				}
				src, id, err := entryKeyFields(h.encs[i])
				if err != nil {
					errs[k] = &Damage{Kind: "malformed entry", Segment: h.name, Offset: int64(h.offs[i]), Entry: int64(h.first) + int64(i), Detail: err.Error()}
					return
				}
				h.keys[i] = dedupKeyOf(scratch[:0], src, id)
				h.leaves[i] = lh.sum(h.encs[i])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *segHasher) compare(name string, leaves *hashFile, ids *os.File, idsN uint64) error {
	n := uint64(len(h.leaves))
	if hi := min(h.first+n, leaves.n); hi > h.first {
		stored, err := leaves.getRange(h.first, hi, nil)
		if err != nil {
			return err
		}
		for i := range stored {
			if stored[i] != h.leaves[i] {
				return &Damage{Kind: "leaf hash mismatch", Segment: name, Offset: int64(h.offs[i]), Entry: int64(h.first) + int64(i),
					Detail: "the entry does not hash to the leaf hash stored for it (entry or leaves file altered)"}
			}
		}
	}
	if hi := min(h.first+n, idsN); hi > h.first {
		b := make([]byte, (hi-h.first)*idSize)
		if _, err := ids.ReadAt(b, int64(h.first)*idSize); err != nil {
			return fmt.Errorf("read ids: %w", err)
		}
		for i := range hi - h.first {
			if getKey(b[i*idSize:]) != h.keys[i] {
				return &Damage{Kind: "dedup key mismatch", Segment: name, Offset: int64(h.offs[i]), Entry: int64(h.first + i),
					Detail: "the ids file disagrees with the entry's source and record id"}
			}
		}
	}
	return nil
}

// readInto reads a whole file into buf, growing it as needed.
func readInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat segment: %w", err)
	}
	if int64(cap(buf)) < st.Size() {
		buf = make([]byte, 0, st.Size())
	}
	buf = buf[:st.Size()]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("read segment %s: %w", path, err)
	}
	return buf, nil
}

// locateDamage narrows damage found at a frame (d.Offset in the segment
// data, d.Entry its first entry) to the entry whose bytes changed: the
// first of the frame's entries that no longer splits off or no longer
// hashes to the leaf hash stored for it. A frame's checksum covers the
// whole block, so without this the report could only name the block's
// start. When no entry can be singled out (a damaged header, compressed
// payload, or entries the leaves file does not cover) the report keeps
// the block's first entry and says which range the block held. It
// returns d.
func locateDamage(d *Damage, data []byte, leaves *hashFile) *Damage {
	if d.Offset < 0 || d.Offset >= int64(len(data)) || d.Entry < 0 {
		return d
	}
	f, _, err := parseFrameHeader(data[d.Offset:])
	if err != nil || (f.typ != frameEntries && f.typ != frameEntriesZstd) || f.first != uint64(d.Entry) || f.count == 0 {
		return d
	}
	block := fmt.Sprintf("block of entries [%d, %d) at offset %d", f.first, f.end(), d.Offset)
	end := min(int(d.Offset)+f.size, len(data))
	payload := data[int(d.Offset)+frameHeader : max(end, int(d.Offset)+frameHeader)]
	if f.typ == frameEntriesZstd {
		d.Detail += "; the " + block + " is compressed, so the damaged entry cannot be singled out"
		return d
	}
	lh := newLeafHasher()
	found := -1
	var why string
	_ = splitEntries(payload, f.count, func(i int, enc []byte) error {
		k := f.first + uint64(i)
		if k >= leaves.n {
			return errStopLocate
		}
		want, err := leaves.get(k)
		if err != nil {
			return err
		}
		if lh.sum(enc) != want {
			found, why = i, "its bytes no longer hash to its stored leaf hash"
			return errStopLocate
		}
		return nil
	})
	if found < 0 {
		// The entries before the one the split failed on are intact: that
		// one lost its length prefix.
		n := 0
		if err := splitEntries(payload, f.count, func(i int, _ []byte) error { n = i + 1; return nil }); err != nil {
			found, why = n, "its length prefix is damaged or cut"
		}
	}
	if found < 0 {
		d.Detail += "; every entry of the " + block + " still matches its leaf hash where one is stored, so the damage is in the frame header or in entries past the leaves file"
		return d
	}
	d.Entry = int64(f.first) + int64(found)
	d.Detail += fmt.Sprintf("; entry %d of the %s is the damaged one: %s", d.Entry, block, why)
	return d
}

var errStopLocate = errors.New("stop")

// verifyDedupRuns checks the dedup runs Open would use against the ids
// file, which Verify has already checked against the segments and the
// expiry note: each run holds exactly the non-zero keys of its entries,
// each with the index of the entry the ids file gives it, strictly
// increasing, its filter passes every one and its fences name the first
// key of each search window. A run that disagrees is
// damage, since Open would trust it. Runs Open would discard and rebuild
// (unfinished, torn, replaced by a merge, past the ids file) are notes.
func verifyDedupRuns(ctx context.Context, dir string, ids *os.File, idsN uint64, res *VerifyResult) error {
	ddir := filepath.Join(dir, dedupDir)
	ents, err := os.ReadDir(ddir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list dedup runs: %w", err)
	}
	var cands []*dedupRun
	defer func() {
		for _, r := range cands {
			r.close()
		}
	}()
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".run.tmp") {
			res.Notes = append(res.Notes, fmt.Sprintf("unfinished dedup run %s (Open removes it)", name))
			continue
		}
		_, hi, ok := parseRunName(name)
		if !ok {
			continue
		}
		if hi > idsN {
			res.Notes = append(res.Notes, fmt.Sprintf("dedup run %s covers entries the ids file does not hold yet (Open removes and rebuilds it)", name))
			continue
		}
		r, err := openRun(filepath.Join(ddir, name), true)
		if errors.Is(err, errRunDamaged) {
			res.Notes = append(res.Notes, fmt.Sprintf("%v (Open removes and rebuilds it)", err))
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			continue // merged away by a running journal
		}
		if err != nil {
			return err
		}
		cands = append(cands, r)
	}
	chain, rest, _ := chainRuns(cands)
	for _, r := range rest {
		res.Notes = append(res.Notes, fmt.Sprintf("dedup run %s is not in the chain of runs from entry 0 (Open removes it)", r.name))
	}
	if len(chain) == 0 {
		return nil
	}
	idsData, err := mapFile(ids, int(idsN*idSize))
	if err != nil {
		return err
	}
	defer unmapFile(idsData)
	for _, r := range chain {
		if err := ctx.Err(); err != nil {
			return err
		}
		bad := func(entry uint64, detail string) error {
			return &Damage{Kind: "dedup run mismatch", Offset: -1, Entry: int64(entry), Detail: "dedup run " + r.name + ": " + detail}
		}
		rr := r.reader()
		var prev dedupKey
		for i := uint64(0); ; i++ {
			rec, ok, err := rr.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if i > 0 && !lessKey(prev, rec.key) {
				return bad(rec.index, fmt.Sprintf("record %d is out of order", i))
			}
			prev = rec.key
			if rec.index < r.lo || rec.index >= r.hi {
				return bad(rec.index, fmt.Sprintf("record %d names an entry outside [%d, %d)", i, r.lo, r.hi))
			}
			if getKey(idsData[rec.index*idSize:]) != rec.key {
				return bad(rec.index, fmt.Sprintf("record %d's key is not the one the ids file holds for its entry", i))
			}
			if !bloomHas(r.filter, rec.key) {
				return bad(rec.index, fmt.Sprintf("the filter does not pass record %d's key", i))
			}
			if i%searchWindow == 0 && r.fences[i/searchWindow] != rec.key[0] {
				return bad(rec.index, fmt.Sprintf("the fence of record %d disagrees with its key", i))
			}
		}
		// Distinct keys at distinct entries of the range: the run holds
		// them all if it holds as many as the range has.
		keys := uint64(0)
		for i := r.lo; i < r.hi; i++ {
			if !getKey(idsData[i*idSize:]).isZero() {
				keys++
			}
		}
		if keys != r.count {
			return bad(r.lo, fmt.Sprintf("holds %d keys, the ids file has %d for entries [%d, %d)", r.count, keys, r.lo, r.hi))
		}
	}
	res.DedupRuns = len(chain)
	return nil
}
