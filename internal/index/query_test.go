package index

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestQueryErrorsPointAtTheTerm(t *testing.T) {
	cases := []struct {
		q      string
		col    int // 1-based column the error names
		term   string
		reason string
	}{
		{"user:a ipx:1.2.3.4", 8, "ipx:1.2.3.4", `unknown field "ipx"`},
		{"user:a ip:1.2.3.x", 8, "ip:1.2.3.x", "not an address or CIDR prefix"},
		{"ip:10.0.0.0/33", 1, "ip:10.0.0.0/33", "not an address or CIDR prefix"},
		{"asn:google", 1, "asn:google", "asn wants a number"},
		{"since:yesterday", 1, "since:yesterday", "not a time"},
		{`op:"Add member`, 1, `op:"Add member`, "unterminated quote"},
		{"(user:a OR user:b", 1, "(", "'(' is never closed"},
		{"user:a)", 7, ")", "without a matching '('"},
		{"user:a AND", 11, "", "a term is missing at the end"},
		{"user:a OR OR user:b", 11, "OR", "a term is missing before OR"},
		{"NOT", 1, "NOT", "NOT needs a term after it"},
		{"AND user:a", 1, "AND", "AND needs a term on its left"},
		{"user: x", 1, "user:", "no value after ':'"},
		{"kind:alert", 1, "kind:alert", "kind is one of"},
		{`us"er`, 3, `us"`, "quote inside a word"},
		{strings.Repeat("(", 70) + "a" + strings.Repeat(")", 70), 66, "(", "nested more than 64 deep"},
	}
	for _, c := range cases {
		t.Run(c.q, func(t *testing.T) {
			_, err := Parse(c.q)
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("got %v, want a QueryError", err)
			}
			if qe.Pos+1 != c.col || qe.Term != c.term || !strings.Contains(qe.Msg, c.reason) {
				t.Fatalf("got column %d term %q %q, want column %d term %q %q", qe.Pos+1, qe.Term, qe.Msg, c.col, c.term, c.reason)
			}
		})
	}
}

func TestCompileTableFields(t *testing.T) {
	n, err := Parse("op:Send")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Compile(n, MailAccess, time.Now())
	var qe *QueryError
	if !errors.As(err, &qe) || !strings.Contains(qe.Msg, "op is not a column of mail_access") {
		t.Fatalf("op over mail_access: %v", err)
	}
}

func TestIPRange(t *testing.T) {
	cases := []struct {
		in, lo, hi string
	}{
		{"198.18.3.0/24", "198.18.3.0", "198.18.3.255"},
		{"198.18.3.7", "198.18.3.7", "198.18.3.7"},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"2001:db8:1:2::/64", "2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, c := range cases {
		sh, sl, eh, el, err := ipRange(c.in)
		if err != nil {
			t.Fatal(err)
		}
		lh, ll, _ := ipKey(c.lo)
		hh, hl, _ := ipKey(c.hi)
		if sh != lh || sl != ll || eh != hh || el != hl {
			t.Errorf("%s: got %x:%x..%x:%x, want %s..%s", c.in, sh, sl, eh, el, c.lo, c.hi)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"user:a@b.example ip:198.18.0.0/15", `op:"Add service principal." OR -source:entra.signin`,
		"(user:a OR mailbox:b) AND NOT app:c*", "message:<x@y> since:90d until:2026-03-05T02:00",
		`"phrase with \"quote\""`, "asn:AS8075 country:US kind:mail level:high rule:x", `level:crit* rule:"Mail read*" user:a ip:::1`,
	} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, q string) {
		n, err := Parse(q)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("%q: error %v is not a QueryError", q, err)
			}
			if qe.Pos < 0 || qe.Pos > len(q) {
				t.Fatalf("%q: error position %d outside the query", q, qe.Pos)
			}
			return
		}
		for _, tbl := range SearchTables {
			sql, args, err := Compile(n, tbl, now)
			if err != nil {
				var qe *QueryError
				if !errors.As(err, &qe) {
					t.Fatalf("%q over %s: %v", q, tbl, err)
				}
				continue
			}
			if c := strings.Count(sql, "?"); c != len(args) {
				t.Fatalf("%q: %d placeholders, %d arguments: %s", q, c, len(args), sql)
			}
		}
	})
}
