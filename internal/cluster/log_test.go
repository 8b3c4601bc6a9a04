package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
)

// TestPushIngestThroughCluster: vigil serve's push ingest, given a Log
// instead of the journal, acknowledges a push once the stream holds it;
// the sequencer then journals it, a repeated push is reported as
// duplicates and stored once, and a malformed line is quarantined.
func TestPushIngestThroughCluster(t *testing.T) {
	entries := simEntries(t, 10, 1)[:200]
	var body bytes.Buffer
	for _, e := range entries {
		body.Write(e.Raw)
		body.WriteByte('\n')
	}
	body.WriteString("{not json\n")

	c := natstest.Start(t, 3)
	conn := connect(t, c, "node-1")
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	q := &memQuarantine{}
	woke := make(chan struct{}, 1)
	s, err := conn.NewSequencer(SequencerOptions{Tenant: "default", Journal: j, Quarantine: q.keep, Logger: testLogger(t),
		OnAppend: func() {
			select {
			case woke <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSequencer(t, s)
	log := conn.Log("default", j)
	in := server.NewIngester(log, filepath.Join(dir, "quarantine.jsonl"))

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := in.Ingest(ctx, bytes.NewReader(body.Bytes()), "push:test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != int64(len(entries)) || res.Duplicates != 0 || res.Quarantined != 1 {
		t.Fatalf("first push: %+v, want %d accepted and 1 quarantined", res, len(entries))
	}
	res, err = in.Ingest(ctx, bytes.NewReader(body.Bytes()), "push:test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Duplicates != int64(len(entries)) {
		t.Fatalf("repeated push: %+v, want all %d duplicates", res, len(entries))
	}
	select {
	case <-woke:
	case <-ctx.Done():
		t.Fatal("the sequencer never reported an append")
	}
	waitFor(t, 30*time.Second, "journal filled", func() error {
		if log.Size() < uint64(len(entries)) {
			return errorf("journal holds %d of %d", log.Size(), len(entries))
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if log.Size() != uint64(len(entries)) {
		t.Fatalf("journal holds %d entries, want %d", log.Size(), len(entries))
	}
	if qb, err := os.ReadFile(filepath.Join(dir, "quarantine.jsonl")); err != nil || !bytes.Contains(qb, []byte("{not json")) {
		t.Fatalf("quarantine file: %q, %v", qb, err)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, filepath.Join(dir, "journal"), entries)
}
