package journal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The tamper test applies random mutations to small journals and requires
// Verify to report each as *Damage. Mutations range from raw byte flips to
// forgeries that keep every checksum, leaf hash, dedup key and tile hash
// consistent, so that each layer of defence is exercised on its own.

const tamperMutations = 10_000

// journalState is a journal directory's files by relative path.
type journalState map[string][]byte

func snapshot(t testing.TB, dir string) journalState {
	t.Helper()
	st := journalState{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		st[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (st journalState) segments() []string {
	var out []string
	for k := range st {
		if strings.HasPrefix(k, segDir+string(filepath.Separator)) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// tamperBase is a journal to mutate, plus what mutations need to know.
type tamperBase struct {
	name    string
	state   journalState
	vkey    string
	entries []Entry // every entry, expired ones included
	expired uint64
	keyFile []byte
}

func buildTamperBase(t testing.TB, name string, n int, compress, expire bool) *tamperBase {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	opts := quietOptions()
	opts.SegmentSize = 8 << 10
	opts.Compress = compress
	opts.Retention = 24 * time.Hour
	opts.Now = func() time.Time { return now }
	opts.noSync = true
	j := mustOpen(t, dir, opts)
	es := testEntries(uint64(n), n, 100)
	for i := range es {
		es[i].Received = now.Add(time.Duration(i) * time.Minute)
	}
	for i := 0; i < n; i += 37 {
		if _, err := j.AppendBatch(ctx, es[i:min(i+37, n)]); err != nil {
			t.Fatal(err)
		}
		if i%296 == 0 {
			if _, err := j.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := &tamperBase{name: name, vkey: j.VerifierKey(), entries: es}
	if expire {
		var err error
		if b.expired, err = j.Expire(ctx, now.Add(time.Duration(n/3)*time.Minute+24*time.Hour)); err != nil || b.expired == 0 {
			t.Fatalf("expire: %d %v", b.expired, err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b.state = snapshot(t, dir)
	b.keyFile = b.state[keyFile]
	if _, err := Verify(ctx, dir, VerifyOptions{VerifierKey: b.vkey}); err != nil {
		t.Fatalf("base %s does not verify: %v", name, err)
	}
	if len(b.state.segments()) < 3 {
		t.Fatalf("base %s has %d segments", name, len(b.state.segments()))
	}
	return b
}

// segFrame is one frame of a segment file.
type segFrame struct {
	off, size int
	f         frame
	entries   [][]byte // raw entry encodings (decompressed)
}

func parseFrames(t testing.TB, data []byte) []segFrame {
	t.Helper()
	var out []segFrame
	_, err := scanSegment(segName(binary.LittleEndian.Uint64(data[8:])), data, nil)
	if err != nil {
		t.Fatalf("base segment does not scan: %v", err)
	}
	for off := segHeaderSize; off < len(data); {
		f, err := readFrame(data[off:])
		if err != nil {
			t.Fatal(err)
		}
		sf := segFrame{off: off, size: f.size, f: f}
		if f.typ != frameSeal {
			p, err := f.entriesPayload(nil)
			if err != nil {
				t.Fatal(err)
			}
			splitEntries(p, f.count, func(_ int, enc []byte) error {
				sf.entries = append(sf.entries, bytes.Clone(enc))
				return nil
			})
		}
		out = append(out, sf)
		off += f.size
	}
	return out
}

func entriesFrame(first uint64, encs [][]byte) []byte {
	var p []byte
	for _, e := range encs {
		p = binary.AppendUvarint(p, uint64(len(e)))
		p = append(p, e...)
	}
	return appendFrame(nil, frameEntries, first, uint32(len(encs)), len(p), p)
}

func replaceRange(b []byte, off, n int, with []byte) []byte {
	out := append([]byte{}, b[:off]...)
	out = append(out, with...)
	return append(out, b[off+n:]...)
}

// mutator applies one mutation to st (a private copy) and returns a
// description, or "" when it does not apply to this base.
type mutator struct {
	name string
	fn   func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, opts *VerifyOptions) string
}

func pick[T any](rng *mrand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// pickEntryFrame returns a segment and an entries frame in it with at
// least min entries.
func pickEntryFrame(t testing.TB, st journalState, rng *mrand.Rand, minEntries int) (string, []segFrame, int) {
	for range 100 {
		seg := pick(rng, st.segments())
		frames := parseFrames(t, st[seg])
		k := rng.IntN(len(frames))
		if frames[k].f.typ != frameSeal && len(frames[k].entries) >= minEntries {
			return seg, frames, k
		}
	}
	t.Fatal("no suitable frame")
	return "", nil, 0
}

func setLeaf(st journalState, name string, i uint64, b []byte) {
	buf := append([]byte{}, st[name]...)
	copy(buf[i*uint64(len(b)):], b)
	st[name] = buf
}

func recomputeTiles(st journalState) {
	leaves := st["leaves"]
	var tiles []byte
	for t := 0; (t+1)*256*32 <= len(leaves); t++ {
		hs := make([]Hash, 256)
		for i := range hs {
			copy(hs[i][:], leaves[(t*256+i)*32:])
		}
		h := reducePerfect(hs)
		tiles = append(tiles, h[:]...)
	}
	st["tiles"] = tiles
}

// rederive rewrites an entry's leaf hash (depth ≥ 1), dedup key (≥ 2) and
// the tiles (3), so deeper layers are left to catch the change.
func rederive(st journalState, index uint64, enc []byte, depth int) {
	if depth >= 1 {
		h := newLeafHasher().sum(enc)
		setLeaf(st, "leaves", index, h[:])
	}
	if depth >= 2 {
		e, err := decodeEntry(enc)
		if err == nil {
			var k [idSize]byte
			putKey(k[:], makeDedupKey(e.Source, e.RecordID))
			setLeaf(st, "ids", index, k[:])
		}
	}
	if depth >= 3 {
		recomputeTiles(st)
	}
}

func editEntry(enc []byte, rng *mrand.Rand) []byte {
	e, err := decodeEntry(enc)
	if err != nil {
		panic(err)
	}
	switch rng.IntN(5) {
	case 0:
		e.Raw = bytes.Clone(e.Raw)
		e.Raw[rng.IntN(len(e.Raw))] ^= byte(1 + rng.IntN(255))
	case 1:
		e.RecordID += "x"
	case 2:
		e.Received = e.Received.Add(time.Second)
	case 3:
		e.Source = "entra.signin"
	default:
		e.Origin = "forged"
	}
	return appendEntry(nil, &e)
}

func otherKeySigner(t testing.TB, origin string) note.Signer {
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var mutators = []mutator{
	{"byte flip in a segment", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg := pick(rng, st.segments())
		buf := append([]byte{}, st[seg]...)
		i := rng.IntN(len(buf))
		buf[i] ^= byte(1 + rng.IntN(255))
		st[seg] = buf
		return fmt.Sprintf("%s byte %d", seg, i)
	}},
	{"byte flip in a journal file", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		names := []string{"leaves", "ids", checkpointsFile}
		if len(st["tiles"]) > 0 {
			names = append(names, "tiles")
		}
		if st[expiredFile] != nil {
			names = append(names, expiredFile)
		}
		name := pick(rng, names)
		buf := append([]byte{}, st[name]...)
		i := rng.IntN(len(buf))
		buf[i] ^= byte(1 + rng.IntN(255))
		st[name] = buf
		return fmt.Sprintf("%s byte %d", name, i)
	}},
	{"segment truncation", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg := pick(rng, st.segments())
		n := rng.IntN(len(st[seg]))
		st[seg] = st[seg][:n]
		return fmt.Sprintf("%s to %d bytes", seg, n)
	}},
	{"checkpoints truncation", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		buf := st[checkpointsFile]
		notes, _, _ := splitCheckpointRecords(buf)
		// Cut inside a record: a cut on a record boundary removes a
		// checkpoint but not the entries it vouched for (see docs).
		k := rng.IntN(len(notes))
		off := 0
		for i := 0; i < k; i++ {
			off += 8 + len(notes[i])
		}
		n := off + 1 + rng.IntN(8+len(notes[k])-1)
		st[checkpointsFile] = buf[:n]
		return fmt.Sprintf("to %d bytes, inside record %d", n, k)
	}},
	{"segment removal", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg := pick(rng, st.segments())
		st[seg] = nil
		return seg
	}},
	{"frame deletion", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg := pick(rng, st.segments())
		frames := parseFrames(t, st[seg])
		f := pick(rng, frames)
		st[seg] = replaceRange(st[seg], f.off, f.size, nil)
		return fmt.Sprintf("%s frame at %d", seg, f.off)
	}},
	{"frame swap", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		for range 20 {
			seg := pick(rng, st.segments())
			frames := parseFrames(t, st[seg])
			if len(frames) < 2 {
				continue
			}
			k := rng.IntN(len(frames) - 1)
			f1, f2 := frames[k], frames[k+1]
			data := st[seg]
			sw := append(append([]byte{}, data[f2.off:f2.off+f2.size]...), data[f1.off:f1.off+f1.size]...)
			st[seg] = replaceRange(data, f1.off, f1.size+f2.size, sw)
			return fmt.Sprintf("%s frames at %d and %d", seg, f1.off, f2.off)
		}
		return ""
	}},
	{"entry edit", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg, frames, k := pickEntryFrame(t, st, rng, 1)
		f := frames[k]
		i := rng.IntN(len(f.entries))
		encs := append([][]byte{}, f.entries...)
		encs[i] = editEntry(encs[i], rng)
		st[seg] = replaceRange(st[seg], f.off, f.size, entriesFrame(f.f.first, encs))
		depth := rng.IntN(4)
		rederive(st, f.f.first+uint64(i), encs[i], depth)
		return fmt.Sprintf("entry %d, checksums fixed, derived depth %d", f.f.first+uint64(i), depth)
	}},
	{"entry deletion", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg, frames, k := pickEntryFrame(t, st, rng, 1)
		f := frames[k]
		i := rng.IntN(len(f.entries))
		encs := append(append([][]byte{}, f.entries[:i]...), f.entries[i+1:]...)
		with := entriesFrame(f.f.first, encs)
		if len(encs) == 0 {
			with = nil
		}
		st[seg] = replaceRange(st[seg], f.off, f.size, with)
		return fmt.Sprintf("entry %d, checksums fixed", f.f.first+uint64(i))
	}},
	{"entry swap", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		seg, frames, k := pickEntryFrame(t, st, rng, 2)
		f := frames[k]
		i := rng.IntN(len(f.entries) - 1)
		jx := i + 1 + rng.IntN(len(f.entries)-i-1)
		encs := append([][]byte{}, f.entries...)
		encs[i], encs[jx] = encs[jx], encs[i]
		st[seg] = replaceRange(st[seg], f.off, f.size, entriesFrame(f.f.first, encs))
		depth := rng.IntN(4)
		rederive(st, f.f.first+uint64(i), encs[i], min(depth, 2))
		rederive(st, f.f.first+uint64(jx), encs[jx], depth)
		return fmt.Sprintf("entries %d and %d, checksums fixed, derived depth %d", f.f.first+uint64(i), f.f.first+uint64(jx), depth)
	}},
	{"checkpoint text forgery", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		notes, _, _ := splitCheckpointRecords(st[checkpointsFile])
		k := rng.IntN(len(notes))
		c, err := parseCheckpointBody(string(notes[k]))
		if err != nil {
			t.Fatal(err)
		}
		body := checkpointBody(c.Origin, c.Size, c.Root)
		forged := c
		if rng.IntN(2) == 0 {
			forged.Size++
		} else {
			forged.Root[rng.IntN(32)] ^= 1
		}
		msg := bytes.Replace(notes[k], []byte(body), []byte(checkpointBody(forged.Origin, forged.Size, forged.Root)), 1)
		var out []byte
		for i, n := range notes {
			if i == k {
				n = msg
			}
			out = appendCheckpointRecord(out, n)
		}
		st[checkpointsFile] = out
		return fmt.Sprintf("checkpoint %d text changed, signature kept, record checksum fixed", k)
	}},
	{"checkpoint signed by another key", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		notes, _, _ := splitCheckpointRecords(st[checkpointsFile])
		c, _ := parseCheckpointBody(string(notes[len(notes)-1]))
		c.Root[0] ^= 1
		msg, err := note.Sign(&note.Note{Text: checkpointBody(c.Origin, c.Size, c.Root)}, otherKeySigner(t, c.Origin))
		if err != nil {
			t.Fatal(err)
		}
		st[checkpointsFile] = appendCheckpointRecord(append([]byte{}, st[checkpointsFile]...), msg)
		return "forged checkpoint appended"
	}},
	{"checkpoint rollback", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		notes, _, _ := splitCheckpointRecords(st[checkpointsFile])
		first, _ := parseCheckpointBody(string(notes[0]))
		last, _ := parseCheckpointBody(string(notes[len(notes)-1]))
		if first.Size == last.Size {
			return ""
		}
		st[checkpointsFile] = appendCheckpointRecord(append([]byte{}, st[checkpointsFile]...), notes[0])
		return "first checkpoint replayed at the end"
	}},
	{"given checkpoint forgery", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, opts *VerifyOptions) string {
		notes, _, _ := splitCheckpointRecords(st[checkpointsFile])
		c, _ := parseCheckpointBody(string(notes[rng.IntN(len(notes))]))
		switch rng.IntN(3) {
		case 0: // a root the journal never had, signed by another key
			c.Root[rng.IntN(32)] ^= 1
			msg, err := note.Sign(&note.Note{Text: checkpointBody(c.Origin, c.Size, c.Root)}, otherKeySigner(t, c.Origin))
			if err != nil {
				t.Fatal(err)
			}
			opts.Checkpoint = msg
			return "given checkpoint signed by another key"
		case 1: // a larger size than the journal holds, signature kept
			msg := notes[rng.IntN(len(notes))]
			c, _ := parseCheckpointBody(string(msg))
			opts.Checkpoint = bytes.Replace(msg, []byte(fmt.Sprintf("\n%d\n", c.Size)), []byte(fmt.Sprintf("\n%d\n", c.Size+1)), 1)
			return "given checkpoint size edited"
		default: // a valid signature over a checkpoint of a different log
			c.Root[0] ^= 0x80
			msg, err := note.Sign(&note.Note{Text: checkpointBody(c.Origin, c.Size, c.Root)}, otherKeySigner(t, "other.example/log"))
			if err != nil {
				t.Fatal(err)
			}
			opts.Checkpoint = msg
			return "given checkpoint of another log"
		}
	}},
	{"expiry note forgery", func(t testing.TB, b *tamperBase, st journalState, rng *mrand.Rand, _ *VerifyOptions) string {
		if st[expiredFile] == nil {
			return ""
		}
		if rng.IntN(2) == 0 {
			st[expiredFile] = nil
			return "expiry note deleted"
		}
		msg := bytes.Replace(st[expiredFile], []byte(fmt.Sprintf("\n%d\n", b.expired)), []byte(fmt.Sprintf("\n%d\n", b.expired+uint64(1+rng.IntN(50)))), 1)
		st[expiredFile] = msg
		return "expired bound raised, signature kept"
	}},
}

