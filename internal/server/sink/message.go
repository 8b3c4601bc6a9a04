package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message is one notification: an incident opened, grew, or changed
// severity. ID is stable across retries and identifies the state change
// (the receiver's idempotency key).
type Message struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`      // e.g. "incident.opened"
	Time     time.Time       `json:"timestamp"` // when the state change happened
	Severity string          `json:"severity,omitempty"`
	Title    string          `json:"title,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// Payload is the Standard Webhooks body: {type, timestamp, data}.
func (m Message) Payload() ([]byte, error) {
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	return json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{m.Type, m.Time.UTC().Format(time.RFC3339Nano), data})
}

// Sink delivers one Message. Errors that should not be retried wrap
// ErrPermanent; throttling answers return a *RetryAfterError.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, m Message) error
}

// ErrPermanent marks a delivery that will never succeed as configured (a
// webhook answering 410 Gone, a refused address): the outbox disables the
// sink instead of retrying.
var ErrPermanent = errors.New("permanent delivery failure")

// RetryAfterError asks the outbox to wait at least After before the next try.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// severityRank maps vigil's levels onto 0–10 (CEF) and syslog severities.
func severityRank(level string) (cef int, syslog int) {
	switch level {
	case "critical":
		return 10, 2 // crit
	case "high":
		return 8, 3 // err
	case "medium":
		return 5, 4 // warning
	case "low":
		return 3, 5 // notice
	default:
		return 1, 6 // informational
	}
}

// MinSeverity passes on only messages at or above Level.
type MinSeverity struct {
	Sink
	Level string
}

// Deliver drops messages below the level (they count as delivered).
func (m *MinSeverity) Deliver(ctx context.Context, msg Message) error {
	have, _ := severityRank(msg.Severity)
	want, _ := severityRank(m.Level)
	if have < want {
		return nil
	}
	return m.Sink.Deliver(ctx, msg)
}
