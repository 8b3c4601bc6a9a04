// Package progress draws a one-line progress bar on a terminal for long
// commands. It draws nothing when the output is not a terminal, so piped
// and redirected output stays clean.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar is a rate-limited progress line. Its methods are safe for concurrent
// use and do nothing on a nil Bar.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	last  time.Time
	start time.Time
	drawn bool
	every time.Duration
}

// New returns a Bar drawing to w when w is a terminal, else nil.
func New(w io.Writer, label string) *Bar {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &Bar{w: w, label: label, start: time.Now(), every: 150 * time.Millisecond}
}

// Update redraws the bar for done of total units (total 0: unknown) with
// extra text after it, at most a few times a second.
func (b *Bar) Update(done, total int64, extra string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if now.Sub(b.last) < b.every {
		return
	}
	b.last = now
	b.drawn = true
	fmt.Fprint(b.w, "\r\033[K"+Line(b.label, done, total, now.Sub(b.start), extra))
}

// Done clears the bar's line.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// Line formats one progress line (exported for tests and non-terminal use).
func Line(label string, done, total int64, elapsed time.Duration, extra string) string {
	const width = 30
	var bar, pct string
	if total > 0 {
		frac := min(float64(done)/float64(total), 1)
		n := int(frac * width)
		bar = "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
		pct = fmt.Sprintf(" %3.0f%%", frac*100)
	}
	rate := ""
	if s := elapsed.Seconds(); s > 0 {
		rate = fmt.Sprintf(" %s/s", Bytes(int64(float64(done)/s)))
	}
	return fmt.Sprintf("%s %s%s %s%s %s", label, bar, pct, Bytes(done), rate, extra)
}

// Bytes formats a byte count with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
