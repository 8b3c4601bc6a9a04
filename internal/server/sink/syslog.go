package sink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SyslogConfig configures an RFC 5424 receiver over TCP, TLS unless the
// receiver is on loopback (RFC 5425 framing: octet counting).
type SyslogConfig struct {
	Address string // host:port
	Format  string // "cef" (default) or "json"
	// Plain allows TCP without TLS; only accepted for loopback receivers.
	Plain     bool
	TLSConfig *tls.Config // nil: system roots, ServerName from Address
	Timeout   time.Duration
	Hostname  string // defaults to os.Hostname
	Version   string // vigil's version, for the CEF header
}

// Syslog writes one RFC 5424 message per Message, octet-counted.
type Syslog struct {
	name string
	cfg  SyslogConfig
	mu   sync.Mutex
	conn net.Conn
}

// facility 13 is "log audit" (RFC 5424 table 1).
const syslogFacility = 13

// NewSyslog checks the configuration.
func NewSyslog(name string, cfg SyslogConfig) (*Syslog, error) {
	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("syslog %s: address %q is not host:port", name, cfg.Address)
	}
	switch cfg.Format {
	case "":
		cfg.Format = "cef"
	case "cef", "json":
	default:
		return nil, fmt.Errorf("syslog %s: format %q (want cef or json)", name, cfg.Format)
	}
	if cfg.Plain && !isLoopbackHost(host) {
		return nil, fmt.Errorf("syslog %s: plain TCP to %s refused; use TLS across networks", name, host)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if !cfg.Plain {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
			if tc.ServerName == "" {
				tc.ServerName = host
			}
		}
		cfg.TLSConfig = tc
	}
	return &Syslog{name: name, cfg: cfg}, nil
}

// Name identifies the sink.
func (s *Syslog) Name() string { return s.name }

// Deliver writes m; a broken connection is dropped and redialled on the
// next try (the outbox retries).
func (s *Syslog) Deliver(ctx context.Context, m Message) error {
	frame, err := s.frame(m)
	if err != nil {
		return fmt.Errorf("syslog %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		d := &net.Dialer{Timeout: s.cfg.Timeout}
		var c net.Conn
		if s.cfg.Plain {
			c, err = d.DialContext(ctx, "tcp", s.cfg.Address)
		} else {
			td := &tls.Dialer{NetDialer: d, Config: s.cfg.TLSConfig}
			c, err = td.DialContext(ctx, "tcp", s.cfg.Address)
		}
		if err != nil {
			return fmt.Errorf("syslog %s: %w", s.name, err)
		}
		s.conn = c
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := s.conn.Write(frame); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog %s: %w", s.name, err)
	}
	return nil
}

// Close drops the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// frame renders "LEN SP <PRI>1 TS HOST APP PROCID MSGID - MSG".
func (s *Syslog) frame(m Message) ([]byte, error) {
	var body string
	switch s.cfg.Format {
	case "json":
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		body = string(b)
	default:
		body = CEF(m, s.cfg.Version)
	}
	_, sev := severityRank(m.Severity)
	msg := fmt.Sprintf("<%d>1 %s %s vigil %d %s - %s",
		syslogFacility*8+sev,
		m.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
		headerToken(s.cfg.Hostname, 255),
		os.Getpid(),
		headerToken(m.Type, 32),
		body)
	return []byte(strconv.Itoa(len(msg)) + " " + msg), nil
}

// headerToken makes a value fit an RFC 5424 header field: printable
// US-ASCII without spaces, at most max characters, "-" when empty.
func headerToken(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// CEF renders m as an ArcSight Common Event Format line. Header fields
// escape \ and |; extension values escape \, = and line breaks. Other
// control characters (attacker-controlled log text) are dropped.
func CEF(m Message, version string) string {
	cef, _ := severityRank(m.Severity)
	var b strings.Builder
	b.WriteString("CEF:0|vigil|vigil|")
	b.WriteString(cefHeader(version))
	b.WriteByte('|')
	b.WriteString(cefHeader(m.Type))
	b.WriteByte('|')
	b.WriteString(cefHeader(m.Title))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(cef))
	b.WriteString("|rt=")
	b.WriteString(strconv.FormatInt(m.Time.UnixMilli(), 10))
	b.WriteString(" externalId=")
	b.WriteString(cefExt(m.ID))
	b.WriteString(" cs1Label=severity cs1=")
	b.WriteString(cefExt(m.Severity))
	if len(m.Data) > 0 {
		b.WriteString(" msg=")
		b.WriteString(cefExt(string(m.Data)))
	}
	return b.String()
}

func cefHeader(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\' || r == '|':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func cefExt(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\' || r == '=':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
