package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen push|check [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "push":
		err = push(ctx, os.Args[2:])
	case "check":
		err = check(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// pushConfig are the push settings.
type pushConfig struct {
	url, keyFile, acked, summary string
	duration, every              time.Duration
	batch, conns, users, pid     int
	triggerEvery                 time.Duration
	stopOnError                  bool
	scenario, sinkFile           string
	scenarioHour, scenarioLead   time.Duration
}

// latencies keeps one interval's samples (bounded by requests, not records).
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }
func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.d
	l.d = nil
	return d
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

type interval struct {
	At          float64 `json:"t_s"`
	EventsPerS  float64 `json:"events_per_s"`
	AckP50ms    float64 `json:"ack_p50_ms"`
	AckP99ms    float64 `json:"ack_p99_ms"`
	LagEntries  int64   `json:"detection_lag_entries"`
	DelayMeanMs float64 `json:"detection_delay_mean_ms"`
	RSSMiB      float64 `json:"rss_mib"`
	CPUCores    float64 `json:"server_cpu_cores"` // CPU seconds the server used per second
	Retries429  int64   `json:"retries_429"`
}

type summary struct {
	Records       int64   `json:"records_acked"`
	Requests      int64   `json:"requests"`
	Seconds       float64 `json:"seconds"`
	EventsPerS    float64 `json:"events_per_s"`
	AckP50ms      float64 `json:"ack_p50_ms"`
	AckP99ms      float64 `json:"ack_p99_ms"`
	AlertN        int     `json:"alerts_measured"`
	AlertP50ms    float64 `json:"alert_p50_ms"`
	AlertP99ms    float64 `json:"alert_p99_ms"`
	AlertMissing  int     `json:"alerts_not_seen"`
	MaxLag        int64   `json:"max_detection_lag_entries"`
	MaxRSSMiB     float64 `json:"max_rss_mib"`
	CPUSeconds    float64 `json:"server_cpu_seconds"`
	EventsPerCPUs float64 `json:"events_per_server_cpu_second"`
	Retries429    int64   `json:"retries_429"`
	Errors        int64   `json:"errors"`
	// The scenario's incidents (high or critical), from when the record
	// that raised each was sent to its first message in the file sink.
	IncidentN       int     `json:"incidents_measured,omitempty"`
	IncidentP50ms   float64 `json:"incident_p50_ms,omitempty"`
	IncidentP99ms   float64 `json:"incident_p99_ms,omitempty"`
	IncidentMaxms   float64 `json:"incident_max_ms,omitempty"`
	IncidentsBefore int     `json:"incidents_raised_by_history,omitempty"`
	ReplayDone      bool    `json:"scenario_replayed,omitempty"`
	// Intervals come last: load.sh reads the summary above them.
	Intervals     []interval `json:"intervals"`
	StoppedByPeer bool       `json:"stopped_by_connection_error"`
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	var c pushConfig
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "vigil serve base URL")
	fs.StringVar(&c.keyFile, "key-file", "", "file holding an API key with the ingest and read permissions")
	fs.StringVar(&c.acked, "acked", "acked.txt", "where the id ranges of acknowledged requests go (appended)")
	fs.StringVar(&c.summary, "summary", "", "write the summary JSON here too")
	fs.DurationVar(&c.duration, "duration", 300*time.Second, "how long to push")
	fs.DurationVar(&c.every, "every", 10*time.Second, "report interval")
	fs.IntVar(&c.batch, "batch", 5000, "records per request")
	fs.IntVar(&c.conns, "conns", 4, "concurrent requests")
	fs.IntVar(&c.users, "users", 500, "distinct mailboxes in the simulated tenant")
	fs.IntVar(&c.pid, "pid", 0, "server process id, for its RSS (0: not sampled)")
	fs.DurationVar(&c.triggerEvery, "trigger-every", time.Second, "how often a record that fires a rule is pushed (alert latency)")
	fs.BoolVar(&c.stopOnError, "stop-on-error", false, "stop (exit 0) at the first connection error: the server was killed")
	fs.StringVar(&c.scenario, "scenario", "", "a `vigil simulate` directory with an intrusion, replayed during the push to measure incident latency (needs --sink-file)")
	fs.StringVar(&c.sinkFile, "sink-file", "", "the server's file sink, watched for the scenario's incidents")
	fs.DurationVar(&c.scenarioHour, "scenario-hour", 2*time.Second, "wall time per hour of the scenario's event time")
	fs.DurationVar(&c.scenarioLead, "scenario-lead", 6*time.Hour, "event time replayed in pace before the first intrusion record (the rest goes in first, fast)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kb, err := os.ReadFile(c.keyFile)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	key := strings.TrimSpace(string(kb))
	ackf, err := os.OpenFile(c.acked, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer ackf.Close()
	var ackMu sync.Mutex
	ackw := bufio.NewWriter(ackf)

	var sc *scenario
	if c.scenario != "" {
		if c.sinkFile == "" {
			return errors.New("--scenario needs --sink-file")
		}
		if sc, err = loadScenario(ctx, c.scenario, c.scenarioLead, c.scenarioHour); err != nil {
			return fmt.Errorf("scenario: %w", err)
		}
	}
	nb := make([]byte, 6)
	rand.Read(nb)
	nonce := "lg" + hex.EncodeToString(nb)
	var seq atomic.Int64
	var records, requests, retries, errs atomic.Int64
	var ack latencies
	var allAck []time.Duration
	var allMu sync.Mutex
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: c.conns * 2}}
	post := func(ctx context.Context, body []byte) (int, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", c.url+"/api/v1/ingest", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			return 429, nil
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, fmt.Errorf("ingest answered %s", resp.Status)
		}
		return 200, nil
	}
	if sc != nil {
		// The history first, then wait for detection to read it: the
		// measured push starts from a tenant with a learned baseline.
		t0 := time.Now()
		if err := sc.history(ctx, func(b []byte) (int, error) { return post(ctx, b) }); err != nil {
			return fmt.Errorf("scenario history: %w", err)
		}
		for {
			m, err := scrape(client, c.url, key)
			if err == nil && m["vigil_detection_lag_entries"] == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
		fmt.Fprintf(os.Stderr, "loadgen: scenario history of %d records pushed and detected in %.1fs; replaying %d more from %s, an hour per %s\n",
			sc.paced, time.Since(t0).Seconds(), len(sc.recs)-sc.paced, sc.from.Format(time.RFC3339), c.scenarioHour)
	}
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	clock := func() time.Time { return time.Now().UTC() }
	since := start.UTC().Add(-time.Minute)
	if sc != nil {
		clock = sc.now
		since = sc.from.Add(-time.Minute)
		// The replay runs to its end, past the push if need be: its
		// incident is what is measured.
		go sc.replay(parent, func(b []byte) (int, error) { return post(parent, b) })
		go sc.watchSink(parent, c.sinkFile)
	}

	// Triggers: ids whose acknowledgment time is known, waiting for their alert.
	var trigMu sync.Mutex
	triggers := map[string]time.Time{}
	var alertLat []time.Duration
	var nextTrigger atomic.Int64
	nextTrigger.Store(start.UnixNano())
	var stoppedByPeer atomic.Bool

	var wg sync.WaitGroup
	for range c.conns {
		wg.Go(func() {
			var buf []byte
			for ctx.Err() == nil {
				first := seq.Add(int64(c.batch)) - int64(c.batch)
				now := clock()
				buf = buf[:0]
				var trig string
				if nt, wall := nextTrigger.Load(), time.Now(); wall.UnixNano() >= nt && nextTrigger.CompareAndSwap(nt, wall.Add(c.triggerEvery).UnixNano()) {
					trig = fmt.Sprintf("%s-trigger-%d", nonce, first)
				}
				for i := range int64(c.batch) {
					buf = record(buf, nonce, first+i, now, c.users)
				}
				if trig != "" {
					buf = triggerRecord(buf, trig, now)
				}
				for {
					t0 := time.Now()
					code, err := post(ctx, buf)
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						errs.Add(1)
						if c.stopOnError && code == 0 {
							stoppedByPeer.Store(true)
							cancel()
							return
						}
						fmt.Fprintln(os.Stderr, "loadgen:", err)
						time.Sleep(time.Second)
						continue
					}
					if code == 429 {
						retries.Add(1)
						time.Sleep(time.Second)
						continue
					}
					d := time.Since(t0)
					ack.add(d)
					allMu.Lock()
					allAck = append(allAck, d)
					allMu.Unlock()
					records.Add(int64(c.batch))
					requests.Add(1)
					ackMu.Lock()
					fmt.Fprintf(ackw, "%s %d %d\n", nonce, first, first+int64(c.batch))
					ackMu.Unlock()
					if trig != "" {
						trigMu.Lock()
						triggers[trig] = time.Now()
						trigMu.Unlock()
					}
					break
				}
			}
		})
	}

	// Alerts: poll for the triggers' alerts.
	alertsDone := make(chan struct{})
	pollAlerts := func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", c.url+"/api/v1/alerts?since="+since.Format(time.RFC3339), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var out struct {
			Alerts []struct {
				RecordIDs []string `json:"record_ids"`
			} `json:"alerts"`
		}
		if json.NewDecoder(resp.Body).Decode(&out) != nil {
			return
		}
		now := time.Now()
		trigMu.Lock()
		for _, a := range out.Alerts {
			for _, id := range a.RecordIDs {
				if t, ok := triggers[id]; ok {
					alertLat = append(alertLat, now.Sub(t))
					delete(triggers, id)
				}
			}
		}
		trigMu.Unlock()
	}
	go func() {
		defer close(alertsDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				pollAlerts()
			}
		}
	}()

	// Reports.
	var sum summary
	var lastRec int64
	var lastDelaySum, lastDelayCount float64
	cpuStart, lastCPU := -1.0, 0.0
	if m, err := scrape(client, c.url, key); err == nil {
		cpuStart, lastCPU = m["process_cpu_seconds_total"], m["process_cpu_seconds_total"]
	}
	lastAt := start
	report := func() {
		now := time.Now()
		rec := records.Load()
		iv := interval{At: now.Sub(start).Seconds(), EventsPerS: float64(rec-lastRec) / now.Sub(lastAt).Seconds(), Retries429: retries.Load()}
		d := ack.take()
		iv.AckP50ms = float64(pct(d, 0.50).Microseconds()) / 1000
		iv.AckP99ms = float64(pct(d, 0.99).Microseconds()) / 1000
		if m, err := scrape(client, c.url, key); err == nil {
			iv.LagEntries = int64(m["vigil_detection_lag_entries"])
			s, n := m["vigil_detection_delay_seconds_sum"], m["vigil_detection_delay_seconds_count"]
			if n > lastDelayCount {
				iv.DelayMeanMs = (s - lastDelaySum) / (n - lastDelayCount) * 1000
			}
			lastDelaySum, lastDelayCount = s, n
			if cpu, ok := m["process_cpu_seconds_total"]; ok && cpuStart >= 0 {
				iv.CPUCores = (cpu - lastCPU) / now.Sub(lastAt).Seconds()
				lastCPU = cpu
			}
		}
		if c.pid > 0 {
			iv.RSSMiB = rssMiB(c.pid)
		}
		lastRec, lastAt = rec, now
		sum.Intervals = append(sum.Intervals, iv)
		sum.MaxLag = max(sum.MaxLag, iv.LagEntries)
		sum.MaxRSSMiB = max(sum.MaxRSSMiB, iv.RSSMiB)
		fmt.Fprintf(os.Stderr, "t=%5.0fs  %8.0f events/s  ack p50 %7.1f ms p99 %7.1f ms  detection lag %7d entries (mean delay %7.1f ms)  rss %6.0f MiB  server cpu %.2f cores  429s %d\n",
			iv.At, iv.EventsPerS, iv.AckP50ms, iv.AckP99ms, iv.LagEntries, iv.DelayMeanMs, iv.RSSMiB, iv.CPUCores, iv.Retries429)
	}
	tick := time.NewTicker(c.every)
	func() {
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				report()
			}
		}
	}()
	wg.Wait()
	<-alertsDone
	elapsed := time.Since(start)
	ackMu.Lock()
	ackw.Flush()
	ackMu.Unlock()
	if err := ackf.Sync(); err != nil {
		return err
	}
	if !stoppedByPeer.Load() {
		// The last triggers' alerts: give detection a moment to catch up.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			trigMu.Lock()
			n := len(triggers)
			trigMu.Unlock()
			if n == 0 {
				break
			}
			pollAlerts()
			time.Sleep(250 * time.Millisecond)
		}
	}
	if sc != nil && !stoppedByPeer.Load() {
		// The scenario's incidents: wait for the replay's last ones.
		if !sc.done.Load() {
			fmt.Fprintln(os.Stderr, "loadgen: the push ended before the scenario's replay did; waiting for it (lengthen --duration or shorten --scenario-hour)")
			for deadline := time.Now().Add(5 * time.Minute); !sc.done.Load() && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
			}
		}
		// Detection may trail the push: its incidents come when it catches
		// up, and their latency counts that wait (the sink is still read).
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if m, err := scrape(client, c.url, key); err == nil && m["vigil_detection_lag_entries"] == 0 {
				time.Sleep(3 * time.Second) // a refresh, then the outbox
				break
			}
		}
		sc.mu.Lock()
		sum.IncidentN, sum.IncidentsBefore = len(sc.lat), sc.early
		sum.IncidentP50ms = float64(pct(sc.lat, 0.50).Microseconds()) / 1000
		sum.IncidentP99ms = float64(pct(sc.lat, 0.99).Microseconds()) / 1000
		if len(sc.lat) > 0 {
			sum.IncidentMaxms = float64(slices.Max(sc.lat).Microseconds()) / 1000
		}
		sum.ReplayDone = sc.done.Load()
		sc.mu.Unlock()
	}
	sum.Records, sum.Requests = records.Load(), requests.Load()
	sum.Seconds = elapsed.Seconds()
	sum.EventsPerS = float64(sum.Records) / sum.Seconds
	sum.AckP50ms = float64(pct(allAck, 0.50).Microseconds()) / 1000
	sum.AckP99ms = float64(pct(allAck, 0.99).Microseconds()) / 1000
	trigMu.Lock()
	sum.AlertN, sum.AlertMissing = len(alertLat), len(triggers)
	sum.AlertP50ms = float64(pct(alertLat, 0.50).Microseconds()) / 1000
	sum.AlertP99ms = float64(pct(alertLat, 0.99).Microseconds()) / 1000
	trigMu.Unlock()
	sum.Retries429, sum.Errors, sum.StoppedByPeer = retries.Load(), errs.Load(), stoppedByPeer.Load()
	if m, err := scrape(client, c.url, key); err == nil && cpuStart >= 0 {
		// The server's CPU during the push: ingest, journal, and the
		// detection work done so far (a lagging detection owes more).
		sum.CPUSeconds = m["process_cpu_seconds_total"] - cpuStart
		if sum.CPUSeconds > 0 {
			sum.EventsPerCPUs = float64(sum.Records) / sum.CPUSeconds
		}
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	fmt.Println(string(b))
	if c.summary != "" {
		if err := os.WriteFile(c.summary, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// record appends one MailItemsAccessed record (a Bind of one message),
// with a unique Id, timed now.
func record(b []byte, nonce string, seq int64, now time.Time, nUsers int) []byte {
	u := int(seq % int64(nUsers))
	b = append(b, `{"CreationTime":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, `","Id":"`...)
	b = append(b, nonce...)
	b = append(b, '-')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"1003200`...)
	b = strconv.AppendInt(b, int64(u), 16)
	b = append(b, `","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.`...)
	b = strconv.AppendInt(b, int64(u%250+1), 10)
	b = append(b, `","UserId":"user`...)
	b = strconv.AppendInt(b, int64(u), 10)
	b = append(b, `@contoso.example","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"9199bf20-a13f-4107-85dc-02114787ef48","ClientIPAddress":"198.51.100.`...)
	b = strconv.AppendInt(b, int64(u%250+1), 10)
	b = append(b, `","ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"MailboxGuid":"00000000-0000-0000-0000-`...)
	b = fmt.Appendf(b, "%012d", u)
	b = append(b, `","MailboxOwnerUPN":"user`...)
	b = strconv.AppendInt(b, int64(u), 10)
	b = append(b, `@contoso.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OperationCount":1,"Folders":[{"FolderItems":[{"InternetMessageId":"<m`...)
	// 200 messages a mailbox, read again and again, as mailboxes are.
	b = strconv.AppendInt(b, int64(u)*1000+(seq/int64(nUsers))%200, 10)
	b = append(b, `@contoso.example>","SizeInBytes":`...)
	b = strconv.AppendInt(b, 2000+seq%50000, 10)
	b = append(b, `}],"Id":"LgAAAAAfolder`...)
	b = strconv.AppendInt(b, int64(u), 10)
	b = append(b, `","Path":"\\Inbox"}]}`...)
	return append(b, '\n')
}

// triggerRecord appends a Set-Mailbox that forwards the mailbox to an
// outside address: the built-in rule m365_mailbox_smtp_forwarding fires
// on this one record.
func triggerRecord(b []byte, id string, now time.Time) []byte {
	b = append(b, `{"CreationTime":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, `","Id":"`...)
	b = append(b, id...)
	b = append(b, `","Operation":"Set-Mailbox","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":1,"ResultStatus":"True","UserKey":"10032001","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.9","ObjectId":"user1@contoso.example","UserId":"user1@contoso.example","AppId":"","ClientAppId":"","ExternalAccess":false,"OrganizationName":"contoso.example","Parameters":[{"Name":"Identity","Value":"user1@contoso.example"},{"Name":"ForwardingSmtpAddress","Value":"smtp:drop@exfil.example"},{"Name":"DeliverToMailboxAndForward","Value":"True"}]}`...)
	return append(b, '\n')
}

var promLine = regexp.MustCompile(`^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$`)

// scrape reads the unlabelled series of /metrics (labelled ones are summed).
func scrape(client *http.Client, base, key string) (map[string]float64, error) {
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := promLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			out[m[1]] += v
		}
	}
	return out, sc.Err()
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// check reads the journal in DIR and the acked ranges: every acknowledged
// record must be there exactly once, and no pushed record twice.
func check(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	data := fs.String("data", "", "vigil serve's data directory (the server must be stopped)")
	acked := fs.String("acked", "acked.txt", "acked ranges written by push")
	alerts := fs.String("alerts", "", "a file sink's JSONL: no message id twice")
	incidents := fs.String("incidents", "", "GET /api/v1/incidents saved after the restart: each incident's opening must be in --alerts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type rng struct{ a, b int64 }
	ranges := map[string][]rng{}
	f, err := os.Open(*acked)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(f)
	var nAcked int64
	for sc.Scan() {
		var n string
		var a, b int64
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &n, &a, &b); err != nil {
			f.Close()
			return fmt.Errorf("acked file: %q: %w", sc.Text(), err)
		}
		ranges[n] = append(ranges[n], rng{a, b})
		nAcked += b - a
	}
	f.Close()
	// Counts per pushed id, by nonce; bounded by what was pushed.
	counts := map[string][]uint8{}
	for n, rs := range ranges {
		var hi int64
		for _, r := range rs {
			hi = max(hi, r.b)
		}
		counts[n] = make([]uint8, hi+1<<20)
	}
	j, err := journal.Open(ctx, *data, journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer j.Close()
	var twice, unacked, entries int64
	err = j.Read(ctx, 0, func(_ uint64, e *journal.Entry) error {
		entries++
		nonce, s, ok := strings.Cut(e.RecordID, "-")
		c, known := counts[nonce]
		if !ok || !known {
			return nil
		}
		seq, err := strconv.ParseInt(s, 10, 64)
		if err != nil || seq < 0 || seq >= int64(len(c)) {
			return nil // a trigger record
		}
		if c[seq] < 255 {
			c[seq]++
		}
		if c[seq] == 2 {
			twice++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	var missing int64
	acks := map[string][]bool{}
	for n, rs := range ranges {
		acks[n] = make([]bool, len(counts[n]))
		for _, r := range rs {
			for s := r.a; s < r.b; s++ {
				acks[n][s] = true
				if counts[n][s] == 0 {
					missing++
				}
			}
		}
	}
	for n, c := range counts {
		for s, k := range c {
			if k > 0 && !acks[n][s] {
				unacked++
			}
		}
	}
	fmt.Printf("journal: %d entries; %d records acknowledged; %d acknowledged but missing; %d stored twice; %d stored but never acknowledged (in flight at the kill)\n",
		entries, nAcked, missing, twice, unacked)
	var dupAlerts int
	if *alerts != "" {
		ids, err := alertIDs(*alerts)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				dupAlerts++
				fmt.Printf("alert %s delivered twice\n", id)
			}
			seen[id] = true
		}
		fmt.Printf("alerts: %d messages delivered, %d twice\n", len(ids), dupAlerts)
	}
	lost := 0
	if *incidents != "" {
		b, err := os.ReadFile(*incidents)
		if err != nil {
			return err
		}
		var incs struct {
			Incidents []struct {
				ID string `json:"id"`
			} `json:"incidents"`
		}
		if err := json.Unmarshal(b, &incs); err != nil {
			return fmt.Errorf("%s: %w", *incidents, err)
		}
		ids, err := alertIDs(*alerts)
		if err != nil {
			return err
		}
		for _, inc := range incs.Incidents {
			if !slices.Contains(ids, inc.ID+"/opened") {
				lost++
				fmt.Printf("incident %s: its opening was never delivered\n", inc.ID)
			}
		}
		fmt.Printf("incidents: %d, %d without a delivered opening\n", len(incs.Incidents), lost)
	}
	if missing > 0 || twice > 0 || dupAlerts > 0 || lost > 0 {
		return errors.New("check failed")
	}
	return nil
}

func alertIDs(path string) ([]string, error) {
	f, err := os.Open(filepath.Clean(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var m struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ids = append(ids, m.ID)
	}
	return ids, sc.Err()
}
