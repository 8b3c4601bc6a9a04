package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

// readLimited reads in through stdin with lim and returns events, stats
// and rejects; a damaged input is allowed (its error is returned).
func readLimited(t *testing.T, in []byte, lim Limits) ([]*event.Event, Stats, []Reject, error) {
	t.Helper()
	var q bytes.Buffer
	var evs []*event.Event
	st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(in), Quarantine: &q, Limits: lim},
		func(e *event.Event) error { evs = append(evs, e); return nil })
	var de *DamagedError
	if err != nil && !errors.As(err, &de) {
		t.Fatalf("ReadPaths: %v", err)
	}
	var rej []Reject
	for _, l := range bytes.Split(bytes.TrimSpace(q.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var r Reject
		if jerr := jsonUnmarshal(l, &r); jerr != nil {
			t.Fatal(jerr)
		}
		rej = append(rej, r)
	}
	if st.Records != st.Decoded+st.Quarantined || int64(len(rej)) != st.Quarantined {
		t.Fatalf("%d records, %d decoded, %d quarantined, %d in the quarantine", st.Records, st.Decoded, st.Quarantined, len(rej))
	}
	return evs, st, rej, err
}

// sized returns a generic record of exactly n bytes.
func sized(t *testing.T, n int) string {
	t.Helper()
	head := `{"time":"2024-01-01T00:00:00Z","pad":"`
	if n < len(head)+2 {
		t.Fatalf("record of %d bytes is too short", n)
	}
	return head + strings.Repeat("x", n-len(head)-2) + `"}`
}

// nested returns a generic record whose nesting depth is exactly d.
func nested(d int) string {
	return `{"time":"2024-01-01T00:00:00Z","a":` + strings.Repeat("[", d-1) + strings.Repeat("]", d-1) + "}"
}

// withFields returns a generic record of exactly n members.
func withFields(n int) string {
	var b strings.Builder
	b.WriteString(`{"time":"2024-01-01T00:00:00Z"`)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, `,"f%d":1`, i)
	}
	return b.String() + "}"
}

// withElements returns a generic record holding exactly n array elements.
func withElements(n int) string {
	return `{"time":"2024-01-01T00:00:00Z","a":[` + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]}"
}

// Each record limit is tested at its boundary: a record at the limit is
// decoded, one past it is quarantined with the limit as its reason, and
// the records around it are decoded either way.
func TestRecordLimitsAtTheBoundary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lim    Limits
		record func(t *testing.T, n int) string
		n      int
		reason string
	}{
		{"record size", Limits{MaxRecordBytes: 200}, sized, 200, "exceeds the maximum record size (200 bytes)"},
		{"record size (default)", Limits{}, sized, DefaultMaxRecordBytes, "exceeds the maximum record size (16777216 bytes)"},
		{"nesting depth", Limits{MaxDepth: 10}, func(_ *testing.T, n int) string { return nested(n) }, 10, "nesting depth exceeds the limit of 10"},
		{"nesting depth (default)", Limits{}, func(_ *testing.T, n int) string { return nested(n) }, DefaultMaxDepth, "nesting depth exceeds the limit of 64"},
		{"fields", Limits{MaxFields: 50}, func(_ *testing.T, n int) string { return withFields(n) }, 50, "51 fields exceed the limit of 50 fields per record"},
		{"fields (default)", Limits{}, func(_ *testing.T, n int) string { return withFields(n) }, DefaultMaxFields, "fields exceed the limit of 200000"},
		{"array elements", Limits{MaxElements: 30}, func(_ *testing.T, n int) string { return withElements(n) }, 30, "31 array elements exceed the limit of 30"},
		{"array elements (default)", Limits{}, func(_ *testing.T, n int) string { return withElements(n) }, DefaultMaxElements, "exceed the limit of 200000 array elements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := genericLines(1)
			for _, layout := range []string{"lines", "pretty"} {
				at, past := tc.record(t, tc.n), tc.record(t, tc.n+1)
				in := string(good) + at + "\n" + past + "\n" + string(good)
				if layout == "pretty" { // a top-level array, framed value by value
					in = "[\n" + strings.TrimSpace(string(good)) + ",\n" + at + ",\n" + past + ",\n" + strings.TrimSpace(string(good)) + "\n]\n"
				}
				evs, st, rej, err := readLimited(t, []byte(in), tc.lim)
				if err != nil || len(evs) != 3 || len(rej) != 1 || st.Records != 4 {
					t.Fatalf("%s: err %v, %d events, %d records, rejects %.300v", layout, err, len(evs), st.Records, rej)
				}
				if want := map[string]int{"lines": 3, "pretty": 4}[layout]; !strings.Contains(rej[0].Reason, tc.reason) || rej[0].Line != want {
					t.Errorf("%s: reject at line %d: %.300s", layout, rej[0].Line, rej[0].Reason)
				}
			}
		})
	}
}

// The limits hold for the records of an API page one by one, and for the
// length of its list.
func TestPageElementsAreRecords(t *testing.T) {
	lim := Limits{MaxFields: 20, MaxElements: 3}
	page := `{"@odata.context":"x","value":[` + withFields(20) + "," + withFields(21) + "," + withFields(3) + `]}`
	evs, st, rej, _ := readLimited(t, []byte(page+"\n"), lim)
	if len(evs) != 2 || len(rej) != 1 || st.Records != 3 || !strings.Contains(rej[0].Reason, "21 fields") {
		t.Fatalf("%d events, %d records, rejects %.300v", len(evs), st.Records, rej)
	}
	long := `{"value":[` + strings.TrimSuffix(strings.Repeat(withFields(2)+",", 4), ",") + `]}`
	evs, st, rej, _ = readLimited(t, []byte(long+"\n"), lim)
	if len(evs) != 0 || len(rej) != 1 || st.Records != 1 || !strings.Contains(rej[0].Reason, "list of 4 records exceeds the limit of 3") {
		t.Fatalf("%d events, %d records, rejects %.300v", len(evs), st.Records, rej)
	}
}

