package journal

import (
	"strings"
	"testing"
)

func TestContentID(t *testing.T) {
	base := `{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["a","b"],"o":{"k":null,"j":true}}`
	same := []string{
		base,
		"{\n  \"user\": \"a@x\",\n  \"time\": \"2024-03-04T08:15:30Z\",\n  \"o\": {\"j\": true, \"k\": null},\n  \"tags\": [ \"a\" , \"b\" ],\n  \"n\": 1\n}",
		`{"time":"2024-03-04T08:15:30Z","user":"a\u0040x","n":1,"tags":["\u0061","b"],"o":{"k":null,"j":true}}`,
		`{"o":{"j":true,"k":null},"n":1,"tags":["a","b"],"user":"a@x","time":"2024-03-04T08:15:30\u005a"}`,
	}
	want := ContentID([]byte(base))
	if !strings.HasPrefix(want, ContentIDPrefix) || len(want) != len(ContentIDPrefix)+64 {
		t.Fatalf("content id %q", want)
	}
	for _, s := range same {
		if got := ContentID([]byte(s)); got != want {
			t.Errorf("%s: %s, want %s (key order, whitespace and escapes must not matter)", s, got, want)
		}
	}
	differ := []string{
		`{"time":"2024-03-04T08:15:30Z","user":"b@x","n":1,"tags":["a","b"],"o":{"k":null,"j":true}}`,
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1.0,"tags":["a","b"],"o":{"k":null,"j":true}}`,
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["b","a"],"o":{"k":null,"j":true}}`,
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["a","b"],"o":{"k":null,"j":false}}`,
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["a","b"],"o":{"k":"null","j":true}}`,
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["a","b"],"o":{"k":null,"j":true},"x":""}`,
		// Nesting is kept: the same leaves under other objects differ.
		`{"time":"2024-03-04T08:15:30Z","user":"a@x","n":1,"tags":["a","b"],"o":{"k":null},"j":true}`,
	}
	seen := map[string]string{want: base}
	for _, s := range differ {
		got := ContentID([]byte(s))
		if prev, ok := seen[got]; ok {
			t.Errorf("%s has the same content id as %s", s, prev)
		}
		seen[got] = s
	}
	// Strings are compared byte for byte: an invalid UTF-8 byte is not
	// replaced, so records differing only there stay distinct.
	if ContentID([]byte("{\"a\":\"\xff\"}")) == ContentID([]byte("{\"a\":\"\xfe\"}")) {
		t.Error("records differing in an invalid UTF-8 byte share a content id")
	}
	// A quote or control character inside a string cannot make two
	// different records encode alike.
	if ContentID([]byte(`{"a":"x\",\"b\":\"y"}`)) == ContentID([]byte(`{"a":"x","b":"y"}`)) {
		t.Error("escaped quote collides with a member boundary")
	}
	// Bytes that are not JSON are hashed as they are.
	csv := []byte("a,b,c")
	if ContentID(csv) == ContentID([]byte("a,b,d")) || ContentID(csv) != ContentID(append([]byte(nil), csv...)) {
		t.Error("non-JSON content ids")
	}
	if ContentID([]byte(`{"a":1}`)) == ContentID([]byte(`{"a":1`)) {
		t.Error("a truncated record has the id of the whole one")
	}
}
