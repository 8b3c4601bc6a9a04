//go:build unix

package journal

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f read-only: its pages are the
// file's page cache, which the kernel can reclaim, not Go heap.
func mapFile(f *os.File, size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	return b, nil
}

// unmapFile releases a mapping from mapFile.
func unmapFile(b []byte) error {
	if b == nil {
		return nil
	}
	if err := syscall.Munmap(b); err != nil {
		return fmt.Errorf("unmap: %w", err)
	}
	return nil
}
