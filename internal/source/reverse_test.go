package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// framed is what framing said of one record, comparable.
type framed struct {
	raw, file, err, row string
	line, index         int
	offset              int64
}

func framedOf(r rawRecord) framed {
	f := framed{raw: string(r.raw), file: r.file, line: r.line, index: r.index, offset: r.offset}
	if r.err != nil {
		f.err = r.err.Error()
	}
	if r.csv != nil {
		f.row = strings.Join(r.csv.cols, "\x00") + "\x01" + strings.Join(r.row, "\x00")
	}
	return f
}

// forwardRecords frames path as the forward read does (produce, with its
// BOM offsets and damage records).
func forwardRecords(t testing.TB, path string, lim Limits) []framed {
	t.Helper()
	opts := Options{Limits: lim.withDefaults()}
	work := make(chan *batch, 1<<16)
	var st Stats
	if err := produce(context.Background(), []string{path}, opts, work, &st, 0, nil); err != nil {
		t.Fatalf("forward read: %v", err)
	}
	close(work)
	var out []framed
	for b := range work {
		for _, r := range b.recs {
			out = append(out, framedOf(r))
		}
	}
	return out
}

// backwardRecords frames path back to front from points seg bytes apart;
// err is index's refusal.
func backwardRecords(t testing.TB, path string, lim Limits, seg int64) ([]framed, *reversal, error) {
	t.Helper()
	rv, err := index(path, lim.withDefaults(), seg)
	if err != nil {
		return nil, nil, err
	}
	var out []framed
	var st Stats
	err = rv.read(context.Background(), lim, &st, func(r rawRecord) error { out = append(out, framedOf(r)); return nil }, func(int64) {})
	if err != nil {
		t.Fatalf("backward read: %v", err)
	}
	return out, rv, nil
}

// checkReversed fails unless reading path back to front yields exactly
// the forward read's records, reversed.
func checkReversed(t testing.TB, path string, lim Limits, seg int64) *reversal {
	t.Helper()
	fwd := forwardRecords(t, path, lim)
	back, rv, err := backwardRecords(t, path, lim, seg)
	if err != nil {
		t.Fatalf("index refused %s: %v", path, err)
	}
	slices.Reverse(back)
	if len(fwd) != len(back) {
		t.Fatalf("%s: forward read framed %d records, backward %d", path, len(fwd), len(back))
	}
	for i := range fwd {
		if fwd[i] != back[i] {
			t.Fatalf("%s: record %d differs:\nforward  %+v\nbackward %+v", path, i, fwd[i], back[i])
		}
	}
	return rv
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReverseFraming reads the shipped fixtures and the real exports back
// to front, with points at every record and a few records apart.
func TestReverseFraming(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json*")
	csvs, _ := filepath.Glob("testdata/*.csv")
	files = append(files, csvs...)
	real, _ := filepath.Glob(filepath.Join(sharedData(t), "invictus-microsoft-extractor-suite", "*"))
	files = append(files, real...)
	for _, p := range files {
		if strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".txt") {
			continue
		}
		for _, seg := range []int64{1, 700, segmentBytes} {
			t.Run(fmt.Sprintf("%s/%d", filepath.Base(p), seg), func(t *testing.T) {
				rv := checkReversed(t, p, Limits{}, seg)
				if n := len(forwardRecords(t, p, Limits{})); seg == 1 && len(rv.points) < min(n, 2) {
					t.Errorf("%d points for %d records with one at every record: the read is not in segments", len(rv.points), n)
				}
			})
		}
	}
}

