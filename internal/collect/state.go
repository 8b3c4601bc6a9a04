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
	"strings"
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

// state is what a collector commits. The header (watermark and the
// rest) is replaced atomically at each commit; the ids seen are appended
// to one file per day (<source>.seen.<yyyymmdd>) and whole days are
// deleted once past the horizon, so a commit costs what is new, not what
// is remembered.
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
	seen       seenSet
	fresh      bool // no state was stored yet
}

// seenSet is the ids seen within the horizon, with those not yet
// persisted.
type seenSet struct {
	m       map[seenKey]int64 // key → unix seconds first seen
	pending []seenEntry
	pruned  time.Time // the cut of the last pruning
}

type seenEntry struct {
	k seenKey
	t int64
}

func (s *seenSet) has(k seenKey) bool { _, ok := s.m[k]; return ok }

func (s *seenSet) add(k seenKey, t int64) {
	if s.m == nil {
		s.m = map[seenKey]int64{}
	}
	if _, ok := s.m[k]; ok {
		return
	}
	s.m[k] = t
	s.pending = append(s.pending, seenEntry{k, t})
}

const (
	stateMagic = "vigil-collect-state v2\n"
	seenRecord = 24 // 16-byte key, 8-byte unix seconds
	dayFormat  = "20060102"
)

// encode writes magic, the JSON header and a SHA-256 of both.
func (s *state) encode() ([]byte, error) {
	hdr, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(stateMagic)
	b.Write(hdr)
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
	s := &state{}
	if err := json.Unmarshal(body[len(stateMagic):], s); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	return s, nil
}

// saveState appends the pending ids to their days' files, then replaces
// the header, then deletes day files past cut. A crash in between leaves
// ids on disk whose records are already in the journal: harmless.
func saveState(st Store, name string, s *state, cut time.Time) error {
	byDay := map[string][]byte{}
	for _, e := range s.seen.pending {
		day := name + ".seen." + time.Unix(e.t, 0).UTC().Format(dayFormat)
		var rec [seenRecord]byte
		copy(rec[:16], e.k[:])
		binary.LittleEndian.PutUint64(rec[16:], uint64(e.t))
		byDay[day] = append(byDay[day], rec[:]...)
	}
	for day, b := range byDay {
		if err := st.Append(day, b); err != nil {
			return err
		}
	}
	s.seen.pending = s.seen.pending[:0]
	b, err := s.encode()
	if err != nil {
		return err
	}
	if err := st.Save(name, b); err != nil {
		return err
	}
	// Pruning walks every id: do it at most hourly.
	if cut.Sub(s.seen.pruned) < time.Hour {
		return nil
	}
	s.seen.pruned = cut
	cutT := cut.Unix()
	for k, t := range s.seen.m {
		if t < cutT {
			delete(s.seen.m, k)
		}
	}
	days, err := st.List(name + ".seen.")
	if err != nil {
		return err
	}
	cutDay := cut.UTC().Format(dayFormat)
	for _, d := range days {
		if d[len(name)+len(".seen."):] < cutDay {
			if err := st.Remove(d); err != nil {
				return err
			}
		}
	}
	return nil
}

func loadState(st Store, name string, cut time.Time) (*state, error) {
	b, err := st.Load(name)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &state{seen: seenSet{m: map[seenKey]int64{}}, fresh: true}, nil
	}
	s, err := decodeState(b)
	if err != nil {
		return nil, fmt.Errorf("collector state %s: %w (move it aside to start over from --since)", name, err)
	}
	s.seen.m = map[seenKey]int64{}
	days, err := st.List(name + ".seen.")
	if err != nil {
		return nil, err
	}
	cutT := cut.Unix()
	for _, d := range days {
		b, err := st.Load(d)
		if err != nil {
			return nil, err
		}
		// A torn append can only cut the last record short: drop it (its
		// record is re-read from the journal's tail).
		for i := 0; i+seenRecord <= len(b); i += seenRecord {
			var k seenKey
			copy(k[:], b[i:i+16])
			if t := int64(binary.LittleEndian.Uint64(b[i+16:])); t >= cutT {
				s.seen.m[k] = t
			}
		}
	}
	return s, nil
}

// Store keeps collectors' state blobs by name.
type Store interface {
	// Load returns the named state, or nil when there is none.
	Load(name string) ([]byte, error)
	// Save replaces the named state atomically and durably.
	Save(name string, b []byte) error
	// Append adds b to the end of the named state durably.
	Append(name string, b []byte) error
	// List names the states starting with prefix; Remove deletes one.
	List(prefix string) ([]string, error)
	Remove(name string) error
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

// Append implements Store.
func (d DirStore) Append(name string, b []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	path := filepath.Join(string(d), name+".state")
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && statErr != nil {
		err = syncDir(string(d)) // a new file: make its name durable too
	}
	return err
}

// List implements Store.
func (d DirStore) List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".state")
		if ok && strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Remove implements Store.
func (d DirStore) Remove(name string) error {
	err := os.Remove(filepath.Join(string(d), name+".state"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
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
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Append implements Store.
func (m *MemStore) Append(name string, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[name] = append(m.m[name], b...)
	return nil
}

// List implements Store.
func (m *MemStore) List(prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Remove implements Store.
func (m *MemStore) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, name)
	return nil
}
