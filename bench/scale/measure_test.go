package scale

import (
	"strings"
	"testing"
	"time"
)

// rawProfile is the shape of `go tool pprof -raw` output: a sample of the
// ingest label, one with a NATS server function inlined under a vigil
// frame (the servers replace inherited labels with their own), a garbage
// collector worker, and one unlabelled sample.
const rawProfile = `PeriodType: cpu nanoseconds
Period: 10000000
Samples:
samples/count cpu/nanoseconds
          2   20000000: 1 2 
                part:[ingest]
          1   10000000: 3 2 
                account:[$G] stream:[VIGIL_RAW]
          1   10000000: 4 
          3   30000000: 5 
Locations
     1: 0xf78172 M=1 runtime.memclrNoHeapPointers /usr/local/go/src/runtime/memclr_amd64.s:93:0 s=15
     2: 0x140c292 M=1 github.com/nats-io/nats%2ego.Header.Set /root/go/pkg/mod/nats.go:4522:0 s=4521
             github.com/vigil-audit/vigil/internal/cluster.(*Conn).publish /work/internal/cluster/publish.go:59:0 s=44
     3: 0x1 M=1 runtime.memmove /usr/local/go/src/runtime/memmove_amd64.s:384:0 s=35
             github.com/nats-io/nats-server/v2/server.(*msgBlock).writeMsgRecordLocked /root/go/pkg/mod/server/filestore.go:1:0 s=1
     4: 0x2 M=1 runtime.gcBgMarkWorker /usr/local/go/src/runtime/mgc.go:1:0 s=1
     5: 0x3 M=1 runtime.futex /usr/local/go/src/runtime/sys_linux_amd64.s:1:0 s=1
Mappings
1: 0x400000/0x1a00000/0x0 /tmp/scale.test  [FN]
`

func TestParseRawProfile(t *testing.T) {
	got, err := ParseRawProfile(strings.NewReader(rawProfile), "part")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"ingest": 20 * time.Millisecond, PartNATS: 10 * time.Millisecond,
		PartGC: 10 * time.Millisecond, "": 30 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("parts %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("part %q: %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestParseRawProfileRefusesOtherText(t *testing.T) {
	if _, err := ParseRawProfile(strings.NewReader("Showing nodes accounting for 10ms\n"), "part"); err == nil ||
		!strings.Contains(err.Error(), "no Samples section") {
		t.Fatalf("got %v, want the missing sample section named", err)
	}
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          string
		busy, total uint64
		err         string
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"counts all but idle and iowait", "cpu  100 5 50 800 40 3 2 1 7 0\ncpu0 1 2 3 4 5\n", 161, 1001, ""},
		{"kernels without steal", "cpu 10 0 10 80 0\n", 20, 100, ""},
		{"not the total line", "cpu0 1 2 3 4 5\n", 0, 0, "not the cpu total"},
		{"garbage", "cpu 1 x 3 4 5\n", 0, 0, "field 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, err := parseProcStat([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || busy != tc.busy || total != tc.total {
				t.Fatalf("got %d/%d, %v; want %d/%d", busy, total, err, tc.busy, tc.total)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {0, 1}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

func TestCPUUse(t *testing.T) {
	a := CPUSnap{Wall: time.Unix(0, 0), Process: time.Second, Busy: 100, Total: 1000}
	b := CPUSnap{Wall: time.Unix(10, 0), Process: 16 * time.Second, Busy: 1900, Total: 3000}
	u := Since(a, b)
	if u.Cores() != 1.5 {
		t.Errorf("cores %v, want 1.5", u.Cores())
	}
	if u.MachineBusy != 0.9 {
		t.Errorf("machine busy %v, want 0.9", u.MachineBusy)
	}
	if got := u.OthersCores(2); got < 0.299 || got > 0.301 {
		t.Errorf("others %v, want 0.3 (1.8 busy of 2, 1.5 ours)", got)
	}
	if got := u.PerCPUSecond(30); got != 2 {
		t.Errorf("per CPU-second %v, want 2", got)
	}
}

func TestThousandsAndRatio(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4200: "-4,200"} {
		if got := Thousands(in); got != want {
			t.Errorf("Thousands(%v) = %q, want %q", in, got, want)
		}
	}
	if got := Ratio(3, 2); got != "1.50x" {
		t.Errorf("Ratio = %q", got)
	}
	if got := Ratio(3, 0); got != "-" {
		t.Errorf("Ratio without a base = %q", got)
	}
}

func TestBound(t *testing.T) {
	wall := 10 * time.Second
	for _, tc := range []struct {
		name    string
		process time.Duration
		busy    float64
		want    string
	}{
		{"others fill the machine", 5 * time.Second, 0.95, "CPU-bound: the machine's 2 cores were 95% busy (this process 0.50 cores, other processes 1.40)"},
		{"this process fills it", 17 * time.Second, 0.88, "CPU-bound: this process used 1.70 of the 2 cores"},
		{"idle cores", 9 * time.Second, 0.5, "not CPU-bound: 50% of the machine idle (this process 0.90 cores, other processes 0.10)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Bound(CPUUse{Wall: wall, Process: tc.process, MachineBusy: tc.busy}, 2)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want it to start with %q", got, tc.want)
			}
		})
	}
}
