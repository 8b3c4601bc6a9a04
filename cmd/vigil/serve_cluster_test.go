package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/vigil-audit/vigil/internal/cluster"
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
		if float64(len(alerts)) == alertsSent && len(incs) > 0 && pos == lastAlertSeq(t, c) {
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
	// The journal's own routes answer on the ingest and the detect node
	// too, from the journal node.
	first := checkJournalRoutes(t, jn, []*servedVigil{in, dn}, uint64(res.Accepted))
	// Triage made on the ingest node goes through the stream: the journal
	// node journals it and shows it; the ingest node shows it from there.
	var triaged string
	for _, inc := range incs {
		if inc.Severity == "critical" || inc.Severity == "high" {
			triaged = inc.ID
			break
		}
	}
	uiLogin(t, in, triaged).triage(t, triaged, "acknowledged", "triaged on the ingest node")
	var afterTriage struct{ Size uint64 }
	for deadline := time.Now().Add(30 * time.Second); afterTriage.Size != uint64(res.Accepted)+1; time.Sleep(50 * time.Millisecond) {
		jn.get(t, "/api/v1/checkpoint", &afterTriage)
		if time.Now().After(deadline) {
			t.Fatalf("the journal node holds %d entries after a triage on the ingest node; want %d", afterTriage.Size, res.Accepted+1)
		}
	}
	showsTriage := func(s *servedVigil, node string) {
		t.Helper()
		page := uiLogin(t, s, triaged).page(t, "/ui/incidents/"+triaged)
		if !strings.Contains(page, `id="status">acknowledged<`) || !strings.Contains(page, "triaged on the ingest node") {
			t.Errorf("the %s's page of incident %s does not show the triage made on the ingest node", node, triaged)
		}
	}
	showsTriage(jn, "journal node")
	showsTriage(in, "ingest node")
	// A rule disabled on the journal node goes through the stream to the
	// detect nodes, which stop alerting on it from its place in the
	// stream on; the journal node shows it disabled once it has come back
	// through its journal.
	const fwdRule = "c0c13f2f-ef23-441b-8c82-41c6d73bf0ce" // Set-Mailbox forwarding (rules/vigil)
	streamEnd := float64(res.Accepted) + 1                 // and the triage
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
			if pos := metric(t, jn, "vigil_detection_feed_position"); pos == lastAlertSeq(t, c) && sent > 0 {
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

	// Without a journal node, an ingest node says so and when to retry;
	// the journal node back (restarted, or its data directory on another
	// host) answers through it again, signing with the same key.
	in2, _ := node("ingest")
	if c, h, b := rawGet(t, in2, in2.key, "/api/v1/checkpoint"); c != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("checkpoint with no journal node: %d (Retry-After %q) %s", c, h.Get("Retry-After"), b)
	}
	jn2 := startServe(t, "--config", filepath.Join(filepath.Dir(jdata), "vigil.yaml"))
	jn2.key = jn.key
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, _, _ := rawGet(t, in2, in2.key, "/api/v1/checkpoint"); c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingest node does not answer from the journal node back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	back := checkJournalRoutes(t, jn2, []*servedVigil{in2}, uint64(streamEnd))
	if back.VerifierKey != first.VerifierKey {
		t.Fatalf("the journal node back signs with %s, before with %s", back.VerifierKey, first.VerifierKey)
	}
	jn2.stop(t)

	// The journal node's disk is lost. A new one on an empty data
	// directory fills its journal from the stream, although the lost
	// node's consumer is still in the cluster: the same entries in the
	// same order (the same root at the same size), then what comes next.
	if err := os.RemoveAll(jdata); err != nil {
		t.Fatal(err)
	}
	jn3 := startServe(t, "--config", filepath.Join(filepath.Dir(jdata), "vigil.yaml"))
	if jn3.key == "" {
		t.Fatal("the journal node on an empty disk printed no admin key")
	}
	waitSize := func(want uint64) servedCheckpoint {
		t.Helper()
		for deadline := time.Now().Add(40 * time.Second); ; {
			cp, _ := verifiedCheckpoint(t, jn3)
			if cp.Size == want {
				return cp
			}
			if time.Now().After(deadline) {
				t.Fatalf("the journal node on an empty disk holds %d entries, want %d; its log:\n%s", cp.Size, want, jn3.stderr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if cp := waitSize(back.Size); cp.Root != back.Root {
		t.Fatalf("the rebuilt journal's root at %d is %s, the lost one's %s", cp.Size, cp.Root, back.Root)
	}
	// The triage was journaled from the stream too.
	rebuilt := uiLogin(t, jn3, "")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// 404 until the node has followed the alert stream to the incident.
		if page, _ := rebuilt.tryPage(t, "/ui/incidents/"+triaged); strings.Contains(page, `id="status">acknowledged<`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rebuilt journal node does not show the triage of %s", triaged)
		}
	}
	in = in2 // pushOne's ingest node
	pushOne("after-rebuild")
	waitSize(uint64(streamEnd))
	in2.stop(t)
	jn3.stop(t)
	vr, err = journal.Verify(t.Context(), jdata, journal.VerifyOptions{})
	if err != nil {
		t.Fatalf("the rebuilt journal does not verify: %v", err)
	}
	if vr.Entries != uint64(streamEnd) {
		t.Fatalf("verified %d entries in the rebuilt journal, want %v", vr.Entries, streamEnd)
	}
}

// lastAlertSeq is the alert stream sequence of the last alert or incident
// message of the deployment's tenant (the holder records between them are
// the detect nodes' own).
func lastAlertSeq(t *testing.T, c *natstest.Cluster) float64 {
	t.Helper()
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, cluster.AlertStream)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, kind := range []string{"alert", "incident"} {
		m, err := st.GetLastMsgForSubject(ctx, "alerts.default."+kind)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, m.Sequence)
	}
	return float64(last)
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

// rawGet asks a node with its key (none if key is "") and returns the
// answer as given.
func rawGet(t *testing.T, s *servedVigil, key, path string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

type servedCheckpoint struct {
	Origin      string
	Size        uint64
	Root        string
	Checkpoint  string
	VerifierKey string `json:"verifier_key"`
}

// verifiedCheckpoint asks s for the checkpoint and checks its signature
// with the verifier key it names.
func verifiedCheckpoint(t *testing.T, s *servedVigil) (servedCheckpoint, journal.Checkpoint) {
	t.Helper()
	code, _, b := rawGet(t, s, s.key, "/api/v1/checkpoint")
	var cp servedCheckpoint
	if err := json.Unmarshal(b, &cp); code != 200 || err != nil {
		t.Fatalf("checkpoint from %s: %d %s", s.url, code, b)
	}
	v, err := journal.NewVerifier(cp.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := journal.ParseCheckpoint([]byte(cp.Checkpoint), v)
	if err != nil {
		t.Fatalf("the checkpoint from %s does not verify: %v", s.url, err)
	}
	if parsed.Size != cp.Size || base64.StdEncoding.EncodeToString(parsed.Root[:]) != cp.Root {
		t.Fatalf("the signed checkpoint from %s says %d entries, root %x; the answer %d, %s", s.url, parsed.Size, parsed.Root, cp.Size, cp.Root)
	}
	return cp, parsed
}

// verifiedProof asks s for entry i's inclusion proof and checks it
// against the signed checkpoint it comes with.
func verifiedProof(t *testing.T, s *servedVigil, i uint64) []byte {
	t.Helper()
	code, _, b := rawGet(t, s, s.key, "/api/v1/proof?index="+strconv.FormatUint(i, 10))
	var p struct {
		TreeSize    uint64 `json:"tree_size"`
		LeafHash    string `json:"leaf_hash"`
		Root        string
		Proof       []string
		Checkpoint  string
		VerifierKey string `json:"verifier_key"`
	}
	if err := json.Unmarshal(b, &p); code != 200 || err != nil {
		t.Fatalf("proof of %d from %s: %d %s", i, s.url, code, b)
	}
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	var hashes [][]byte
	for _, h := range p.Proof {
		hashes = append(hashes, dec(h))
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, p.TreeSize, dec(p.LeafHash), hashes, dec(p.Root)); err != nil {
		t.Fatalf("the proof of %d from %s does not verify: %v", i, s.url, err)
	}
	v, err := journal.NewVerifier(p.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := journal.ParseCheckpoint([]byte(p.Checkpoint), v)
	if err != nil || cp.Size != p.TreeSize || !bytes.Equal(cp.Root[:], dec(p.Root)) {
		t.Fatalf("the proof of %d from %s is not of its signed checkpoint (%v)", i, s.url, err)
	}
	return b
}

// searchRows is a search or timeline answer without its cursor (which
// carries the time it was asked at).
type searchRows struct {
	Columns   []string
	Rows      []map[string]any
	Truncated bool
}

func askRows(t *testing.T, s *servedVigil, path string) (searchRows, string) {
	t.Helper()
	code, h, b := rawGet(t, s, s.key, path)
	var r searchRows
	if err := json.Unmarshal(b, &r); code != 200 || err != nil {
		t.Fatalf("%s from %s: %d %s", path, s.url, code, b)
	}
	return r, h.Get("X-Vigil-Index-Behind")
}

// checkJournalRoutes asks every node of others what the journal node jn
// answers for its journal's routes: the same signed checkpoint of size
// entries, proofs that verify, the same search and timeline rows, the
// same refusals; a caller without a key is refused by the node asked. It
// returns the journal node's checkpoint.
func checkJournalRoutes(t *testing.T, jn *servedVigil, others []*servedVigil, size uint64) servedCheckpoint {
	t.Helper()
	want, _ := verifiedCheckpoint(t, jn)
	if want.Size != size {
		t.Fatalf("the journal node's checkpoint has %d entries, want %d", want.Size, size)
	}
	// Rows the index holds (?wait: it has caught up with the journal), and
	// an entity of them for the timeline.
	events, behind := askRows(t, jn, "/api/v1/search?limit=50&wait=30s")
	if len(events.Rows) == 0 || behind != "0" {
		t.Fatalf("the journal node's index gives %d rows, %s entries behind", len(events.Rows), behind)
	}
	var entity string
	for _, r := range events.Rows {
		if m, ok := r["mailbox"].(string); ok && m != "" {
			entity = "mailbox=" + url.QueryEscape(m)
			break
		}
	}
	if entity == "" {
		t.Fatalf("no row names a mailbox: %v", events.Columns)
	}
	timeline, _ := askRows(t, jn, "/api/v1/timeline?limit=50&"+entity)
	if len(timeline.Rows) == 0 {
		t.Fatalf("the timeline of %s is empty", entity)
	}
	counted, _ := askRows(t, jn, "/api/v1/search?count=true&table=alerts")
	for _, s := range others {
		got, _ := verifiedCheckpoint(t, s)
		if got != want {
			t.Fatalf("checkpoint from %s:\n%+v\nfrom the journal node:\n%+v", s.url, got, want)
		}
		for _, i := range []uint64{0, size / 2, size - 1} {
			if a, b := verifiedProof(t, s, i), verifiedProof(t, jn, i); !bytes.Equal(a, b) {
				t.Fatalf("proof of %d from %s:\n%s\nfrom the journal node:\n%s", i, s.url, a, b)
			}
		}
		for path, w := range map[string]searchRows{"/api/v1/search?limit=50&wait=30s": events,
			"/api/v1/timeline?limit=50&" + entity: timeline, "/api/v1/search?count=true&table=alerts": counted} {
			r, behind := askRows(t, s, path)
			if !reflect.DeepEqual(r, w) || behind != "0" {
				t.Fatalf("%s from %s (%s behind): %d rows %v; from the journal node %d rows %v", path, s.url, behind, len(r.Rows), r.Columns, len(w.Rows), w.Columns)
			}
		}
		// Refusals come back as the journal node gives them.
		for _, path := range []string{"/api/v1/proof?index=" + strconv.FormatUint(size+10, 10), "/api/v1/search?table=nope", "/api/v1/timeline"} {
			jc, _, jb := rawGet(t, jn, jn.key, path)
			c, _, b := rawGet(t, s, s.key, path)
			if c != jc || !bytes.Equal(b, jb) || c < 400 {
				t.Fatalf("%s from %s: %d %s; from the journal node %d %s", path, s.url, c, b, jc, jb)
			}
		}
		// The node asked checks the key; nothing is forwarded without one.
		if c, _, _ := rawGet(t, s, "", "/api/v1/checkpoint"); c != http.StatusUnauthorized {
			t.Fatalf("checkpoint from %s without a key: %d", s.url, c)
		}
	}
	return want
}

// TestServeClusterRefusesStreamGap: the journal node's disk is lost after
// the stream discarded the first records (here by a purge, as its limits
// would): a journal node on an empty data directory refuses to start,
// saying which stream sequences are missing and what to do; with
// --accept-stream-gap it starts and journals what the stream still holds.
func TestServeClusterRefusesStreamGap(t *testing.T) {
	c := natstest.Start(t, 3)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "data: %s\nserver:\n  listen: 127.0.0.1:0\ncluster:\n  role: journal\n  nats_urls: [%s]\n", data, c.URLs()), 0o600)
	jn := startServe(t, "--config", cfg)
	var body strings.Builder
	for i := range 10 {
		fmt.Fprintf(&body, `{"CreationTime":"%s","Id":"gap-%d","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"1","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.9","UserId":"user1@contoso.example"}`+"\n",
			time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05"), i)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", jn.url+"/api/v1/ingest", strings.NewReader(body.String()))
	req.Header.Set("Authorization", "Bearer "+jn.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	waitSize := func(s *servedVigil, want uint64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			var cp struct{ Size uint64 }
			s.get(t, "/api/v1/checkpoint", &cp)
			if cp.Size == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("journal holds %d entries, want %d", cp.Size, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitSize(jn, 10)
	jn.stop(t)

	// The stream discards its first five records; the disk is lost.
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, cluster.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(6)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	var out, errb syncBuffer
	code := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--config", cfg}, &out, &errb)
	if code == 0 || ctx.Err() != nil {
		t.Fatalf("journal node on an empty disk with the stream's start discarded: exit %d, ctx %v, stderr:\n%s", code, ctx.Err(), errb.String())
	}
	for _, want := range []string{"no longer holds sequences 1 to 5", "backup", "--accept-stream-gap"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, errb.String())
		}
	}
	jn2 := startServe(t, "--config", cfg, "--accept-stream-gap")
	// The refusing start created the data directory and its admin key.
	m := keyRe.FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no admin key printed by the refusing start:\n%s", errb.String())
	}
	jn2.key = m[1]
	waitSize(jn2, 5)
	if !strings.Contains(jn2.stderr.String(), "accepted: records of this tenant among them are missing") {
		t.Errorf("the accepted gap is not logged:\n%s", jn2.stderr.String())
	}
	jn2.stop(t)
}
