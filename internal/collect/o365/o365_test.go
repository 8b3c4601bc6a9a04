package o365

import (
	"testing"

	"github.com/vigil-audit/vigil/internal/collect"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   collect.Verdict
		code   string
	}{
		{200, `[]`, collect.OK, ""},
		{403, `{"error":{"code":"AF429","message":"Too many requests. Method=GetBlob"}}`, collect.Throttled, "AF429"},
		{429, ``, collect.Throttled, ""},
		{400, `{"error":{"code":"AF20051","message":"Content requested with the key x has already expired."}}`, collect.Failed, "AF20051"},
		{400, `{"error":{"code":"AF50006","message":"internal"}}`, collect.Transient, "AF50006"},
		{503, ``, collect.Transient, ""},
		{403, `{"error":{"code":"AF10001","message":"The permission set () sent in the request does not include the expected permission."}}`, collect.Failed, "AF10001"},
	} {
		v, code := Classify(tc.status, []byte(tc.body))
		if v != tc.want || code != tc.code {
			t.Errorf("Classify(%d, %s) = %v %q; want %v %q", tc.status, tc.body, v, code, tc.want, tc.code)
		}
	}
}

func TestKey(t *testing.T) {
	s := &Source{}
	if k, err := s.Key([]byte(`{"CreationTime":"2023-06-16T03:12:44","Id":"5b2f6a3c-0c0e-4a55-9d2e-1f7f0b0a1c11"}`)); err != nil || k != "5b2f6a3c-0c0e-4a55-9d2e-1f7f0b0a1c11" {
		t.Errorf("Key = %q, %v", k, err)
	}
	if _, err := s.Key([]byte(`{"CreationTime":"x"}`)); err == nil {
		t.Error("a record without Id has a key")
	}
}
