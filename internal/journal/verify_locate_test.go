package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A byte changed inside one entry of a block fails the block's checksum;
// Verify names that entry, not the block's first.
func TestVerifyNamesDamagedEntry(t *testing.T) {
	for _, compress := range []bool{false, true} {
		dir := t.TempDir()
		opts := quietOptions()
		opts.Compress = compress
		j := mustOpen(t, dir, opts)
		es := testEntries(7, 120, 400)
		// Two blocks: entries [0, 40) and [40, 120).
		if _, err := j.AppendBatch(context.Background(), es[:40]); err != nil {
			t.Fatal(err)
		}
		if _, err := j.AppendBatch(context.Background(), es[40:]); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		seg := filepath.Join(dir, segDir, segName(0))
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		const victim = 97
		if compress {
			// The compressed payload cannot be searched for the entry;
			// damage it anywhere in the second block.
			at := len(data) - 200
			data[at] ^= 0x01
		} else {
			at := bytes.Index(data, es[victim].Raw)
			if at < 0 {
				t.Fatal("entry not found in the segment")
			}
			data[at+len(es[victim].Raw)/2] ^= 0x01
		}
		if err := os.WriteFile(seg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Verify(context.Background(), dir, VerifyOptions{})
		var d *Damage
		if !errors.As(err, &d) || d.Kind != "checksum mismatch" {
			t.Fatalf("compress=%v: Verify: %v", compress, err)
		}
		if !compress {
			if d.Entry != victim || !strings.Contains(d.Error(), "entry 97 checksum mismatch") || !strings.Contains(d.Detail, "block of entries [40, 120)") {
				t.Errorf("Verify names %q (entry %d), want entry %d in block [40, 120)", d.Error(), d.Entry, victim)
			}
			continue
		}
		// Compressed: the damaged entry cannot be told apart, so the
		// report names the block's range rather than one entry.
		if d.Entry != 40 || !strings.Contains(d.Detail, "[40, 120)") {
			t.Errorf("compressed: Verify names %q (entry %d), want the block [40, 120)", d.Error(), d.Entry)
		}
	}
}
