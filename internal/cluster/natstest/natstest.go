// Package natstest runs a NATS JetStream cluster inside a test process,
// on loopback ports chosen at start, so the cluster package can be tested
// against real RAFT replication, leader elections and node restarts
// without any external service. Only tests import it; production binaries
// never link nats-server.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a running in-process JetStream cluster.
type Cluster struct {
	t     testing.TB
	name  string
	mu    sync.Mutex
	nodes []*node
}

type node struct {
	name        string
	store       string
	clientPort  int
	clusterPort int
	srv         *server.Server // nil while stopped
}

// Start starts an n-node JetStream cluster (n is 3 in practice: the
// smallest that keeps an R3 quorum when one node is down) and stops it
// when the test ends. It returns once a meta leader is elected.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: "vigil-test"}
	ports := freePorts(t, 2*n)
	for i := range n {
		c.nodes = append(c.nodes, &node{
			name:        fmt.Sprintf("n%d", i+1),
			store:       t.TempDir(),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		})
	}
	t.Cleanup(c.Shutdown)
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitMetaLeader(30 * time.Second)
	return c
}

// freePorts reserves n distinct loopback ports by listening on port 0 and
// closing; another process could take one in between, which on loopback
// in a test is rare enough to surface as a plain start error.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func (c *Cluster) start(i int) error {
	nd := c.nodes[i]
	var routes []string
	for _, o := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
	}
	opts := &server.Options{
		ServerName:         nd.name,
		Host:               "127.0.0.1",
		Port:               nd.clientPort,
		JetStream:          true,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		StoreDir:           nd.store,
		NoLog:              true,
		NoSigs:             true,
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: nd.clusterPort,
		},
		Routes: server.RoutesFromStr(strings.Join(routes, ",")),
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("node %s: not ready for connections within 20 s", nd.name)
	}
	c.mu.Lock()
	nd.srv = s
	c.mu.Unlock()
	return nil
}

// URLs is the client URL of every node, comma-separated, as nats.Connect
// takes it; stopped nodes are included so clients reach them after a
// restart.
func (c *Cluster) URLs() string {
	var us []string
	for _, nd := range c.nodes {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", nd.clientPort))
	}
	return strings.Join(us, ",")
}

// URL is the client URL of node name.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[c.index(name)].clientPort)
}

// Names lists the node names (the server names JetStream reports as
// leaders and replicas).
func (c *Cluster) Names() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.name)
	}
	return out
}

func (c *Cluster) index(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	c.t.Fatalf("natstest: no node %q", name)
	return -1
}

// Kill stops node name abruptly: its connections drop and its RAFT groups
// lose a member. Its store stays for Restart.
func (c *Cluster) Kill(name string) {
	c.mu.Lock()
	nd := c.nodes[c.index(name)]
	s := nd.srv
	nd.srv = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts a killed node again with its old store and ports.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	if err := c.start(c.index(name)); err != nil {
		c.t.Fatal(err)
	}
}

// StreamLeader is the name of the node leading stream (in the default
// account), or "" while there is none.
func (c *Cluster) StreamLeader(stream string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nd := range c.nodes {
		if nd.srv != nil && nd.srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return nd.name
		}
	}
	return ""
}

// WaitMetaLeader waits until the JetStream meta group has a leader and
// every running node is current with it.
func (c *Cluster) WaitMetaLeader(timeout time.Duration) {
	c.t.Helper()
	if err := c.waitFor(timeout, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		leader, running, peers := false, 0, 0
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			running++
			if nd.srv.JetStreamIsLeader() {
				leader = true
				// Placement of an R3 stream needs the leader to know every
				// node as online with stats ("no suitable peers" otherwise).
				peers = len(nd.srv.JetStreamClusterPeers())
			}
			if !nd.srv.JetStreamIsCurrent() {
				return fmt.Errorf("node %s is not current", nd.name)
			}
		}
		if !leader {
			return errors.New("no meta leader")
		}
		if peers < running {
			return fmt.Errorf("the meta leader sees %d of %d running nodes online", peers, running)
		}
		return nil
	}); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
}

// WaitStreamLeader waits until stream has a leader and returns its name.
func (c *Cluster) WaitStreamLeader(stream string, timeout time.Duration) string {
	c.t.Helper()
	var name string
	if err := c.waitFor(timeout, func() error {
		if name = c.StreamLeader(stream); name == "" {
			return fmt.Errorf("stream %s has no leader", stream)
		}
		return nil
	}); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	return name
}

// waitFor polls cond until it returns nil or timeout passes; it returns
// cond's last error on timeout.
func (c *Cluster) waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shutdown stops every node; Start registers it with t.Cleanup.
func (c *Cluster) Shutdown() {
	for _, nd := range c.nodes {
		c.Kill(nd.name)
	}
}

// JetStream connects a client to the cluster (closed when the test ends)
// and returns its JetStream API.
func (c *Cluster) JetStream(opts ...nats.Option) jetstream.JetStream {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js
}
