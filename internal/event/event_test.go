package event

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func build(t *testing.T, js string) *Event {
	t.Helper()
	var p fastjson.Parser
	v, err := p.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder()
	b.Flatten("", v)
	e := &Event{}
	b.Finish(e)
	return e
}

func values(e *Event, name string) []string {
	var out []string
	for _, f := range e.Values(Intern(name)) {
		out = append(out, f.Value)
	}
	return out
}

func TestFlattenPaths(t *testing.T) {
	e := build(t, `{"Operation":"MailItemsAccessed","RecordType":50,"ExternalAccess":false,"ClientIP":null,
		"AppAccessContext":{"UniqueTokenId":"tok1","AADSessionId":"s1"},
		"Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<a@x>"},{"InternetMessageId":"<b@x>"}]},
		           {"Path":"\\Sent","FolderItems":[{"InternetMessageId":"<c@x>"}]}],
		"OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],
		"ModifiedProperties":[{"Name":"ForwardingSmtpAddress","NewValue":"smtp:evil@x","OldValue":""}],
		"parameters":[{"name":"login_type","value":"google_password"},{"name":"is_second_factor","boolValue":false}],
		"Nested":"{\"Inner\":{\"Deep\":\"yes\"}}"}`)
	cases := []struct {
		name string
		want []string
	}{
		{"Operation", []string{"MailItemsAccessed"}},
		{"operation", []string{"MailItemsAccessed"}}, // case-insensitive
		{"RecordType", []string{"50"}},
		{"ExternalAccess", []string{"false"}},
		{"ClientIP", []string{""}},
		{"AppAccessContext.UniqueTokenId", []string{"tok1"}},
		{"Folders[].FolderItems[].InternetMessageId", []string{"<a@x>", "<b@x>", "<c@x>"}},
		{"Folders.Path", []string{`\Inbox`, `\Sent`}},
		{"OperationProperties.MailAccessType", []string{"Bind"}},
		{"OperationProperties.IsThrottled", []string{"False"}},
		{"ModifiedProperties.ForwardingSmtpAddress.NewValue", []string{"smtp:evil@x"}},
		{"parameters.login_type", []string{"google_password"}},
		{"parameters.is_second_factor", []string{"false"}},
		{"Nested.Inner.Deep", []string{"yes"}},
		{"Missing", nil},
	}
	for _, c := range cases {
		got := values(e, c.name)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s[%d]: got %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
	if k := e.Values(Intern("RecordType"))[0].Kind; k != Number {
		t.Errorf("RecordType kind = %v, want Number", k)
	}
}

func TestNormalizedNames(t *testing.T) {
	e := build(t, `{"time":"2026-01-01T00:00:00Z"}`)
	e.User = "alice@example.com"
	e.Source = "m365.ual"
	e.Normalize()
	if got := e.Get("user"); got != "alice@example.com" {
		t.Errorf("user = %q", got)
	}
	if got := e.Get("source"); got != "m365.ual" {
		t.Errorf("source = %q", got)
	}
	// The source's own field wins over the normalized one of the same name.
	if got := e.Get("time"); got != "2026-01-01T00:00:00Z" {
		t.Errorf("time = %q", got)
	}
	if got := e.Get("mailbox"); got != "" {
		t.Errorf("unset mailbox = %q", got)
	}
}

func TestBuilderReuse(t *testing.T) {
	var p fastjson.Parser
	b := NewBuilder()
	var evs []*Event
	for _, js := range []string{`{"A":"one","B":[1,2]}`, `{"A":"two"}`} {
		v, _ := p.Parse(js)
		b.Flatten("", v)
		e := &Event{}
		b.Finish(e)
		evs = append(evs, e)
	}
	if evs[0].Get("A") != "one" || evs[1].Get("A") != "two" || len(evs[1].Values(Intern("B"))) != 0 {
		t.Fatalf("builder reuse leaked state: %v / %v", evs[0].Fields(), evs[1].Fields())
	}
}

func BenchmarkFlatten(b *testing.B) {
	js := []byte(`{"CreationTime":"2023-06-15T03:12:44","Id":"5b2f6a3c-0c0e-4a55-9d2e-1f7f0b0a1c11","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002A1B2C3D4","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.7","UserId":"alice@contoso.com","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"d3590ed6-52b3-4102-aeff-aad2292ab01c","ClientIPAddress":"203.0.113.7","ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1","MailboxGuid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","MailboxOwnerSid":"S-1-5-21-1","MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR01MB0000 (15.20.6500.000)","SessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","AppAccessContext":{"AADSessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","IssuedAtTime":"2023-06-15T03:00:01","UniqueTokenId":"q1w2e3r4t5y6u7i8o9p0"},"Folders":[{"FolderItems":[{"InternetMessageId":"<AM0PR01MB0001@contoso.com>"},{"InternetMessageId":"<AM0PR01MB0002@contoso.com>"}],"Id":"LgAAAAAAAAAA","Path":"\\Inbox"}],"OperationCount":2}`)
	var p fastjson.Parser
	bl := NewBuilder()
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	var e Event
	for b.Loop() {
		v, err := p.ParseBytes(js)
		if err != nil {
			b.Fatal(err)
		}
		bl.Flatten("", v)
		bl.Finish(&e)
	}
	b.StopTimer()
	sym := Intern("Folders.FolderItems.InternetMessageId")
	if len(e.Values(sym)) != 2 {
		b.Fatal("lookup failed")
	}
}

func TestLazyFlattening(t *testing.T) {
	raw := []byte(`{"Operation":"MailItemsAccessed","Folders":[{"Path":"\\Inbox"}],"A":{"B":"c"}}`)
	calls := 0
	e := &Event{Raw: raw, Operation: "MailItemsAccessed"}
	e.SetLazy(func(b *Builder, v *fastjson.Value, arg int) {
		calls++
		if arg != 7 {
			t.Errorf("arg = %d", arg)
		}
		b.Flatten("", v)
	}, 7)
	e.AddEager(SymOperation, "Operation", "MailItemsAccessed", String)
	e.Normalize()
	// An eager field is answered without flattening.
	if got := e.Values(SymOperation); len(got) != 1 || got[0].Value != "MailItemsAccessed" || calls != 0 {
		t.Fatalf("operation lookup: %v, %d flattens", got, calls)
	}
	// Any other lookup flattens, once, even from several goroutines.
	done := make(chan string)
	for range 4 {
		go func() { done <- e.Get("A.B") }()
	}
	for range 4 {
		if v := <-done; v != "c" {
			t.Errorf("A.B = %q", v)
		}
	}
	if e.Get("Folders.Path") != `\Inbox` || calls != 1 || len(e.Fields()) != 3 {
		t.Errorf("flattened %d times, fields %v", calls, e.Fields())
	}
}

func TestLazyTopKeysAndEager(t *testing.T) {
	raw := []byte(`{"Operation":"Send","Workload":"Exchange","AppAccessContext":{"UniqueTokenId":"t"},"Version@odata.type":"#Int64"}`)
	calls := 0
	e := &Event{Raw: raw, Operation: "Send", User: "a@b"}
	e.SetLazy(func(b *Builder, v *fastjson.Value, _ int) { calls++; b.Flatten("", v) }, 0)
	e.SetTopKeys(TopKeys([]string{"Operation", "Workload", "AppAccessContext", "Version@odata.type"}))
	e.AddEager(Intern("Workload"), "Workload", "Exchange", String)
	if e.Get("workload") != "Exchange" || calls != 0 {
		t.Fatalf("eager field: %q, %d flattens", e.Get("workload"), calls)
	}
	// Names whose first segment is not a top-level key are absent without
	// flattening, and fall back to the normalized field of that name.
	for _, n := range []string{"eventName", "Name", "eventSource", "ClientIP", "Folders.Path", "MailboxOwnerUPN"} {
		if e.Get(n) != "" {
			t.Errorf("%s present", n)
		}
	}
	if calls != 0 {
		t.Fatalf("absent names flattened the event %d times", calls)
	}
	if e.Get("user") != "a@b" {
		t.Errorf("normalized fallback: %q", e.Get("user"))
	}
	if e.Get("AppAccessContext.UniqueTokenId") != "t" || calls != 1 {
		t.Errorf("nested lookup: %q, %d flattens", e.Get("AppAccessContext.UniqueTokenId"), calls)
	}
	if e.Get("Version@odata.type") != "#Int64" {
		t.Errorf("dotted key: %q", e.Get("Version@odata.type"))
	}
}

func TestBuilderNameCacheIsBounded(t *testing.T) {
	var p fastjson.Parser
	b := NewBuilder()
	for i := range maxBuilderNames + 10 {
		v, _ := p.Parse(`{"k` + strconv.Itoa(i) + `":1}`)
		b.Flatten("", v)
		var e Event
		b.Finish(&e)
		if e.Get("k"+strconv.Itoa(i)) != "1" {
			t.Fatalf("record %d lost its field", i)
		}
	}
	if len(b.list) > maxBuilderNames+1 || len(b.names) != len(b.list) {
		t.Errorf("name cache holds %d names (map %d)", len(b.list), len(b.names))
	}
}

func TestDataNamesAreBounded(t *testing.T) {
	symtab.mu.RLock()
	n := len(symtab.list)
	symtab.mu.RUnlock()
	old := maxDataSyms
	maxDataSyms = n + 5
	defer func() { maxDataSyms = old }()
	var zero int
	for i := range 20 {
		if InternData("data-key-"+strconv.Itoa(i)) == 0 {
			zero++
		}
	}
	if zero != 15 {
		t.Errorf("%d of 20 new data names were not interned, want 15", zero)
	}
	// Names asked for by rules or code are always interned, and a record's
	// field without a Sym is kept but never returned by a lookup.
	if Intern("asked-for-name") == 0 {
		t.Error("Intern refused a name")
	}
	var p fastjson.Parser
	v, _ := p.Parse(`{"data-key-19":"x","Operation":"y"}`)
	b := NewBuilder()
	b.Flatten("", v)
	var e Event
	b.Finish(&e)
	if len(e.Fields()) != 2 || e.Get("Operation") != "y" || len(e.Values(0)) != 0 {
		t.Errorf("fields %v", e.Fields())
	}
}

// manyKeysRecord is a record of n keys where every other name is new and,
// the name table being full, not interned (Sym 0): fields then arrive far
// out of order.
func manyKeysRecord(tb testing.TB, n int) *fastjson.Value {
	tb.Helper()
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"%s%d":%d`, map[bool]string{true: "known", false: "fresh"}[i%2 == 0], i, i)
	}
	b.WriteString("}")
	for i := 0; i < n; i += 2 {
		Intern(fmt.Sprintf("known%d", i))
	}
	old := maxDataSyms
	maxDataSyms = 0
	tb.Cleanup(func() { maxDataSyms = old })
	var p fastjson.Parser
	v, err := p.Parse(b.String())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// Fields stay sorted by Sym, equal Syms in record order, however many
// and however disordered.
func TestManyFieldsSorted(t *testing.T) {
	v := manyKeysRecord(t, 20_000)
	b := NewBuilder()
	b.Flatten("", v)
	var e Event
	b.Finish(&e)
	fs := e.Fields()
	if len(fs) != 20_000 {
		t.Fatalf("%d fields", len(fs))
	}
	last := -1
	for i := 1; i < len(fs); i++ {
		if fs[i-1].Sym > fs[i].Sym {
			t.Fatalf("fields %d and %d out of order", i-1, i)
		}
		if fs[i].Sym == 0 {
			n, _ := strconv.Atoi(fs[i].Value)
			if n < last {
				t.Fatalf("equal Syms reordered: %d after %d", n, last)
			}
			last = n
		}
	}
}

// BenchmarkFlattenManyKeys flattens a record of 200 000 keys, half of them
// not interned (linear-logarithmic; insertion sort took quadratic time).
func BenchmarkFlattenManyKeys(b *testing.B) {
	v := manyKeysRecord(b, 200_000)
	bl := NewBuilder()
	for b.Loop() {
		bl.Flatten("", v)
		var e Event
		bl.Finish(&e)
	}
}
