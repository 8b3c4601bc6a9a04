package record

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	cases := map[string]time.Time{
		"2023-06-16T03:12:44":               time.Date(2023, 6, 16, 3, 12, 44, 0, time.UTC),
		"2023-06-16T03:12:44Z":              time.Date(2023, 6, 16, 3, 12, 44, 0, time.UTC),
		"2026-07-16T15:34:08.5339262Z":      time.Date(2026, 7, 16, 15, 34, 8, 533926200, time.UTC),
		"2026-07-16T15:31:34.1881867+00:00": time.Date(2026, 7, 16, 15, 31, 34, 188186700, time.UTC),
		"2026-07-16T17:31:34+02:00":         time.Date(2026, 7, 16, 15, 31, 34, 0, time.UTC),
		"2026-07-16T10:31:34.5-05:00":       time.Date(2026, 7, 16, 15, 31, 34, 500000000, time.UTC),
		"2026-07-16 15:31:34":               time.Date(2026, 7, 16, 15, 31, 34, 0, time.UTC),
		"1/26/2025 8:20:44 PM":              time.Date(2025, 1, 26, 20, 20, 44, 0, time.UTC),
		"1700000000":                        time.Unix(1700000000, 0).UTC(),
		"1700000000123":                     time.UnixMilli(1700000000123).UTC(),
		"2023-06-16T05:00:00.0000000Z":      time.Date(2023, 6, 16, 5, 0, 0, 0, time.UTC),
	}
	for in, want := range cases {
		got, err := ParseTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2023-02-30T00:00:00", "2023-13-01T00:00:00", "2023-06-16T03:12:44+0", "2023-06-16T03:12:44.Z"} {
		if got, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = %v, want an error", bad, got)
		}
	}
}

func TestIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":       "203.0.113.7",
		"203.0.113.7:52311": "203.0.113.7",
		"[2001:db8::5]:443": "2001:db8::5",
		"::ffff:192.0.2.1":  "192.0.2.1",
		" 2001:DB8::1 ":     "2001:db8::1",
		"not an address":    "not an address",
		"":                  "",
	} {
		if got := IP(in); got != want {
			t.Errorf("IP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCacheInterns(t *testing.T) {
	c := NewCache()
	a := c.Bytes([]byte("MailItemsAccessed"))
	b := c.Bytes([]byte("MailItemsAccessed"))
	if a != b || len(c.m) != 1 {
		t.Fatalf("not interned: %d entries", len(c.m))
	}
	var nilCache *Cache
	if nilCache.Bytes([]byte("x")) != "x" {
		t.Error("nil cache")
	}
}

func BenchmarkParseTime(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTime("2023-06-16T03:12:44"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseTimeRejectsNonTimes(t *testing.T) {
	for _, s := range []string{"Inf", "NaN", "1e300", "-5"} {
		if got, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q) = %v, want an error", s, got)
		}
	}
}

// TestIPKeepsCanonical: an address already written canonically comes back
// as the same string, without a copy; others are normalized.
func TestIPKeepsCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":           "203.0.113.7",
		"2001:db8::5":           "2001:db8::5",
		" 203.0.113.7 ":         "203.0.113.7",
		"2001:DB8:0::5":         "2001:db8::5",
		"::ffff:203.0.113.7":    "203.0.113.7",
		"203.0.113.7:52311":     "203.0.113.7",
		"[2001:db8::5]:443":     "2001:db8::5",
		"not an address":        "not an address",
		"203.0.113.7 (proxied)": "203.0.113.7 (proxied)",
	} {
		if got := IP(in); got != want {
			t.Errorf("IP(%q) = %q, want %q", in, got, want)
		}
	}
	s := "203.0.113.7"
	if n := testing.AllocsPerRun(100, func() { s = IP(s) }); n != 0 {
		t.Errorf("IP of a canonical address allocated %.0f times", n)
	}
}

// TestParseTimeBytes: the bytes form agrees with ParseTime, and reads the
// common layout without allocating.
func TestParseTimeBytes(t *testing.T) {
	for _, in := range []string{"2023-06-16T03:12:44", "2026-07-16T15:31:34.1881867+00:00", " 2023-06-16T03:12:44Z ", "1/26/2025 8:20:44 PM", "1700000000", "", "yesterday", "2023-02-30T00:00:00"} {
		a, errA := ParseTime(in)
		b, errB := ParseTimeBytes([]byte(in))
		if !a.Equal(b) || (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error() {
			t.Errorf("%q: ParseTime %v, %v; ParseTimeBytes %v, %v", in, a, errA, b, errB)
		}
	}
	b := []byte("2026-07-16T15:31:34.1881867Z")
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseTimeBytes(b) }); n != 0 {
		t.Errorf("ParseTimeBytes allocated %.0f times", n)
	}
}
