package journal

import (
	"crypto/sha256"
	"encoding/binary"
)

// dedupKey identifies a record by its source and the source's record id:
// the first 128 bits of SHA-256(source || 0x00 || record id), so
// collisions are out of reach and the index stays 16 bytes a record. The
// zero key means "no record id".
type dedupKey [2]uint64

func makeDedupKey(source, recordID string) dedupKey {
	var scratch [256]byte
	return dedupKeyOf(scratch[:0], source, recordID)
}

// dedupKeyOf computes the key using scratch for the hashed bytes, so it
// does not allocate for ids of ordinary length.
func dedupKeyOf[S string | []byte](scratch []byte, source, recordID S) dedupKey {
	if len(recordID) == 0 {
		return dedupKey{}
	}
	b := append(append(append(scratch[:0], source...), 0), recordID...)
	sum := sha256.Sum256(b)
	k := dedupKey{binary.LittleEndian.Uint64(sum[0:]), binary.LittleEndian.Uint64(sum[8:])}
	// Keep real keys distinct from the "none" key.
	k[0] |= 1
	return k
}

func (k dedupKey) isZero() bool { return k == dedupKey{} }

// dedupIndex maps keys to the index of the entry that first carried them:
// an open-addressing table with linear probing, 24 bytes a slot, grown at
// 3/4 load. It is rebuilt from the ids file at open.
type dedupIndex struct {
	slots []dedupSlot
	n     int
}

type dedupSlot struct {
	key   dedupKey
	index uint64
}

func (d *dedupIndex) lookup(k dedupKey) (uint64, bool) {
	if len(d.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(d.slots) - 1)
	for i := k[1] & mask; ; i = (i + 1) & mask {
		s := &d.slots[i]
		if s.key == k {
			return s.index, true
		}
		if s.key.isZero() {
			return 0, false
		}
	}
}

// insert adds k unless present; it reports whether it was added.
func (d *dedupIndex) insert(k dedupKey, index uint64) bool {
	if (d.n+1)*4 > len(d.slots)*3 {
		d.grow()
	}
	mask := uint64(len(d.slots) - 1)
	for i := k[1] & mask; ; i = (i + 1) & mask {
		s := &d.slots[i]
		if s.key == k {
			return false
		}
		if s.key.isZero() {
			*s = dedupSlot{k, index}
			d.n++
			return true
		}
	}
}

func (d *dedupIndex) grow() {
	old := d.slots
	d.slots = make([]dedupSlot, max(1024, 2*len(old)))
	d.n = 0
	for _, s := range old {
		if !s.key.isZero() {
			d.insert(s.key, s.index)
		}
	}
}

// idsFile stores one dedup key per entry (zero when the entry has no
// record id), 16 bytes each.
const idSize = 16

func putKey(b []byte, k dedupKey) {
	binary.LittleEndian.PutUint64(b, k[0])
	binary.LittleEndian.PutUint64(b[8:], k[1])
}

func getKey(b []byte) dedupKey {
	return dedupKey{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}
