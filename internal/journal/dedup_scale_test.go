//go:build linux

package journal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDedupScale appends VIGIL_DEDUP_SCALE distinct keyed entries (e.g.
// 20000000) to a journal in VIGIL_DEDUP_SCALE_DIR (default a temp dir) and
// reports, every quarter, the Go heap after a GC, the process's anonymous
// and file-backed resident memory and the CPU seconds per million entries.
// VIGIL_DEDUP_SCALE_BOUND sets Options.DedupMemoryKeys. It is a
// measurement, not a check, so it runs only when asked.
func TestDedupScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VIGIL_DEDUP_SCALE"))
	if n <= 0 {
		t.Skip("set VIGIL_DEDUP_SCALE to a number of entries")
	}
	dir := os.Getenv("VIGIL_DEDUP_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	opts := quietOptions()
	opts.noSync = true
	if b, _ := strconv.Atoi(os.Getenv("VIGIL_DEDUP_SCALE_BOUND")); b > 0 {
		opts.DedupMemoryKeys = b
	}
	j := mustOpen(t, dir, opts)
	defer j.Close()
	const batch = 4096
	es := make([]Entry, batch)
	recv := time.Unix(1700000000, 0).UTC()
	cpu0 := cpuSeconds()
	start := time.Now()
	for i := 0; i < n; i += batch {
		for k := range es {
			id := fmt.Sprintf("%016x-%08x", uint64(i+k)*0x9e3779b97f4a7c15, i+k)
			es[k] = Entry{Source: "m365.ual", Origin: "scale", Received: recv, RecordID: id, Raw: []byte(`{"Id":"` + id + `"}`)}
		}
		if _, err := j.AppendBatch(context.Background(), es[:min(batch, n-i)]); err != nil {
			t.Fatal(err)
		}
		if q := n / 4; (i+batch)/q != i/q || i+batch >= n {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			anon, file := rss()
			cpu := cpuSeconds() - cpu0
			t.Logf("%9d entries: heap in use %6.1f MiB, RssAnon %6.1f MiB, RssFile %6.1f MiB, %.2f CPU s/M entries, %.0f entries/s",
				min(i+batch, n), float64(ms.HeapInuse)/(1<<20), anon, file, cpu/float64(min(i+batch, n))*1e6, float64(min(i+batch, n))/time.Since(start).Seconds())
		}
	}
	waitDedupIdle(t, j)
	runs, keys := j.dedup.runCount()
	t.Logf("dedup runs: %d holding %d keys (%.1f MiB of them resident in this process), %d in memory; %d freezes, %d merges, appends waited %v for freezes",
		runs, keys, smapsRss("/"+dedupDir+"/"), j.dedup.recent.n, j.dedup.freezes.Load(), j.dedup.merges.Load(), time.Duration(j.dedup.stalled.Load()))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// rss returns RssAnon and RssFile of this process in MiB (Linux).
func rss() (anon, file float64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "RssAnon":
			anon = kb / 1024
		case "RssFile":
			file = kb / 1024
		}
	}
	return anon, file
}

// smapsRss sums the resident MiB of this process's mappings of files
// whose path contains sub.
func smapsRss(sub string) float64 {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0
	}
	var kb float64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && strings.Contains(f[5], sub)
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			v, _ := strconv.ParseFloat(f[1], 64)
			kb += v
		}
	}
	return kb / 1024
}
