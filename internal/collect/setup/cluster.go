package setup

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/cluster"
)

// Cluster is the cluster: section of vigil.yaml: vigil serve runs as one
// of several nodes around a NATS JetStream cluster. Without it vigil
// serve is a single process.
type Cluster struct {
	// Role of this node: "journal" (the one node that appends the stream
	// to the journal, detects and sends alerts), "ingest" (accepts
	// pushes and runs collectors, publishing to the stream) or "detect"
	// (a detection worker: detects the tenant from the stream while it
	// holds the tenant's detection lease, sending alerts to the stream
	// VIGIL_ALERTS; any number, one detecting at a time). Required.
	Role string `yaml:"role"`
	// Detection says where a journal or ingest node's alerts come from:
	// "local" (default: it detects over its own journal) or "workers" (the
	// deployment runs detect nodes; the node detects nothing and serves,
	// indexes and sends the alerts they put on VIGIL_ALERTS, so each goes
	// out once; an ingest node serves them too).
	Detection string `yaml:"detection"`
	// Tenant names the journal's records in the stream (subjects
	// raw.<tenant>.<source>); every node of one deployment uses the same
	// (default "default").
	Tenant string `yaml:"tenant"`
	// NATSURLs are the NATS servers (nats:// or tls://), at least one;
	// list all of them so a node that is down is not the only way in.
	NATSURLs []string `yaml:"nats_urls"`
	// CredentialsFile is a NATS user credentials file (.creds).
	CredentialsFile string `yaml:"credentials_file"`
	// TLS to the NATS servers: a CA to trust and, for mutual TLS, a
	// client certificate and key.
	TLSCAFile   string `yaml:"tls_ca_file"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Replicas of the raw stream: 1, 3 or 5 (default 3; acknowledged
	// records survive the loss of (replicas-1)/2 servers).
	Replicas int `yaml:"replicas"`
	// Partitions of the detection consumer group (default 8). Checked and
	// kept: detection workers partition by tenant today, one lease per
	// tenant (docs/scale.md), so this is not used yet.
	Partitions int `yaml:"partitions"`
	// Stream names the raw stream (default VIGIL_RAW).
	Stream string `yaml:"stream"`
	// DuplicateWindow is the stream's publish-dedupe window (default and
	// minimum 10m).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxAge is how long the stream keeps records (default 168h): the
	// longest a tenant's sequencer may be down without losing records.
	MaxAge time.Duration `yaml:"max_age"`
}

func (c *Config) checkCluster(bad func(path []any, format string, a ...any)) {
	k := c.Cluster
	if k == nil {
		return
	}
	at := func(p ...any) []any { return append([]any{"cluster"}, p...) }
	if len(k.NATSURLs) == 0 {
		bad(at(), "cluster needs nats_urls (the NATS servers, e.g. nats://nats-1:4222)")
	}
	for i, raw := range k.NATSURLs {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			bad(at("nats_urls", i), "nats_urls: %v", err)
		case u.Scheme != "nats" && u.Scheme != "tls":
			bad(at("nats_urls", i), "nats_urls: %q: want nats://host:port or tls://host:port", raw)
		case u.Host == "":
			bad(at("nats_urls", i), "nats_urls: %q has no host", raw)
		case u.User != nil:
			bad(at("nats_urls", i), "nats_urls: %q carries credentials; use credentials_file", u.Redacted())
		}
	}
	switch k.Role {
	case "journal", "ingest", "detect":
	case "":
		bad(at(), "cluster needs role: journal (exactly one node: appends the stream to the journal, detects, alerts), ingest or detect")
	default:
		bad(at("role"), "role %q: want journal, ingest or detect", k.Role)
	}
	switch k.Detection {
	case "":
		k.Detection = "local"
	case "local":
	case "workers":
		if k.Role == "detect" {
			bad(at("detection"), "detection: workers is for journal and ingest nodes (a detect node is a worker)")
		}
		// The journal node sends the detect nodes' alerts; an ingest node
		// with sinks would send every one a second time.
		if k.Role == "ingest" && c.Server != nil && len(c.Server.Sinks) > 0 {
			bad(at("detection"), "an ingest node with detection: workers serves the detect nodes' alerts but must not send them: the journal node's sinks do (remove server: sinks here)")
		}
	default:
		bad(at("detection"), "detection %q: want local (this node detects over its journal) or workers (detect nodes do, and this node reads their alerts)", k.Detection)
	}
	if k.Tenant == "" {
		k.Tenant = "default"
	} else if !tenantName.MatchString(k.Tenant) {
		bad(at("tenant"), "tenant %q: use letters, digits, '.', '_' and '-'", k.Tenant)
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		bad(at(), "tls_cert_file and tls_key_file go together")
	}
	switch k.Replicas {
	case 0:
		k.Replicas = cluster.DefaultReplicas
	case 1, 3, 5:
	default:
		bad(at("replicas"), "replicas %d: want 1, 3 or 5 (an odd quorum)", k.Replicas)
	}
	switch {
	case k.Partitions == 0:
		k.Partitions = cluster.DefaultPartitions
	case k.Partitions < 1 || k.Partitions > 1024:
		bad(at("partitions"), "partitions %d: want 1 to 1024", k.Partitions)
	}
	if k.Stream == "" {
		k.Stream = cluster.DefaultStream
	} else if !tenantName.MatchString(k.Stream) || strings.Contains(k.Stream, ".") {
		bad(at("stream"), "stream %q: use letters, digits, '_' and '-'", k.Stream)
	}
	switch {
	case k.DuplicateWindow == 0:
		k.DuplicateWindow = cluster.MinDuplicateWindow
	case k.DuplicateWindow < cluster.MinDuplicateWindow:
		bad(at("duplicate_window"), "duplicate_window %v: at least %v, longer than any publish retry", k.DuplicateWindow, cluster.MinDuplicateWindow)
	}
	switch {
	case k.MaxAge == 0:
		k.MaxAge = cluster.DefaultMaxAge
	case k.MaxAge < k.DuplicateWindow:
		bad(at("max_age"), "max_age %v is shorter than duplicate_window %v", k.MaxAge, k.DuplicateWindow)
	}
}

// ClusterOptions builds the connection options of the cluster: section,
// loading its TLS files; ok is false when there is no such section.
func (c *Config) ClusterOptions() (opts cluster.Options, ok bool, err error) {
	k := c.Cluster
	if k == nil {
		return cluster.Options{}, false, nil
	}
	opts = cluster.Options{
		URLs:            k.NATSURLs,
		CredentialsFile: c.Resolve(k.CredentialsFile),
		Stream:          k.Stream,
		Replicas:        k.Replicas,
		Partitions:      k.Partitions,
		DuplicateWindow: k.DuplicateWindow,
		MaxAge:          k.MaxAge,
	}
	if k.TLSCAFile != "" || k.TLSCertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(c.Resolve(k.TLSCAFile))
			if err != nil {
				return opts, true, fmt.Errorf("cluster: tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opts, true, fmt.Errorf("cluster: tls_ca_file %s holds no PEM certificate", k.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		if k.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.Resolve(k.TLSCertFile), c.Resolve(k.TLSKeyFile))
			if err != nil {
				return opts, true, fmt.Errorf("cluster: client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.TLS = tc
	}
	if opts.CredentialsFile != "" {
		if _, err := os.Stat(opts.CredentialsFile); err != nil {
			return opts, true, fmt.Errorf("cluster: credentials_file: %w", err)
		}
	}
	return opts, true, nil
}