// A quarantine reason is cut at the limit, saying how much was cut.
func TestReasonLengthAtTheBoundary(t *testing.T) {
	bad := `{"time":"` + strings.Repeat("y", 3000) + `"}`
	for _, n := range []int{DefaultMaxReasonBytes, 200} {
		_, _, rej, _ := readLimited(t, []byte(bad+"\n"), Limits{MaxReasonBytes: n})
		if len(rej) != 1 || len(rej[0].Reason) > n || !strings.HasSuffix(rej[0].Reason, "bytes cut)") {
			t.Fatalf("limit %d: reason of %d bytes: %.100s", n, len(rej[0].Reason), rej[0].Reason)
		}
	}
	short := `{"time":"nope"}`
	_, _, rej, _ := readLimited(t, []byte(short+"\n"), Limits{MaxReasonBytes: 200})
	if len(rej) != 1 || strings.Contains(rej[0].Reason, "cut") {
		t.Fatalf("short reason changed: %v", rej)
	}
}

// Decompressed bytes per input: an input of exactly the limit is read,
// one byte more is a damaged input named with the limit.
func TestDecompressedBytesAtTheBoundary(t *testing.T) {
	data := genericLines(1000)
	z := gzipped(t, data)
	evs, st, _, err := readLimited(t, z, Limits{MaxInputBytes: int64(len(data))})
	if err != nil || len(evs) != 1000 {
		t.Fatalf("at the limit: err %v, %d events", err, len(evs))
	}
	evs, st, rej, err := readLimited(t, z, Limits{MaxInputBytes: int64(len(data)) - 1})
	if err == nil || len(st.Damaged) != 1 || !strings.Contains(st.Damaged[0].Reason, "more than") || len(evs) >= 1000 {
		t.Fatalf("past the limit: err %v, damaged %+v, %d events", err, st.Damaged, len(evs))
	}
	if last := rej[len(rej)-1]; !strings.Contains(last.Reason, "decompressed (the limit per input)") {
		t.Errorf("quarantine: %+v", last)
	}
}

// The decompression ratio is judged once ratioFloor bytes were
// decompressed: at the input's ratio it is read, below it is damaged.
func TestDecompressionRatioAtTheBoundary(t *testing.T) {
	line := sized(t, 10_000) + "\n"
	data := []byte(strings.Repeat(line, ratioFloor/len(line)+100))
	z := gzipped(t, data)
	ratio := len(data) / len(z)
	if ratio < 50 {
		t.Fatalf("test input compresses only %d:1", ratio)
	}
	evs, _, _, err := readLimited(t, z, Limits{MaxRatio: ratio})
	if err != nil || len(evs) != bytes.Count(data, []byte("\n")) {
		t.Fatalf("at the ratio: err %v, %d events", err, len(evs))
	}
	_, st, _, err := readLimited(t, z, Limits{MaxRatio: ratio - 1})
	if err == nil || len(st.Damaged) != 1 || !strings.Contains(st.Damaged[0].Reason, "decompression ratio") {
		t.Fatalf("past the ratio: err %v, damaged %+v", err, st.Damaged)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{{MaxRecordBytes: 10}, {MaxDepth: 1}, {MaxReasonBytes: 10}, {MaxDepth: 100_000}, {MaxFields: -1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if err := (Limits{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// A CSV row past the maximum record size is quarantined with its start
// and line; the rows after it are read (the CSV path once read its whole
// input into memory).
func TestCSVRowTooLarge(t *testing.T) {
	head := "time,user,note\n"
	row := func(i int) string { return fmt.Sprintf("2024-01-01T00:00:%02dZ,u%d@x,ok\n", i, i) }
	// 5000 bytes: read whole, then judged; 300 000: cut while being read.
	for _, n := range []int{5000, 300_000} {
		long := "2024-01-01T00:00:09Z,big@x," + strings.Repeat("z", n) + "\n"
		in := head + row(1) + row(2) + long + row(3) + "\n" + row(4)
		csvRowTooLarge(t, in)
	}
}

func csvRowTooLarge(t *testing.T, in string) {
	evs, st, rej, err := readLimited(t, []byte(in), Limits{MaxRecordBytes: 1000})
	if err != nil || len(evs) != 4 || len(rej) != 1 || st.Records != 5 {
		t.Fatalf("err %v, %d events, %d records, rejects %.300v", err, len(evs), st.Records, rej)
	}
	if rej[0].Line != 4 || !strings.HasPrefix(rej[0].Record, "2024-01-01T00:00:09Z,big@x,zzz") || len(rej[0].Record) > recordPrefix ||
		!strings.Contains(rej[0].Reason, "exceeds the maximum record size (1000 bytes)") {
		t.Errorf("reject at line %d, %d bytes kept: %.200s", rej[0].Line, len(rej[0].Record), rej[0].Reason)
	}
	if evs[2].Origin.Line != 5 || evs[3].Origin.Line != 7 || evs[3].Get("user") != "u4@x" {
		t.Errorf("rows after it: lines %d and %d, user %q", evs[2].Origin.Line, evs[3].Origin.Line, evs[3].Get("user"))
	}
}
