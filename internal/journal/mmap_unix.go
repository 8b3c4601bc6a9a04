//go:build unix

package journal

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f: shared and writable for a run
// being written (its pages are the file's page cache, not the Go heap),
// read-only otherwise.
func mapFile(f *os.File, size int, writable bool) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	prot := syscall.PROT_READ
	if writable {
		prot |= syscall.PROT_WRITE
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, size, prot, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	return b, nil
}

// unmapFile releases a mapping from mapFile. A writable mapping is shared,
// so its bytes are already the file's; f.Sync makes them durable.
func unmapFile(_ *os.File, b []byte, _ bool) error {
	if b == nil {
		return nil
	}
	if err := syscall.Munmap(b); err != nil {
		return fmt.Errorf("unmap: %w", err)
	}
	return nil
}
