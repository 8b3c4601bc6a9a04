//go:build !unix

package journal

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory: without mmap the
// dedup runs live in the heap on these platforms.
func mapFile(f *os.File, size int, writable bool) ([]byte, error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return b, nil
}

// unmapFile writes a writable mapping back to f.
func unmapFile(f *os.File, b []byte, writable bool) error {
	if !writable || b == nil {
		return nil
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return nil
}
