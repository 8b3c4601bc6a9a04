package sink

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readFrame reads one octet-counted RFC 5425 frame.
func readFrame(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	n, err := r.ReadString(' ')
	if err != nil {
		t.Fatal(err)
	}
	size, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil {
		t.Fatalf("frame length %q", n)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

func TestSyslogCEF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for range 2 {
			frames <- readFrame(t, r)
		}
	}()
	s, err := NewSyslog("siem", SyslogConfig{Address: ln.Addr().String(), Plain: true, Hostname: "vigil-host", Version: "1.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The title comes from log data and tries to forge CEF fields and a new line.
	m := Message{ID: "inc-7/opened", Type: "incident.opened", Time: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC),
		Severity: "critical", Title: "Mail read by app|evil=1\nCEF:0|x", Data: json.RawMessage(`{"a":"b=c"}`)}
	for range 2 {
		if err := s.Deliver(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	got := <-frames
	<-frames
	re := regexp.MustCompile(`^<106>1 2026-11-02T03:04:05\.000000Z vigil-host vigil \d+ incident\.opened - (.*)$`)
	sm := re.FindStringSubmatch(got)
	if sm == nil {
		t.Fatalf("not an RFC 5424 line: %q", got)
	}
	want := `CEF:0|vigil|vigil|1.2|incident.opened|Mail read by app\|evil=1CEF:0\|x|10|rt=1793588645000 externalId=inc-7/opened cs1Label=severity cs1=critical msg={"a":"b\=c"}`
	if sm[1] != want {
		t.Fatalf("CEF\n got %s\nwant %s", sm[1], want)
	}
}

func TestSyslogRefusesPlainAcrossNetworks(t *testing.T) {
	if _, err := NewSyslog("siem", SyslogConfig{Address: "siem.example.com:514", Plain: true}); err == nil {
		t.Fatal("plain TCP to a remote host accepted")
	}
	if _, err := NewSyslog("siem", SyslogConfig{Address: "siem.example.com:6514", Format: "leef"}); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestFileSink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "alerts.jsonl")
	f, _ := NewFile("file", p)
	for _, id := range []string{"a", "b"} {
		if err := f.Deliver(t.Context(), Message{ID: id, Type: "incident.opened", Title: "line\nbreak", Data: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), b)
	}
	var m Message
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m.ID != "b" || m.Title != "line\nbreak" {
		t.Fatalf("line 2 %q: %v", lines[1], err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}
