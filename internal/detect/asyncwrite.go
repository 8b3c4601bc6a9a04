package detect

import (
	"io"
	"sync"
)

// asyncWriter buffers writes and hands each full buffer to a goroutine
// that writes it, so that the ordered stage does not wait on the system
// call (writing the access log cost it about a tenth of its time). Flush
// waits for every write so far; Close ends the goroutine.
type asyncWriter struct {
	w     io.Writer
	size  int
	buf   []byte
	queue chan []byte
	free  chan []byte
	wg    sync.WaitGroup // buffers queued and not yet written
	mu    sync.Mutex
	err   error
}

// asyncBuffers is how many buffers of size bytes an asyncWriter owns.
const asyncBuffers = 3

func newAsyncWriter(w io.Writer, size int) *asyncWriter {
	a := &asyncWriter{w: w, size: size, buf: make([]byte, 0, size),
		queue: make(chan []byte, asyncBuffers), free: make(chan []byte, asyncBuffers)}
	for range asyncBuffers - 1 {
		a.free <- make([]byte, 0, size)
	}
	go a.loop()
	return a
}

func (a *asyncWriter) loop() {
	for b := range a.queue {
		a.mu.Lock()
		failed := a.err != nil
		a.mu.Unlock()
		if !failed {
			if _, err := a.w.Write(b); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- b[:0]
		a.wg.Done()
	}
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(a.buf) == a.size {
			a.send()
		}
		k := copy(a.buf[len(a.buf):a.size], p)
		a.buf = a.buf[:len(a.buf)+k]
		p = p[k:]
	}
	a.mu.Lock()
	err := a.err
	a.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (a *asyncWriter) send() {
	a.wg.Add(1)
	a.queue <- a.buf
	a.buf = <-a.free
}

// Flush writes what is buffered and waits for every write to finish.
func (a *asyncWriter) Flush() error {
	if len(a.buf) > 0 {
		a.send()
	}
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Close flushes and ends the writing goroutine.
func (a *asyncWriter) Close() error {
	err := a.Flush()
	close(a.queue)
	return err
}