// forgeries rewrite the whole journal consistently (with entries
// deleted, swapped, edited or inserted), keeping only the original signed
// checkpoints: only the signed roots can catch these.
func buildForgeries(t testing.TB, b *tamperBase, count int) []journalState {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(7, uint64(len(b.entries))))
	var out []journalState
	for len(out) < count {
		es := append([]Entry{}, b.entries...)
		lo := int(b.expired)
		i := lo + rng.IntN(len(es)-lo-1)
		switch len(out) % 4 {
		case 0:
			es = append(es[:i], es[i+1:]...)
		case 1:
			es[i], es[i+1] = es[i+1], es[i]
		case 2:
			e := es[i]
			e.Raw = append(bytes.Clone(e.Raw[:len(e.Raw)-2]), `,"x":1}`...)
			es[i] = e
		case 3:
			e := es[i]
			e.RecordID += "-inserted"
			es = append(es[:i], append([]Entry{e}, es[i:]...)...)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, keyFile), b.keyFile, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), []byte(b.vkey+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		opts := quietOptions()
		opts.SegmentSize = 8 << 10
		opts.noSync = true
		j := mustOpen(t, dir, opts)
		if _, err := j.AppendBatch(context.Background(), es); err != nil {
			t.Fatal(err)
		}
		j.Close()
		st := snapshot(t, dir)
		// The forger keeps the original checkpoints (it cannot sign new
		// ones without the key) and drops the raw bytes that were expired.
		st[checkpointsFile] = b.state[checkpointsFile]
		if b.expired > 0 {
			st[expiredFile] = b.state[expiredFile]
			for _, s := range st.segments() {
				if _, ok := b.state[s]; !ok {
					st[s] = nil
				}
			}
		}
		out = append(out, st)
	}
	return out
}

