package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/server/auth"
)

func TestAPIKeyCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"apikey", "create", "--data", dir, "--name", "pusher", "--role", "ingest"}, &out, &errb); code != 0 {
		t.Fatalf("create: exit %d: %s", code, errb.String())
	}
	key := strings.TrimSpace(out.String())
	store, _ := auth.Open(keyDir(dir))
	if k, err := store.Authenticate(key); err != nil || k.Role != auth.RoleIngest {
		t.Fatalf("printed key does not authenticate as ingest: %+v %v", k, err)
	}
	out.Reset()
	run(t.Context(), []string{"apikey", "list", "--data", dir}, &out, &errb)
	if !strings.Contains(out.String(), "pusher") || strings.Contains(out.String(), key[5:]) {
		t.Fatalf("list: %s", out.String())
	}
	if code := run(t.Context(), []string{"apikey", "revoke", "--data", dir, "pusher"}, &out, &errb); code != 0 {
		t.Fatalf("revoke: exit %d", code)
	}
	if _, err := store.Authenticate(key); err == nil {
		t.Fatal("revoked key still authenticates")
	}
	if code := run(t.Context(), []string{"apikey", "create", "--data", dir, "--name", "x", "--role", "root"}, &out, &errb); code != 2 {
		t.Fatalf("bad role: exit %d", code)
	}
}
