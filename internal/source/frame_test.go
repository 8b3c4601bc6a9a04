package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

func genericLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"time":"2024-01-01T00:00:%02dZ","n":%d}`+"\n", i%60, i)
	}
	return b.Bytes()
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// A gzip stream cut short is an unreadable input, not a short one: JSON
// lines must not be accepted as complete.
func TestTruncatedGzipIsAnError(t *testing.T) {
	z := gzipped(t, genericLines(2000))
	for _, tc := range []struct {
		name string
		cut  int
	}{
		{"inside the data", 20},
		{"only the trailer", 8}, // all records intact, checksum and size missing
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cut.jsonl.gz")
			if err := os.WriteFile(p, z[:len(z)-tc.cut], 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadPaths(context.Background(), []string{p}, Options{}, func(*event.Event) error { return nil })
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadPaths of a truncated gzip file: err = %v, want unexpected EOF", err)
			}
		})
	}
}
