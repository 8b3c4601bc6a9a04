package collect

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// seenKey is the first 128 bits of SHA-256 of a record key.
type seenKey [16]byte

func keyOf(s string) seenKey {
	sum := sha256.Sum256([]byte(s))
	var k seenKey
	copy(k[:], sum[:16])
	return k
}

// state is what a collector commits: written whole, atomically, after the
// records it covers are durable.
type state struct {
	Watermark   time.Time `json:"watermark,omitzero"`
	JournalSize uint64    `json:"journal_size"`
	// LastNew is when the last new record arrived; MeanGap the running
	// mean interval between polls that brought new records; SilentFrom
	// the start of a silence already recorded as a gap.
	LastNew    time.Time         `json:"last_new,omitzero"`
	MeanGap    time.Duration     `json:"mean_gap,omitempty"`
	SilentFrom time.Time         `json:"silent_from,omitzero"`
	Extra      map[string]string `json:"extra,omitempty"` // the source's own small state
	Seen       int               `json:"seen"`            // entries in the binary tail
	seen       map[seenKey]int64 // key → unix seconds first seen
	fresh      bool              // no state was stored yet
}

const stateMagic = "vigil-collect-state v1\n"

// encode writes magic, a JSON header line, then 24-byte seen entries and
// a SHA-256 of everything before it.
func (s *state) encode() ([]byte, error) {
	s.Seen = len(s.seen)
	hdr, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(stateMagic) + len(hdr) + 1 + 24*len(s.seen) + 32)
	b.WriteString(stateMagic)
	b.Write(hdr)
	b.WriteByte('\n')
	var rec [24]byte
	for k, t := range s.seen {
		copy(rec[:16], k[:])
		binary.LittleEndian.PutUint64(rec[16:], uint64(t))
		b.Write(rec[:])
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

func decodeState(b []byte) (*state, error) {
	if len(b) < len(stateMagic)+32 || string(b[:len(stateMagic)]) != stateMagic {
		return nil, errors.New("not a collector state file")
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("checksum mismatch")
	}
	rest := body[len(stateMagic):]
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 {
		return nil, errors.New("no header")
	}
	s := &state{}
	if err := json.Unmarshal(rest[:nl], s); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	tail := rest[nl+1:]
	if len(tail) != 24*s.Seen {
		return nil, fmt.Errorf("%d seen bytes for %d entries", len(tail), s.Seen)
	}
	s.seen = make(map[seenKey]int64, s.Seen)
	for i := 0; i < len(tail); i += 24 {
		var k seenKey
		copy(k[:], tail[i:i+16])
		s.seen[k] = int64(binary.LittleEndian.Uint64(tail[i+16:]))
	}
	return s, nil
}

// Store keeps collectors' state blobs by name.
type Store interface {
	// Load returns the named state, or nil when there is none.
	Load(name string) ([]byte, error)
	// Save replaces the named state atomically and durably.
	Save(name string, b []byte) error
}

// DirStore keeps each state in <dir>/<name>.state, replaced by an
// fsynced rename.
type DirStore string

// Load implements Store.
func (d DirStore) Load(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name+".state"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Save implements Store.
func (d DirStore) Save(name string, b []byte) error {
	return writeFileAtomic(filepath.Join(string(d), name+".state"), b)
}

// MemStore keeps states in memory (tests, and serve's dry runs).
type MemStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Load implements Store.
func (m *MemStore) Load(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[name], nil
}

// Save implements Store.
func (m *MemStore) Save(name string, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[name] = append([]byte(nil), b...)
	return nil
}

func loadState(st Store, name string) (*state, error) {
	b, err := st.Load(name)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &state{seen: map[seenKey]int64{}, fresh: true}, nil
	}
	s, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("collector state %s: %w (move it aside to start over from --since)", name, err)
	}
	return s, nil
}

// writeFileAtomic writes b to path via a synced temporary file and a
// rename, then syncs the directory, so a crash leaves the old or the new
// file, never a mix.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
