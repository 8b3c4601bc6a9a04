//go:build !unix

package journal

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory: without mmap the
// dedup runs' filters live in the heap on these platforms.
func mapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return b, nil
}

func unmapFile([]byte) error { return nil }
