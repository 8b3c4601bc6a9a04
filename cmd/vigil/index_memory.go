package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigil-audit/vigil/internal/index"
)

// minIndexMemory is the least buffer pool --index-memory accepts: below
// it the engine cannot build the lookup indexes of even a small journal.
const minIndexMemory = 64 << 20

// indexMemoryFlag is --index-memory, the investigation index's buffer pool.
func indexMemoryFlag(fs *flag.FlagSet) *string {
	return fs.String("index-memory", "", fmt.Sprintf("memory the investigation index's engine may use, such as 512MiB or 8GiB (default %dGiB; past it the engine spills to disk beside the index)", index.DefaultMemoryLimit>>30))
}

// parseIndexMemory reads a size: a number of bytes with an optional unit
// KiB, MiB, GiB, TiB (or KB, MB, GB, TB, K, M, G, T, meaning the same
// powers of 1024). "" is 0: the default.
func parseIndexMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSpace(s)
	num := strings.TrimRight(t, "KMGTBIkmgtbi")
	unit := strings.ToUpper(strings.TrimSpace(t[len(num):]))
	shift := map[string]uint{"": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20,
		"G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}
	sh, ok := shift[unit]
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || v <= 0 {
		return 0, usageError("index memory %q (--index-memory, server: index_memory): want a size such as 512MiB or 8GiB", s)
	}
	n := v * float64(uint64(1)<<sh)
	if n < minIndexMemory {
		return 0, usageError("index memory %q (--index-memory, server: index_memory): at least %dMiB", s, minIndexMemory>>20)
	}
	if n > 1<<50 {
		return 0, usageError("index memory %q (--index-memory, server: index_memory): more than a pebibyte", s)
	}
	return int64(n), nil
}
