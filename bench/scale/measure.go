package scale

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUSnap is the process's and the machine's CPU use at one instant.
type CPUSnap struct {
	Wall    time.Time
	Process time.Duration // user + system of this process (every thread)
	// Busy and Total are the machine's jiffies from /proc/stat (all CPUs):
	// Busy excludes idle and iowait.
	Busy, Total uint64
	Load        string // /proc/loadavg's three averages
}

// TakeCPU reads the process's rusage, /proc/stat and /proc/loadavg.
func TakeCPU() (CPUSnap, error) {
	s := CPUSnap{Wall: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("getrusage: %w", err)
	}
	s.Process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("machine CPU: %w", err)
	}
	if s.Busy, s.Total, err = parseProcStat(stat); err != nil {
		return s, err
	}
	la, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return s, fmt.Errorf("load average: %w", err)
	}
	if f := strings.Fields(string(la)); len(f) >= 3 {
		s.Load = strings.Join(f[:3], " ")
	}
	return s, nil
}

// parseProcStat sums the aggregate "cpu" line of /proc/stat: busy is
// everything but idle (4th field) and iowait (5th).
func parseProcStat(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		// guest and guest_nice (9th, 10th) are already in user and nice.
		if i >= 8 {
			break
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

// CPUUse is what happened between two snapshots.
type CPUUse struct {
	Wall    time.Duration
	Process time.Duration // CPU time of this process
	// MachineBusy is the share of all the machine's CPUs that were busy
	// (any process), 0..1.
	MachineBusy float64
	LoadBefore  string
	LoadAfter   string
}

// Since is the use from a to b.
func Since(a, b CPUSnap) CPUUse {
	u := CPUUse{Wall: b.Wall.Sub(a.Wall), Process: b.Process - a.Process, LoadBefore: a.Load, LoadAfter: b.Load}
	if b.Total > a.Total {
		u.MachineBusy = float64(b.Busy-a.Busy) / float64(b.Total-a.Total)
	}
	return u
}

// Cores is the process's CPU time over the wall time: how many cores it
// kept busy on average.
func (u CPUUse) Cores() float64 {
	if u.Wall <= 0 {
		return 0
	}
	return u.Process.Seconds() / u.Wall.Seconds()
}

// OthersCores is the CPU the rest of the machine used meanwhile, in cores
// (machine busy share × cores − this process).
func (u CPUUse) OthersCores(ncpu int) float64 {
	return max(0, u.MachineBusy*float64(ncpu)-u.Cores())
}

// PerCPUSecond is n over the process CPU time.
func (u CPUUse) PerCPUSecond(n int) float64 {
	if u.Process <= 0 {
		return 0
	}
	return float64(n) / u.Process.Seconds()
}

// sampleLine is a sample of `go tool pprof -raw`: count, then the value
// in nanoseconds, then the locations.
var (
	sampleLine   = regexp.MustCompile(`^\s*\d+\s+(\d+):((?:\s+\d+)*)\s*$`)
	locationLine = regexp.MustCompile(`^\s*(\d+): 0x[0-9a-f]+ M=\d+ (\S+)`)
	inlinedLine  = regexp.MustCompile(`^\s+([^\s:]\S*) \S+:\d+`)
	labelLine    = regexp.MustCompile(`(\w+):\[([^\]]*)\]`)
)

// Parts of a profile that no label names.
const (
	PartNATS = "nats" // a NATS server's code is on the stack
	PartGC   = "gc"   // the garbage collector's background workers
)

// ParseRawProfile sums a CPU profile's samples (the text of `go tool
// pprof -raw`) by part: PartNATS when a function of nats-server is on the
// sample's stack (the servers label their goroutines themselves,
// replacing inherited labels), else the value of label key, else PartGC
// for the collector's background workers, else "". It fails on text with
// no sample section, so a changed format is not read as zero CPU.
func ParseRawProfile(r io.Reader, key string) (map[string]time.Duration, error) {
	type sample struct {
		ns    time.Duration
		locs  []int
		label string
	}
	var samples []*sample
	funcs := map[int][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	section, seen := "", false
	loc := -1
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Samples:"):
			section, seen = "samples", true
			continue
		case strings.HasPrefix(line, "Locations"):
			section = "locations"
			continue
		case strings.HasPrefix(line, "Mappings"):
			section = ""
			continue
		}
		switch section {
		case "samples":
			if m := sampleLine.FindStringSubmatch(line); m != nil {
				ns, err := strconv.ParseInt(m[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("profile sample %q: %w", line, err)
				}
				s := &sample{ns: time.Duration(ns)}
				for _, f := range strings.Fields(m[2]) {
					id, _ := strconv.Atoi(f)
					s.locs = append(s.locs, id)
				}
				samples = append(samples, s)
				continue
			}
			// Label lines follow their sample: "part:[ingest]".
			if len(samples) > 0 {
				for _, m := range labelLine.FindAllStringSubmatch(line, -1) {
					if m[1] == key {
						samples[len(samples)-1].label = m[2]
					}
				}
			}
		case "locations":
			if m := locationLine.FindStringSubmatch(line); m != nil {
				loc, _ = strconv.Atoi(m[1])
				funcs[loc] = append(funcs[loc], m[2])
			} else if m := inlinedLine.FindStringSubmatch(line); m != nil && loc >= 0 {
				funcs[loc] = append(funcs[loc], m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if !seen {
		return nil, errors.New("profile: no Samples section in the pprof -raw text")
	}
	out := map[string]time.Duration{}
	for _, s := range samples {
		part, gc := s.label, false
	stack:
		for _, l := range s.locs {
			for _, f := range funcs[l] {
				if strings.HasPrefix(f, "github.com/nats-io/nats-server/") {
					part = PartNATS
					break stack
				}
				if f == "runtime.gcBgMarkWorker" {
					gc = true
				}
			}
		}
		if part == "" && gc {
			part = PartGC
		}
		out[part] += s.ns
	}
	return out, nil
}

// ProfileByLabel runs `go tool pprof -raw` on a CPU profile and sums it
// by label key.
func ProfileByLabel(path, key string) (map[string]time.Duration, error) {
	cmd := exec.Command("go", "tool", "pprof", "-raw", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -raw %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return ParseRawProfile(bytes.NewReader(out), key)
}

// Percentile is the p-th percentile (0..100, nearest rank) of ds; 0 for
// none. ds is sorted in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(float64(len(ds))*p/100+0.999999) - 1
	return ds[min(max(rank, 0), len(ds)-1)]
}

// Ratio formats a/base as "1.00x"; "-" without a base.
func Ratio(a, base float64) string {
	if base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/base)
}

// Table renders rows as a Markdown table (the first row is the header).
func Table(rows [][]string) string {
	var b strings.Builder
	for i, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
		if i == 0 {
			b.WriteString("|" + strings.Repeat("---|", len(r)) + "\n")
		}
	}
	return b.String()
}

// Thousands formats n with thin separators, as the docs write numbers.
func Thousands(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// DirSize is the bytes of the regular files under dir.
func DirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// Bound says what limited a phase, from its CPU numbers: the machine's
// cores all busy (CPU-bound, whoever used them), this process using
// nearly all of them, or idle cores left (then the phase waited on
// something other than CPU).
func Bound(u CPUUse, ncpu int) string {
	switch {
	case u.MachineBusy >= 0.9:
		return fmt.Sprintf("CPU-bound: the machine's %d cores were %.0f%% busy (this process %.2f cores, other processes %.2f)",
			ncpu, 100*u.MachineBusy, u.Cores(), u.OthersCores(ncpu))
	case u.Cores() >= 0.8*float64(ncpu):
		return fmt.Sprintf("CPU-bound: this process used %.2f of the %d cores", u.Cores(), ncpu)
	default:
		return fmt.Sprintf("not CPU-bound: %.0f%% of the machine idle (this process %.2f cores, other processes %.2f): it waited on I/O or round trips",
			100*(1-u.MachineBusy), u.Cores(), u.OthersCores(ncpu))
	}
}