// applyState writes the differences between want and cur into dir.
func applyState(t testing.TB, dir string, cur, want journalState) {
	for name, data := range want {
		if old, ok := cur[name]; ok && data != nil && bytes.Equal(old, data) {
			continue
		}
		p := filepath.Join(dir, name)
		if data == nil {
			os.Remove(p)
			continue
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range cur {
		if _, ok := want[name]; !ok {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

func TestTamperDetected(t *testing.T) {
	bases := []*tamperBase{
		buildTamperBase(t, "plain", 600, false, false),
		buildTamperBase(t, "zstd+expired", 600, true, true),
	}
	type tally struct{ mutations, detected int }
	var mu sync.Mutex
	byMutator := map[string]*tally{}
	byKind := map[string]int{}
	record := func(m, kind string) {
		mu.Lock()
		defer mu.Unlock()
		if byMutator[m] == nil {
			byMutator[m] = &tally{}
		}
		byMutator[m].mutations++
		byMutator[m].detected++
		byKind[kind]++
	}
	check := func(t *testing.T, dir string, b *tamperBase, opts VerifyOptions, what string) string {
		_, err := Verify(context.Background(), dir, opts)
		var d *Damage
		if !errors.As(err, &d) {
			t.Fatalf("%s: %s: not detected (err %v)", b.name, what, err)
		}
		return d.Kind
	}

	const workers = 2
	t.Run("mutations", func(t *testing.T) {
		for w := 0; w < workers; w++ {
			t.Run(fmt.Sprint("worker", w), func(t *testing.T) {
				t.Parallel()
				rng := mrand.New(mrand.NewPCG(uint64(w), 99))
				dirs := make([]string, len(bases))
				cur := make([]journalState, len(bases))
				for k, b := range bases {
					dirs[k] = t.TempDir()
					os.MkdirAll(filepath.Join(dirs[k], segDir), 0o700)
					applyState(t, dirs[k], journalState{}, b.state)
					cur[k] = b.state
				}
				for n := 0; n < tamperMutations/workers; {
					k := rng.IntN(len(bases))
					b := bases[k]
					m := mutators[rng.IntN(len(mutators))]
					st := journalState{}
					for name, data := range b.state {
						st[name] = data
					}
					opts := VerifyOptions{VerifierKey: b.vkey, Workers: 1}
					what := m.fn(t, b, st, rng, &opts)
					if what == "" {
						continue
					}
					applyState(t, dirs[k], cur[k], st)
					cur[k] = st
					record(m.name, check(t, dirs[k], b, opts, m.name+": "+what))
					n++
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	for _, b := range bases {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, segDir), 0o700)
		cur := journalState{}
		for i, st := range buildForgeries(t, b, 12) {
			applyState(t, dir, cur, st)
			cur = st
			record("consistent rewrite without the key", check(t, dir, b, VerifyOptions{VerifierKey: b.vkey}, fmt.Sprintf("forgery %d", i)))
		}
	}
	total := 0
	var lines []string
	for m, c := range byMutator {
		total += c.mutations
		lines = append(lines, fmt.Sprintf("%6d  %s", c.mutations, m))
	}
	sort.Strings(lines)
	var kinds []string
	for k, c := range byKind {
		kinds = append(kinds, fmt.Sprintf("%6d  %s", c, k))
	}
	sort.Strings(kinds)
	t.Logf("%d mutations, all detected\nby mutation:\n%s\nby damage kind:\n%s", total, strings.Join(lines, "\n"), strings.Join(kinds, "\n"))
	if total < tamperMutations {
		t.Fatalf("only %d mutations", total)
	}
}
