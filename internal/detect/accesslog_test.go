package detect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

var testAccesses = []event.MailAccess{
	{},
	{Time: time.Date(2026, 3, 2, 10, 0, 0, 123, time.UTC), Tenant: "t", User: "ada@x", Mailbox: "bob@x", AppID: "app", ClientApp: "client",
		IP: "2001:db8::1", SessionIDs: []string{"s1", "s2"}, TokenID: "tok", Sync: true, Throttled: true, Items: -1,
		Folders:  []event.FolderRead{{Path: `\Inbox`, Messages: []string{"<a@x>", "<b@x>"}}, {Path: `\Sent Items`}},
		RecordID: "rec"},
	{Time: time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), Items: 7, Folders: []event.FolderRead{{Messages: []string{""}}}},
	// Lengths and counts that take more than one varint byte.
	{Time: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), Items: 1 << 20, User: strings.Repeat("u", 200),
		Folders: []event.FolderRead{{Path: strings.Repeat("p", 129), Messages: slices.Repeat([]string{strings.Repeat("m", 300)}, 130)}}},
}

// A record is written with one allocation whatever it holds: its size is
// counted before it is written.
func TestAppendAccessAllocatesOnce(t *testing.T) {
	for i := range testAccesses {
		b := appendAccess(nil, &testAccesses[i])
		size, n := binary.Uvarint(b)
		if int(size) != len(b)-n {
			t.Errorf("access %d: the record says %d bytes and has %d", i, size, len(b)-n)
		}
		if got, err := parseAccess(b[n:]); err != nil || !reflect.DeepEqual(got, testAccesses[i]) {
			t.Errorf("access %d: parses as %+v, %v", i, got, err)
		}
		if allocs := testing.AllocsPerRun(10, func() { appendAccess(nil, &testAccesses[i]) }); allocs != 1 {
			t.Errorf("access %d: %v allocations, want 1", i, allocs)
		}
	}
}

// The access log gives back exactly what was logged, in order, and stays
// open for more (a pipeline that never ends reads it several times).
func TestAccessLogRoundTrip(t *testing.T) {
	l := &accessLog{dir: t.TempDir()}
	defer l.close()
	for i := range testAccesses {
		add(l, &testAccesses[i])
	}
	want := testAccesses
	for pass := range 2 {
		var got []event.MailAccess
		if err := l.replay(t.Context(), func(a *event.MailAccess) { got = append(got, *a) }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("pass %d: got\n%+v\nwant\n%+v", pass, got, want)
		}
		for i := range testAccesses {
			add(l, &testAccesses[i])
		}
		want = append(slices.Clone(want), testAccesses...)
	}
}

// appendAccess appends after what b holds, records of every size of
// length prefix (one, two and three bytes) read back one after another,
// and each is what encoding it alone gives.
func TestAppendAccessAppends(t *testing.T) {
	long := func(n int) event.MailAccess {
		a := testAccesses[1]
		a.Folders = []event.FolderRead{{Path: `\Inbox`, Messages: make([]string, n)}}
		for i := range a.Folders[0].Messages {
			a.Folders[0].Messages[i] = fmt.Sprintf("<message-%d@contoso.example>", i)
		}
		return a
	}
	all := append(slices.Clone(testAccesses), long(5), long(1000))
	b := []byte("head")
	for i := range all {
		b = appendAccess(b, &all[i])
	}
	if !bytes.HasPrefix(b, []byte("head")) {
		t.Fatalf("what b held was overwritten: %q", b[:4])
	}
	rest := b[4:]
	for i := range all {
		alone := appendAccess(nil, &all[i])
		if !bytes.HasPrefix(rest, alone) {
			t.Fatalf("access %d: appended encoding differs from its encoding alone", i)
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			t.Fatalf("access %d: bad length prefix", i)
		}
		got, err := parseAccess(rest[k : k+int(n)])
		if err != nil || !reflect.DeepEqual(got, all[i]) {
			t.Fatalf("access %d: read back %+v, %v", i, got, err)
		}
		rest = rest[k+int(n):]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left after the accesses", len(rest))
	}
}

// A log cut short or damaged is an error naming how far it got, not fewer
// accesses.
func TestAccessLogDamaged(t *testing.T) {
	l := &accessLog{dir: t.TempDir()}
	defer l.close()
	for range 100 {
		add(l, &testAccesses[1])
	}
	if err := l.w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(l.f.Name(), 1000); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := l.replay(t.Context(), func(*event.MailAccess) { n++ }); err == nil {
		t.Fatalf("truncated log read back %d accesses without an error", n)
	}
}

func FuzzParseAccess(f *testing.F) {
	for i := range testAccesses {
		b := appendAccess(nil, &testAccesses[i])
		_, n := binary.Uvarint(b)
		f.Add(b[n:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := parseAccess(body)
		if err != nil {
			return
		}
		// What parses encodes back to the same bytes.
		again := appendAccess(nil, &a)
		_, n := binary.Uvarint(again)
		if b, err := parseAccess(again[n:]); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%+v re-encoded parses as %+v, %v", a, b, err)
		}
	})
}

func add(l *accessLog, a *event.MailAccess) { l.addEncoded(appendAccess(nil, a)) }
