package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Role is what a key may do.
type Role string

// The roles, from least to most.
const (
	RoleIngest  Role = "ingest"  // may only push records
	RoleViewer  Role = "viewer"  // reads incidents, alerts, sources, search
	RoleAnalyst Role = "analyst" // also changes incident status and notes
	RoleAdmin   Role = "admin"   // also manages keys and sinks
)

// Permission is one kind of action on the API.
type Permission int

// The permissions the API checks.
const (
	PermIngest Permission = iota
	PermRead
	PermTriage
	PermAdmin
)

var grants = map[Role][]Permission{
	RoleIngest:  {PermIngest},
	RoleViewer:  {PermRead},
	RoleAnalyst: {PermRead, PermTriage},
	RoleAdmin:   {PermIngest, PermRead, PermTriage, PermAdmin},
}

// ParseRole accepts the four role names.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if _, ok := grants[r]; !ok {
		return "", fmt.Errorf("unknown role %q (want ingest, viewer, analyst or admin)", s)
	}
	return r, nil
}

// Allows reports whether role r has permission p.
func (r Role) Allows(p Permission) bool { return slices.Contains(grants[r], p) }

// Key is one stored key, without its secret.
type Key struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Active reports whether the key has not been revoked.
func (k Key) Active() bool { return k.Revoked.IsZero() }

// Store is the key file, DIR/apikeys.json (mode 0600).
type Store struct {
	path string
	mu   sync.Mutex
	keys []Key
	stat fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Errors Authenticate returns; none of them quotes the presented key.
var (
	ErrNoKey   = errors.New("no API key")
	ErrBadKey  = errors.New("invalid API key")
	ErrRevoked = errors.New("revoked API key")
)

const prefix = "vgl_"

// Open reads (or starts) the store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("apikeys: %w", err)
	}
	s := &Store{path: filepath.Join(dir, "apikeys.json")}
	if err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// reload re-reads the file if it changed since the last read.
func (s *Store) reload(force bool) error {
	st, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		s.keys, s.stat = nil, fileStamp{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("apikeys: %w", err)
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	if !force && stamp == s.stat {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("apikeys: %w", err)
	}
	var keys []Key
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("apikeys: %s: %w", s.path, err)
	}
	s.keys, s.stat = keys, stamp
	return nil
}

// Create makes a key named name with role r and returns its secret, the
// only time it is ever shown.
func (s *Store) Create(name string, r Role) (string, Key, error) {
	if _, ok := grants[r]; !ok {
		return "", Key{}, fmt.Errorf("apikeys: unknown role %q", r)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 || strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return "", Key{}, fmt.Errorf("apikeys: name must be 1–64 printable characters")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(true); err != nil {
		return "", Key{}, err
	}
	for _, k := range s.keys {
		if k.Active() && k.Name == name {
			return "", Key{}, fmt.Errorf("apikeys: an active key is already named %q", name)
		}
	}
	var idb [6]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", Key{}, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Key{}, err
	}
	id := hex.EncodeToString(idb[:])
	plain := prefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	k := Key{ID: id, Name: name, Role: r, Hash: hashKey(plain), Created: time.Now().UTC().Truncate(time.Second)}
	keys := append(slices.Clone(s.keys), k)
	if err := s.write(keys); err != nil {
		return "", Key{}, err
	}
	s.keys = keys
	return plain, k, nil
}

// Revoke revokes the active key with this id or name.
func (s *Store) Revoke(idOrName string) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(true); err != nil {
		return Key{}, err
	}
	keys := slices.Clone(s.keys)
	for i, k := range keys {
		if k.Active() && (k.ID == idOrName || k.Name == idOrName) {
			keys[i].Revoked = time.Now().UTC().Truncate(time.Second)
			if err := s.write(keys); err != nil {
				return Key{}, err
			}
			s.keys = keys
			return keys[i], nil
		}
	}
	return Key{}, fmt.Errorf("apikeys: no active key with id or name %q", idOrName)
}

// List returns every key, revoked ones included, oldest first.
func (s *Store) List() ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(false); err != nil {
		return nil, err
	}
	return slices.Clone(s.keys), nil
}

// Empty reports whether no key was ever created (first start).
func (s *Store) Empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.reload(false)
	return len(s.keys) == 0
}

// Authenticate finds the key a request presented. The secret's hash is
// compared in constant time.
func (s *Store) Authenticate(presented string) (Key, error) {
	if presented == "" {
		return Key{}, ErrNoKey
	}
	rest, ok := strings.CutPrefix(presented, prefix)
	if !ok || len(rest) < 14 || rest[12] != '_' {
		return Key{}, ErrBadKey
	}
	id := rest[:12]
	want := hashKey(presented)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(false); err != nil {
		return Key{}, err
	}
	for _, k := range s.keys {
		if k.ID != id {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(want)) != 1 {
			return Key{}, ErrBadKey
		}
		if !k.Active() {
			return Key{}, ErrRevoked
		}
		return k, nil
	}
	return Key{}, ErrBadKey
}

func hashKey(plain string) string {
	h := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(h[:])
}

// write replaces the file atomically.
func (s *Store) write(keys []Key) error {
	b, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("apikeys: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("apikeys: %w", err)
	}
	if st, err := os.Stat(s.path); err == nil {
		s.stat = fileStamp{st.ModTime(), st.Size()}
	}
	return nil
}
