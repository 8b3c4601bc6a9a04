package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// Hash is a SHA-256 Merkle tree hash (RFC 6962).
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// emptyRoot is the RFC 6962 root of the empty tree, SHA-256("").
var emptyRoot = Hash(sha256.Sum256(nil))

// leafHasher computes RFC 6962 leaf hashes, SHA-256(0x00 || data),
// reusing one digest. Not safe for concurrent use.
type leafHasher struct {
	d   hash.Hash
	out [32]byte // Sum target that does not escape per call
}

func newLeafHasher() *leafHasher { return &leafHasher{d: sha256.New()} }

var leafPrefix = []byte{0}

func (l *leafHasher) sum(data []byte) Hash {
	l.d.Reset()
	l.d.Write(leafPrefix)
	l.d.Write(data)
	l.d.Sum(l.out[:0])
	return l.out
}

// nodeHash is the RFC 6962 interior node hash SHA-256(0x01 || l || r).
func nodeHash(l, r *Hash) Hash {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// tileLevel is the level of the subtree hashes kept in the tiles file:
// one per 256 leaves, so proofs and roots never rehash more than a
// tile's worth of leaves plus the tiles above.
const tileLevel = 8

// tree is a compact Merkle range [0, size): the roots of the perfect
// subtrees along the right edge, largest first.
type tree struct {
	size  uint64
	nodes []Hash
}

// push appends a leaf hash. onTile is called with each completed
// tileLevel subtree.
func (t *tree) push(h Hash, onTile func(index uint64, h Hash)) {
	t.nodes = append(t.nodes, h)
	level := 0
	for n := t.size; n&1 == 1; n >>= 1 {
		k := len(t.nodes)
		t.nodes[k-2] = nodeHash(&t.nodes[k-2], &t.nodes[k-1])
		t.nodes = t.nodes[:k-1]
		level++
		if level == tileLevel && onTile != nil {
			onTile(t.size>>tileLevel, t.nodes[k-2])
		}
	}
	t.size++
}

func (t *tree) root() Hash {
	if len(t.nodes) == 0 {
		return emptyRoot
	}
	r := t.nodes[len(t.nodes)-1]
	for i := len(t.nodes) - 2; i >= 0; i-- {
		r = nodeHash(&t.nodes[i], &r)
	}
	return r
}

func (t *tree) clone() tree {
	return tree{size: t.size, nodes: append([]Hash(nil), t.nodes...)}
}

// hashFile is a file of consecutive 32-byte hashes.
type hashFile struct {
	f    *os.File
	n    uint64 // hashes in the file
	name string
}

func openHashFile(path string, flag int) (*hashFile, error) {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open hash file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	// A partial trailing hash is a torn write; it is ignored here and
	// overwritten by the next append.
	return &hashFile{f: f, n: uint64(st.Size()) / 32, name: path}, nil
}

func (h *hashFile) get(i uint64) (Hash, error) {
	var out Hash
	if i >= h.n {
		return out, fmt.Errorf("%s: hash %d of %d", h.name, i, h.n)
	}
	if _, err := h.f.ReadAt(out[:], int64(i)*32); err != nil {
		return out, fmt.Errorf("read %s: %w", h.name, err)
	}
	return out, nil
}

// getRange reads hashes [from, to).
func (h *hashFile) getRange(from, to uint64, dst []Hash) ([]Hash, error) {
	if to > h.n || from > to {
		return nil, fmt.Errorf("%s: hashes [%d, %d) of %d", h.name, from, to, h.n)
	}
	dst = growHashes(dst, int(to-from))
	if len(dst) == 0 {
		return dst, nil
	}
	buf := hashBytes(dst)
	if _, err := h.f.ReadAt(buf, int64(from)*32); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", h.name, err)
	}
	return dst, nil
}

