package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/event/eventtest"
	"github.com/vigil-audit/vigil/internal/source/jsonl"
)

// eventView is everything a consumer can read from an event.
type eventView = eventtest.View

// skimProbe are lookups rules make of mail-access records; the lazy
// event must answer them alike either way.
var skimProbe = []string{"Operation", "OperationProperties.IsThrottled", "Folders.Path",
	"Folders.FolderItems.InternetMessageId", "Folders", "UserId", "ClientIPAddress", "mailbox", "Workload"}

func view(e *event.Event) eventView { return eventtest.Of(e, skimProbe...) }

// readViews decodes input with ReadPaths, with or without skimming.
func readViews(t testing.TB, paths []string, stdin []byte, opts Options, noSkim bool) ([]eventView, Stats, string) {
	t.Helper()
	var q bytes.Buffer
	opts.Quarantine = &q
	opts.noSkim = noSkim
	if stdin != nil {
		opts.Stdin = bytes.NewReader(stdin)
	}
	var out []eventView
	st, err := ReadPaths(context.Background(), paths, opts, func(e *event.Event) error {
		out = append(out, view(e))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, st, q.String()
}

// compareSkim requires identical events, stats and quarantine with and
// without skimming.
func compareSkim(t *testing.T, name string, paths []string, stdin []byte, opts Options) {
	t.Helper()
	a, sa, qa := readViews(t, paths, stdin, opts, true)
	b, sb, qb := readViews(t, paths, stdin, opts, false)
	if !reflect.DeepEqual(sa, sb) {
		t.Errorf("%s: stats differ:\nparsed  %+v\nskimmed %+v", name, sa, sb)
	}
	if qa != qb {
		t.Errorf("%s: quarantine differs:\nparsed  %s\nskimmed %s", name, qa, qb)
	}
	if len(a) != len(b) {
		t.Fatalf("%s: %d events parsed, %d skimmed", name, len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Errorf("%s: event %d differs:\nparsed  %+v\nskimmed %+v", name, i, a[i], b[i])
		}
		// The decoder's access (either way) is MailAccessOf's reading of Raw.
		for _, v := range []eventView{a[i], b[i]} {
			if v.FromRawOK && !reflect.DeepEqual(v.Access, v.FromRaw) {
				t.Errorf("%s: event %d: access %+v, read from Raw %+v", name, i, v.Access, v.FromRaw)
			}
		}
	}
}

// skimmedCount decodes one record and says whether its Folders list was
// skimmed.
func skimmedCount(t testing.TB, rec []byte) int64 {
	d := newDecoder(nil, nil, Limits{})
	_, _ = (&Decoder{d: d}).Decode(rec, event.Origin{File: "-"})
	return d.skimmed
}

// folderRecord is a MailItemsAccessed Bind whose Folders value is folders.
func folderRecord(folders string) []byte {
	return []byte(`{"CreationTime":"2026-01-05T10:00:00","Id":"11111111-0000-4000-8000-000000000001","Operation":"MailItemsAccessed","OrganizationId":"t1","RecordType":50,"ResultStatus":"Succeeded","UserId":"alice@contoso.com","ClientIPAddress":"203.0.113.7","MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"Folders":` +
		folders + `,"OperationCount":3,"Workload":"Exchange"}`)
}

// longItems pads a folder list past the size below which it is not
// skimmed.
const longItems = `{"Id":"RgAAAAAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaAAA","InternetMessageId":"<first@contoso.com>","SizeInBytes":1234},` +
	`{"Id":"RgAAAAAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbAAA","InternetMessageId":"<second@contoso.com>","SizeInBytes":5678},` +
	`{"Id":"RgAAAAAccccccccccccccccccccccccccccccccccccccccccccAAA","InternetMessageId":"<third@contoso.com>","SizeInBytes":9}`

// skimCases are Folders values (and whole records) at the edges of what
// the skimmer reads; skim says whether it must take them, the others it
// must leave to the parser. Either way decoding must not change.
var skimCases = []struct {
	name string
	rec  []byte
	skim bool
}{
	{"plain", folderRecord(`[{"FolderItems":[` + longItems + `],"Id":"LgA","Path":"\\Inbox"}]`), true},
	{"two folders", folderRecord(`[{"FolderItems":[` + longItems + `],"Id":"LgA","Path":"\\Inbox"},{"Id":"LgB","Path":"\\Sent Items"}]`), true},
	{"escapes", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"\u003cx\u00e9y@c.com\u003e \"q\" \/ \b\f\n\r\t \\"}],"Path":"\\Inbox\\Sub \u4e2d"}]`), true},
	{"whitespace", folderRecord(" [ {\n\t\"FolderItems\" : [ " + longItems + " ] ,\r\n \"Path\" : \"\\\\Inbox\" } ] "), true},
	{"path first, repeated keys", folderRecord(`[{"Path":"\\A","FolderItems":[` + longItems + `],"Path":"\\B","FolderItems":[{"InternetMessageId":"<dup@c>"}]}]`), true},
	{"repeated id key", folderRecord(`[{"FolderItems":[{"InternetMessageId":"<a@c>","InternetMessageId":"<b@c>"},` + longItems + `],"Path":"\\Inbox"}]`), true},
	{"odd types", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":42},{"InternetMessageId":null},{"InternetMessageId":["<in@array>",["<nested@array>"],{"x":"<no@c>"}]},"<bare@item>",[{"InternetMessageId":"<deep@c>"}]],"Path":["\\P1",["\\P2"],{"Path":"\\no"},true]},"loose",12.5e-3,[{"Path":"\\nested"}],{"Path":{"Path":"\\no"}}]`), true},
	{"empty strings and lists", folderRecord(`[{"FolderItems":[],"Path":""},{"FolderItems":[{"InternetMessageId":""}],"Path":"\\x"},{},` + longItems + `]`), true},
	{"numbers", folderRecord(`[{"FolderItems":[` + longItems + `,{"SizeInBytes":-0.5E+10},{"SizeInBytes":0},{"SizeInBytes":1e5}],"Path":"\\Inbox"}]`), true},
	{"folders first", []byte(`{"Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}],"CreationTime":"2026-01-05T10:00:00","Operation":"MailItemsAccessed","RecordType":50,"UserId":"a@c"}`), true},
	{"invalid time", []byte(`{"CreationTime":"yesterday","Operation":"MailItemsAccessed","RecordType":50,"Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}`), true},
	{"surrogate escape", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"<\ud83d\ude00@c>"}],"Path":"\\Inbox"}]`), false},
	{"lone surrogate", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"<\ud83d@c>"}],"Path":"\\Inbox"}]`), false},
	{"bad escape", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"<\x@c>"}],"Path":"\\Inbox"}]`), false},
	{"short unicode escape", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"<\u12"}],"Path":"\\Inbox"}]`), false},
	{"control character", folderRecord("[{\"FolderItems\":[" + longItems + ",{\"InternetMessageId\":\"<a\x01b@c>\"}],\"Path\":\"\\\\Inbox\x7f\xff\"}]"), true},
	{"escaped key inside", folderRecord(`[{"FolderItems":[` + longItems + `,{"Internet\u004dessageId":"<esc@c>"}],"Path":"\\Inbox"}]`), false},
	{"escaped top-level key", []byte(strings.Replace(string(folderRecord(`[{"FolderItems":[`+longItems+`],"Path":"\\Inbox"}]`)), `"OrganizationId"`, `"Fold\u0065rs"`, 1)), false},
	{"repeated Folders", []byte(strings.Replace(string(folderRecord(`[{"FolderItems":[`+longItems+`],"Path":"\\Inbox"}]`)), `"OperationCount":3`, `"Folders":[{"Path":"\\Second"}]`, 1)), false},
	{"leading zero", folderRecord(`[{"FolderItems":[` + longItems + `,{"SizeInBytes":012}],"Path":"\\Inbox"}]`), false},
	{"trailing comma", folderRecord(`[{"FolderItems":[` + longItems + `,],"Path":"\\Inbox"}]`), false},
	{"bare word", folderRecord(`[{"FolderItems":[` + longItems + `,{"SizeInBytes":NaN}],"Path":"\\Inbox"}]`), false},
	{"unterminated", []byte(`{"CreationTime":"2026-01-05T10:00:00","Operation":"MailItemsAccessed","RecordType":50,"Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}`), false},
	{"trailing garbage", append(folderRecord(`[{"FolderItems":[`+longItems+`],"Path":"\\Inbox"}]`), " x"...), false},
	{"broken elsewhere", []byte(strings.Replace(string(folderRecord(`[{"FolderItems":[`+longItems+`],"Path":"\\Inbox"}]`)), `"Workload":"Exchange"`, `"Workload":Exchange`, 1)), false},
	{"not a list", folderRecord(`{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}`), false},
	{"deep", folderRecord(strings.Repeat("[", 70) + `{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}` + strings.Repeat("]", 70)), false},
	{"short list", folderRecord(`[{"FolderItems":[{"InternetMessageId":"<a@c>"}],"Path":"\\Inbox"}]`), false},
	{"short list last", []byte(`{"CreationTime":"2026-01-05T10:00:00","Id":"11111111-0000-4000-8000-000000000001","Operation":"MailItemsAccessed","OrganizationId":"t1","RecordType":50,"ResultStatus":"Succeeded","UserId":"alice@contoso.com","ClientIPAddress":"203.0.113.7","MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<a@c>","SizeInBytes":2000}],"Id":"LgA","Path":"\\Inbox"}]}`), false},
	{"long list last", []byte(`{"CreationTime":"2026-01-05T10:00:00","Operation":"MailItemsAccessed","RecordType":50,"UserId":"a@c","Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}`), true},
	{"graph query shape", []byte(`{"id":"q1","createdDateTime":"2026-01-05T10:00:00Z","auditLogRecordType":"ExchangeItemAggregated","operation":"MailItemsAccessed","auditData":{"CreationTime":"2026-01-05T10:00:00","Operation":"MailItemsAccessed","RecordType":50,"Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}}`), false},
	{"sentinel shape", []byte(`{"TimeGenerated":"2026-01-05T10:00:00Z","OfficeWorkload":"Exchange","Operation":"MailItemsAccessed","Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}`), false},
	{"workspace shape", []byte(`{"kind":"admin#reports#activity","id":{"time":"2026-01-05T10:00:00Z","applicationName":"gmail"},"events":[{"name":"x"}],"CreationTime":"2026-01-05T10:00:00","Operation":"x","RecordType":1,"Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}`), false},
	{"generic record", []byte(`{"time":"2026-01-05T10:00:00Z","Folders":[{"FolderItems":[` + longItems + `],"Path":"\\Inbox"}]}`), false},
}

