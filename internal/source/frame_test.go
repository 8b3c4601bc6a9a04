package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

func genericLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"time":"2024-01-01T00:00:%02dZ","n":%d}`+"\n", i%60, i)
	}
	return b.Bytes()
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// A gzip stream cut short is a damaged input, not a short one: JSON lines
// must not be accepted as complete. The inputs after it are still read,
// and the damage is named with how much was read, in the stats, the
// error and the quarantine.
func TestTruncatedGzipIsDamage(t *testing.T) {
	z := gzipped(t, genericLines(2000))
	for _, tc := range []struct {
		name string
		cut  int
	}{
		{"inside the data", 20},
		{"only the trailer", 8}, // all records intact, checksum and size missing
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "cut.jsonl.gz")
			if err := os.WriteFile(p, z[:len(z)-tc.cut], 0o600); err != nil {
				t.Fatal(err)
			}
			after := filepath.Join(dir, "next.jsonl")
			if err := os.WriteFile(after, genericLines(7), 0o600); err != nil {
				t.Fatal(err)
			}
			var q bytes.Buffer
			var n int64
			st, err := ReadPaths(context.Background(), []string{p, after}, Options{Quarantine: &q}, func(*event.Event) error { n++; return nil })
			var de *DamagedError
			if !errors.As(err, &de) || len(de.Inputs) != 1 || de.Inputs[0].File != p || !strings.Contains(de.Inputs[0].Reason, "unexpected EOF") {
				t.Fatalf("ReadPaths of a truncated gzip file: err = %v, want it named as damaged", err)
			}
			if len(st.Damaged) != 1 || st.Damaged[0].Read == 0 || st.Damaged[0].Read > int64(len(genericLines(2000))) {
				t.Errorf("damage %+v: want how much was read", st.Damaged)
			}
			if n < 7 || st.Events != n || st.Records != st.Decoded+st.Quarantined || st.Quarantined != 1 {
				t.Errorf("%d events emitted (stats %d), %d records = %d decoded + %d quarantined", n, st.Events, st.Records, st.Decoded, st.Quarantined)
			}
			var rej Reject
			if err := json.Unmarshal(q.Bytes(), &rej); err != nil || rej.File != p || !strings.Contains(rej.Reason, "records were framed from its first") {
				t.Errorf("quarantine %q: %v", q.String(), err)
			}
		})
	}
}

// JSON lines are framed line by line even when the first line does not
// fit the read buffer: a bad line then costs that line only, not every
// record after it.
func TestJSONLinesWithLongFirstLine(t *testing.T) {
	long := `{"time":"2024-01-01T00:00:00Z","pad":"` + string(bytes.Repeat([]byte("x"), 1<<20+10)) + `"}`
	for _, blank := range []string{"", "\r\n\n"} { // blank lines before the first record
		in := blank + long + "\n" + string(genericLines(1)) + `{"time":"2024-01-01T00:00:00Z"` + "\n" + string(genericLines(3))
		p := filepath.Join(t.TempDir(), "long.jsonl")
		if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		evs, st, rej := readAll(t, []string{p}, Options{})
		if len(evs) != 5 || st.Quarantined != 1 {
			t.Fatalf("%q first: got %d events and %d rejects (%.200v), want 5 and 1", blank, len(evs), st.Quarantined, rej)
		}
		skip := bytes.Count([]byte(blank), []byte("\n"))
		if rej[0].Line != 3+skip || rej[0].Record != `{"time":"2024-01-01T00:00:00Z"` {
			t.Errorf("%q first: reject at line %d: %.80q", blank, rej[0].Line, rej[0].Record)
		}
		for i, want := range []int{1, 2, 4, 5, 6} {
			if evs[i].Origin.Line != want+skip {
				t.Errorf("%q first: event %d at line %d, want %d", blank, i, evs[i].Origin.Line, want+skip)
			}
		}
	}
}

// An input rejected at its gzip header is still closed.
func TestBadGzipHeaderClosesFile(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count open files: %v", err)
		}
		return len(ents)
	}
	p := filepath.Join(t.TempDir(), "bad.json.gz")
	if err := os.WriteFile(p, []byte("\x1f\x8b\x00not a gzip header"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The finalizer of an unreferenced *os.File would close it.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := fds()
	for range 20 {
		if _, err := ReadPaths(context.Background(), []string{p}, Options{}, func(*event.Event) error { return nil }); err == nil {
			t.Fatal("ReadPaths accepted a bad gzip header")
		}
	}
	if after := fds(); after > before+5 {
		t.Errorf("%d files open after 20 reads of a bad gzip file, %d before", after, before)
	}
}

// When an input cannot be read, the records of the inputs before it (and
// of that input, up to the failure) have all been emitted: what was
// emitted does not depend on where a batch happened to end.
func TestUnreadableInputEmitsWhatWasRead(t *testing.T) {
	cut := gzipped(t, genericLines(2000))
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"truncated gzip", cut[:len(cut)-8], 2010},
		{"bad gzip header", []byte("\x1f\x8b\x00not a gzip header"), 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			good := filepath.Join(dir, "a.jsonl")
			if err := os.WriteFile(good, genericLines(10), 0o600); err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(dir, "b.jsonl.gz")
			if err := os.WriteFile(bad, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var n int
			st, err := ReadPaths(context.Background(), []string{good, bad}, Options{}, func(*event.Event) error { n++; return nil })
			if err == nil {
				t.Fatal("ReadPaths accepted the bad input")
			}
			if n != tc.want || st.Events != int64(tc.want) {
				t.Errorf("emitted %d events (stats %d), want the %d read before the failure", n, st.Events, tc.want)
			}
		})
	}
}
