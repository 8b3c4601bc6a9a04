package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
// verifies. A detect node detects the tenant from the stream and, when it
// stops, hands the tenant to another detect node, which goes on from its
// snapshot.
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
	dn, _ := node("detect")

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

	// The detect node reads the whole stream (a record is one message).
	waitMetric(t, dn, "vigil_cluster_detection_refreshed_position", float64(res.Accepted))
	// A second detect node stands by while the first detects, and takes
	// the tenant over from the first one's snapshot when it stops.
	dn2, _ := node("detect")
	if v := metric(t, dn2, "vigil_cluster_detection_held"); v != 0 {
		t.Fatalf("second detect node: vigil_cluster_detection_held %v while the first detects", v)
	}
	dn.stop(t)
	waitMetric(t, dn2, "vigil_cluster_detection_held", 1)
	// It resumes from the first one's snapshot at stop: the whole stream.
	waitMetric(t, dn2, "vigil_cluster_detection_restored_position", float64(res.Accepted))
	waitMetric(t, dn2, "vigil_cluster_detection_position", float64(res.Accepted))
	dn2.stop(t)

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

// metric reads a gauge's value from a node's /metrics (-1 when absent).
func metric(t *testing.T, s *servedVigil, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

func waitMetric(t *testing.T, s *servedVigil, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := metric(t, s, name)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", name, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
