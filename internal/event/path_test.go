package event

import (
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// walkRecord looks name up in the record js as a decoder does: the one
// top-level key of the name's first segment (none when another key clashes
// with it), then Walk below it.
func walkRecord(t testing.TB, js, name string) (string, *fastjson.Value, Found) {
	t.Helper()
	var p fastjson.Parser
	v, err := p.Parse(js)
	if err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	segs := strings.Split(CanonicalName(name), ".")
	o, _ := v.Object()
	var key []byte
	var val *fastjson.Value
	n, clash := 0, false
	o.Visit(func(k []byte, c *fastjson.Value) {
		// An empty top-level key flattens its children to the top level:
		// decoders then know nothing of the record's names.
		clash = clash || len(k) == 0
		switch keyMatch(k, segs[0]) {
		case keyEqual:
			n++
			key, val = k, c
		case keyBelow:
			clash = true
		}
	})
	if n != 1 || clash {
		return "", nil, Unknown
	}
	path, leaf, found := Walk(append([]byte(nil), key...), val, segs[1:])
	return string(path), leaf, found
}

// TestWalkAgreesWithFlatten: what Walk answers for a name is what
// flattening the record gives for it, and it answers the shapes sign-ins
// have (Graph's status and deviceDetail objects) without flattening.
func TestWalkAgreesWithFlatten(t *testing.T) {
	signIn := `{"id":"x","status":{"errorCode":0,"failureReason":"Other.","additionalDetails":null},` +
		`"deviceDetail":{"deviceId":"","trustType":"Azure AD joined","isCompliant":false},"networkLocationDetails":[]}`
	tests := []struct {
		js, name string
		want     Found
	}{
		{signIn, "status.errorCode", One},
		{signIn, "STATUS.FAILUREREASON", One},
		{signIn, "status.additionalDetails", One}, // null is a value
		{signIn, "deviceDetail.isCompliant", One},
		{signIn, "deviceDetail.trusttype", One},
		{signIn, "status", NoValue},
		{signIn, "status.nope", Nothing},
		{signIn, "status.errorCode.below", Nothing},
		{signIn, "networkLocationDetails", Nothing},
		{signIn, "networkLocationDetails.x", Nothing},
		{signIn, "id.x", Nothing},
		{`{"a":{}}`, "a", Nothing},
		{`{"a":{"b":1,"B":2}}`, "a.b", Unknown},              // two keys, one name
		{`{"a":{"b":1,"b.c":2}}`, "a.b", Unknown},            // a key flattened below it
		{`{"a":{"b.c":2}}`, "a.b.c", Unknown},                // a dotted key
		{`{"a":[{"b":1}]}`, "a.b", Unknown},                  // elements of an array
		{`{"a":[{"Name":"b","Value":"v"}]}`, "a.b", Unknown}, // name/value list
		{`{"a":["x"]}`, "a", Unknown},
		{`{"a":"{\"b\":1}"}`, "a.b", Unknown}, // JSON held in a string
		{`{"a":"{\"b\":1}"}`, "a", Unknown},
		{`{"a":"plain"}`, "a.b", Nothing},
		{`{"a":7}`, "a.b", Nothing},
		{`{"a":{"b[]":1}}`, "a.b", One},        // array markers are dropped
		{`{"a":{"[[]]":1}}`, "a.[[]]", One},    // in one pass from the left
		{`{"a":{"Äb":1}}`, "a.äb", One},        // non-ASCII letters fold too
		{`{"a":{"\u212a":1}}`, "a.k", One},     // the Kelvin sign folds to k
		{`{"a":{"":{"b":true}}}`, "a..b", One}, // an empty key is a segment
		{`{"a":{"b":{"c":{"d":"deep"}}}}`, "a.b.c.d", One},
	}
	for _, tt := range tests {
		t.Run(tt.js+" "+tt.name, func(t *testing.T) {
			var p fastjson.Parser
			v, _ := p.Parse(tt.js)
			b := NewBuilder()
			b.Flatten("", v)
			e := &Event{}
			b.Finish(e)
			s := Intern(tt.name)
			flat := e.Values(s)
			below := false
			prefix := CanonicalName(tt.name) + "."
			for _, f := range e.Fields() {
				below = below || strings.HasPrefix(f.Sym.String(), prefix)
			}

			path, leaf, found := walkRecord(t, tt.js, tt.name)
			if found != tt.want {
				t.Fatalf("found %d, want %d", found, tt.want)
			}
			switch found {
			case One:
				if len(flat) != 1 {
					t.Fatalf("walk found one value, flattening %d: %v", len(flat), flat)
				}
				if path != flat[0].Name {
					t.Errorf("name %q, flattened %q", path, flat[0].Name)
				}
				if got := leafString(leaf); got != flat[0].Value {
					t.Errorf("value %q, flattened %q", got, flat[0].Value)
				}
			case NoValue, Nothing:
				if len(flat) != 0 {
					t.Errorf("walk found no value, flattening %v", flat)
				}
				if found == Nothing && below {
					t.Errorf("walk found nothing below, flattening has fields below")
				}
			}
		})
	}
}

func leafString(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNull:
		return ""
	}
	return string(v.MarshalTo(nil))
}

