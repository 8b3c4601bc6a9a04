package source

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Nesting deeper than the limit is quarantined with its reason, in plain
// and gzip input, and never overflows the stack (four million '[' did).
func TestDeepNestingIsQuarantined(t *testing.T) {
	const n = 4 << 20
	deep := strings.Repeat("[", n) + strings.Repeat("]", n)
	in := string(genericLines(2)) + deep + "\n" + string(genericLines(3))
	dir := t.TempDir()
	for _, p := range []string{writeFile(t, dir, "deep.jsonl", []byte(in)), writeFile(t, dir, "deep.jsonl.gz", gzipped(t, []byte(in)))} {
		evs, st, rej := readAll(t, []string{p}, Options{})
		if len(evs) != 5 || len(rej) != 1 || rej[0].Line != 3 || !strings.Contains(rej[0].Reason, "nesting depth") {
			t.Fatalf("%s: %d events, %d rejects %.200v", p, len(evs), len(rej), rej)
		}
		if st.Records != 6 {
			t.Errorf("%s: %d records, want 6", p, st.Records)
		}
	}
	// The same as the first line (unbalanced, so not JSON lines): no
	// crash, the line is quarantined, framing resumes on the next line, and
	// the next input is read.
	first := writeFile(t, dir, "first.json", []byte(strings.Repeat("[", n)+"\n"+string(genericLines(3))))
	good := writeFile(t, dir, "good.jsonl", genericLines(4))
	evs, _, rej := readAll(t, []string{first, good}, Options{})
	if len(evs) != 7 || len(rej) != 2 || rej[0].File != first || rej[0].Line != 1 || !strings.Contains(rej[0].Reason, "nesting depth exceeds the limit of 64") ||
		!strings.Contains(rej[1].Reason, "top-level array is not closed") {
		t.Fatalf("deep first line: %d events, %d rejects %.300v", len(evs), len(rej), rej)
	}
}

// A record with more fields than the limit is quarantined before it is
// flattened (1.2 M distinct keys took minutes).
func TestManyKeysAreQuarantined(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"time":"2024-01-01T00:00:00Z"`)
	for i := range 300_000 {
		b.WriteString(`,"k`)
		b.WriteString(itoa(i))
		b.WriteString(`":1`)
	}
	b.WriteString("}\n")
	p := writeFile(t, t.TempDir(), "keys.jsonl", append(append(genericLines(1), b.Bytes()...), genericLines(1)...))
	evs, _, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 2 || len(rej) != 1 || !strings.Contains(rej[0].Reason, "fields") {
		t.Fatalf("%d events, %d rejects %.200v", len(evs), len(rej), rej)
	}
}

// A line past the maximum record size is quarantined (with its start
// only) and the lines after it are read.
func TestLongLineIsQuarantined(t *testing.T) {
	long := `{"time":"2024-01-01T00:00:00Z","pad":"` + strings.Repeat("x", 17<<20) + `"}` + "\n"
	p := writeFile(t, t.TempDir(), "long.jsonl", append(append(genericLines(2), long...), genericLines(2)...))
	evs, st, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 4 || len(rej) != 1 || rej[0].Line != 3 || !strings.Contains(rej[0].Reason, "maximum record size") {
		t.Fatalf("%d events, %d rejects %.200v", len(evs), len(rej), rej)
	}
	if len(rej[0].Record) > 64<<10 || !strings.HasPrefix(rej[0].Record, `{"time"`) {
		t.Errorf("quarantined record is %d bytes, want its start only", len(rej[0].Record))
	}
	if st.Records != 5 {
		t.Errorf("%d records, want 5", st.Records)
	}
}

// An array line counts one record per element, and a bad element is
// quarantined alone with a reason of bounded length.
func TestArrayLineCountsElements(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("[")
	for i := range 4000 {
		if i > 0 {
			b.WriteString(",")
		}
		if i%1000 == 999 {
			b.WriteString(`{"no":"time"}`)
		} else {
			b.WriteString(`{"time":"2024-01-01T00:00:00Z","n":` + itoa(i) + `}`)
		}
	}
	b.WriteString("]\n")
	p := writeFile(t, t.TempDir(), "array.jsonl", b.Bytes())
	evs, st, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 3996 || len(rej) != 4 || st.Records != 4000 {
		t.Fatalf("%d events, %d rejects, %d records", len(evs), len(rej), st.Records)
	}
	for _, r := range rej {
		if r.Record != `{"no":"time"}` || len(r.Reason) > 500 {
			t.Errorf("reject %.300v", r)
		}
	}
}

// An array line of more elements than a record may hold is quarantined
// whole, with a short reason (1 M elements once gave a 239 MB reason).
func TestHugeArrayLineIsQuarantined(t *testing.T) {
	huge := "[" + strings.Repeat("{},", 1_000_000) + "{}]\n"
	p := writeFile(t, t.TempDir(), "huge.jsonl", append(append(genericLines(1), huge...), genericLines(1)...))
	var q bytes.Buffer
	var n int
	st, err := ReadPaths(context.Background(), []string{p}, Options{Quarantine: &q}, func(*event.Event) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || st.Quarantined != 1 || q.Len() > len(huge)+4096 || !strings.Contains(q.String(), "array elements") {
		t.Fatalf("%d events, %d quarantined, quarantine %d bytes: %.300s", n, st.Quarantined, q.Len(), q.String())
	}
}

// An empty API page holds no records: nothing to count, decode or
// quarantine (the fuzzer found it counted as a record).
func TestEmptyPageHasNoRecords(t *testing.T) {
	for _, in := range []string{
		`{"@odata00000000":"0000","value":[]}`,
		`{"@odata.context":"x","value":[]}` + "\n" + `{"records":[]}`,
		"[]",
	} {
		var q bytes.Buffer
		st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: strings.NewReader(in), Quarantine: &q}, func(*event.Event) error { return nil })
		if err != nil || st.Records != 0 || st.Events != 0 || st.Quarantined != 0 {
			t.Errorf("%s: err %v, %d records, %d events, %d quarantined", in, err, st.Records, st.Events, st.Quarantined)
		}
	}
}
