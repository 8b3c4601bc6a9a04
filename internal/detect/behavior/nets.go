package behavior

import (
	"io"
	"net/netip"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// NetInfo is what is known about the network an address belongs to.
type NetInfo struct {
	ASN     uint32
	Org     string
	Country string
	Kind    string // isp, corporate, hosting, vpn, tor, proxy; "" if unknown
}

// Networks looks addresses up. Implementations: NetTable (the simulator's
// networks.csv format, or any user-written table) and MMDB.
type Networks interface {
	Lookup(ip netip.Addr) (NetInfo, bool)
}

// NetTable is a network table in internal/netinfo's format (the
// simulator's networks.csv, or any user-written table), as Networks.
type NetTable struct {
	t *netinfo.Table
}

// Lookup implements Networks.
func (n *NetTable) Lookup(ip netip.Addr) (NetInfo, bool) {
	e, ok := n.t.Lookup(ip)
	if !ok {
		return NetInfo{}, false
	}
	return NetInfo{ASN: e.ASN, Org: e.ASOrg, Country: e.Country, Kind: string(e.Kind)}, true
}

// Len is the number of rows.
func (n *NetTable) Len() int { return n.t.Len() }

// LoadNetTableFile reads a network table file with netinfo.LoadFile.
func LoadNetTableFile(path string) (*NetTable, error) {
	t, err := netinfo.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return &NetTable{t: t}, nil
}

// LoadNetTable reads a network table with netinfo.Load: CSV with the
// header prefix,asn,as_org,country,city,kind (columns by name; a plain
// address is a /32 or /128), or a JSON array of objects with those keys.
// A bad row is an error naming it.
func LoadNetTable(r io.Reader) (*NetTable, error) {
	t, err := netinfo.Load(r)
	if err != nil {
		return nil, err
	}
	return &NetTable{t: t}, nil
}

// multiNets tries each source in turn.
type multiNets []Networks

func (m multiNets) Lookup(ip netip.Addr) (NetInfo, bool) {
	var out NetInfo
	found := false
	for _, n := range m {
		if n == nil {
			continue
		}
		if i, ok := n.Lookup(ip); ok {
			if !found {
				out, found = i, true
				continue
			}
			// Later sources fill what earlier ones lack (an ASN database
			// knows no network kind).
			if out.Kind == "" {
				out.Kind = i.Kind
			}
			if out.Country == "" {
				out.Country = i.Country
			}
			if out.ASN == 0 {
				out.ASN, out.Org = i.ASN, i.Org
			}
		}
	}
	return out, found
}

// CombineNetworks returns a Networks that asks each in order.
func CombineNetworks(ns ...Networks) Networks {
	var m multiNets
	for _, n := range ns {
		if n != nil {
			m = append(m, n)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
