package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster/natstest"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
)

// TestServeCluster: two vigil serve processes around a 3-node JetStream
// cluster. Records pushed to the ingest node are acknowledged through the
// stream and end up, exactly once, in the journal node's journal, which
// verifies. A detect node detects the tenant from the stream and, when it
// stops, hands the tenant to another detect node, which goes on from its
// snapshot.
func TestServeCluster(t *testing.T) {
	logs := t.TempDir()
	// Records in time order, as from a live feed.
	_, recs := simulatedFeed(t, simulate.Config{Users: 10, Days: 2, Seed: 7,
		Campaigns: []string{simulate.CampaignForgedToken}}, logs)
	var body bytes.Buffer
	for _, r := range recs {
		body.Write(r)
		body.WriteByte('\n')
	}
	records := bytes.Count(body.Bytes(), []byte("\n"))

	c := natstest.Start(t, 3)
	urls := "[" + c.URLs() + "]"
	sent := filepath.Join(t.TempDir(), "alerts.jsonl")
	node := func(role string) (*servedVigil, string) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "vigil.yaml")
		extra, sinks := "", ""
		if role == "detect" {
			sinks = fmt.Sprintf("  networks: [%s]\n", filepath.Join(logs, simulate.NetworksFile))
		}
		if role == "ingest" {
			// An ingest node answers for the cluster's incidents and alerts
			// too (its sinks: none, the journal node sends).
			extra = "  detection: workers\n"
		}
		if role == "journal" {
			// Detection runs on the detect nodes; the journal node serves
			// and sends their alerts.
			extra = "  detection: workers\n"
			sinks = fmt.Sprintf("  sinks:\n    - type: file\n      path: %s\n", sent)
		}
		os.WriteFile(cfg, fmt.Appendf(nil, "data: %s\nserver:\n  listen: 127.0.0.1:0\n%scluster:\n  role: %s\n  nats_urls: %s\n%s",
			filepath.Join(dir, "data"), sinks, role, urls, extra), 0o600)
		s := startServe(t, "--config", cfg)
		if s.key == "" {
			t.Fatal("no admin key printed at first start")
		}
		return s, filepath.Join(dir, "data")
	}
	jn, jdata := node("journal")
	in, _ := node("ingest")
	dn, _ := node("detect")

	req, _ := http.NewRequestWithContext(t.Context(), "POST", in.url+"/api/v1/ingest", bytes.NewReader(body.Bytes()))
	req.Header.Set("Authorization", "Bearer "+in.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Accepted, Duplicates, Quarantined int }
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || res.Accepted == 0 || res.Quarantined != 0 {
		t.Fatalf("push to the ingest node: %d %+v", resp.StatusCode, res)
	}
	t.Logf("%d lines pushed: %+v", records, res)

	deadline := time.Now().Add(40 * time.Second)
	for {
		var cp struct{ Size uint64 }
		jn.get(t, "/api/v1/checkpoint", &cp)
		if cp.Size == uint64(res.Accepted) {
			break
		}
		if cp.Size > uint64(res.Accepted) {
			t.Fatalf("journal node holds %d entries, more than the %d accepted", cp.Size, res.Accepted)
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal node holds %d of %d accepted entries", cp.Size, res.Accepted)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A second journal node would fork the journal: it is refused.
	dir := t.TempDir()
	cfg2 := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg2, fmt.Appendf(nil, "data: %s\nserver:\n  listen: 127.0.0.1:0\ncluster:\n  role: journal\n  nats_urls: %s\n",
		filepath.Join(dir, "data"), urls), 0o600)
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if code := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--config", cfg2}, &out, &errb); code == 0 || ctx.Err() != nil ||
		!strings.Contains(errb.String(), "another node holds the journal lease") {
		t.Fatalf("second journal node: exit %d, ctx %v, stderr:\n%s", code, ctx.Err(), errb.String())
	}

	// The detect node reads the whole stream (a record is one message).
	waitMetric(t, dn, "vigil_cluster_detection_refreshed_position", float64(res.Accepted))
	// The journal node serves what the detect node sent, once: the
	// intrusion's incident, every alert, each incident state delivered
	// to its sink once.
	alertsSent := metric(t, dn, "vigil_cluster_detection_alerts_sent_total")
	updatesSent := metric(t, dn, "vigil_cluster_detection_incident_updates_sent_total")
	listsSent := metric(t, dn, "vigil_cluster_detection_incident_lists_sent_total")
	if alertsSent <= 0 || updatesSent <= 0 || listsSent <= 0 {
		t.Fatalf("the detect node sent %v alerts and %v incident updates", alertsSent, updatesSent)
	}
	var incs []struct{ ID, Severity string }
	var alerts []json.RawMessage
	for deadline := time.Now().Add(30 * time.Second); ; {
		var a struct{ Alerts []json.RawMessage }
		var i struct {
			Incidents []struct{ ID, Severity string }
		}
		jn.get(t, "/api/v1/alerts", &a)
		jn.get(t, "/api/v1/incidents", &i)
		alerts, incs = a.Alerts, i.Incidents
		// They come from the alert stream (one message per alert and
		// update), not from detection of its own.
		pos := metric(t, jn, "vigil_detection_feed_position")
		if float64(len(alerts)) == alertsSent && len(incs) > 0 && pos == alertsSent+updatesSent+listsSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal node serves %d alerts and %d incidents, read the alert stream up to %v; the detect node sent %v alerts and %v updates; its log:\n%s",
				len(alerts), len(incs), pos, alertsSent, updatesSent, jn.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.ContainsFunc(incs, func(i struct{ ID, Severity string }) bool { return i.Severity == "critical" || i.Severity == "high" }) {
		t.Fatalf("the intrusion made no high or critical incident: %+v", incs)
	}
	// The ingest node answers the same.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var i struct {
			Incidents []struct{ ID, Severity string }
		}
		var a struct{ Alerts []json.RawMessage }
		in.get(t, "/api/v1/incidents", &i)
		in.get(t, "/api/v1/alerts", &a)
		if slices.Equal(i.Incidents, incs) && len(a.Alerts) == len(alerts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingest node serves %d incidents and %d alerts; the journal node %d and %d", len(i.Incidents), len(a.Alerts), len(incs), len(alerts))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A rule disabled on the journal node goes through the stream to the
	// detect nodes, which stop alerting on it from its place in the
	// stream on; the journal node shows it disabled once it has come back
	// through its journal.
	const fwdRule = "c0c13f2f-ef23-441b-8c82-41c6d73bf0ce" // Set-Mailbox forwarding (rules/vigil)
	streamEnd := float64(res.Accepted)
	pushOne := func(id string) {
		t.Helper()
		rec := fmt.Sprintf(`{"CreationTime":"%s","Id":"%s","Operation":"Set-Mailbox","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":1,"ResultStatus":"True","UserKey":"1","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.9","ObjectId":"user1@contoso.example","UserId":"user1@contoso.example","Parameters":[{"Name":"Identity","Value":"user1@contoso.example"},{"Name":"ForwardingSmtpAddress","Value":"smtp:drop@exfil.example"}]}`,
			time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05"), id)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", in.url+"/api/v1/ingest", strings.NewReader(rec+"\n"))
		req.Header.Set("Authorization", "Bearer "+in.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("push %s: %d", id, resp.StatusCode)
		}
		streamEnd++
	}
	// settle waits until the detector holding the tenant has read and
	// refreshed up to the stream's end and the journal node has read
	// everything it sent; it returns the alerts of fwdRule there.
	settle := func(det *servedVigil) int {
		t.Helper()
		waitMetric(t, det, "vigil_cluster_detection_refreshed_position", streamEnd)
		for deadline := time.Now().Add(30 * time.Second); ; {
			var a struct {
				Alerts []struct {
					Signal string `json:"rule_id"`
				}
			}
			jn.get(t, "/api/v1/alerts", &a)
			sent := metric(t, det, "vigil_cluster_detection_alerts_sent_total") + metric(t, det, "vigil_cluster_detection_incident_updates_sent_total") +
				metric(t, det, "vigil_cluster_detection_incident_lists_sent_total")
			if pos := metric(t, jn, "vigil_detection_feed_position"); pos >= sent && sent > 0 {
				n := 0
				for _, x := range a.Alerts {
					if x.Signal == fwdRule {
						n++
					}
				}
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("the journal node did not read what the detect node sent")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	pushOne("fwd-before")
	if n := settle(dn); n != 1 {
		t.Fatalf("%d alerts of the forwarding rule before it was disabled, want 1", n)
	}
	req, _ = http.NewRequestWithContext(t.Context(), "POST", jn.url+"/api/v1/rules/"+fwdRule+"/disable", strings.NewReader(`{"reason":"leaver's forwarding, agreed"}`))
	req.Header.Set("Authorization", "Bearer "+jn.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("rule switch on the journal node: %d %s", resp.StatusCode, b)
	}
	streamEnd++ // the switch is a message of the stream
	for deadline := time.Now().Add(30 * time.Second); ; {
		var rs struct {
			Rules []struct {
				ID      string
				Enabled bool
				Pending *struct{ Rule string }
			}
		}
		jn.get(t, "/api/v1/rules", &rs)
		i := slices.IndexFunc(rs.Rules, func(r struct {
			ID      string
			Enabled bool
			Pending *struct{ Rule string }
		}) bool {
			return r.ID == fwdRule
		})
		if i >= 0 && !rs.Rules[i].Enabled && rs.Rules[i].Pending == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal node does not show the rule disabled: %+v", rs.Rules[i])
		}
		time.Sleep(100 * time.Millisecond)
	}
	pushOne("fwd-after")
	if n := settle(dn); n != 1 {
		t.Fatalf("%d alerts of the forwarding rule after it was disabled, want still 1", n)
	}
	// The incident updates the detect node sent, for the sink's check at
	// the end.
	updatesSent = metric(t, dn, "vigil_cluster_detection_incident_updates_sent_total")

	// A second detect node stands by while the first detects, and takes
	// the tenant over from the first one's snapshot when it stops.
	dn2, _ := node("detect")
	if v := metric(t, dn2, "vigil_cluster_detection_held"); v != 0 {
		t.Fatalf("second detect node: vigil_cluster_detection_held %v while the first detects", v)
	}
	dn.stop(t)
	waitMetric(t, dn2, "vigil_cluster_detection_held", 1)
	// It resumes from the first one's snapshot at stop: the whole stream,
	// and the rule still disabled.
	waitMetric(t, dn2, "vigil_cluster_detection_restored_position", streamEnd)
	pushOne("fwd-after-takeover")
	waitMetric(t, dn2, "vigil_cluster_detection_position", streamEnd)
	if n := metric(t, dn2, "vigil_cluster_detection_alerts_sent_total"); n != 0 {
		t.Fatalf("the node that took over sent %v alerts; the forwarding rule is disabled", n)
	}
	dn2.stop(t)
	for deadline := time.Now().Add(30 * time.Second); ; {
		var cp struct{ Size uint64 }
		jn.get(t, "/api/v1/checkpoint", &cp)
		if float64(cp.Size) == streamEnd {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal node holds %d entries; the stream %v", cp.Size, streamEnd)
		}
		time.Sleep(50 * time.Millisecond)
	}

	in.stop(t)
	jn.stop(t)
	// Stopping flushed the outbox: each incident state once, none twice.
	f, err := os.ReadFile(sent)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(f), []byte("\n")) {
		var m struct{ ID string }
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if seen[m.ID] {
			t.Errorf("%s delivered twice", m.ID)
		}
		seen[m.ID] = true
	}
	if float64(len(seen)) != updatesSent {
		t.Errorf("the sink had %d incident states; the detect node sent %v updates", len(seen), updatesSent)
	}
	vr, err := journal.Verify(t.Context(), jdata, journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("journal node's journal does not verify: %v", err)
	}
	// Every record pushed and the rule switch, once each.
	if vr.Entries != uint64(streamEnd) {
		t.Fatalf("verified %d entries, want %v", vr.Entries, streamEnd)
	}
}

// metric reads a gauge's value from a node's /metrics (-1 when absent).
func metric(t *testing.T, s *servedVigil, name string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

func waitMetric(t *testing.T, s *servedVigil, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := metric(t, s, name)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", name, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