// TestMissingAnswersWithoutFlattening: names a lazy event was told it
// lacks are answered, as absent, without flattening the record, and so
// are names below a top-level key it does not have.
func TestMissingAnswersWithoutFlattening(t *testing.T) {
	flattened := 0
	e := &Event{Raw: []byte(`{"status":{"errorCode":0},"user":"a"}`), User: "a"}
	e.SetLazy(func(b *Builder, v *fastjson.Value, _ int) { flattened++; b.Flatten("", v) }, 0)
	e.SetTopKeys(TopKeys([]string{"status", "user"}))
	status, nope := Intern("status"), Intern("status.nope")
	e.SetMissing([]Missing{{Sym: status}, {Sym: nope, Below: true}})
	for _, n := range []string{"status", "status.nope", "other.name"} {
		if v := e.Values(Intern(n)); len(v) != 0 {
			t.Errorf("%s: %v, want none", n, v)
		}
	}
	if e.NoneBelow(status) {
		t.Error("NoneBelow(status): status has fields below it")
	}
	if !e.NoneBelow(nope) || !e.NoneBelow(Intern("other.name")) {
		t.Error("NoneBelow: false for names known to have nothing below")
	}
	if e.Flattened() || flattened != 0 {
		t.Fatalf("flattened %d times for names known absent", flattened)
	}
	if v := e.Values(Intern("user")); len(v) != 1 || v[0].Value != "a" {
		t.Errorf("user: %v (the source field)", v)
	}
	if !e.Flattened() || flattened != 1 {
		t.Errorf("a present name was not read by flattening (%d)", flattened)
	}
}

// FuzzWalk: for every name a record flattens to, the objects above it and
// a name below it, Walk's answer (when it gives one) is flattening's.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		`{"status":{"errorCode":0,"failureReason":"Other.","additionalDetails":null},"a":[]}`,
		`{"a":{"b":1,"B":{"c":"{\"d\":1}"}},"a.b":2}`,
		`{"a":{"b[]":[{"Name":"n","Value":"v"}],"":{"x":true}},"k":{"\u212a":1,"Ä":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p fastjson.Parser
		v, err := p.ParseBytes(data)
		if err != nil || v.Type() != fastjson.TypeObject {
			return
		}
		js := string(data)
		b := NewBuilder()
		b.Flatten("", v)
		e := &Event{}
		b.Finish(e)
		all := e.Fields()
		var names []string
		for _, fl := range all {
			names = append(names, fl.Name, fl.Name+".nope")
			for i := range len(fl.Name) {
				if fl.Name[i] == '.' {
					names = append(names, fl.Name[:i])
				}
			}
		}
		for _, n := range names {
			s := Intern(n)
			canon := CanonicalName(n)
			var flat []Field
			below := false
			for _, fl := range all {
				if fl.Sym == s {
					flat = append(flat, fl)
				}
				below = below || strings.HasPrefix(fl.Sym.String(), canon+".")
			}
			path, leaf, found := walkRecord(t, js, n)
			switch found {
			case One:
				if len(flat) != 1 || path != flat[0].Name || leafString(leaf) != flat[0].Value {
					t.Fatalf("%s: walk found %q=%q, flattening %v", n, path, leafString(leaf), flat)
				}
			case NoValue, Nothing:
				if len(flat) != 0 || found == Nothing && below {
					t.Fatalf("%s: walk found %d, flattening %v (below: %v)", n, found, flat, below)
				}
			}
		}
	})
}
