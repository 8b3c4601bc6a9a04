package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysLifecycle(t *testing.T) {
	dir := t.TempDir()
	server, err := Open(dir) // a running server's view
	if err != nil {
		t.Fatal(err)
	}
	if !server.Empty() {
		t.Fatal("new store not empty")
	}
	cli, _ := Open(dir) // `vigil apikey` in another process
	plain, k, err := cli.Create("soc-bot", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "vgl_"+k.ID+"_") || len(plain) < 50 {
		t.Fatalf("key %q", plain)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "apikeys.json"))
	if strings.Contains(string(b), plain[len("vgl_")+13:]) {
		t.Fatal("the secret is stored in clear")
	}
	if st, _ := os.Stat(filepath.Join(dir, "apikeys.json")); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}
	got, err := server.Authenticate(plain)
	if err != nil || got.Name != "soc-bot" || got.Role != RoleIngest {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	if _, _, err := cli.Create("soc-bot", RoleViewer); err == nil {
		t.Fatal("two active keys with one name")
	}
	if _, err := cli.Revoke("soc-bot"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(plain); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked key: err = %v, want ErrRevoked", err)
	}
	// The name is free again after revocation.
	if _, _, err := cli.Create("soc-bot", RoleViewer); err != nil {
		t.Fatal(err)
	}
	keys, _ := server.List()
	if len(keys) != 2 || keys[0].Active() || !keys[1].Active() {
		t.Fatalf("list %+v", keys)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	s, _ := Open(t.TempDir())
	plain, _, _ := s.Create("a", RoleAdmin)
	last := byte('A')
	if plain[len(plain)-1] == 'A' {
		last = 'B'
	}
	tampered := plain[:len(plain)-1] + string(last)
	cases := map[string]error{
		"":                      ErrNoKey,
		"Bearer " + plain:       ErrBadKey,
		"vgl_short":             ErrBadKey,
		tampered:                ErrBadKey,
		"vgl_000000000000_abcd": ErrBadKey,
		strings.ToUpper(plain):  ErrBadKey,
	}
	for in, want := range cases {
		if _, err := s.Authenticate(in); !errors.Is(err, want) {
			t.Errorf("Authenticate(%.20q…) = %v, want %v", in, err, want)
		}
	}
}

func TestRoles(t *testing.T) {
	want := map[Role][4]bool{ // ingest, read, triage, admin
		RoleIngest:  {true, false, false, false},
		RoleViewer:  {false, true, false, false},
		RoleAnalyst: {false, true, true, false},
		RoleAdmin:   {true, true, true, true},
		Role("x"):   {false, false, false, false},
	}
	for r, w := range want {
		for p := PermIngest; p <= PermAdmin; p++ {
			if r.Allows(p) != w[p] {
				t.Errorf("%s allows %d = %v", r, p, !w[p])
			}
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Fatal("unknown role parsed")
	}
}
