package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestKeysAudit(t *testing.T) {
	td := func(n string) string { return "../../token/testdata/keys/" + n }
	at := []string{"--at", "2025-06-01T00:00:00Z"}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"clean set passes", append([]string{"keys", "audit", td("clean.json")}, at...), 0, []string{"key_age", "ent-2025"}},
		{"clean set fails at info", append([]string{"keys", "audit", td("clean.json"), "--fail-on", "info"}, at...), 1, nil},
		{"consumer/enterprise overlap", append([]string{"keys", "audit", td("consumers.json"), td("organizations.json")}, at...),
			1, []string{"shared_key", "cert_expired", "weak_key", "rotation_overdue"}},
		{"max-age disabled", append([]string{"keys", "audit", td("organizations.json"), "--max-age", "0", "--fail-on", "medium"}, at...),
			1, []string{"cert_expiring"}},
		{"snapshot diff", append([]string{"keys", "audit", td("organizations.json"), "--previous", td("previous.json")}, at...),
			1, []string{"kid_removed", "ent-2024", "kid_added"}},
		{"mixed scopes", append([]string{"keys", "audit", td("common.json"), "--fail-on", "medium"}, at...), 1,
			[]string{"mixed_scope_set"}},
		{"symmetric key published", append([]string{"keys", "audit", td("unsupported.json")}, at...), 1,
			[]string{"private_key_published", "secp256k1"}},
		{"bad fail-on", []string{"keys", "audit", td("clean.json"), "--fail-on", "severe"}, 2, nil},
		{"bad format", []string{"keys", "audit", td("clean.json"), "--format", "xml"}, 2, nil},
		{"no input", []string{"keys", "audit"}, 2, nil},
		{"missing file", []string{"keys", "audit", td("nope.json")}, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code == 0 && strings.Contains(out, "cert_expired") {
				t.Fatalf("clean set reported expired certificates:\n%s", out)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		code, out, _ := runCLI(t, append([]string{"keys", "audit", td("consumers.json"), td("organizations.json"),
			"--format", "json"}, at...)...)
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		var r struct {
			Keys     []struct{ Kid string }
			Findings []struct{ Severity, Code, Kid string }
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		shared := false
		for _, f := range r.Findings {
			if f.Code == "shared_key" && f.Kid == "msa-2016" && f.Severity == "high" {
				shared = true
			}
		}
		if len(r.Keys) != 6 || !shared {
			t.Fatalf("report: %d keys, shared_key=%v", len(r.Keys), shared)
		}
	})
}
