package journal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// FuzzRecordReader feeds arbitrary bytes to the segment reader: it must
// never panic or over-allocate, must classify every failure as a torn
// tail or Damage, and every entry it accepts must re-encode to the same
// bytes.
func FuzzRecordReader(f *testing.F) {
	es := testEntries(9, 5, 200)
	seg := appendSegHeader(nil, 0)
	var p []byte
	for i := range es[:3] {
		p = appendUvarintBytes(p, appendEntry(nil, &es[i]))
	}
	seg = appendFrame(seg, frameEntries, 0, 3, len(p), p)
	seg = appendSealFrame(seg, 3, 3, 1, 2)
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(appendSegHeader(nil, 0))
	f.Add([]byte{})
	bad := bytes.Clone(seg)
	bad[40] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		first := uint64(0)
		if len(data) >= 16 {
			first = leUint64(data[8:16])
		}
		_, err := scanSegment(segName(first), data, func(off int, fr *frame) error {
			p, err := fr.entriesPayload(nil)
			if err != nil {
				return &Damage{Kind: damageKind(err), Offset: int64(off), Entry: -1}
			}
			return splitEntries(p, fr.count, func(i int, enc []byte) error {
				e, err := decodeEntry(enc)
				if err != nil {
					return &Damage{Kind: "malformed entry", Offset: int64(off), Entry: -1}
				}
				if re := appendEntry(nil, &e); !bytes.Equal(re, enc) {
					t.Fatalf("entry re-encodes differently:\n%x\n%x", enc, re)
				}
				return nil
			})
		})
		var d *Damage
		if err != nil && !errors.As(err, &d) && !errors.Is(err, errBadFrame) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func appendUvarintBytes(dst, b []byte) []byte {
	for x := uint64(len(b)); ; x >>= 7 {
		if x < 0x80 {
			dst = append(dst, byte(x))
			break
		}
		dst = append(dst, byte(x)|0x80)
	}
	return append(dst, b...)
}

func leUint64(b []byte) uint64 {
	var x uint64
	for i := 7; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}

// FuzzCheckpoint parses arbitrary checkpoint notes: no panics, and what
// parses re-formats to the same first three lines and, when signed by the
// test key, verifies only with that key.
func FuzzCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigil.local/journal/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	k := &keys{signer: s, verifier: v}
	c, err := k.sign(42, Hash{1, 2, 3})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Note)
	f.Add([]byte(checkpointBody("o", 0, Hash{})))
	f.Add([]byte("o\n01\nAAAA\n\n— o AAAA\n"))
	f.Add([]byte("vigil.local/journal/fuzz\n18446744073709551615\n" + strings.Repeat("A", 43) + "=\next\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if c, err := parseCheckpointBody(string(msg)); err == nil {
			if !strings.HasPrefix(string(msg), checkpointBody(c.Origin, c.Size, c.Root)) {
				t.Fatalf("%q parsed as %+v", msg, c)
			}
		} else if !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("unclassified error %v", err)
		}
		if c, err := ParseCheckpoint(msg, v); err == nil {
			if c.Origin != v.Name() {
				t.Fatalf("origin %q accepted", c.Origin)
			}
		} else if !errors.Is(err, ErrBadCheckpoint) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
