package journal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the journal's size and Merkle root,
// in the C2SP tlog-checkpoint format:
//
//	<origin>
//	<size, decimal>
//	<root hash, base64>
//
//	— <key name> <base64 signature>
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Note   []byte // the signed note, as published
}

// Files holding the key pair.
const (
	keyFile = "journal.key"
	// PublicKeyFile holds the verifier key (note.NewVerifier format); copy
	// it somewhere the journal's host cannot change, and verify with it.
	PublicKeyFile   = "journal.pub"
	checkpointsFile = "checkpoints"
	expiredFile     = "expired"
)

// ErrBadCheckpoint reports a checkpoint that is malformed or not signed by
// the expected key.
var ErrBadCheckpoint = errors.New("journal: bad checkpoint")

func checkpointBody(origin string, size uint64, root Hash) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// ParseCheckpoint opens a signed checkpoint with v, requiring a valid
// signature by v and an origin equal to v's name.
func ParseCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	c, err := parseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, key %q", ErrBadCheckpoint, c.Origin, v.Name())
	}
	c.Note = msg
	return c, nil
}

// parseCheckpointBody parses the note text of a checkpoint. Extension
// lines after the root are allowed and ignored, as C2SP specifies.
func parseCheckpointBody(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines, want origin, size and root", ErrBadCheckpoint, len(lines)-1)
	}
	origin, sizeS, rootS := lines[0], lines[1], lines[2]
	if origin == "" {
		return Checkpoint{}, fmt.Errorf("%w: empty origin", ErrBadCheckpoint)
	}
	size, err := strconv.ParseUint(sizeS, 10, 64)
	if err != nil || (len(sizeS) > 1 && sizeS[0] == '0') {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrBadCheckpoint, sizeS)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootS)
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrBadCheckpoint, rootS)
	}
	return Checkpoint{Origin: origin, Size: size, Root: Hash(root)}, nil
}

// keys is the journal's signing identity.
type keys struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

// loadOrCreateKeys reads DIR/journal.key, generating it (0600) and
// DIR/journal.pub on first run.
func loadOrCreateKeys(dir, origin string) (*keys, bool, error) {
	kp := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(kp)
	created := false
	if errors.Is(err, os.ErrNotExist) {
		if origin == "" {
			var r [8]byte
			if _, err := rand.Read(r[:]); err != nil {
				return nil, false, fmt.Errorf("generate origin: %w", err)
			}
			origin = "vigil.local/journal/" + hex.EncodeToString(r[:])
		}
		skey, vkey, err := note.GenerateKey(rand.Reader, origin)
		if err != nil {
			return nil, false, fmt.Errorf("generate signing key for origin %q: %w", origin, err)
		}
		if err := writeFileSync(kp, []byte(skey+"\n"), 0o600); err != nil {
			return nil, false, err
		}
		if err := writeFileSync(filepath.Join(dir, PublicKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, false, err
		}
		b, created = []byte(skey), true
	} else if err != nil {
		return nil, false, fmt.Errorf("read signing key: %w", err)
	}
	if st, err := os.Stat(kp); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("signing key %s has mode %v; it must not be readable by others (chmod 600)", kp, st.Mode().Perm())
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, false, fmt.Errorf("parse signing key %s: %w", kp, err)
	}
	vkey, err := ReadVerifierKey(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		return nil, false, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, false, fmt.Errorf("parse verifier key: %w", err)
	}
	if v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		return nil, false, fmt.Errorf("%s does not match %s", PublicKeyFile, keyFile)
	}
	return &keys{signer: s, verifier: v, vkey: vkey}, created, nil
}

// ReadVerifierKey reads a verifier key file as exported by the journal.
func ReadVerifierKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read verifier key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// NewVerifier parses a verifier key as ReadVerifierKey returns it.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("parse verifier key: %w", err)
	}
	return v, nil
}

func (k *keys) sign(size uint64, root Hash) (Checkpoint, error) {
	origin := k.signer.Name()
	msg, err := note.Sign(&note.Note{Text: checkpointBody(origin, size, root)}, k.signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: msg}, nil
}