// TestReverseFramingEdges covers inputs whose framing carries state
// between records: a BOM, blank lines, CRLF, CSV cells spanning lines,
// rows of the wrong width, records past the size limit, framing lost in
// a pretty-printed array, a depth past the limit, an array not closed.
func TestReverseFramingEdges(t *testing.T) {
	long := strings.Repeat("x", 300)
	cases := map[string]string{
		"bom.jsonl":        "\ufeff{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":3}",
		"broken.jsonl":     "{\"a\":1}\n{not json\n[1,2]\n\n{\"c\":3}\n",
		"pretty.json":      "\ufeff[\n  {\n    \"a\": \"x\\\"}]\"\n  },\n  {\"b\": [1, {\"c\": 2}]}\n, \"s\", 12 ,\n{\"d\":\n 4}\n]\n",
		"notclosed.json":   "[\n{\"a\":1},\n{\"b\":2}\n",
		"trailing.json":    "[\n{\"a\":1},\n{\"b\":2}\n] x\n",
		"lost.json":        "[\n{\"a\":1},\n{\"b\":\"open\n},\n{\"c\":3}\n]\n",
		"deep.json":        "[\n{\"a\":1},\n" + strings.Repeat("[", 20) + "\n{\"c\":3}\n]\n",
		"concat.json":      "{\"a\":\n1}\n{\"b\":\n2}\n",
		"toolong.json":     "[\n{\"a\":1},\n{\"b\":\"" + long + "\"},\n{\"c\":3}\n]\n",
		"multiline.csv":    "h1,h2,AuditData\n1,\"a\nb\",\"{\"\"x\"\"\n:1}\"\n\n2,b,c\r\n3,\"bad\"x,c\n4,only\n5,\"q\"\"\nq\",z\n",
		"purview.csv":      "\ufeffCreationDate,UserIds,Operations,AuditData\n2024,u,op,\"{\"\"a\"\":1}\"\n2023,u,op,\"{\"\"b\"\":\"\"" + long[:40] + "\"\"}\"\n",
		"noheader.csv":     "just one column\nx\ny\n",
		"nlend.csv":        "a,b\n1,2\n3,\"4",
		"unterminated.csv": "a,b\n1,2\n3,\"4\n5,6\n",
	}
	lim := Limits{MaxRecordBytes: 200, MaxDepth: 8}
	for name, data := range cases {
		p := writeTemp(t, name, []byte(data))
		for _, seg := range []int64{1, 5, 40, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", name, seg), func(t *testing.T) {
				fwd := forwardRecords(t, p, lim)
				back, _, err := backwardRecords(t, p, lim, seg)
				if err != nil {
					if name == "noheader.csv" {
						return // the header row fails: one record, nothing to reverse
					}
					t.Fatalf("index refused: %v", err)
				}
				slices.Reverse(back)
				if !slices.Equal(fwd, back) {
					t.Fatalf("records differ:\nforward  %+v\nbackward %+v", fwd, back)
				}
			})
		}
	}
}

// TestReverseRefusesLongRows: past the maximum record size a CSV row is
// skipped to the end of the line the reader stopped in, and a JSON line
// judged by whether its end was read with it, which framing from another
// point may not reproduce; such an input is refused, with the line named.
func TestReverseRefusesLongRows(t *testing.T) {
	for name, data := range map[string]string{
		"long.csv":   "a,b\n1,2\n3,\"" + strings.Repeat("y\n", 400) + "\"\n5,6\n",
		"long.jsonl": "{\"a\":1}\n\n{\"b\":\"" + strings.Repeat("y", 400) + "\"}\n{\"c\":3}\n",
	} {
		p := writeTemp(t, name, []byte(data))
		_, _, err := backwardRecords(t, p, Limits{MaxRecordBytes: 64}, 1)
		if err == nil || !strings.Contains(err.Error(), "line 3: a record larger than the maximum record size") {
			t.Errorf("index of %s, with a record past the limit on line 3: %v, want the line named", name, err)
		}
	}
}

// FuzzReverse: reading any input back to front yields exactly the records
// the forward read frames, in reverse, whatever the points' spacing; or
// is refused before anything is read, for the reasons index gives.
func FuzzReverse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json*")
	csvs, _ := filepath.Glob("testdata/*.csv")
	for _, p := range append(seeds, csvs...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, uint8(1))
		}
	}
	f.Add([]byte("a,b\n\"1,2\n3,4\n"), uint8(3))
	f.Add([]byte("[\n{\"a\":\"\\\\\"},\n{\"b\":1}]"), uint8(2))
	f.Add([]byte("\ufeff{\"a\":1}\n\n{\"b\":2}"), uint8(0))
	lim := Limits{MaxRecordBytes: 64, MaxDepth: 8}
	f.Fuzz(func(t *testing.T, data []byte, seg uint8) {
		p := writeTemp(t, "in", data)
		fwd := forwardRecords(t, p, lim)
		back, _, err := backwardRecords(t, p, lim, int64(seg%64)+1)
		if err != nil {
			if !strings.Contains(err.Error(), "larger than the maximum record size") && !strings.Contains(err.Error(), "before any record starts") {
				t.Fatalf("index refused for another reason: %v", err)
			}
			return
		}
		slices.Reverse(back)
		if !slices.Equal(fwd, back) {
			t.Fatalf("records differ:\nforward  %+v\nbackward %+v", fwd, back)
		}
	})
}

