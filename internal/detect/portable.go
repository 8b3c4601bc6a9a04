package detect

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
)

// portableMagic starts a portable snapshot.
const portableMagic = "vigil-detect-portable/1\n"

// maxPortableState bounds the state part of a portable snapshot read back
// (the detectors' state, the alerts and incidents: bounded by entities);
// a damaged length must not allocate without limit.
const maxPortableState = 4 << 30

// SnapshotPortable writes what Snapshot writes, with the access log's
// contents in place of its file names, so that another machine can
// restore it (RestorePortable). The log is copied from its files as it is
// written, never held in memory whole.
//
// Layout: portableMagic, then the length (uvarint) and bytes of a
// Snapshot whose log is empty, then the number of logged accesses
// (uvarint) and the length (uvarint) and bytes of the log.
func (p *Pipeline) SnapshotPortable(w io.Writer) error {
	var buf bytes.Buffer
	if err := p.snapshot(&buf, true); err != nil {
		return err
	}
	var s snapshot
	if err := gob.NewDecoder(&buf).Decode(&s); err != nil {
		return fmt.Errorf("detect: portable snapshot: %w", err)
	}
	segs := s.Log
	s.Log = nil
	var n, size int64
	for _, sg := range segs {
		n += sg.N
		size += sg.Bytes
	}
	var state bytes.Buffer
	if err := gob.NewEncoder(&state).Encode(&s); err != nil {
		return fmt.Errorf("detect: portable snapshot: %w", err)
	}
	head := []byte(portableMagic)
	head = binary.AppendUvarint(head, uint64(state.Len()))
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("detect: portable snapshot: %w", err)
	}
	if _, err := state.WriteTo(w); err != nil {
		return fmt.Errorf("detect: portable snapshot: %w", err)
	}
	head = binary.AppendUvarint(head[:0], uint64(n))
	head = binary.AppendUvarint(head, uint64(size))
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("detect: portable snapshot: %w", err)
	}
	for _, sg := range segs {
		if err := copySeg(w, sg); err != nil {
			return fmt.Errorf("detect: portable snapshot: %w", err)
		}
	}
	return nil
}

// copySeg copies the part of a log file a snapshot covers. The file may
// have grown since (the current one stays open for more accesses): only
// sg.Bytes are copied.
func copySeg(w io.Writer, sg logSeg) error {
	f, err := os.Open(sg.Path)
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, sg.Bytes))
	if err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	if n != sg.Bytes {
		return fmt.Errorf("access log %s: %d bytes, the snapshot needs %d", sg.Path, n, sg.Bytes)
	}
	return nil
}

// RestorePortable loads a SnapshotPortable into a new pipeline built with
// the same configuration, before its first event, as Restore does. The
// access log it carries is written to a new file under the pipeline's
// TempDir, which the pipeline then owns (AccessLogFiles names it).
func (p *Pipeline) RestorePortable(r io.Reader) (err error) {
	if p.stats.Events > 0 || len(p.alerts) > 0 || p.buf.Len() > 0 {
		return errors.New("detect: Restore into a pipeline that has seen events")
	}
	br := bufio.NewReader(r)
	magic := make([]byte, len(portableMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != portableMagic {
		return errors.New("detect: restore: not a portable detection snapshot")
	}
	stateLen, err := binary.ReadUvarint(br)
	if err != nil || stateLen > maxPortableState {
		return fmt.Errorf("detect: restore: damaged portable snapshot (state length %d: %v)", stateLen, err)
	}
	var s snapshot
	lr := io.LimitReader(br, int64(stateLen))
	if err := gob.NewDecoder(lr).Decode(&s); err != nil {
		return fmt.Errorf("detect: restore: %w", err)
	}
	// The log starts after the whole state part, whatever gob read of it.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return fmt.Errorf("detect: restore: %w", err)
	}
	n, err := binary.ReadUvarint(br)
	var size uint64
	if err == nil {
		size, err = binary.ReadUvarint(br)
	}
	if err != nil {
		return fmt.Errorf("detect: restore: damaged portable snapshot: %w", err)
	}
	if (n == 0) != (size == 0) {
		return fmt.Errorf("detect: restore: damaged portable snapshot (%d accesses in %d bytes)", n, size)
	}
	if n > 0 {
		f, err := os.CreateTemp(p.cfg.TempDir, "vigil-accesses-*.log")
		if err != nil {
			return fmt.Errorf("detect: restore: %w", err)
		}
		name := f.Name()
		defer func() {
			if err != nil {
				os.Remove(name)
			}
		}()
		got, err := io.Copy(f, io.LimitReader(br, int64(size)))
		if err == nil && uint64(got) != size {
			err = fmt.Errorf("access log: %d of %d bytes", got, size)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("detect: restore: %w", err)
		}
		s.Log = []logSeg{{Path: name, N: int64(n), Bytes: int64(size)}}
	}
	var state bytes.Buffer
	if err := gob.NewEncoder(&state).Encode(&s); err != nil {
		return fmt.Errorf("detect: restore: %w", err)
	}
	return p.Restore(&state)
}
