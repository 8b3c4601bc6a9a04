package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Damage describes the first thing found wrong in a journal: where it is
// and what kind of damage it is. Open and Verify return it (wrapped) for
// anything that is not a torn tail.
type Damage struct {
	Kind    string // e.g. "checksum mismatch", "missing entries", "root mismatch"
	Segment string // segment file name, "" when not about a segment
	Offset  int64  // byte offset in Segment, -1 when not known
	Entry   int64  // first affected entry index, -1 when not known
	Detail  string
}

func (d *Damage) Error() string {
	var b strings.Builder
	if d.Segment != "" {
		fmt.Fprintf(&b, "segment %s", d.Segment)
		if d.Offset >= 0 {
			fmt.Fprintf(&b, " offset %d", d.Offset)
		}
		b.WriteString(" ")
	}
	if d.Entry >= 0 {
		fmt.Fprintf(&b, "entry %d ", d.Entry)
	}
	b.WriteString(d.Kind)
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

const segDir = "segments"

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

type segFile struct {
	name  string
	path  string
	first uint64
}

// listSegments returns the segment files sorted by first index.
func listSegments(dir string) ([]segFile, error) {
	des, err := os.ReadDir(filepath.Join(dir, segDir))
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var out []segFile
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil || segName(first) != name {
			return nil, &Damage{Kind: "unexpected file", Segment: name, Offset: -1, Entry: -1, Detail: "not a segment name"}
		}
		out = append(out, segFile{name: name, path: filepath.Join(dir, segDir, name), first: first})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out, nil
}

// segScan is what scanning one segment's bytes found.
type segScan struct {
	first  uint64
	end    uint64 // one past the last entry in an intact frame
	good   int    // length of the intact prefix
	sealed bool
	seal   sealInfo
	torn   error // non-nil: bytes after good are a torn write
	frames int
}

// scanSegment checks the frames of a segment and calls fn with each
// intact entries frame. A bad frame at the end of the data, or followed
// only by zeros, is a torn write (reported in torn); any other bad frame
// is Damage.
func scanSegment(name string, b []byte, fn func(off int, f *frame) error) (segScan, error) {
	var s segScan
	first, err := parseSegHeader(b)
	if err != nil {
		if errors.Is(err, errShortFrame) {
			s.torn = err
			return s, nil
		}
		return s, &Damage{Kind: "bad segment header", Segment: name, Offset: 0, Entry: -1, Detail: err.Error()}
	}
	if segName(first) != name {
		return s, &Damage{Kind: "bad segment header", Segment: name, Offset: 0, Entry: -1,
			Detail: fmt.Sprintf("header says first entry %d", first)}
	}
	s.first, s.end, s.good = first, first, segHeaderSize
	for off := segHeaderSize; off < len(b); {
		if s.sealed {
			return s, &Damage{Kind: "data after seal", Segment: name, Offset: int64(off), Entry: -1,
				Detail: fmt.Sprintf("%d bytes follow the seal frame", len(b)-off)}
		}
		f, err := readFrame(b[off:])
		if err != nil {
			if isTorn(b[off:], err) {
				s.torn = err
				return s, nil
			}
			return s, &Damage{Kind: damageKind(err), Segment: name, Offset: int64(off), Entry: int64(s.end), Detail: err.Error()}
		}
		if f.typ == frameSeal {
			si := f.seal()
			if f.first != s.end || si.entries != s.end-s.first {
				return s, &Damage{Kind: "bad seal", Segment: name, Offset: int64(off), Entry: int64(s.end),
					Detail: fmt.Sprintf("seal says %d entries ending at %d, segment holds %d ending at %d", si.entries, f.first, s.end-s.first, s.end)}
			}
			s.sealed, s.seal = true, si
		} else {
			if f.first != s.end {
				return s, &Damage{Kind: "entries out of order", Segment: name, Offset: int64(off), Entry: int64(s.end),
					Detail: fmt.Sprintf("frame starts at entry %d, expected %d", f.first, s.end)}
			}
			if fn != nil {
				if err := fn(off, &f); err != nil {
					return s, err
				}
			}
			s.end = f.end()
		}
		off += f.size
		s.good = off
		s.frames++
	}
	return s, nil
}

// isTorn reports whether a frame that failed with err at the start of
// rest can be a write cut short by a crash: it runs to the end of the
// data, or only zeros follow where it claims to end.
func isTorn(rest []byte, err error) bool {
	if errors.Is(err, errShortFrame) {
		return true
	}
	if allZero(rest) {
		return true
	}
	f, _, herr := parseFrameHeader(rest)
	if herr != nil {
		return false
	}
	return f.size >= len(rest) || allZero(rest[f.size:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func damageKind(err error) string {
	switch {
	case errors.Is(err, errChecksum):
		return "checksum mismatch"
	case errors.Is(err, errShortFrame):
		return "truncated frame"
	case errors.Is(err, ErrBadEntry):
		return "malformed entry"
	default:
		return "malformed frame"
	}
}

// readSealFrame reads the seal frame at the end of a sealed segment
// without reading the rest.
func readSealFrame(path string) (sealInfo, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return sealInfo{}, 0, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sealInfo{}, 0, fmt.Errorf("stat segment: %w", err)
	}
	n := int64(frameHeader + sealPayload)
	if st.Size() < segHeaderSize+n {
		return sealInfo{}, 0, errShortFrame
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, st.Size()-n); err != nil {
		return sealInfo{}, 0, fmt.Errorf("read seal: %w", err)
	}
	fr, err := readFrame(b)
	if err != nil {
		return sealInfo{}, 0, err
	}
	if fr.typ != frameSeal {
		return sealInfo{}, 0, fmt.Errorf("%w: last frame is type %d, not a seal", errBadFrame, fr.typ)
	}
	return fr.seal(), fr.first, nil
}

// DiskBytes is the size of the segment files on disk (what retention
// reclaims), read from the directory at call time.
func (j *Journal) DiskBytes() (int64, error) {
	segs, err := listSegments(j.dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			// Retention may remove a segment between the listing and the stat.
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, fmt.Errorf("journal size: %w", err)
		}
		n += fi.Size()
	}
	return n, nil
}