// TestProbe: an input is read back to front when its first record with a
// time is newer than its last, whatever its framing; ascending ones,
// gzip and inputs without times are read forwards.
func TestProbe(t *testing.T) {
	rec := func(ts string) string {
		return `{"CreationTime":"` + ts + `","Id":"` + ts + `","Operation":"UserLoggedIn","RecordType":15,"UserId":"u@x","Workload":"AzureActiveDirectory"}`
	}
	times := []string{"2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"}
	var recs []string
	for _, ts := range times {
		recs = append(recs, rec(ts))
	}
	desc := slices.Clone(recs)
	slices.Reverse(desc)
	csvRow := func(r string) string { return `x,u,op,"` + strings.ReplaceAll(r, `"`, `""`) + `"` }
	csvOf := func(rs []string) string {
		var b strings.Builder
		b.WriteString("CreationDate,UserIds,Operations,AuditData\n")
		for _, r := range rs {
			b.WriteString(csvRow(r) + "\n")
		}
		return b.String()
	}
	cases := []struct {
		name, data string
		want       bool
	}{
		{"asc.jsonl", strings.Join(recs, "\n") + "\n", false},
		{"desc.jsonl", strings.Join(desc, "\n") + "\n", true},
		{"desc-pretty.json", "[\n  " + strings.Join(desc, ",\n  ") + "\n]", true},
		{"asc.json", "[" + strings.Join(recs, ",") + "]", false},
		{"desc.csv", csvOf(desc), true},
		{"asc.csv", csvOf(recs), false},
		{"untimed.jsonl", "{\"a\":1}\n{\"a\":2}\n", false},
		{"one.jsonl", desc[0] + "\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeTemp(t, c.name, []byte(c.data))
			got, err := probe(p, Options{Limits: Limits{}.withDefaults()})
			if err != nil || got != c.want {
				t.Fatalf("probe = %v, %v; want %v", got, err, c.want)
			}
		})
	}
	if got, err := probe(writeTemp(t, "desc.jsonl.gz", gzipped(t, []byte(strings.Join(desc, "\n")))), Options{Limits: Limits{}.withDefaults()}); got || err != nil {
		t.Fatalf("probe of a gzip input newest first = %v, %v; want it read forwards", got, err)
	}
}

// TestReadMergedBackwardsDecodesOnce: ReadMerged with Reverse reads an
// input newest first back to front, merged with one oldest first, in
// event-time order, decoding each record once (plus the probe's few at
// each end of each input), and quarantines a bad record as the forward
// read names it.
func TestReadMergedBackwardsDecodesOnce(t *testing.T) {
	rec := func(i int) string {
		ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format("2006-01-02T15:04:05")
		return `{"CreationTime":"` + ts + `","Id":"r` + strconv.Itoa(i) + `","Operation":"UserLoggedIn","RecordType":15,"UserId":"u@x","Workload":"AzureActiveDirectory"}`
	}
	var asc, desc []string
	for i := 0; i < 3000; i++ {
		if i%2 == 0 {
			asc = append(asc, rec(i))
		} else {
			desc = append(desc, rec(i))
		}
	}
	slices.Reverse(desc)
	desc = slices.Insert(desc, 700, `{"CreationTime":"2024-01-01T10:00:00","Id":`)
	dir := t.TempDir()
	ap, dp := filepath.Join(dir, "asc.jsonl"), filepath.Join(dir, "desc.jsonl")
	os.WriteFile(ap, []byte(strings.Join(asc, "\n")+"\n"), 0o600)
	os.WriteFile(dp, []byte(strings.Join(desc, "\n")+"\n"), 0o600)

	var mu sync.Mutex
	decodes := map[string]int{}
	decodeHook = func(r *rawRecord) {
		mu.Lock()
		decodes[fmt.Sprintf("%s@%d", r.file, r.offset)]++
		mu.Unlock()
	}
	defer func() { decodeHook = nil }()
	var q bytes.Buffer
	var got []string
	st, err := ReadMerged(context.Background(), []string{ap, dp}, Options{Reverse: true, Quarantine: &q}, func(e *event.Event) error {
		got = append(got, e.RecordID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3000 {
		t.Fatalf("%d events, want 3000", len(got))
	}
	for i, id := range got {
		if id != "r"+strconv.Itoa(i) {
			t.Fatalf("event %d is %s: not merged in time order", i, id)
		}
	}
	if !slices.Equal(st.Reversed, []string{dp}) {
		t.Errorf("read back to front: %v, want %s", st.Reversed, dp)
	}
	twice := 0
	for k, n := range decodes {
		if n > 1 {
			twice++
			if n > 2 {
				t.Errorf("%s decoded %d times", k, n)
			}
		}
	}
	// The probe decodes a record with a time at each end of each input.
	if len(decodes) != 3001 || twice > 4 {
		t.Errorf("%d records decoded, %d of them twice; want 3001 (with the bad one), at most 4 twice (the probes)", len(decodes), twice)
	}
	fwd := forwardRecords(t, dp, Limits{})
	var r Reject
	if err := json.Unmarshal(q.Bytes(), &r); err != nil {
		t.Fatalf("quarantine %q: %v", q.String(), err)
	}
	bad := fwd[700]
	if r.File != bad.file || r.Line != bad.line || r.Offset != bad.offset || r.Index != bad.index || r.Record != bad.raw || r.Line != 701 {
		t.Errorf("quarantined %+v, the forward read frames it as %+v", r, bad)
	}
}
