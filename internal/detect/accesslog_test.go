package detect

import (
	"encoding/binary"
	"os"
	"reflect"
	"slices"
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
