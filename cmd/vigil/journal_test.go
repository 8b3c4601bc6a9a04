package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

func TestJournalCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	q := filepath.Join(t.TempDir(), "q.jsonl")
	fixture := filepath.Join(decoderFixtures, "ual_mailitemsaccessed.jsonl")

	code, out, errs := runVigil(t, "ingest", "--data", dir, "--quiet", "--quarantine", q, decoderFixtures)
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errs)
	}
	m := regexp.MustCompile(`appended (\d+), duplicate (\d+), quarantined (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || m[3] == "0" {
		t.Fatalf("ingest output: %s", out)
	}
	if !strings.Contains(out, "checkpoint:\n") || !strings.Contains(out, "— vigil.local/journal/") {
		t.Fatalf("ingest prints no checkpoint: %s", out)
	}
	if _, err := os.Stat(q); err != nil {
		t.Fatalf("quarantine file: %v", err)
	}

	code, out, errs = runVigil(t, "verify", "--data", dir)
	if code != 0 || !regexp.MustCompile(`^verified `+m[1]+` entries, root [0-9a-f]{64}\n`).MatchString(out) {
		t.Fatalf("verify: exit %d: %s%s", code, out, errs)
	}

	code, cp, errs := runVigil(t, "checkpoint", "--data", dir)
	if code != 0 {
		t.Fatalf("checkpoint: %s", errs)
	}
	cpFile := filepath.Join(t.TempDir(), "cp.txt")
	os.WriteFile(cpFile, []byte(cp), 0o644)

	// Re-delivery is acknowledged, not stored.
	code, out, errs = runVigil(t, "ingest", "--data", dir, "--quiet", "--quarantine", q, fixture)
	if code != 0 || !regexp.MustCompile(`appended 0, duplicate [1-9]\d*, quarantined 0`).MatchString(out) {
		t.Fatalf("re-ingest: exit %d: %s%s", code, out, errs)
	}
	code, out, errs = runVigil(t, "verify", "--data", dir, "--checkpoint", cpFile, "--key", filepath.Join(dir, "journal.pub"))
	if code != 0 || !strings.Contains(out, "extends the given checkpoint") {
		t.Fatalf("verify --checkpoint: exit %d: %s%s", code, out, errs)
	}

	// The inclusion proof checks with the standard verifier.
	code, out, errs = runVigil(t, "prove", "--data", dir, "--index", "1", "--json")
	if code != 0 {
		t.Fatalf("prove: %s", errs)
	}
	var p proofJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(p.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(p.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root := dec(p.Root)
	if !strings.Contains(n.Text, p.Root+"\n") {
		t.Fatalf("root %s not in the signed checkpoint %q", p.Root, n.Text)
	}
	leafData := dec(p.LeafData)
	if got := rfc6962.DefaultHasher.HashLeaf(leafData); !bytes.Equal(got, dec(p.LeafHash)) {
		t.Fatalf("leaf hash does not match the leaf data")
	}
	var hashes [][]byte
	for _, h := range p.Proof {
		hashes = append(hashes, dec(h))
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, p.TreeSize, dec(p.LeafHash), hashes, root); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	code, out, _ = runVigil(t, "prove", "--data", dir, "--index", "1")
	if code != 0 || !strings.Contains(out, "How to check") || !strings.Contains(out, p.Proof[0]) {
		t.Fatalf("prove text: %s", out)
	}

	// Export gives every record back, raw bytes verbatim.
	code, out, errs = runVigil(t, "export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: %s", errs)
	}
	src, _ := os.ReadFile(fixture)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != int(p.TreeSize) {
		t.Fatalf("export wrote %d lines, journal has %d entries", len(lines), p.TreeSize)
	}
	fromFixture := 0
	for _, l := range lines {
		var r struct {
			Origin    string          `json:"origin"`
			Raw       json.RawMessage `json:"raw"`
			RawBase64 string          `json:"raw_base64"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		if r.Raw == nil && r.RawBase64 == "" {
			t.Fatalf("line without raw bytes: %s", l)
		}
		if strings.HasPrefix(r.Origin, fixture+":") {
			fromFixture++
			if !bytes.Contains(src, r.Raw) || !strings.Contains(l, string(r.Raw)) {
				t.Fatalf("raw bytes not verbatim: %s", r.Raw)
			}
		}
	}
	if fromFixture == 0 {
		t.Fatal("no exported record came from the UAL fixture")
	}

	// Damage is a verdict: exit 1 naming segment, offset and kind.
	seg := filepath.Join(dir, "segments", "00000000000000000000.seg")
	b, _ := os.ReadFile(seg)
	b[len(b)/2] ^= 0x20
	os.WriteFile(seg, b, 0o644)
	code, _, errs = runVigil(t, "verify", "--data", dir)
	if code != 1 || !regexp.MustCompile(`segment 00000000000000000000\.seg offset \d+ entry \d+ checksum mismatch`).MatchString(errs) {
		t.Fatalf("verify of a damaged journal: exit %d: %s", code, errs)
	}
	if code, _, _ := runVigil(t, "ingest", "--data", dir, fixture); code != 1 {
		t.Fatalf("ingest into a damaged journal: exit %d", code)
	}
}

func TestJournalCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"verify"},
		{"ingest", "--data", t.TempDir()},
		{"prove", "--data", t.TempDir()},
		{"export"},
		{"checkpoint", "--data", t.TempDir(), "extra"},
	} {
		if code, _, _ := runVigil(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// The inputs of one ingest are appended merged by event time: a tenant's
// sign-in and mail exports do not land one file after the other, which
// made detection over the journal (serve, reindex) judge a month of mail
// reads after the sign-ins that issued their tokens had been forgotten.
func TestIngestMergesInputsByTime(t *testing.T) {
	logs := filepath.Join(t.TempDir(), "logs")
	if _, err := simulate.Run(t.Context(), simulate.Config{Users: 10, Days: 5, Seed: 4, Campaigns: []string{simulate.CampaignForgedToken}}, logs); err != nil {
		t.Fatal(err)
	}
	t.Run("in order", func(t *testing.T) { ingestInTimeOrder(t, logs) })
	// Purview exports come newest first: read back to front.
	newest := filepath.Join(t.TempDir(), "newest-first")
	if err := os.MkdirAll(newest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ual.jsonl", "signins.jsonl", "gws.jsonl"} {
		b, err := os.ReadFile(filepath.Join(logs, f))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
		if f == "ual.jsonl" {
			lines[len(lines)-1] += "\n"
			slices.Reverse(lines)
		}
		if err := os.WriteFile(filepath.Join(newest, f), []byte(strings.Join(lines, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("mail export newest first", func(t *testing.T) {
		out := ingestInTimeOrder(t, newest)
		if !strings.Contains(out, "newest first: 1 input(s) read back to front") || !strings.Contains(out, "ual.jsonl") {
			t.Errorf("ingest did not say it read the export back to front:\n%s", out)
		}
	})
	// Compressed, it cannot be read back to front: appended as it is,
	// every record, and ingest says how many came late.
	t.Run("compressed newest first", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(newest, "ual.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		gz := filepath.Join(t.TempDir(), "ual.jsonl.gz")
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(gz, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "journal")
		code, out, errs := runVigil(t, "ingest", "--data", dir, "--quiet", "--no-index", gz, filepath.Join(newest, "signins.jsonl"))
		if code != 0 || !strings.Contains(errs, "records came more than 10m0s behind a newer one") {
			t.Fatalf("ingest: exit %d: %s%s", code, out, errs)
		}
		m := regexp.MustCompile(`ingested 2 files, (\d+) records: appended (\d+), duplicate 0, quarantined 0`).FindStringSubmatch(out)
		if m == nil || m[1] != m[2] || m[1] == "0" {
			t.Errorf("want every record appended:\n%s", out)
		}
	})
}

// ingestInTimeOrder ingests logs and checks the journal's entries are in
// event time order; it returns ingest's output.
func ingestInTimeOrder(t *testing.T, logs string) string {
	dir := filepath.Join(t.TempDir(), "journal")
	code, out, errs := runVigil(t, "ingest", "--data", dir, "--quiet", "--no-index", logs)
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s%s", code, out, errs)
	}
	dec := source.NewDecoder(nil, nil)
	var newest time.Time
	var back, entries int
	sources := map[string]int{}
	if err := journal.Replay(t.Context(), dir, 0, func(idx uint64, en *journal.Entry) error {
		evs, err := dec.Decode(en.Raw, event.Origin{Index: int(idx)})
		if err != nil || len(evs) == 0 {
			return fmt.Errorf("entry %d: %d events (%v)", idx, len(evs), err)
		}
		entries++
		sources[evs[0].Source]++
		// The simulated files are each in time order to within seconds.
		if at := evs[0].Time; at.Before(newest.Add(-time.Minute)) {
			back++
		} else if at.After(newest) {
			newest = at
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(sources) < 3 || sources["entra.signin"] == 0 || sources["m365.ual"] == 0 {
		t.Fatalf("the journal holds %v", sources)
	}
	if back > 0 {
		t.Fatalf("%d of %d journal entries are more than a minute older than an entry before them: the inputs were not merged by time", back, entries)
	}
	return out
}

// A simulated tenant's exports ingested into a journal and detected there
// by vigil reindex (vigil serve's detection, in journal order) give the
// alerts and incidents vigil hunt finds over the files themselves.
func TestReindexAfterIngestFindsWhatHuntFinds(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates, ingests, indexes and detects a tenant")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	if _, err := simulate.Run(t.Context(), simulate.Config{Users: 15, Days: 14, Seed: 3, Campaigns: []string{simulate.CampaignForgedToken}, Confounders: simulate.ConfounderNames}, logs); err != nil {
		t.Fatal(err)
	}
	nets := filepath.Join(logs, simulate.NetworksFile)
	rep := filepath.Join(t.TempDir(), "report")
	code, out, errs := runVigil(t, "hunt", "--quiet", "--behaviours", "--report", rep, "--networks", nets, logs)
	if code != 0 && code != 1 {
		t.Fatalf("hunt: exit %d: %s%s", code, out, errs)
	}
	var huntIncs []struct {
		ID string `json:"id"`
	}
	b, err := os.ReadFile(filepath.Join(rep, "incidents.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &huntIncs); err != nil {
		t.Fatal(err)
	}
	dets, err := os.ReadFile(filepath.Join(rep, "detections.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	huntAlerts := strconv.Itoa(bytes.Count(dets, []byte("\n")))
	if len(huntIncs) == 0 || huntAlerts == "0" {
		t.Fatalf("hunt found %d incidents, %s alerts", len(huntIncs), huntAlerts)
	}

	dir := filepath.Join(t.TempDir(), "journal")
	if code, out, errs := runVigil(t, "ingest", "--data", dir, "--quiet", "--no-index", logs); code != 0 {
		t.Fatalf("ingest: exit %d: %s%s", code, out, errs)
	}
	code, out, errs = runVigil(t, "reindex", "--data", dir, "--networks", nets, "--index-memory", "256MiB")
	if code != 0 {
		t.Fatalf("reindex: exit %d: %s%s", code, out, errs)
	}
	if a := regexp.MustCompile(`: (\d+) alerts \(`).FindStringSubmatch(out); a == nil || a[1] != huntAlerts {
		t.Errorf("reindex raised %v alerts; hunt %s: %s", a, huntAlerts, out)
	}
	code, out, errs = runVigil(t, "search", "--data", dir, "--format", "csv", "--sql", `SELECT id FROM incidents WHERE status NOT IN ('merged', 'dissolved') ORDER BY id`)
	if code != 0 {
		t.Fatalf("search: exit %d: %s%s", code, out, errs)
	}
	var want []string
	for _, inc := range huntIncs {
		want = append(want, inc.ID)
	}
	slices.Sort(want)
	if got := strings.Fields(strings.TrimPrefix(out, "id\n")); !slices.Equal(got, want) {
		t.Errorf("reindex's incidents %v; hunt's %v", got, want)
	}
}
