package detect

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestAsyncWriterWritesEverythingInOrder(t *testing.T) {
	var want, got bytes.Buffer
	w := newAsyncWriter(&got, 64)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := bytes.Repeat([]byte{byte(i)}, r.IntN(300))
		want.Write(p)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("after Flush at write %d: %d bytes written, want %d", i, got.Len(), want.Len())
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("%d bytes written, want %d (or out of order)", got.Len(), want.Len())
	}
}

type failAfter struct{ n int }

var errDiskFull = errors.New("no space left on device")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errDiskFull
	}
	return len(p), nil
}

func TestAsyncWriterReportsAWriteError(t *testing.T) {
	w := newAsyncWriter(&failAfter{n: 100}, 32)
	for range 10 {
		w.Write(make([]byte, 20))
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close = %v, want the write's error", err)
	}
}
