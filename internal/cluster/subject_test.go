package cluster

import (
	"strings"
	"testing"
)

func TestSubject(t *testing.T) {
	cases := []struct{ tenant, source, want string }{
		{"acme", "m365.ual", "raw.acme.m365%2Eual"},
		{"acme.example", "entra.signin", "raw.acme%2Eexample.entra%2Esignin"},
		{"a*b", "x>y", "raw.a%2Ab.x%3Ey"},
		{"", "gws", "raw.%.gws"},
		{"\x00", "gws", "raw.%00.gws"},
	}
	for _, c := range cases {
		if got := Subject(c.tenant, c.source); got != c.want {
			t.Errorf("Subject(%q, %q) = %q, want %q", c.tenant, c.source, got, c.want)
		}
	}
	if MsgID("t", "a", "b\x00c") == MsgID("t", "a\x00b", "c") || MsgID("t", "a", "b") == MsgID("t\x00a", "", "b") ||
		MsgID("t", "a", "b") == MsgID("u", "a", "b") {
		t.Error("message ids of different (tenant, source, record id) collide")
	}
}

// FuzzToken: a token never holds a subject separator, wildcard or space,
// and different strings never share a token (tenants must not share
// subjects).
func FuzzToken(f *testing.F) {
	for _, s := range []string{"acme", "a.b", "a%2Eb", "*", ">", " ", "\x00"} {
		f.Add(s, "a.b")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := token(a), token(b)
		if strings.ContainsAny(ta, ".*> \t\r\n/\\") {
			t.Fatalf("token(%q) = %q holds a reserved character", a, ta)
		}
		if a != b && ta == tb {
			t.Fatalf("token(%q) = token(%q) = %q", a, b, ta)
		}
	})
}
