package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Segment file layout:
//
//	segment header (20 bytes): magic "VGJSEG01" | first index uint64 | CRC32C of the 16 bytes before
//	frame*:
//	  payload length uint32 | CRC32C of everything after this field up to the payload's end uint32 |
//	  type uint8 | first index uint64 | count uint32 | raw (uncompressed) length uint32 | payload
//
// All integers are little-endian. An entries frame's raw payload is count
// × (uvarint length | entry encoding). A seal frame closes a full segment.
const (
	segMagic      = "VGJSEG01"
	segHeaderSize = 20
	frameHeader   = 25
	sealPayload   = 24

	frameEntries     = 1 // payload is the raw entries
	frameEntriesZstd = 2 // payload is one zstd frame of the raw entries
	frameSeal        = 3 // count=0, first index=segment end; payload: entries uint64 | min, max received int64

	// maxFramePayload bounds a frame so a corrupt length cannot make a
	// reader allocate without limit.
	maxFramePayload = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a frame reader returns; Damage.Kind names them for people.
var (
	errShortFrame   = errors.New("journal: frame cut short")
	errChecksum     = errors.New("journal: checksum mismatch")
	errBadFrame     = errors.New("journal: malformed frame")
	errBadSegHeader = errors.New("journal: bad segment header")
)

type frame struct {
	typ     byte
	first   uint64
	count   uint32
	rawLen  uint32
	payload []byte // aliases the buffer read from
	size    int    // header + payload
}

func (f *frame) end() uint64 { return f.first + uint64(f.count) }

func appendSegHeader(dst []byte, first uint64) []byte {
	start := len(dst)
	dst = append(dst, segMagic...)
	dst = binary.LittleEndian.AppendUint64(dst, first)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

func parseSegHeader(b []byte) (uint64, error) {
	if len(b) < segHeaderSize {
		return 0, fmt.Errorf("%w: %d bytes", errShortFrame, len(b))
	}
	if string(b[:8]) != segMagic {
		return 0, fmt.Errorf("%w: magic %q", errBadSegHeader, b[:8])
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:20]) {
		return 0, fmt.Errorf("%w: header checksum", errBadSegHeader)
	}
	return binary.LittleEndian.Uint64(b[8:16]), nil
}

// appendFrame appends a frame holding payload.
func appendFrame(dst []byte, typ byte, first uint64, count uint32, rawLen int, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, 0, 0, 0, 0, typ)
	dst = binary.LittleEndian.AppendUint64(dst, first)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(rawLen))
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], castagnoli))
	return dst
}

func appendSealFrame(dst []byte, end uint64, entries uint64, minRecv, maxRecv int64) []byte {
	var p [sealPayload]byte
	binary.LittleEndian.PutUint64(p[0:], entries)
	binary.LittleEndian.PutUint64(p[8:], uint64(minRecv))
	binary.LittleEndian.PutUint64(p[16:], uint64(maxRecv))
	return appendFrame(dst, frameSeal, end, 0, sealPayload, p[:])
}

type sealInfo struct {
	entries          uint64
	minRecv, maxRecv int64
}

func (f *frame) seal() sealInfo {
	return sealInfo{
		entries: binary.LittleEndian.Uint64(f.payload[0:]),
		minRecv: int64(binary.LittleEndian.Uint64(f.payload[8:])),
		maxRecv: int64(binary.LittleEndian.Uint64(f.payload[16:])),
	}
}

// parseFrameHeader decodes the fixed header at the start of b without
// checking the checksum; it reports how many bytes the whole frame needs.
func parseFrameHeader(b []byte) (f frame, crc uint32, err error) {
	if len(b) < frameHeader {
		return f, 0, fmt.Errorf("%w: %d of %d header bytes", errShortFrame, len(b), frameHeader)
	}
	n := binary.LittleEndian.Uint32(b)
	crc = binary.LittleEndian.Uint32(b[4:])
	f.typ = b[8]
	f.first = binary.LittleEndian.Uint64(b[9:])
	f.count = binary.LittleEndian.Uint32(b[17:])
	f.rawLen = binary.LittleEndian.Uint32(b[21:])
	if n > maxFramePayload {
		return f, crc, fmt.Errorf("%w: payload length %d", errBadFrame, n)
	}
	f.size = frameHeader + int(n)
	return f, crc, nil
}

// readFrame reads the frame at the start of b, checking its checksum and
// the consistency of its header.
func readFrame(b []byte) (frame, error) {
	f, crc, err := parseFrameHeader(b)
	if err != nil {
		return f, err
	}
	if f.size > len(b) {
		return f, fmt.Errorf("%w: frame needs %d bytes, %d left", errShortFrame, f.size, len(b))
	}
	if crc32.Checksum(b[8:f.size], castagnoli) != crc {
		return f, errChecksum
	}
	f.payload = b[frameHeader:f.size:f.size]
	switch f.typ {
	case frameEntries:
		if int(f.rawLen) != len(f.payload) {
			return f, fmt.Errorf("%w: raw length %d for a %d-byte payload", errBadFrame, f.rawLen, len(f.payload))
		}
	case frameEntriesZstd:
		if f.rawLen > maxFramePayload {
			return f, fmt.Errorf("%w: raw length %d", errBadFrame, f.rawLen)
		}
	case frameSeal:
		if f.count != 0 || len(f.payload) != sealPayload {
			return f, fmt.Errorf("%w: seal frame with count %d and %d payload bytes", errBadFrame, f.count, len(f.payload))
		}
	default:
		return f, fmt.Errorf("%w: type %d", errBadFrame, f.typ)
	}
	if f.typ != frameSeal && f.count == 0 {
		return f, fmt.Errorf("%w: empty entries frame", errBadFrame)
	}
	return f, nil
}

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFramePayload))
	if err != nil {
		panic(err) // only fails on invalid options
	}
	return d
}}

// entriesPayload returns the raw entries of an entries frame, decompressing
// into scratch when needed.
func (f *frame) entriesPayload(scratch []byte) ([]byte, error) {
	if f.typ != frameEntriesZstd {
		return f.payload, nil
	}
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	out, err := d.DecodeAll(f.payload, scratch[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", errBadFrame, err)
	}
	if len(out) != int(f.rawLen) {
		return nil, fmt.Errorf("%w: zstd payload decoded to %d bytes, header says %d", errBadFrame, len(out), f.rawLen)
	}
	return out, nil
}

// splitEntries calls fn with each entry encoding of a raw entries payload,
// which must hold exactly count entries.
func splitEntries(p []byte, count uint32, fn func(i int, enc []byte) error) error {
	for i := 0; i < int(count); i++ {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) || n > MaxEntrySize {
			return fmt.Errorf("%w: entry %d of %d: bad length", errBadFrame, i, count)
		}
		if err := fn(i, p[k:k+int(n)]); err != nil {
			return err
		}
		p = p[k+int(n):]
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d bytes after the last of %d entries", errBadFrame, len(p), count)
	}
	return nil
}
