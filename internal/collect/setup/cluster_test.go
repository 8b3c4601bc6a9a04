package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterSection(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vigil.creds"), []byte("creds"), 0o600)
	cfg, err := Parse(filepath.Join(dir, "vigil.yaml"), []byte(`data: ./vigil-data
server:
  listen: 127.0.0.1:8443
cluster:
  role: journal
  nats_urls: [nats://nats-1:4222, nats://nats-2:4222, tls://nats-3:4222]
  credentials_file: vigil.creds
  partitions: 16
  duplicate_window: 30m
`))
	if err != nil {
		t.Fatal(err)
	}
	opts, ok, err := cfg.ClusterOptions()
	if err != nil || !ok {
		t.Fatalf("ClusterOptions: ok=%v err=%v", ok, err)
	}
	if len(opts.URLs) != 3 || opts.Replicas != 3 || opts.Partitions != 16 || opts.Stream != "VIGIL_RAW" ||
		opts.DuplicateWindow != 30*time.Minute || opts.MaxAge != 7*24*time.Hour {
		t.Fatalf("options %+v", opts)
	}
	if cfg.Cluster.Role != "journal" || cfg.Cluster.Tenant != "default" || cfg.Cluster.Detection != "local" {
		t.Fatalf("cluster %+v", cfg.Cluster)
	}
	if opts.CredentialsFile != filepath.Join(dir, "vigil.creds") {
		t.Fatalf("credentials file %q is not resolved beside the config", opts.CredentialsFile)
	}

	single, err := Parse("vigil.yaml", []byte("data: d\nserver:\n  listen: 127.0.0.1:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := single.ClusterOptions(); ok {
		t.Fatal("no cluster: section, yet cluster options")
	}
}

func TestClusterSectionErrors(t *testing.T) {
	cases := map[string]string{
		"cluster:\n  role: ingest\n  nats_url: [nats://a:4222]\n":                                 `:5: unknown key "nats_url"`,
		"cluster:\n  role: ingest\n  replicas: 3\n":                                               `:3: cluster needs nats_urls`,
		"cluster:\n  role: ingest\n  nats_urls: [http://a:4222]\n":                                `:5: nats_urls: "http://a:4222": want nats://host:port`,
		"cluster:\n  role: ingest\n  nats_urls:\n    - nats://a:4222\n    - nats://u:pw@b:4222\n": `:7: nats_urls: "nats://u:xxxxx@b:4222" carries credentials`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  replicas: 2\n":                 `:6: replicas 2: want 1, 3 or 5`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  partitions: -1\n":              `:6: partitions -1: want 1 to 1024`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  duplicate_window: 2m\n":        `:6: duplicate_window 2m0s: at least 10m0s`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  max_age: 5m\n":                 `:6: max_age 5m0s is shorter than duplicate_window`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  stream: raw.x\n":               `:6: stream "raw.x"`,
		"cluster:\n  nats_urls: [nats://a:4222]\n":                                                `:3: cluster needs role`,
		"cluster:\n  role: journal\n  nats_urls: [nats://a:4222]\n  detection: remote\n":          `:6: detection "remote": want local`,
		"cluster:\n  role: detect\n  nats_urls: [nats://a:4222]\n  detection: workers\n":          `:6: detection: workers is for journal and ingest nodes`,
		"cluster:\n  role: worker\n  nats_urls: [nats://a:4222]\n":                                `:4: role "worker": want journal, ingest or detect`,
		"cluster:\n  role: ingest\n  tenant: a/b\n  nats_urls: [nats://a:4222]\n":                 `:5: tenant "a/b"`,
		"cluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  tls_key_file: k.pem\n":         `tls_cert_file and tls_key_file go together`,
	}
	// Sinks on an ingest node that serves the detect nodes' alerts would
	// send them twice.
	twice := "data: d\nserver:\n  sinks:\n    - type: file\n      path: a.jsonl\ncluster:\n  role: ingest\n  nats_urls: [nats://a:4222]\n  detection: workers\n"
	if _, err := Parse("vigil.yaml", []byte(twice)); err == nil || !strings.Contains(err.Error(), "must not send them") {
		t.Errorf("sinks on an ingest node with detection: workers: %v", err)
	}
	for _, role := range []string{"journal", "ingest"} {
		ok := "data: d\nserver:\n  listen: 127.0.0.1:1\ncluster:\n  role: " + role + "\n  nats_urls: [nats://a:4222]\n  detection: workers\n"
		if role == "journal" {
			ok = strings.Replace(ok, "  listen: 127.0.0.1:1\n", "  sinks:\n    - type: file\n      path: a.jsonl\n", 1)
		}
		if _, err := Parse("vigil.yaml", []byte(ok)); err != nil {
			t.Errorf("%s node with detection: workers: %v", role, err)
		}
	}
	for text, want := range cases {
		_, err := Parse("vigil.yaml", []byte("data: d\nserver: {}\n"+text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}
