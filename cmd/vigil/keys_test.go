package main

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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

// A key without a certificate has no known age: the table says "-" and the
// JSON omits age_days, while a key whose certificate starts today is 0.
func TestKeysAuditUnknownAge(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	withCert := testKey(t, "age-cert", at, at.AddDate(2, 0, 0))
	bare := testKey(t, "age-bare", at, at.AddDate(2, 0, 0))
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &withCert.priv.PublicKey, KeyID: withCert.kid, Use: "sig", Certificates: []*x509.Certificate{withCert.cert}},
		{Key: &bare.priv.PublicKey, KeyID: bare.kid, Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "keys", "audit", p, "--at", at.Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	ages := map[string]string{}
	for l := range strings.Lines(out) {
		if f := strings.Fields(l); len(f) == 6 && strings.HasPrefix(f[0], "age-") {
			ages[f[0]] = f[5]
		}
	}
	if ages["age-bare"] != "-" || ages["age-cert"] != "0" {
		t.Fatalf("AGE column: %v\n%s", ages, out)
	}
	_, out, _ = runCLI(t, "keys", "audit", p, "--at", at.Format(time.RFC3339), "--format", "json")
	var r struct{ Keys []map[string]any }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range r.Keys {
		age, has := k["age_days"]
		if k["kid"] == "age-bare" && has || k["kid"] == "age-cert" && age != 0.0 {
			t.Fatalf("age_days of %v: %v (present %v)", k["kid"], age, has)
		}
	}
}

// Each --previous is the earlier snapshot of the input in the same
// position: kids are diffed per input, never across all inputs together.
func TestKeysAuditPreviousPerInput(t *testing.T) {
	td := func(n string) string { return "../../token/testdata/keys/" + n }
	at := []string{"--at", "2025-06-01T00:00:00Z", "--format", "json"}
	code, out, errs := runCLI(t, append([]string{"keys", "audit", td("consumers.json"), td("organizations.json"),
		"--previous", td("consumers.json"), "--previous", td("previous.json")}, at...)...)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		Findings []struct{ Code, Kid, Source string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	var diff []string
	for _, f := range r.Findings {
		if f.Code == "kid_added" || f.Code == "kid_removed" {
			diff = append(diff, f.Code+" "+f.Kid+" "+filepath.Base(f.Source))
		}
	}
	slices.Sort(diff)
	want := []string{"kid_added ent-2025 organizations.json", "kid_removed ent-2024 organizations.json"}
	if !slices.Equal(diff, want) {
		t.Fatalf("snapshot diff %v, want %v", diff, want)
	}
	// One --previous for two inputs cannot be paired.
	code, _, errs = runCLI(t, "keys", "audit", td("consumers.json"), td("organizations.json"), "--previous", td("previous.json"))
	if code != 2 || !strings.Contains(errs, "--previous") {
		t.Fatalf("unpaired --previous: exit %d, %s", code, errs)
	}
}
