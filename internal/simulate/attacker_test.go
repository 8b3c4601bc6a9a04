package simulate

import (
	"net/netip"
	"testing"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// Two campaigns drawing attacker addresses from the same small network
// never share one (a shared address makes them one actor to any
// detector); one campaign may reuse its own.
func TestAttackerAddressesDistinct(t *testing.T) {
	s := &sim{}
	n := &network{entry: netinfo.Entry{Prefix: netip.MustParsePrefix("198.18.176.0/26")}}
	a, b := &campaignState{}, &campaignState{}
	g := newRNG(1, 2)
	mine := map[netip.Addr]bool{}
	reused := false
	for range 20 {
		ip := s.attackerHost(a, n, &g)
		reused = reused || mine[ip]
		mine[ip] = true
	}
	if !reused {
		t.Fatal("20 draws in 62 addresses never repeated: the test shows nothing")
	}
	for range 20 {
		if ip := s.attackerHost(b, n, &g); mine[ip] {
			t.Fatalf("second campaign drew %s, the first's", ip)
		}
	}
}
