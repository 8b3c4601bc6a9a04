package detect

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// accessLog keeps every mail access of a run on disk, in processing
// order, for the impact pass: which accesses were the intruder's is only
// known once the incidents are, and holding them in memory would make
// memory grow with the input.
type accessLog struct {
	dir string
	// sealed are the files of earlier runs, restored from a snapshot: read
	// first, never appended to.
	sealed []logSeg
	f      *os.File
	w      *asyncWriter
	n      int64
	err    error
}

// addEncoded logs an access appendAccess has encoded (Prepare does, on
// the workers, ahead of the ordered stage).
func (l *accessLog) addEncoded(b []byte) {
	if l.err != nil {
		return
	}
	if l.f == nil {
		l.f, l.err = os.CreateTemp(l.dir, "vigil-accesses-*.log")
		if l.err != nil {
			return
		}
		l.w = newAsyncWriter(l.f, 1<<20)
	}
	_, l.err = l.w.Write(b)
	l.n++
}

// replay calls fn with every access logged, in the order logged.
func (l *accessLog) replay(ctx context.Context, fn func(*event.MailAccess)) error {
	_, err := l.replayFrom(ctx, logPos{}, fn)
	return err
}

// logPos is how far a reader of the log has read.
type logPos struct {
	sealed bool  // the restored files are read
	off    int64 // bytes of the current file read
	n      int64 // accesses of the current file read
}

// replayFrom calls fn with the accesses logged after pos (the zero
// logPos: all of them), in the order logged, and returns the position
// after the last.
func (l *accessLog) replayFrom(ctx context.Context, pos logPos, fn func(*event.MailAccess)) (logPos, error) {
	if l.err != nil {
		return pos, fmt.Errorf("access log: %w", l.err)
	}
	if !pos.sealed {
		for _, sg := range l.sealed {
			if err := replaySeg(ctx, sg, fn); err != nil {
				return pos, err
			}
		}
		pos.sealed = true
	}
	if l.f == nil {
		return pos, nil
	}
	if err := l.w.Flush(); err != nil {
		return pos, fmt.Errorf("access log: %w", err)
	}
	if _, err := l.f.Seek(pos.off, io.SeekStart); err != nil {
		return pos, fmt.Errorf("access log: %w", err)
	}
	if err := decodeN(ctx, l.f, l.n-pos.n, fn); err != nil {
		return pos, err
	}
	// More accesses may follow (a pipeline that stays open): append at the end.
	end, err := l.f.Seek(0, io.SeekEnd)
	if err != nil {
		return pos, fmt.Errorf("access log: %w", err)
	}
	pos.off, pos.n = end, l.n
	return pos, nil
}

// logSeg is one access log file as a snapshot names it.
type logSeg struct {
	Path  string
	N     int64 // accesses
	Bytes int64 // the file's length when they were written
}

func replaySeg(ctx context.Context, sg logSeg, fn func(*event.MailAccess)) error {
	f, err := os.Open(sg.Path)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	defer f.Close()
	return decodeN(ctx, io.LimitReader(f, sg.Bytes), sg.N, fn)
}

func decodeN(ctx context.Context, r io.Reader, n int64, fn func(*event.MailAccess)) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var body []byte
	for i := int64(0); i < n; i++ {
		if i%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		size, err := binary.ReadUvarint(br)
		if err == nil {
			if size > 1<<30 {
				err = errAccessLog
			} else {
				body = slices.Grow(body[:0], int(size))[:size]
				_, err = io.ReadFull(br, body)
			}
		}
		var a event.MailAccess
		if err == nil {
			a, err = parseAccess(body)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("access log: %d of %d accesses read back", i, n)
			}
			return fmt.Errorf("access log: access %d: %w", i, err)
		}
		fn(&a)
	}
	return nil
}

// seal makes what was logged so far durable and names it for a snapshot.
// The current file stays open for more: a snapshot records its length, and
// a restore reads only that much of it.
func (l *accessLog) seal() ([]logSeg, error) {
	if l.err != nil {
		return nil, fmt.Errorf("access log: %w", l.err)
	}
	segs := append([]logSeg(nil), l.sealed...)
	if l.f == nil {
		return segs, nil
	}
	if err := l.w.Flush(); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	size, err := l.f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return append(segs, logSeg{Path: l.f.Name(), N: l.n, Bytes: size}), nil
}

// restore takes the files a snapshot named; accesses logged after it go
// to a new file. A file longer than the snapshot says (a crash after it)
// is cut back, so the accesses replayed since are not counted twice.
func (l *accessLog) restore(segs []logSeg) error {
	for _, sg := range segs {
		fi, err := os.Stat(sg.Path)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		if fi.Size() < sg.Bytes {
			return fmt.Errorf("access log %s: %d bytes, the snapshot needs %d", sg.Path, fi.Size(), sg.Bytes)
		}
		if fi.Size() > sg.Bytes {
			if err := os.Truncate(sg.Path, sg.Bytes); err != nil {
				return fmt.Errorf("access log: %w", err)
			}
		}
	}
	l.sealed = segs
	return nil
}

