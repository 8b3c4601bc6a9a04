package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, "x")
	if b != nil {
		t.Fatal("a bytes.Buffer is not a terminal")
	}
	b.Update(1, 2, "") // nil-safe
	b.Done()
	if buf.Len() != 0 {
		t.Errorf("wrote %q to a non-terminal", buf.String())
	}
}

func TestLine(t *testing.T) {
	got := Line("hunt", 512<<20, 1<<30, 2*time.Second, "1000 events")
	for _, want := range []string{"hunt [===============               ]  50%", "512.0 MiB", "256.0 MiB/s", "1000 events"} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
	if got := Bytes(1536); got != "1.5 KiB" {
		t.Errorf("Bytes(1536) = %q", got)
	}
}