// writeAt writes hashes starting at index i (i <= n) and extends n.
func (h *hashFile) writeAt(i uint64, hs []Hash) error {
	if i > h.n {
		return fmt.Errorf("%s: write at %d leaves a gap after %d", h.name, i, h.n)
	}
	if len(hs) == 0 {
		return nil
	}
	if _, err := h.f.WriteAt(hashBytes(hs), int64(i)*32); err != nil {
		return fmt.Errorf("write %s: %w", h.name, err)
	}
	h.n = max(h.n, i+uint64(len(hs)))
	return nil
}

func (h *hashFile) truncate(n uint64) error {
	if err := h.f.Truncate(int64(n) * 32); err != nil {
		return fmt.Errorf("truncate %s: %w", h.name, err)
	}
	h.n = n
	return nil
}

func growHashes(dst []Hash, n int) []Hash {
	if cap(dst) < n {
		return make([]Hash, n)
	}
	return dst[:n]
}

// hashStore answers hashes of perfect subtrees from the leaves and tiles
// files, for roots at any size and for proofs.
type hashStore struct {
	leaves, tiles *hashFile
}

// subtree returns the hash of the perfect subtree at (level, index), whose
// leaves must all be in the store.
func (s *hashStore) subtree(level uint, index uint64) (Hash, error) {
	var hs []Hash
	var err error
	if level >= tileLevel {
		w := uint64(1) << (level - tileLevel)
		hs, err = s.tiles.getRange(index*w, (index+1)*w, nil)
	} else {
		w := uint64(1) << level
		hs, err = s.leaves.getRange(index*w, (index+1)*w, nil)
	}
	if err != nil {
		return Hash{}, err
	}
	return reducePerfect(hs), nil
}

// reducePerfect folds a power-of-two run of sibling hashes into their
// root, in place.
func reducePerfect(hs []Hash) Hash {
	for n := len(hs); n > 1; n /= 2 {
		for i := 0; i < n/2; i++ {
			hs[i] = nodeHash(&hs[2*i], &hs[2*i+1])
		}
	}
	return hs[0]
}

// treeAt rebuilds the compact range [0, size) from the store.
func (s *hashStore) treeAt(size uint64) (tree, error) {
	t := tree{size: size}
	var begin uint64
	for _, id := range compact.RangeNodes(0, size, nil) {
		h, err := s.subtree(id.Level, id.Index)
		if err != nil {
			return tree{}, fmt.Errorf("subtree [%d, %d): %w", begin, begin+1<<id.Level, err)
		}
		begin += 1 << id.Level
		t.nodes = append(t.nodes, h)
	}
	return t, nil
}

func (s *hashStore) rootAt(size uint64) (Hash, error) {
	t, err := s.treeAt(size)
	if err != nil {
		return Hash{}, err
	}
	return t.root(), nil
}

func (s *hashStore) proofHashes(n proof.Nodes) ([]Hash, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h, err := s.subtree(id.Level, id.Index)
		if err != nil {
			return nil, err
		}
		hs[i] = h[:]
	}
	out, err := n.Rehash(hs, func(l, r []byte) []byte {
		h := nodeHash((*Hash)(l), (*Hash)(r))
		return h[:]
	})
	if err != nil {
		return nil, err
	}
	res := make([]Hash, len(out))
	for i := range out {
		res[i] = Hash(out[i])
	}
	return res, nil
}

// inclusion returns the RFC 6962 inclusion proof of leaf index in the tree
// of the given size.
func (s *hashStore) inclusion(index, size uint64) ([]Hash, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return s.proofHashes(n)
}

// consistency returns the RFC 6962 consistency proof between two sizes.
func (s *hashStore) consistency(size1, size2 uint64) ([]Hash, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return s.proofHashes(n)
}

// writeAtUnlocked writes hashes at index i without extending n; the
// committer bumps n under the journal's lock once the write is done, so
// readers never see hashes that are being written.
func (h *hashFile) writeAtUnlocked(i uint64, hs []Hash) error {
	if len(hs) == 0 {
		return nil
	}
	if _, err := h.f.WriteAt(hashBytes(hs), int64(i)*32); err != nil {
		return fmt.Errorf("write %s: %w", h.name, err)
	}
	return nil
}
