package token

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestGenerateKeySnapshots rewrites testdata/keys/*.json, the crafted JWKS
// snapshots used by key-audit tests. Only public halves are written; the
// private keys exist in memory for the duration of the run.
// Run with VIGIL_GEN_TESTDATA=1.
func TestGenerateKeySnapshots(t *testing.T) {
	if os.Getenv("VIGIL_GEN_TESTDATA") == "" {
		t.Skip("set VIGIL_GEN_TESTDATA=1 to regenerate testdata/keys")
	}
	d := func(y, m, day int) time.Time { return time.Date(y, time.Month(m), day, 0, 0, 0, 0, time.UTC) }
	con := newRSA(t, "con-2025", 2048, d(2025, 1, 1), d(2027, 1, 1))
	msa := newRSA(t, "msa-2016", 2048, time.Date(2016, 4, 5, 14, 43, 35, 0, time.UTC),
		time.Date(2021, 4, 4, 14, 43, 35, 0, time.UTC))
	weak := newRSA(t, "con-weak", 1024, d(2025, 1, 1), d(2027, 1, 1))
	ent := newRSA(t, "ent-2025", 2048, d(2025, 1, 1), d(2027, 1, 1))
	old := newRSA(t, "ent-2022", 2048, d(2022, 1, 1), d(2025, 6, 20))
	ent24 := newRSA(t, "ent-2024", 2048, d(2024, 1, 1), d(2026, 1, 1))
	dir := filepath.Join("testdata", "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		var v any
		_ = json.Unmarshal(b, &v)
		b, _ = json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("clean.json", jwksJSON(t, ent))
	write("consumers.json", jwksJSON(t, con, msa, weak))
	write("organizations.json", jwksJSON(t, ent, old, msa))
	write("previous.json", jwksJSON(t, ent24, old, msa))
	e, m := *ent, *msa
	e.issuer, m.issuer = entTmpl, msaIssuer
	write("common.json", jwksJSON(t, &e, &m))
	write("unsupported.json", []byte(`{"keys":[
	  {"kty":"EC","crv":"secp256k1","kid":"k1","x":"gSeYjcsAbsl9GwQ2vQWUchq1lsxaUxk1FXBcGZC4gZc","y":"zlJ1XpgiIuxa-bZ1-C3frgTrBm5BRA-SlC1o1a6EdL8"},
	  {"kty":"oct","kid":"shared-secret","k":"bm90LWEtcmVhbC1zZWNyZXQ"}]}`))
}

func loadSnapshot(t *testing.T, name string) *KeySet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseJWKS(b, Scope{KeySet: name, Source: name})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func codes(r *KeyReport) map[string]int {
	m := map[string]int{}
	for _, f := range r.Findings {
		m[f.Code]++
	}
	return m
}

func TestAuditKeys(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	year := 365 * 24 * time.Hour
	tests := []struct {
		name     string
		files    []string
		previous []string
		want     map[string]int // codes that must appear (count)
		absent   []string
		max      Severity
	}{
		{"clean", []string{"clean.json"}, nil, map[string]int{"key_age": 1},
			[]string{"cert_expired", "shared_key", "weak_key", "rotation_overdue"}, SevInfo},
		{"consumer/enterprise overlap", []string{"consumers.json", "organizations.json"}, nil,
			map[string]int{"cert_expired": 2, "shared_key": 1, "weak_key": 1, "compromised_key": 0,
				"rotation_overdue": 3, "cert_expiring": 1}, nil, SevHigh},
		{"mixed scopes in one document", []string{"common.json"}, nil,
			map[string]int{"mixed_scope_set": 1, "cert_expired": 1}, []string{"shared_key"}, SevHigh},
		{"snapshot diff", []string{"organizations.json"}, []string{"previous.json"},
			map[string]int{"kid_removed": 1, "kid_added": 1}, nil, SevHigh},
		{"unsupported and symmetric entries", []string{"unsupported.json"}, nil,
			map[string]int{"unusable_key": 1, "private_key_published": 1}, nil, SevHigh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sets, prev []*KeySet
			for _, f := range tc.files {
				sets = append(sets, loadSnapshot(t, f))
			}
			for _, f := range tc.previous {
				prev = append(prev, loadSnapshot(t, f))
			}
			r, err := AuditKeys(sets, KeyAuditOptions{Now: at, MaxAge: year, Previous: prev})
			if err != nil {
				t.Fatal(err)
			}
			got := codes(r)
			for c, n := range tc.want {
				if got[c] != n {
					t.Errorf("%s: %d findings, want %d (all: %v)", c, got[c], n, got)
				}
			}
			for _, c := range tc.absent {
				if got[c] > 0 {
					t.Errorf("unexpected %s finding", c)
				}
			}
			if m, _ := r.Max(); m != tc.max {
				t.Errorf("max severity %s, want %s", m, tc.max)
			}
		})
	}
	// The Storm-0558 kid itself is flagged wherever it appears.
	f := getFixture(t)
	ks, _ := ParseJWKS(jwksJSON(t, f.denied), Scope{Source: "x"})
	r, err := AuditKeys([]*KeySet{ks}, KeyAuditOptions{Now: at})
	if err != nil || codes(r)["compromised_key"] != 1 {
		t.Error("known compromised kid not flagged")
	}
}

// Previous snapshots pair with key sets by position; a count that cannot be
// paired is an error, not a diff against everything.
func TestAuditKeysPreviousPairing(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	con, org, prev := loadSnapshot(t, "consumers.json"), loadSnapshot(t, "organizations.json"), loadSnapshot(t, "previous.json")
	if _, err := AuditKeys([]*KeySet{con, org}, KeyAuditOptions{Now: at, Previous: []*KeySet{prev}}); err == nil {
		t.Fatal("one previous snapshot for two key sets accepted")
	}
	r, err := AuditKeys([]*KeySet{con, org}, KeyAuditOptions{Now: at, Previous: []*KeySet{nil, prev}})
	if err != nil {
		t.Fatal(err)
	}
	var diff []string
	for _, f := range r.Findings {
		if f.Code == "kid_added" || f.Code == "kid_removed" {
			diff = append(diff, f.Code+":"+f.KeyID+"@"+f.Source)
		}
	}
	if want := []string{"kid_removed:ent-2024@organizations.json", "kid_added:ent-2025@organizations.json"}; !slices.Equal(diff, want) {
		t.Fatalf("diff %v, want %v", diff, want)
	}
}
