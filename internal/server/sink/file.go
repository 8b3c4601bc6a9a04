package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// File appends each Message as one JSON line and syncs it.
type File struct {
	name string
	path string
	mu   sync.Mutex
}

// NewFile returns a sink writing to path (created 0600 if missing).
func NewFile(name, path string) (*File, error) {
	if path == "" {
		return nil, fmt.Errorf("file sink %s: no path", name)
	}
	return &File{name: name, path: path}, nil
}

// Name identifies the sink.
func (f *File) Name() string { return f.name }

// Deliver appends m. JSON encoding escapes every control character, so a
// log-derived title cannot break the line structure.
func (f *File) Deliver(_ context.Context, m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", f.name, err)
	}
	b = append(b, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("file sink %s: %w", f.name, err)
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return fmt.Errorf("file sink %s: %w", f.name, err)
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return fmt.Errorf("file sink %s: %w", f.name, err)
	}
	return fh.Close()
}
