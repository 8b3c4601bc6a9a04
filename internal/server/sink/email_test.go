package sink

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeSMTP is a minimal SMTP server on loopback that records one message.
func fakeSMTP(t *testing.T) (addr string, got chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		w := func(s string) { c.Write([]byte(s + "\r\n")) }
		w("220 fake ESMTP")
		var data strings.Builder
		var rcpts []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
				w("250-fake\r\n250 8BITMIME")
			case strings.HasPrefix(cmd, "MAIL FROM"):
				w("250 ok")
			case strings.HasPrefix(cmd, "RCPT TO"):
				rcpts = append(rcpts, strings.TrimSpace(line[8:]))
				w("250 ok")
			case cmd == "DATA":
				w("354 go")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					data.WriteString(l)
				}
				w("250 queued")
				got <- "RCPT " + strings.Join(rcpts, ",") + "\r\n" + data.String()
			case cmd == "QUIT":
				w("221 bye")
				return
			default:
				w("502 no")
			}
		}
	}()
	return ln.Addr().String(), got
}

func TestEmail(t *testing.T) {
	addr, got := fakeSMTP(t)
	e, err := NewEmail("mail", EmailConfig{SMTP: addr, From: "vigil@example.com", To: []string{"soc@example.com"}, Link: "https://vigil.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// A title from log data that tries to inject a Bcc header.
	m := Message{ID: "inc-3/opened", Type: "incident.opened", Time: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC),
		Severity: "critical", Title: "Forged token\r\nBcc: attacker@evil.example", Data: json.RawMessage(`{"messages":223}`)}
	if err := e.Deliver(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	msg := <-got
	if !strings.HasPrefix(msg, "RCPT <soc@example.com>") {
		t.Fatalf("recipients: %q", msg[:40])
	}
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(strings.ToLower(l), "bcc:") {
			t.Fatalf("header injected: %q", l)
		}
	}
	if !strings.Contains(head, "Subject: [vigil CRITICAL] Forged token  Bcc: attacker@evil.example") {
		t.Fatalf("subject missing or mangled:\n%s", head)
	}
	if !strings.Contains(body, "https://vigil.example.com/incidents/inc-3%2Fopened") || !strings.Contains(body, `"messages": 223`) {
		t.Fatalf("body lacks link or data:\n%s", body)
	}
}

func TestEmailRefusesClearTextAcrossNetworks(t *testing.T) {
	if _, err := NewEmail("mail", EmailConfig{SMTP: "smtp.example.com:587", From: "not an address", To: []string{"soc@example.com"}}); err == nil {
		t.Fatal("bad from accepted")
	}
	e := &Email{name: "mail", host: "smtp.example.com", cfg: EmailConfig{Timeout: time.Second}}
	// Drive send against a loopback server while claiming a remote host name:
	// a relay without STARTTLS must be refused.
	addr, _ := fakeSMTP(t)
	e.cfg.SMTP = addr
	e.cfg.From, e.cfg.To = "vigil@example.com", []string{"soc@example.com"}
	err := e.Deliver(t.Context(), Message{ID: "x", Type: "incident.opened"})
	if err == nil || !strings.Contains(err.Error(), "no STARTTLS") {
		t.Fatalf("err = %v, want a refusal to send in clear", err)
	}
}
