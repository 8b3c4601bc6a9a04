package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

// TestMain lets the test binary run as vigil itself (VIGIL_TEST_AS_MAIN=1),
// so a test can kill a real vigil process without building one.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_TEST_AS_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// vigilProc is vigil serve in a child process.
type vigilProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
}

var childListenRe = regexp.MustCompile(`listening on (http://\S+) `)

func startVigilProc(t *testing.T, data string) *vigilProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_AS_MAIN=1")
	p := &vigilProc{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := childListenRe.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	select {
	case p.url = <-urlc:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("vigil serve did not start:\n%s", p.stderr.String())
	}
	return p
}

// A SIGKILL while records are being pushed loses no acknowledged record
// and stores none twice; the restarted server recovers the journal, which
// verifies, and detection catches up with it.
func TestServeKill9UnderPush(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vigil serve as a child process")
	}
	data := filepath.Join(t.TempDir(), "data")
	p := startVigilProc(t, data)
	m := keyRe.FindStringSubmatch(p.stderr.String())
	if m == nil {
		p.cmd.Process.Kill()
		t.Fatalf("no admin key printed:\n%s", p.stderr.String())
	}
	key := m[1]

	var mu sync.Mutex
	acked := map[string]bool{}
	var batches int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for c := range 3 {
		wg.Go(func() {
			for b := 0; ; b++ {
				select {
				case <-stop:
					return
				default:
				}
				var body bytes.Buffer
				var ids []string
				now := time.Now().UTC().Format("2006-01-02T15:04:05")
				for i := range 400 {
					id := fmt.Sprintf("kill-%d-%d-%d", c, b, i)
					ids = append(ids, id)
					fmt.Fprintf(&body, `{"CreationTime":"%s","Id":"%s","Operation":"MailItemsAccessed","RecordType":50,"ResultStatus":"Succeeded","UserId":"user%d@contoso.example","ClientIPAddress":"198.51.100.%d","Workload":"Exchange","MailboxOwnerUPN":"user%d@contoso.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"}],"Folders":[{"FolderItems":[{"InternetMessageId":"<m%d@contoso.example>"}],"Path":"\\Inbox"}]}`+"\n",
						now, id, i%20, i%20+1, i%20, i%50)
				}
				req, _ := http.NewRequest("POST", p.url+"/api/v1/ingest", &body)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					continue
				}
				mu.Lock()
				for _, id := range ids {
					acked[id] = true
				}
				batches++
				mu.Unlock()
			}
		})
	}
	// Kill once a good number of pushes were acknowledged, with more in flight.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := batches
		mu.Unlock()
		if n >= 30 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatalf("nothing was acknowledged before the kill:\n%s", p.stderr.String())
	}

	// Restart on the same data: the journal recovers, detection catches up.
	p2 := startVigilProc(t, data)
	caughtUp := false
	for range 600 {
		req, _ := http.NewRequest("GET", p2.url+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := client.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"detection_lag": 0`) {
				caughtUp = true
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p2.cmd.Process.Signal(syscall.SIGTERM)
	if err := p2.cmd.Wait(); err != nil {
		t.Fatalf("restarted vigil serve did not stop cleanly: %v\n%s", err, p2.stderr.String())
	}
	if !caughtUp {
		t.Fatalf("detection never caught up after the restart:\n%s", p2.stderr.String())
	}

	j, err := journal.Open(t.Context(), data, journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	if err := j.Read(t.Context(), 0, func(_ uint64, e *journal.Entry) error {
		seen[e.RecordID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged record %s is in the journal %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("record %s stored %d times", id, n)
		}
	}
	res, err := journal.Verify(t.Context(), data, journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("verify after kill -9: %v", err)
	}
	if res.Entries < uint64(len(acked)) {
		t.Fatalf("journal verifies %d entries, %d were acknowledged", res.Entries, len(acked))
	}
	t.Logf("%d records acknowledged before the kill, %d stored", len(acked), res.Entries)
}
