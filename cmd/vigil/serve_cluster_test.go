package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
)

// TestServeCluster: two vigil serve processes around a 3-node JetStream
// cluster. Records pushed to the ingest node are acknowledged through the
// stream and end up, exactly once, in the journal node's journal, which
// verifies.
func TestServeCluster(t *testing.T) {
	logs := t.TempDir()
	truth, err := simulate.Run(t.Context(), simulate.Config{Users: 10, Days: 1, Seed: 5}, logs)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	for _, f := range truth.Files {
		if f.Source == "networks" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(logs, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		body.Write(b)
	}
	records := bytes.Count(body.Bytes(), []byte("\n"))

	c := natstest.Start(t, 3)
	urls := "[" + c.URLs() + "]"
	node := func(role string) (*servedVigil, string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "vigil.yaml")
		os.WriteFile(cfg, fmt.Appendf(nil, "data: %s\nserver:\n  listen: 127.0.0.1:0\ncluster:\n  role: %s\n  nats_urls: %s\n",
			filepath.Join(dir, "data"), role, urls), 0o600)
		s := startServe(t, "--config", cfg)
		if s.key == "" {
			t.Fatal("no admin key printed at first start")
		}
		return s, filepath.Join(dir, "data")
	}
	jn, jdata := node("journal")
	in, _ := node("ingest")

	req, _ := http.NewRequestWithContext(t.Context(), "POST", in.url+"/api/v1/ingest", bytes.NewReader(body.Bytes()))
	req.Header.Set("Authorization", "Bearer "+in.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Accepted, Duplicates, Quarantined int }
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || res.Accepted == 0 || res.Quarantined != 0 {
		t.Fatalf("push to the ingest node: %d %+v", resp.StatusCode, res)
	}
	t.Logf("%d lines pushed: %+v", records, res)

	deadline := time.Now().Add(40 * time.Second)
	for {
		var cp struct{ Size uint64 }
		jn.get(t, "/api/v1/checkpoint", &cp)
		if cp.Size == uint64(res.Accepted) {
			break
		}
		if cp.Size > uint64(res.Accepted) {
			t.Fatalf("journal node holds %d entries, more than the %d accepted", cp.Size, res.Accepted)
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal node holds %d of %d accepted entries", cp.Size, res.Accepted)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A second journal node would fork the journal: it is refused.
	dir := t.TempDir()
	cfg2 := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg2, fmt.Appendf(nil, "data: %s\nserver:\n  listen: 127.0.0.1:0\ncluster:\n  role: journal\n  nats_urls: %s\n",
		filepath.Join(dir, "data"), urls), 0o600)
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if code := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--config", cfg2}, &out, &errb); code == 0 || ctx.Err() != nil ||
		!strings.Contains(errb.String(), "another node holds the journal lease") {
		t.Fatalf("second journal node: exit %d, ctx %v, stderr:\n%s", code, ctx.Err(), errb.String())
	}

	in.stop(t)
	jn.stop(t)
	vr, err := journal.Verify(t.Context(), jdata, journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("journal node's journal does not verify: %v", err)
	}
	if vr.Entries != uint64(res.Accepted) {
		t.Fatalf("verified %d entries, want %d", vr.Entries, res.Accepted)
	}
}