// files names every file the log uses.
func (l *accessLog) files() []string {
	var out []string
	for _, sg := range l.sealed {
		out = append(out, sg.Path)
	}
	if l.f != nil {
		out = append(out, l.f.Name())
	}
	return out
}

func (l *accessLog) close() {
	for _, sg := range l.sealed {
		os.Remove(sg.Path)
	}
	l.sealed = nil
	if l.f != nil {
		name := l.f.Name()
		l.w.Close()
		l.f.Close()
		os.Remove(name)
		l.f = nil
	}
}

var errAccessLog = errors.New("damaged record")

// appendAccess appends a's record: its length, then the fields in
// declaration order (strings and lists length-prefixed, the time in Unix
// nanoseconds). A hand-written encoding: gob spent more CPU on the log
// than the detectors on the accesses. b grows once: the body is written
// behind room for its length, then moved up against the length.
func appendAccess(b []byte, a *event.MailAccess) []byte {
	var t int64
	var flags uint64
	if a.Time.IsZero() {
		flags |= 4 // UnixNano of the zero time overflows
	} else {
		t = a.Time.UnixNano()
	}
	strs := [...]string{a.Tenant, a.User, a.Mailbox, a.AppID, a.ClientApp, a.IP, a.TokenID, a.RecordID}
	b = slices.Grow(b, accessBound(a, strs[:]))
	at := len(b)
	b = append(b, make([]byte, binary.MaxVarintLen64)...)
	start := len(b)
	b = binary.AppendVarint(b, t)
	for _, s := range strs {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(a.SessionIDs)))
	for _, s := range a.SessionIDs {
		b = appendString(b, s)
	}
	if a.Sync {
		flags |= 1
	}
	if a.Throttled {
		flags |= 2
	}
	b = binary.AppendUvarint(b, flags)
	b = binary.AppendVarint(b, int64(a.Items))
	b = binary.AppendUvarint(b, uint64(len(a.Folders)))
	for _, f := range a.Folders {
		b = appendString(b, f.Path)
		b = binary.AppendUvarint(b, uint64(len(f.Messages)))
		for _, m := range f.Messages {
			b = appendString(b, m)
		}
	}
	n := len(b) - start
	k := binary.PutUvarint(b[at:], uint64(n))
	copy(b[at+k:], b[start:])
	return b[:at+k+n]
}

// accessBound is at least the bytes appendAccess appends for a, whose
// strings up to the session ids are strs.
func accessBound(a *event.MailAccess, strs []string) int {
	const v = binary.MaxVarintLen64
	n := 6*v + len(strs)*v
	for _, s := range strs {
		n += len(s)
	}
	for _, s := range a.SessionIDs {
		n += v + len(s)
	}
	for _, f := range a.Folders {
		n += 2*v + len(f.Path)
		for _, m := range f.Messages {
			n += v + len(m)
		}
	}
	return n
}

// parseAccess reads what appendAccess wrote after the length.
func parseAccess(b []byte) (event.MailAccess, error) {
	var a event.MailAccess
	bad := false
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		l := uvarint()
		if bad || l > uint64(len(b)) {
			bad = true
			return ""
		}
		s := string(b[:l])
		b = b[l:]
		return s
	}
	// count bounds a list's length by the bytes left (each element takes
	// at least one), so a damaged length cannot allocate much.
	count := func() int {
		l := uvarint()
		if bad || l > uint64(len(b)) {
			bad = true
			return 0
		}
		return int(l)
	}
	t, n := binary.Varint(b)
	if n <= 0 {
		return a, errAccessLog
	}
	b = b[n:]
	a.Time = time.Unix(0, t).UTC()
	for _, p := range [...]*string{&a.Tenant, &a.User, &a.Mailbox, &a.AppID, &a.ClientApp, &a.IP, &a.TokenID, &a.RecordID} {
		*p = str()
	}
	if k := count(); k > 0 {
		a.SessionIDs = make([]string, k)
		for i := range a.SessionIDs {
			a.SessionIDs[i] = str()
		}
	}
	flags := uvarint()
	a.Sync, a.Throttled = flags&1 != 0, flags&2 != 0
	if flags&4 != 0 {
		a.Time = time.Time{}
	}
	items, n := binary.Varint(b)
	if n <= 0 {
		return a, errAccessLog
	}
	b = b[n:]
	a.Items = int(items)
	if k := count(); k > 0 {
		a.Folders = make([]event.FolderRead, k)
		for i := range a.Folders {
			a.Folders[i].Path = str()
			if m := count(); m > 0 {
				a.Folders[i].Messages = make([]string, m)
				for j := range a.Folders[i].Messages {
					a.Folders[i].Messages[j] = str()
				}
			}
		}
	}
	if bad || len(b) != 0 {
		return a, errAccessLog
	}
	return a, nil
}