// TestSkimDecodesAsParsed: on records at the edges of what m365.Skim
// reads, decoding with the skimmer gives exactly the events, lookups and
// quarantine of decoding with the parser alone, and the skimmer takes
// exactly the records it is meant to.
func TestSkimDecodesAsParsed(t *testing.T) {
	for _, tc := range skimCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := skimmedCount(t, tc.rec) == 1; got != tc.skim {
				t.Errorf("skimmed %v, want %v", got, tc.skim)
			}
			compareSkim(t, tc.name, []string{"-"}, append(append([]byte(nil), tc.rec...), '\n'), Options{})
		})
	}
}

// The skimmer hands the decoder the folders of a plain list, with which
// it supplies the mail access up front (TestSkimDecodesAsParsed checks it
// is the one read from the record), and declines lists where reading the
// record would differ from the skim.
func TestSkimFoldersForAccess(t *testing.T) {
	plain := map[string]bool{"plain": true, "two folders": true, "escapes": true, "whitespace": true,
		"path first, repeated keys": true, "repeated id key": true, "empty strings and lists": true,
		"numbers": true, "folders first": true, "invalid time": true, "control character": true, "long list last": true}
	cases := append(skimCases[:len(skimCases):len(skimCases)], []struct {
		name string
		rec  []byte
		skim bool
	}{
		{"lower-case path", folderRecord(`[{"FolderItems":[` + longItems + `],"path":"\\Inbox"}]`), true},
		{"empty Path, lower-case path", folderRecord(`[{"FolderItems":[` + longItems + `],"Path":"","path":"\\Inbox"}]`), true},
		{"lower-case items", folderRecord(`[{"folderItems":[` + longItems + `],"Path":"\\Inbox"}]`), true},
		{"lower-case id", folderRecord(`[{"FolderItems":[` + longItems + `,{"internetMessageId":"<low@c>"}],"Path":"\\Inbox"}]`), true},
		{"items not a list", folderRecord(`[{"FolderItems":{"x":[` + longItems + `]},"Path":"\\Inbox"}]`), true},
		{"path a number", folderRecord(`[{"FolderItems":[` + longItems + `],"Path":7}]`), true},
		{"id a number", folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":7}],"Path":"\\Inbox"}]`), true},
	}...)
	for _, tc := range cases {
		d := newDecoder(nil, nil, Limits{})
		if _, err := (&Decoder{d: d}).Decode(tc.rec, event.Origin{File: "-"}); err != nil || d.skimmed != 1 {
			if tc.skim && err == nil {
				t.Errorf("%s: not skimmed (%v)", tc.name, err)
			}
			continue
		}
		fs, ok := d.skim.Folders()
		if ok != plain[tc.name] {
			t.Errorf("%s: folders for the access %v, want %v (%v)", tc.name, ok, plain[tc.name], fs)
		}
		compareSkim(t, tc.name, []string{"-"}, append(append([]byte(nil), tc.rec...), '\n'), Options{})
	}
}

// TestSkimFoldersFilled checks the skimmed values themselves on a record
// with escapes (the differential tests compare with the parser's).
func TestSkimFoldersFilled(t *testing.T) {
	rec := folderRecord(`[{"FolderItems":[` + longItems + `,{"InternetMessageId":"\u003cx@c\u003e"}],"Path":"\\Inbox\\Sub"},{"Path":"\\Sent Items"}]`)
	evs, err := NewDecoder(nil, nil).Decode(rec, event.Origin{})
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	e := evs[0]
	if want := []string{`\Inbox\Sub`, `\Sent Items`}; !reflect.DeepEqual(e.Folders, want) {
		t.Errorf("Folders %q, want %q", e.Folders, want)
	}
	if want := []string{"<first@contoso.com>", "<second@contoso.com>", "<third@contoso.com>", "<x@c>"}; !reflect.DeepEqual(e.MessageIDs, want) {
		t.Errorf("MessageIDs %q, want %q", e.MessageIDs, want)
	}
	if e.ItemCount != 4 {
		t.Errorf("ItemCount %d, want 4", e.ItemCount)
	}
	if got := e.Values(event.Intern("Folders.FolderItems.InternetMessageId")); len(got) != 4 || got[3].Value != "<x@c>" {
		t.Errorf("lookup of the folder items (flattened from Raw): %v", got)
	}
}

// TestSkimOnRealAndGeneratedData: the fixtures, the shared real data and
// generated folder-heavy records decode identically with and without
// skimming, and the generated ones are in fact skimmed.
func TestSkimOnRealAndGeneratedData(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*")
	if dir, err := filepath.Abs("../../../shared/data"); err == nil {
		if files, err := Expand([]string{dir}); err == nil {
			inputs = append(inputs, files...)
		} else {
			t.Logf("no shared data (%v): fixtures and generated records only", err)
		}
	}
	hot := []event.Sym{event.Intern("Operation"), event.Intern("OperationProperties.IsThrottled"), event.Intern("Workload"), event.Intern("UserId")}
	for _, f := range inputs {
		if st, err := os.Stat(f); err != nil || st.IsDir() || filepath.Base(f) == "logsource.json" || strings.HasSuffix(f, ".md") || strings.Contains(f, "LICENSE") {
			continue
		}
		compareSkim(t, f, []string{f}, nil, Options{Hot: hot})
	}
	gen := mailAccessInput(1<<20, 10, 50)
	compareSkim(t, "generated", []string{"-"}, gen, Options{Hot: hot})
	d := newDecoder(nil, hot, Limits{})
	n := 0
	for l := range bytes.Lines(gen) {
		if _, err := (&Decoder{d: d}).Decode(bytes.TrimSpace(l), event.Origin{}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if d.skimmed != int64(n) {
		t.Errorf("skimmed %d of %d generated mail-access records", d.skimmed, n)
	}
	// A mapping that forces the generic decoder sees the record as is.
	m := &jsonl.Mapping{Force: true, Source: "custom", Time: "CreationTime", User: "UserId", MessageIDs: "Folders.FolderItems.InternetMessageId"}
	compareSkim(t, "generated, forced mapping", []string{"-"}, gen[:64<<10], Options{Mapping: m})
}

// FuzzSkim: for any record, decoding with the Folders skimmer gives what
// decoding with the parser alone gives, and the mail access either
// supplies is the one read from the record.
func FuzzSkim(f *testing.F) {
	for _, tc := range skimCases {
		f.Add(tc.rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		if bytes.ContainsAny(rec, "\n\r") {
			rec = bytes.ReplaceAll(bytes.ReplaceAll(rec, []byte("\n"), []byte(" ")), []byte("\r"), []byte(" "))
		}
		a, errA := decodeOne(rec, true)
		b, errB := decodeOne(rec, false)
		if fmt.Sprint(errA) != fmt.Sprint(errB) {
			t.Fatalf("errors differ: parsed %v, skimmed %v", errA, errB)
		}
		if !reflect.DeepEqual(a, b) {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			t.Fatalf("events differ:\nparsed  %s\nskimmed %s", ja, jb)
		}
		for _, v := range append(a, b...) {
			if v.FromRawOK && !reflect.DeepEqual(v.Access, v.FromRaw) {
				t.Fatalf("access %+v, read from Raw %+v", v.Access, v.FromRaw)
			}
		}
	})
}

func decodeOne(rec []byte, noSkim bool) ([]eventView, error) {
	d := newDecoder(nil, []event.Sym{event.Intern("Operation"), event.Intern("Folders")}, Limits{})
	d.noSkim = noSkim
	evs, err := (&Decoder{d: d}).Decode(rec, event.Origin{File: "-"})
	var out []eventView
	for _, e := range evs {
		out = append(out, view(e))
	}
	return out, err
}

// TestMailAccessDecodeAllocs: decoding a MailItemsAccessed Bind, its
// mail access included, allocates nothing per folder item (its message
// ids share one string and one slice), so 50 items cost what 10 do, and a
// few allocations in all.
func TestMailAccessDecodeAllocs(t *testing.T) {
	d := NewDecoder(nil, []event.Sym{event.Intern("Operation"), event.Intern("Workload"), event.Intern("UserId")})
	allocs := func(items int) float64 {
		in := mailAccessInput(64<<10, items, items)
		rec := in[:bytes.IndexByte(in, '\n')]
		var evs []*event.Event
		n := testing.AllocsPerRun(50, func() {
			var err error
			if evs, err = d.Decode(rec, event.Origin{}); err != nil || len(evs) != 1 {
				t.Fatal(evs, err)
			}
		})
		if len(evs[0].MessageIDs) != items {
			t.Fatalf("%d message ids, want %d", len(evs[0].MessageIDs), items)
		}
		return n
	}
	few, many := allocs(10), allocs(50)
	if many != few {
		t.Errorf("decoding a mail access with 10 items allocated %.0f times, with 50 items %.0f", few, many)
	}
	// About 9 for the event, 7 more for its mail access (read up front
	// from the same parse, where event.MailAccessOf used to parse the
	// record again and allocate per folder and message).
	if many > 18 {
		t.Errorf("decoding a 50-item mail access allocated %.0f times, want at most 18", many)
	}
}
