package sink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
	"unicode/utf8"
)

// EmailConfig configures an SMTP relay. STARTTLS is required unless the
// relay is on loopback.
type EmailConfig struct {
	SMTP     string // host:port
	From     string
	To       []string
	Username string
	Password string // from a file or the environment, never the config file
	// Link is the base URL of vigil's UI; the mail links to the incident.
	Link      string
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// Email sends an incident summary per Message.
type Email struct {
	name string
	cfg  EmailConfig
	host string
}

// NewEmail checks the configuration.
func NewEmail(name string, cfg EmailConfig) (*Email, error) {
	host, _, err := net.SplitHostPort(cfg.SMTP)
	if err != nil || host == "" {
		return nil, fmt.Errorf("email %s: smtp %q is not host:port", name, cfg.SMTP)
	}
	if _, err := mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("email %s: from %q: %w", name, cfg.From, err)
	}
	if len(cfg.To) == 0 {
		return nil, fmt.Errorf("email %s: no recipients", name)
	}
	for _, to := range cfg.To {
		if _, err := mail.ParseAddress(to); err != nil {
			return nil, fmt.Errorf("email %s: to %q: %w", name, to, err)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Email{name: name, cfg: cfg, host: host}, nil
}

// Name identifies the sink.
func (e *Email) Name() string { return e.name }

// Deliver sends one message.
func (e *Email) Deliver(ctx context.Context, m Message) error {
	if err := e.send(ctx, m); err != nil {
		return fmt.Errorf("email %s: %w", e.name, err)
	}
	return nil
}

func (e *Email) send(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", e.cfg.SMTP)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("vigil"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		tc := &tls.Config{ServerName: e.host, MinVersion: tls.VersionTLS12}
		if e.cfg.TLSConfig != nil {
			tc = e.cfg.TLSConfig.Clone()
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	} else if !isLoopbackHost(e.host) {
		return fmt.Errorf("relay %s offers no STARTTLS; refusing to send in clear across the network: %w", e.host, ErrPermanent)
	}
	if e.cfg.Username != "" {
		// PlainAuth itself refuses to send the password without TLS (except to localhost).
		if err := c.Auth(smtp.PlainAuth("", e.cfg.Username, e.cfg.Password, e.host)); err != nil {
			return fmt.Errorf("auth as %s: %w", e.cfg.Username, err)
		}
	}
	from, _ := mail.ParseAddress(e.cfg.From)
	if err := c.Mail(from.Address); err != nil {
		return err
	}
	for _, to := range e.cfg.To {
		a, _ := mail.ParseAddress(to)
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("rcpt %s: %w", a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(e.compose(m)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// compose builds the RFC 5322 message. Titles come from log data: header
// values are stripped of line breaks and controls and MIME-encoded, so a
// crafted title cannot add headers.
func (e *Email) compose(m Message) []byte {
	var b bytes.Buffer
	subject := fmt.Sprintf("[vigil %s] %s", strings.ToUpper(orDash(m.Severity)), m.Title)
	fmt.Fprintf(&b, "From: %s\r\n", e.cfg.From)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(e.cfg.To, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", headerText(subject)))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@vigil>\r\n", randomID())
	fmt.Fprintf(&b, "X-Vigil-Id: %s\r\n", headerToken(m.ID, 200))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	fmt.Fprintf(qp, "%s\r\n\r\n", headerText(m.Title))
	fmt.Fprintf(qp, "Event:    %s\r\nSeverity: %s\r\nWhen:     %s\r\nId:       %s\r\n",
		m.Type, orDash(m.Severity), m.Time.UTC().Format(time.RFC3339), m.ID)
	if e.cfg.Link != "" {
		fmt.Fprintf(qp, "Open:     %s/incidents/%s\r\n", strings.TrimRight(e.cfg.Link, "/"), urlPathEscape(m.ID))
	}
	if len(m.Data) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, m.Data, "", "  ") == nil {
			fmt.Fprintf(qp, "\r\n%s\r\n", strings.ReplaceAll(pretty.String(), "\n", "\r\n"))
		}
	}
	qp.Close()
	return b.Bytes()
}

func headerText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut]
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
