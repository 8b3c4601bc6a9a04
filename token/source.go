package token

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeySource supplies the key set of one issuer.
type KeySource interface {
	// Keys returns the current key set, loading or reloading it when its
	// cache lifetime has passed.
	Keys(ctx context.Context) (*KeySet, error)
	// Refresh is called when a token names a kid the set does not have. It
	// reloads at most once per the source's minimum refresh interval, so a
	// stream of tokens with made-up kids cannot hammer the IdP.
	Refresh(ctx context.Context) (*KeySet, error)
}

// staticSource serves a fixed key set.
type staticSource struct{ ks *KeySet }

// NewStaticSource returns a KeySource that always serves ks.
func NewStaticSource(ks *KeySet) KeySource { return staticSource{ks} }

func (s staticSource) Keys(context.Context) (*KeySet, error)    { return s.ks, nil }
func (s staticSource) Refresh(context.Context) (*KeySet, error) { return s.ks, nil }

// SourceOptions tunes a Source. Zero values take the defaults shown.
type SourceOptions struct {
	Scope      Scope         // KeySet name and expected issuer, copied onto every key
	MinRefresh time.Duration // minimum time between fetches triggered by unknown kids (5m)
	DefaultTTL time.Duration // cache lifetime without cache headers (1h)
	MinTTL     time.Duration // lower clamp on header-derived lifetimes (1m)
	MaxTTL     time.Duration // upper clamp (24h)
	// Overlap keeps keys that vanished from the document usable for this
	// long, so tokens minted just before a rollover still validate (10m).
	// Negative disables it.
	Overlap    time.Duration
	HTTPClient *http.Client
	// AllowHTTP permits plain http URLs; only for loopback tests.
	AllowHTTP bool
	Now       func() time.Time
	Logger    *slog.Logger
}

