package behavior

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A chunk of spilled accesses is written in a fixed binary layout rather
// than gob: under sustained push the queue spills every access it holds,
// and gob's reflection cost several per cent of vigil serve's CPU.
//
// On disk a chunk is a little-endian uint32 length, then the body. A
// length with chunkBinary set is this layout; without it the body is the
// gob-encoded []pending of earlier builds, still read so that a saved
// state naming such segments restores.
//
// Layout: uvarint count, then per access: uvarint Seq, Due and Time as
// length-prefixed time.MarshalBinary (exact, location offset included),
// the strings Tenant, User, Mailbox, AppID, ClientApp, IP, UserAgent,
// uvarint count and strings of Sessions, Token, RecordID, varint Items,
// Source, Operation; each string a uvarint length and its bytes.
const chunkBinary = 1 << 31

// maxChunkBody bounds a chunk's body as read back: the tail is at most
// pendingMem accesses, and no access comes near 64 KiB.
const maxChunkBody = 1 << 30

func encodeChunk(dst []byte, ps []pending) []byte {
	// Sized once: growing by append copied the chunk several times.
	size := binary.MaxVarintLen64
	for i := range ps {
		p := &ps[i]
		size += 3*binary.MaxVarintLen64 + 2*16 + 12*binary.MaxVarintLen64 + len(p.Tenant) + len(p.User) + len(p.Mailbox) +
			len(p.AppID) + len(p.ClientApp) + len(p.IP) + len(p.UserAgent) + len(p.Token) + len(p.RecordID) + len(p.Source) + len(p.Operation)
		for _, s := range p.Sessions {
			size += binary.MaxVarintLen64 + len(s)
		}
	}
	dst = slices.Grow(dst, size)
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	for i := range ps {
		p := &ps[i]
		dst = binary.AppendUvarint(dst, p.Seq)
		dst = appendTime(dst, p.Due)
		dst = appendTime(dst, p.Time)
		for _, s := range [...]string{p.Tenant, p.User, p.Mailbox, p.AppID, p.ClientApp, p.IP, p.UserAgent} {
			dst = appendString(dst, s)
		}
		dst = binary.AppendUvarint(dst, uint64(len(p.Sessions)))
		for _, s := range p.Sessions {
			dst = appendString(dst, s)
		}
		dst = appendString(dst, p.Token)
		dst = appendString(dst, p.RecordID)
		dst = binary.AppendVarint(dst, int64(p.Items))
		dst = appendString(dst, p.Source)
		dst = appendString(dst, p.Operation)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	// AppendBinary fails only for offsets that are not whole minutes or
	// years out of range; event times are neither, and an error here
	// writes the zero time's encoding, which decodes (never a torn chunk).
	n := len(dst)
	dst = append(dst, 0)
	out, err := t.AppendBinary(dst)
	if err != nil {
		out, _ = time.Time{}.AppendBinary(dst)
	}
	out[n] = byte(len(out) - n - 1)
	return out
}

// chunkReader decodes one chunk's body; the first error sticks.
type chunkReader struct {
	b    []byte
	err  error
	seen map[string]string // names repeated across the chunk's accesses, one copy each
}

var errChunkShort = errors.New("chunk ends inside an access")

func (r *chunkReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errChunkShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errChunkShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errChunkShort
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *chunkReader) str() string { return string(r.bytes()) }

// name is str for fields that repeat across accesses (tenant, user,
// mailbox, app, address, client, source, operation): the chunk's
// accesses share one string each instead of holding a copy apiece.
func (r *chunkReader) name() string {
	b := r.bytes()
	if len(b) == 0 {
		return ""
	}
	if s, ok := r.seen[string(b)]; ok {
		return s
	}
	s := string(b)
	r.seen[s] = s
	return s
}

func (r *chunkReader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	if len(r.b) == 0 {
		r.err = errChunkShort
		return time.Time{}
	}
	n := int(r.b[0])
	if n+1 > len(r.b) {
		r.err = errChunkShort
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary(r.b[1 : n+1]); err != nil {
		r.err = fmt.Errorf("a time: %w", err)
		return time.Time{}
	}
	r.b = r.b[n+1:]
	return t
}

func decodeChunk(body []byte) ([]pending, error) {
	r := chunkReader{b: body, seen: map[string]string{}}
	n := r.uvarint()
	// Each access takes at least 17 bytes: never allocate for more than
	// the body can hold.
	if r.err == nil && n > uint64(len(r.b)/17) {
		return nil, fmt.Errorf("chunk claims %d accesses in %d bytes", n, len(body))
	}
	out := make([]pending, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		var p pending
		p.Seq = r.uvarint()
		p.Due = r.time()
		p.Time = r.time()
		p.Tenant, p.User, p.Mailbox = r.name(), r.name(), r.name()
		p.AppID, p.ClientApp, p.IP, p.UserAgent = r.name(), r.name(), r.name(), r.name()
		if k := r.uvarint(); k > 0 && r.err == nil {
			if k > uint64(len(r.b)) {
				r.err = errChunkShort
				break
			}
			p.Sessions = make([]string, k)
			for j := range p.Sessions {
				p.Sessions[j] = r.str()
			}
		}
		p.Token, p.RecordID = r.str(), r.str()
		p.Items = int(r.varint())
		p.Source, p.Operation = r.name(), r.name()
		out = append(out, p)
	}
	if r.err != nil {
		return nil, fmt.Errorf("access %d of %d: %w", len(out), n, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last of %d accesses", len(r.b), n)
	}
	return out, nil
}

// decodeChunkBody reads a body of either layout, as its length word says.
func decodeChunkBody(word uint32, body []byte) ([]pending, error) {
	if word&chunkBinary != 0 {
		return decodeChunk(body)
	}
	var chunk []pending
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&chunk); err != nil {
		return nil, err
	}
	return chunk, nil
}
