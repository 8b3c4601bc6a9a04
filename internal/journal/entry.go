package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Entry is one ingested record: the source's bytes verbatim plus the
// metadata of how it arrived.
type Entry struct {
	Source   string    // "m365.ual", "entra.signin", ... (with RecordID, the dedup key)
	Origin   string    // file path or collector name it came from
	Received time.Time // when vigil received it; Append fills it in when zero
	RecordID string    // the source's own record id; "" means never deduplicated
	Raw      []byte    // the record's bytes, verbatim
}

// Ack is the outcome of appending one entry.
type Ack struct {
	Index     uint64 // the entry's index, or the original's for a duplicate
	Duplicate bool   // the (Source, RecordID) was already stored at Index
}

const (
	entryVersion = 1
	// maxMetaLen bounds Source, Origin and RecordID.
	maxMetaLen = 64 << 10
	// MaxEntrySize bounds one encoded entry.
	MaxEntrySize = 16 << 20
)

// ErrBadEntry reports an entry that cannot be decoded.
var ErrBadEntry = errors.New("journal: malformed entry")

// encodedEntrySize returns the length of e's encoding.
func encodedEntrySize(e *Entry) int {
	return 1 + uvarintLen(len(e.Source)) + len(e.Source) +
		uvarintLen(len(e.Origin)) + len(e.Origin) + 8 +
		uvarintLen(len(e.RecordID)) + len(e.RecordID) +
		uvarintLen(len(e.Raw)) + len(e.Raw)
}

func checkEntry(e *Entry) error {
	switch {
	case len(e.Source) > maxMetaLen:
		return fmt.Errorf("source is %d bytes, limit %d", len(e.Source), maxMetaLen)
	case len(e.Origin) > maxMetaLen:
		return fmt.Errorf("origin is %d bytes, limit %d", len(e.Origin), maxMetaLen)
	case len(e.RecordID) > maxMetaLen:
		return fmt.Errorf("record id is %d bytes, limit %d", len(e.RecordID), maxMetaLen)
	case encodedEntrySize(e) > MaxEntrySize:
		return fmt.Errorf("entry is %d bytes, limit %d", encodedEntrySize(e), MaxEntrySize)
	}
	return nil
}

// appendEntry appends e's encoding, which is also the Merkle leaf's data:
//
//	version(1) | uvarint len, Source | uvarint len, Origin |
//	Received as int64 Unix nanoseconds, little-endian |
//	uvarint len, RecordID | uvarint len, Raw
func appendEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, entryVersion)
	dst = appendString(dst, e.Source)
	dst = appendString(dst, e.Origin)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.Received.UnixNano()))
	dst = appendString(dst, e.RecordID)
	dst = binary.AppendUvarint(dst, uint64(len(e.Raw)))
	return append(dst, e.Raw...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeEntry decodes an entry encoded by appendEntry. Raw aliases b.
func decodeEntry(b []byte) (Entry, error) {
	var e Entry
	if len(b) == 0 {
		return e, fmt.Errorf("%w: empty", ErrBadEntry)
	}
	if b[0] != entryVersion {
		return e, fmt.Errorf("%w: version %d", ErrBadEntry, b[0])
	}
	b = b[1:]
	var err error
	var s []byte
	if s, b, err = cutField(b, "source", maxMetaLen); err != nil {
		return e, err
	}
	e.Source = string(s)
	if s, b, err = cutField(b, "origin", maxMetaLen); err != nil {
		return e, err
	}
	e.Origin = string(s)
	if len(b) < 8 {
		return e, fmt.Errorf("%w: received time cut short", ErrBadEntry)
	}
	e.Received = time.Unix(0, int64(binary.LittleEndian.Uint64(b))).UTC()
	b = b[8:]
	if s, b, err = cutField(b, "record id", maxMetaLen); err != nil {
		return e, err
	}
	e.RecordID = string(s)
	if s, b, err = cutField(b, "raw", MaxEntrySize); err != nil {
		return e, err
	}
	if len(b) != 0 {
		return e, fmt.Errorf("%w: %d trailing bytes", ErrBadEntry, len(b))
	}
	e.Raw = s
	return e, nil
}

// entryKeyFields checks that b is a well-formed entry, as decodeEntry
// would, and returns its source and record id without allocating.
func entryKeyFields(b []byte) (source, recordID []byte, err error) {
	if len(b) == 0 || b[0] != entryVersion {
		_, err = decodeEntry(b)
		return nil, nil, err
	}
	rest := b[1:]
	if source, rest, err = cutField(rest, "source", maxMetaLen); err != nil {
		return nil, nil, err
	}
	if _, rest, err = cutField(rest, "origin", maxMetaLen); err != nil {
		return nil, nil, err
	}
	if len(rest) < 8 {
		return nil, nil, fmt.Errorf("%w: received time cut short", ErrBadEntry)
	}
	if recordID, rest, err = cutField(rest[8:], "record id", maxMetaLen); err != nil {
		return nil, nil, err
	}
	if _, rest, err = cutField(rest, "raw", MaxEntrySize); err != nil {
		return nil, nil, err
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrBadEntry, len(rest))
	}
	return source, recordID, nil
}

func cutField(b []byte, what string, limit int) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, fmt.Errorf("%w: bad %s length", ErrBadEntry, what)
	}
	b = b[k:]
	if n > uint64(limit) || n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", ErrBadEntry, what, n, len(b))
	}
	return b[:n:n], b[n:], nil
}

func uvarintLen(n int) int {
	l := 1
	for x := uint64(n); x >= 0x80; x >>= 7 {
		l++
	}
	return l
}

// EncodeEntry appends e's canonical encoding: the Merkle leaf data, so
// that SHA-256(0x00 || EncodeEntry(e)) is e's leaf hash.
func EncodeEntry(dst []byte, e *Entry) []byte { return appendEntry(dst, e) }

// DecodeEntry decodes an encoding made by EncodeEntry, checking it as the
// journal checks its own; Raw aliases b. Replicated transports (the NATS
// stream of internal/cluster) carry entries in this form.
func DecodeEntry(b []byte) (Entry, error) { return decodeEntry(b) }
