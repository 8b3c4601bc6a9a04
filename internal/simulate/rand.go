package simulate

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"
)

// mix is SplitMix64's finaliser: a cheap, well-distributed hash used to
// derive independent random streams and stable identifiers from the seed.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashKey folds parts into one 64-bit key.
func hashKey(parts ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc908)
	for _, p := range parts {
		h = mix(h ^ p)
	}
	return h
}

// strKey hashes a string (FNV-1a) for use in hashKey.
func strKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// rng is a deterministic random source. Each stream derives its own from
// the seed and its identity, so switching a campaign on or off does not
// change any other stream's records.
type rng struct{ r *rand.Rand }

func newRNG(seed uint64, parts ...uint64) rng {
	k := hashKey(append([]uint64{seed}, parts...)...)
	return rng{rand.New(rand.NewPCG(k, mix(k)))}
}

func (g rng) intn(n int) int {
	if n <= 1 {
		return 0
	}
	return g.r.IntN(n)
}
func (g rng) u64() uint64           { return g.r.Uint64() }
func (g rng) float() float64        { return g.r.Float64() }
func (g rng) chance(p float64) bool { return g.r.Float64() < p }

// between returns a uniform int in [lo, hi].
func (g rng) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + g.r.IntN(hi-lo+1)
}

// expo returns an exponential variate with the given mean, rounded up
// to whole units of mean's scale: nanoseconds in, but whole seconds out
// when mean is a duration, so record times carry no sub-second part.
func (g rng) expo(mean int64) int64 {
	v := -math.Log(1-g.r.Float64()) * float64(mean)
	if v > float64(mean)*20 {
		v = float64(mean) * 20
	}
	if mean >= int64(time.Second) {
		return (int64(v)/int64(time.Second) + 1) * int64(time.Second)
	}
	return int64(v) + 1
}

// id16 is a 128-bit identifier (GUID, token id).
type id16 [16]byte

func (g rng) id() id16 {
	var b id16
	a, c := g.r.Uint64(), g.r.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return b
}

func idFrom(k uint64) id16 {
	var b id16
	a, c := mix(k), mix(k^0xa5a5a5a5a5a5a5a5)
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return b
}

// appendGUID appends the 8-4-4-4-12 lower-case form (version 4 bits set).
func appendGUID(dst []byte, b id16) []byte {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return append(dst, s[:]...)
}

func guid(b id16) string { return string(appendGUID(nil, b)) }

// appendTokenID appends the 22-character unpadded base64url form Entra
// uses for uniqueTokenIdentifier / UniqueTokenId.
func appendTokenID(dst []byte, b id16) []byte {
	var s [22]byte
	base64.RawURLEncoding.Encode(s[:], b[:])
	return append(dst, s[:]...)
}

func tokenID(b id16) string { return string(appendTokenID(nil, b)) }

func parseAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// idKey folds an id into a 64-bit key for hashKey.
func idKey(b id16) uint64 {
	var lo, hi uint64
	for i := 0; i < 8; i++ {
		lo |= uint64(b[i]) << (8 * i)
		hi |= uint64(b[8+i]) << (8 * i)
	}
	return lo ^ mix(hi)
}
