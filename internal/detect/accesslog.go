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
	f   *os.File
	w   *bufio.Writer
	enc *gob.Encoder
	n   int64
	err error
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
	if l.f == nil {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	dec := gob.NewDecoder(bufio.NewReaderSize(l.f, 1<<20))
	for i := int64(0); i < l.n; i++ {
		if i%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var a event.MailAccess
		if err := dec.Decode(&a); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("access log: %d of %d accesses read back", i, l.n)
			}
			return fmt.Errorf("access log: %w", err)
		}
		fn(&a)
	}
	// More accesses may follow (a pipeline that stays open): append at the end.
	if _, err := l.f.Seek(0, io.SeekEnd); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	return nil
}

func (l *accessLog) close() {
	if l.f != nil {
		name := l.f.Name()
		l.f.Close()
		os.Remove(name)
		l.f = nil
	}
}
