package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"
)

// Defaults for Options.
const (
	DefaultStream     = "VIGIL_RAW"
	DefaultReplicas   = 3
	DefaultPartitions = 8
	// MinDuplicateWindow is the shortest publish-dedupe window accepted:
	// longer than any retry of an unacknowledged publish, so a retry after
	// a leader change is recognised as the same message.
	MinDuplicateWindow = 10 * time.Minute
	// DefaultMaxAge is how long the stream keeps messages. It bounds how
	// long a sequencer may be down before records it never journaled
	// expire from the stream.
	DefaultMaxAge = 7 * 24 * time.Hour
)

// Options configures Connect; setup.Config.ClusterOptions builds it from
// the cluster: section.
type Options struct {
	URLs            []string
	CredentialsFile string      // NATS user credentials (.creds); optional
	TLS             *tls.Config // optional
	Stream          string
	Replicas        int
	Partitions      int
	DuplicateWindow time.Duration
	MaxAge          time.Duration
	// Name identifies this vigil node in the servers' connection lists.
	Name   string
	Logger *slog.Logger
}

func (o *Options) fill() error {
	if len(o.URLs) == 0 {
		return errors.New("cluster: no NATS URLs")
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = MinDuplicateWindow
	}
	if o.DuplicateWindow < MinDuplicateWindow {
		return fmt.Errorf("cluster: duplicate window %v is shorter than %v", o.DuplicateWindow, MinDuplicateWindow)
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxAge < o.DuplicateWindow {
		return fmt.Errorf("cluster: stream max age %v is shorter than the duplicate window %v", o.MaxAge, o.DuplicateWindow)
	}
	if o.Name == "" {
		o.Name = "vigil"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Conn is a connection to the JetStream cluster with the raw stream in
// place.
type Conn struct {
	opts   Options
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	// slots bounds the connection's unacknowledged publishes below the
	// client's limit: past it the client fails publishes ("stalled"), and
	// their retries land after later records, out of push order.
	slots *semaphore.Weighted
	// noBatches: the alert stream takes no atomic batches (fence.go).
	noBatches atomic.Bool
}

// Connect connects to the cluster and creates or updates the raw stream.
// The connection reconnects forever: a node going away is routine.
func Connect(ctx context.Context, opts Options) (*Conn, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	log := opts.Logger
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats: reconnected", "server", c.ConnectedServerName())
		}),
	}
	if opts.CredentialsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opts.CredentialsFile))
	}
	if opts.TLS != nil {
		nopts = append(nopts, nats.Secure(opts.TLS))
	}
	nc, err := nats.Connect(strings.Join(opts.URLs, ","), nopts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	// A publish without its acknowledgement after 5 s is sent again
	// (same Nats-Msg-Id): long enough for a quorum write, short next to a
	// leader election.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second), jetstream.WithPublishAsyncMaxPending(4*maxInFlight))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Conn{opts: opts, nc: nc, js: js, slots: semaphore.NewWeighted(4 * maxInFlight)}
	if err := c.ensureStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.opts.Stream,
		Description: "vigil: raw audit records, before the per-tenant journals",
		Subjects:    []string{"raw.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.Replicas,
		MaxAge:      c.opts.MaxAge,
		Duplicates:  c.opts.DuplicateWindow,
		// Publishers retry; a stream that is full must refuse, not drop
		// acknowledged messages.
		Discard: jetstream.DiscardNew,
	}
}

// ensureStream creates the stream, or updates it to the configured
// settings; it retries while the cluster has no meta leader yet.
func (c *Conn) ensureStream(ctx context.Context) error {
	for {
		// A request that reaches no leader gets no answer: bound each try.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := c.js.CreateOrUpdateStream(actx, c.streamConfig())
		cancel()
		if err == nil {
			c.stream = s
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: stream %s: %w", c.opts.Stream, err)
		}
		c.opts.Logger.Warn("cluster: stream not ready, retrying", "stream", c.opts.Stream, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: stream %s: %w", c.opts.Stream, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Close drains nothing: acknowledged work is already in the stream.
func (c *Conn) Close() { c.nc.Close() }

// Subject is the stream subject of a tenant's records from source. Dots
// in either are escaped because they separate subject tokens.
func Subject(tenant, source string) string {
	return "raw." + token(tenant) + "." + token(source)
}

// TenantFilter matches all of a tenant's subjects.
func TenantFilter(tenant string) string { return "raw." + token(tenant) + ".*" }

// token escapes everything a NATS subject token or consumer name must not
// hold ('.', '*', '>', whitespace, slashes, controls) as %XX.
func token(s string) string {
	if s == "" {
		// A lone "%" is never an escape's output ("%XX"), so the empty
		// name shares its token with no other (NUL is "%00").
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	return b.String()
}

// MsgID is the Nats-Msg-Id of a tenant's record: the hash of the
// tenant and its dedupe key, the same (Source, RecordID) pair the tenant's
// journal deduplicates by. The stream's dedupe window spans all tenants:
// without the tenant, a record of one tenant would be dropped as a repeat
// of another tenant's with the same source and id (records without an id
// of their own get the hash of their content, which tenants can share).
func MsgID(tenant, source, recordID string) string {
	// Length-prefixed, so no two (tenant, source, id) triples hash the
	// same input.
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(tenant))))
	h.Write([]byte(tenant))
	h.Write(binary.AppendUvarint(nil, uint64(len(source))))
	h.Write([]byte(source))
	h.Write([]byte(recordID))
	return hex.EncodeToString(h.Sum(nil))
}
