//go:build unix

package detect

import "syscall"

// mapArena returns size bytes outside the Go heap. A run's arena holds no
// pointers and lives as long as the sort: kept off the heap, it does not
// count towards the garbage collector's goal, which would otherwise let
// the heap grow by as much again (twice 48 MiB of arenas cost about
// 100 MiB more RSS on the heap).
func mapArena(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

func unmapArena(b []byte) { _ = syscall.Munmap(b) }
