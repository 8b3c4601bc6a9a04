package detect

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"

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
	w      *bufio.Writer
	enc    *gob.Encoder
	n      int64
	err    error
}

func (l *accessLog) add(a *event.MailAccess) {
	if l.err != nil {
		return
	}
	if l.f == nil {
		l.f, l.err = os.CreateTemp(l.dir, "vigil-accesses-*.gob")
		if l.err != nil {
			return
		}
		l.w = bufio.NewWriterSize(l.f, 1<<20)
		l.enc = gob.NewEncoder(l.w)
	}
	l.err = l.enc.Encode(a)
	l.n++
}

// replay calls fn with every access logged, in the order logged.
func (l *accessLog) replay(ctx context.Context, fn func(*event.MailAccess)) error {
	if l.err != nil {
		return fmt.Errorf("access log: %w", l.err)
	}
	for _, sg := range l.sealed {
		if err := replaySeg(ctx, sg, fn); err != nil {
			return err
		}
	}
	if l.f == nil {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if err := decodeN(ctx, l.f, l.n, fn); err != nil {
		return err
	}
	// More accesses may follow (a pipeline that stays open): append at the end.
	if _, err := l.f.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	return nil
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
	dec := gob.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	for i := int64(0); i < n; i++ {
		if i%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var a event.MailAccess
		if err := dec.Decode(&a); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("access log: %d of %d accesses read back", i, n)
			}
			return fmt.Errorf("access log: %w", err)
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
		l.f.Close()
		os.Remove(name)
		l.f = nil
	}
}
