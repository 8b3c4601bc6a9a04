package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-audit/vigil/internal/server/auth"
)

// session is one logged-in browser.
type session struct {
	id      string // hash of the cookie value: the value itself is kept nowhere
	csrf    string
	role    auth.Role
	actor   string // key name, or "login-token"
	keyID   string
	created time.Time
	seen    time.Time
	lim     *rate.Limiter // shared by the copies get returns
}

// sessions keeps sessions and unspent login tokens in memory: a restart
// logs everyone out, which is the safe direction.
type sessions struct {
	mu       sync.Mutex
	byID     map[string]*session
	tokens   map[string]loginToken // hash → token
	idle     time.Duration
	absolute time.Duration
	tokenTTL time.Duration
	now      func() time.Time
	rate     rate.Limit
	burst    int
}

type loginToken struct {
	role    auth.Role
	expires time.Time
}

// maxSessions bounds memory: past it the oldest session is dropped.
const maxSessions = 1024

func newSessions(idle, absolute, tokenTTL time.Duration) *sessions {
	return &sessions{byID: map[string]*session{}, tokens: map[string]loginToken{},
		idle: idle, absolute: absolute, tokenTTL: tokenTTL, now: time.Now}
}

func randToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ui: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// mint makes a one-time login token for role.
func (s *sessions) mint(role auth.Role) string {
	t := randToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for h, lt := range s.tokens {
		if now.After(lt.expires) {
			delete(s.tokens, h)
		}
	}
	s.tokens[hashOf(t)] = loginToken{role: role, expires: now.Add(s.tokenTTL)}
	return t
}

// redeem spends a login token; it works once.
func (s *sessions) redeem(t string) (auth.Role, bool) {
	if t == "" {
		return "", false
	}
	h := hashOf(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	// The map lookup is on a hash of the token, so its timing says
	// nothing useful about the token itself.
	lt, ok := s.tokens[h]
	if !ok {
		return "", false
	}
	delete(s.tokens, h)
	if s.now().After(lt.expires) {
		return "", false
	}
	return lt.role, true
}

// start makes a session and returns the cookie value.
func (s *sessions) start(role auth.Role, actor, keyID string) (string, *session) {
	v := randToken()
	now := s.now()
	ss := &session{id: hashOf(v), csrf: randToken(), role: role, actor: actor, keyID: keyID, created: now, seen: now,
		lim: rate.NewLimiter(s.rate, s.burst)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= maxSessions {
		var oldest *session
		for _, o := range s.byID {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(s.byID, oldest.id)
	}
	s.byID[ss.id] = ss
	return v, ss
}

// get finds the live session of a cookie value and marks it seen.
func (s *sessions) get(v string) (*session, bool) {
	if v == "" {
		return nil, false
	}
	id := hashOf(v)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	now := s.now()
	if now.Sub(ss.seen) > s.idle || now.Sub(ss.created) > s.absolute {
		delete(s.byID, id)
		return nil, false
	}
	ss.seen = now
	cp := *ss
	return &cp, true
}

func (s *sessions) end(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, hashOf(v))
}

// endKey ends every session made from a key (it was revoked).
func (s *sessions) endKey(keyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.byID {
		if ss.keyID == keyID {
			delete(s.byID, id)
		}
	}
}

func csrfOK(ss *session, presented string) bool {
	return presented != "" && subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(presented)) == 1
}