// The checkpoints file holds every checkpoint the journal signed, each as
// length uint32 | CRC32C uint32 | note, so a torn last one is recognised.

func appendCheckpointRecord(dst, msg []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(msg)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(msg, castagnoli))
	return append(dst, msg...)
}

// splitCheckpointRecords returns the notes in b and the length of the
// intact prefix; a record that is cut short or fails its checksum ends the
// list.
func splitCheckpointRecords(b []byte) (notes [][]byte, good int, err error) {
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return notes, off, fmt.Errorf("%w: record header cut short at offset %d", errShortFrame, off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n > len(b)-off-8 {
			return notes, off, fmt.Errorf("%w: record at offset %d needs %d bytes", errShortFrame, off, n)
		}
		msg := b[off+8 : off+8+n]
		if crc32.Checksum(msg, castagnoli) != binary.LittleEndian.Uint32(b[off+4:]) {
			return notes, off, fmt.Errorf("%w: checkpoint record at offset %d", errChecksum, off)
		}
		notes = append(notes, msg)
		off += 8 + n
	}
	return notes, len(b), nil
}

// expiry notes record, signed, that entries below an index were expired
// on purpose, so that their missing segments are not taken for deletion.
// They also carry the SHA-256 of the expired entries' dedup keys, which
// can no longer be recomputed from raw bytes.
const expiryHeader = "vigil journal expiry"

type expiry struct {
	below  uint64
	idsSum [32]byte
}

func (k *keys) signExpiry(e expiry) ([]byte, error) {
	text := expiryHeader + "\n" + k.signer.Name() + "\n" + strconv.FormatUint(e.below, 10) + "\n" +
		base64.StdEncoding.EncodeToString(e.idsSum[:]) + "\n"
	msg, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		return nil, fmt.Errorf("sign expiry note: %w", err)
	}
	return msg, nil
}

func parseExpiry(msg []byte, v note.Verifier) (expiry, error) {
	var e expiry
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return e, fmt.Errorf("expiry note: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 5 || lines[0] != expiryHeader || lines[1] != v.Name() || lines[4] != "" {
		return e, fmt.Errorf("expiry note: malformed text %q", n.Text)
	}
	if e.below, err = strconv.ParseUint(lines[2], 10, 64); err != nil {
		return e, fmt.Errorf("expiry note: index %q", lines[2])
	}
	sum, err := base64.StdEncoding.Strict().DecodeString(lines[3])
	if err != nil || len(sum) != 32 {
		return e, fmt.Errorf("expiry note: ids digest %q", lines[3])
	}
	e.idsSum = [32]byte(sum)
	return e, nil
}

// idsDigest hashes the first n dedup keys of the ids file.
func idsDigest(f *os.File, n uint64) ([32]byte, error) {
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(f, 0, int64(n*idSize))); err != nil {
		return [32]byte{}, fmt.Errorf("read ids: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return [32]byte{}, fmt.Errorf("stat ids: %w", err)
	}
	if uint64(st.Size()) < n*idSize {
		return [32]byte{}, fmt.Errorf("ids file holds %d keys, fewer than the %d expired entries", st.Size()/idSize, n)
	}
	return [32]byte(d.Sum(nil)), nil
}

// writeFileSync writes a file durably: temp file, fsync, rename, fsync dir.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// readCheckpoints returns the checkpoints in DIR/checkpoints, verified
// with v, and the byte length of the intact prefix.
func readCheckpoints(dir string, v note.Verifier) ([]Checkpoint, int, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read checkpoints: %w", err)
	}
	notes, good, serr := splitCheckpointRecords(b)
	cps := make([]Checkpoint, 0, len(notes))
	for i, n := range notes {
		c, err := ParseCheckpoint(n, v)
		if err != nil {
			return cps, good, fmt.Errorf("checkpoint %d: %w", i, err)
		}
		cps = append(cps, c)
	}
	return cps, good, serr
}

// FormatHash renders a hash as hex, the form vigil prints.
func FormatHash(h Hash) string { return h.String() }