func (o *SourceOptions) defaults() {
	if o.MinRefresh == 0 {
		o.MinRefresh = 5 * time.Minute
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = time.Hour
	}
	if o.MinTTL == 0 {
		o.MinTTL = time.Minute
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = 24 * time.Hour
	}
	if o.Overlap == 0 {
		o.Overlap = 10 * time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Source loads a JWKS or OIDC discovery document from a file or an https
// URL, caches it honouring Cache-Control/Expires/ETag, and keeps keys that
// disappear for an overlap window.
type Source struct {
	location string
	isURL    bool
	opts     SourceOptions

	state   atomic.Pointer[sourceState]
	fetchMu sync.Mutex // one fetch at a time; held across I/O
	// guarded by fetchMu
	lastFetch    time.Time
	etag         string
	lastModified string
	retired      map[string]*Key // by kid+thumbprint
}

type sourceState struct {
	set     *KeySet
	expires time.Time
}

// NewSource returns a Source for a file path or an https URL.
func NewSource(location string, opts SourceOptions) (*Source, error) {
	opts.defaults()
	s := &Source{location: location, opts: opts, retired: map[string]*Key{}}
	if strings.Contains(location, "://") {
		u, err := url.Parse(location)
		if err != nil {
			return nil, fmt.Errorf("key source %q: %w", location, err)
		}
		if err := checkScheme(u, opts.AllowHTTP); err != nil {
			return nil, fmt.Errorf("key source %q: %w", location, err)
		}
		s.isURL = true
	}
	if s.opts.Scope.Source == "" {
		s.opts.Scope.Source = location
	}
	return s, nil
}

func checkScheme(u *url.URL, allowHTTP bool) error {
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && allowHTTP && u.Host != "":
		return nil
	}
	return fmt.Errorf("only https URLs are accepted, got %q", u.Scheme)
}

// Keys implements KeySource.
func (s *Source) Keys(ctx context.Context) (*KeySet, error) {
	if st := s.state.Load(); st != nil && s.opts.Now().Before(st.expires) {
		return st.set, nil
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	if st := s.state.Load(); st != nil && s.opts.Now().Before(st.expires) {
		return st.set, nil // another caller refreshed while we waited
	}
	return s.loadLocked(ctx)
}

// Refresh implements KeySource.
func (s *Source) Refresh(ctx context.Context) (*KeySet, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	if st := s.state.Load(); st != nil && s.opts.Now().Sub(s.lastFetch) < s.opts.MinRefresh {
		return st.set, nil
	}
	return s.loadLocked(ctx)
}

// loadLocked fetches; on failure it keeps serving the previous set (an IdP
// outage must not turn into an outage of every relying party).
func (s *Source) loadLocked(ctx context.Context) (*KeySet, error) {
	now := s.opts.Now()
	s.lastFetch = now
	prev := s.state.Load()
	ks, ttl, err := s.fetch(ctx, prev)
	if err != nil {
		if prev != nil {
			s.opts.Logger.Warn("token: key source refresh failed, serving cached keys",
				"source", s.location, "err", err)
			s.state.Store(&sourceState{set: prev.set, expires: now.Add(s.opts.MinTTL)})
			return prev.set, nil
		}
		return nil, err
	}
	ks.FetchedAt = now
	if prev != nil && ks != prev.set {
		ks = s.withOverlap(prev.set, ks, now)
	}
	s.state.Store(&sourceState{set: ks, expires: now.Add(ttl)})
	return ks, nil
}

func keyIdentity(k *Key) string { return k.ID + "\x00" + k.Thumbprint }

// withOverlap carries keys that vanished since prev into next while they
// are within the overlap window, and remembers them as retired afterwards.
func (s *Source) withOverlap(prev, next *KeySet, now time.Time) *KeySet {
	present := make(map[string]bool, len(next.Keys))
	for _, k := range next.Keys {
		present[keyIdentity(k)] = true
		delete(s.retired, keyIdentity(k)) // re-published
	}
	for _, k := range prev.Keys {
		id := keyIdentity(k)
		if present[id] {
			continue
		}
		if _, ok := s.retired[id]; !ok {
			c := *k
			c.RetiredAt, c.RetiredUntil = now, now.Add(max(s.opts.Overlap, 0))
			s.retired[id] = &c
		}
	}
	keys := append([]*Key(nil), next.Keys...)
	var gone []*Key
	for id, k := range s.retired {
		if now.Before(k.RetiredUntil) {
			keys = append(keys, k)
		} else {
			gone = append(gone, k)
		}
		if len(s.retired) > MaxKeysPerSet {
			delete(s.retired, id) // bound memory under key churn
		}
	}
	ks := newKeySet(next.Scope, keys, next.Rejected, next.FetchedAt)
	ks.retired = map[string]*Key{}
	for _, k := range gone {
		if k.ID != "" {
			ks.retired[k.ID] = k
		}
	}
	return ks
}

func (s *Source) fetch(ctx context.Context, prev *sourceState) (*KeySet, time.Duration, error) {
	var data []byte
	ttl := s.opts.MinTTL // files are cheap to re-read
	if s.isURL {
		var notModified bool
		var err error
		data, ttl, notModified, err = s.get(ctx, s.location, true)
		if err != nil {
			return nil, 0, err
		}
		if notModified && prev != nil {
			return prev.set, ttl, nil
		}
	} else {
		f, err := os.Open(s.location)
		if err != nil {
			return nil, 0, fmt.Errorf("key source: %w", err)
		}
		data, err = io.ReadAll(io.LimitReader(f, MaxJWKSSize+1))
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("key source %s: %w", s.location, err)
		}
	}
	scope := s.opts.Scope
	if isDiscovery(data) {
		d, err := ParseDiscovery(data)
		if err != nil {
			return nil, 0, fmt.Errorf("key source %s: %w", s.location, err)
		}
		// OIDC Discovery §4.3: the document's issuer must be the one we
		// expect, or its keys would be trusted for someone else's tokens.
		// Entra's multi-tenant documents (common, organizations) name the
		// {tenantid} template; one tenant's exact issuer is an instance of
		// it, and the per-key issuer members then decide at validation.
		if scope.Issuer != "" && d.Issuer != scope.Issuer && !instanceOf(d.Issuer, scope.Issuer) {
			return nil, 0, fmt.Errorf("key source %s: discovery issuer %q is not the configured issuer %q",
				s.location, d.Issuer, scope.Issuer)
		}
		if scope.Issuer == "" {
			scope.Issuer = d.Issuer
		}
		u, err := url.Parse(d.JWKSURI)
		if err != nil {
			return nil, 0, fmt.Errorf("key source %s: jwks_uri: %w", s.location, err)
		}
		if err := checkScheme(u, s.opts.AllowHTTP); err != nil {
			return nil, 0, fmt.Errorf("key source %s: jwks_uri: %w", s.location, err)
		}
		// Conditional requests would apply to the discovery document, not
		// to the JWKS, so fetch the JWKS unconditionally.
		data, ttl, _, err = s.get(ctx, d.JWKSURI, false)
		if err != nil {
			return nil, 0, err
		}
	}
	ks, err := ParseJWKS(data, scope)
	if err != nil {
		return nil, 0, fmt.Errorf("key source %s: %w", s.location, err)
	}
	for _, rk := range ks.Rejected {
		s.opts.Logger.Warn("token: JWKS entry ignored", "source", s.location, "index", rk.Index,
			"kid", rk.KeyID, "reason", rk.Reason)
	}
	return ks, ttl, nil
}

func (s *Source) get(ctx context.Context, u string, conditional bool) ([]byte, time.Duration, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, false, fmt.Errorf("key source %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if conditional {
		if s.etag != "" {
			req.Header.Set("If-None-Match", s.etag)
		}
		if s.lastModified != "" {
			req.Header.Set("If-Modified-Since", s.lastModified)
		}
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, false, fmt.Errorf("key source: %w", err)
	}
	defer resp.Body.Close()
	ttl := s.cacheTTL(resp.Header)
	if resp.StatusCode == http.StatusNotModified && conditional {
		return nil, ttl, true, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, false, fmt.Errorf("key source %s: HTTP %s", u, resp.Status)
	}
	if resp.Request != nil && resp.Request.URL != nil {
		// A redirect must not downgrade us to plain http.
		if err := checkScheme(resp.Request.URL, s.opts.AllowHTTP); err != nil {
			return nil, 0, false, fmt.Errorf("key source %s: redirected: %w", u, err)
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, 0, false, fmt.Errorf("key source %s: %w", u, err)
	}
	if len(data) > MaxJWKSSize {
		return nil, 0, false, fmt.Errorf("key source %s: response exceeds %d bytes", u, MaxJWKSSize)
	}
	if conditional {
		s.etag, s.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	}
	return data, ttl, false, nil
}

// cacheTTL derives the cache lifetime from Cache-Control or Expires, clamped
// so a hostile or broken server can neither pin keys for ever nor make us
// refetch on every request.
func (s *Source) cacheTTL(h http.Header) time.Duration {
	ttl := s.opts.DefaultTTL
	found := false
	for _, d := range strings.Split(h.Get("Cache-Control"), ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			ttl, found = 0, true
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.ParseInt(strings.TrimPrefix(d, "max-age="), 10, 64); err == nil && n >= 0 {
				if !found || time.Duration(n)*time.Second < ttl {
					ttl = time.Duration(min(n, 1<<31)) * time.Second
				}
				found = true
			}
		}
	}
	if !found {
		if e := h.Get("Expires"); e != "" {
			if t, err := http.ParseTime(e); err == nil {
				base := s.opts.Now()
				if d, err := http.ParseTime(h.Get("Date")); err == nil {
					base = d
				}
				ttl = t.Sub(base)
			} else {
				ttl = 0 // an invalid Expires means already expired (RFC 9111 §5.3)
			}
		}
	}
	return max(s.opts.MinTTL, min(ttl, s.opts.MaxTTL))
}
