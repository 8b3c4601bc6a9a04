package sink

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// nonPublic lists the ranges a sink may not reach unless allow_private is
// set: where an attacker who controls a sink URL (or its DNS) could reach
// cloud metadata services, the host itself or the internal network.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach IPv4 inside
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Public reports whether addr is an address a sink may reach by default.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// guardedDialer returns a dialer that refuses non-public addresses unless
// allowPrivate. The check runs on the address being connected to, after
// name resolution, so DNS cannot route around it.
func guardedDialer(allowPrivate bool, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if allowPrivate {
		return d
	}
	d.Control = func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("sink: refusing %s: %w", address, ErrPermanent)
		}
		if !Public(ap.Addr()) {
			return &refusedError{addr: ap.Addr()}
		}
		return nil
	}
	return d
}

type refusedError struct{ addr netip.Addr }

func (e *refusedError) Error() string {
	return fmt.Sprintf("sink: refusing to connect to non-public address %s (set allow_private for trusted internal receivers)", e.addr)
}

func (e *refusedError) Unwrap() error { return ErrPermanent }

// dialContext dials through the guard.
func dialContext(ctx context.Context, allowPrivate bool, network, address string, timeout time.Duration) (net.Conn, error) {
	return guardedDialer(allowPrivate, timeout).DialContext(ctx, network, address)
}
