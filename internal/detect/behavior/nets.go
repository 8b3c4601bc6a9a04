package behavior

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
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

type prefix = netip.Prefix

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address or prefix %q", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
	}
	return p.Masked(), nil
}

// NetTable is a prefix table; the longest matching prefix wins.
type NetTable struct {
	rows []netRow
}

type netRow struct {
	p    netip.Prefix
	info NetInfo
}

// Lookup implements Networks.
func (t *NetTable) Lookup(ip netip.Addr) (NetInfo, bool) {
	ip = ip.Unmap()
	for _, r := range t.rows {
		if r.p.Contains(ip) {
			return r.info, true
		}
	}
	return NetInfo{}, false
}

// Len is the number of rows.
func (t *NetTable) Len() int { return len(t.rows) }

// LoadNetTableFile reads a network table (see LoadNetTable).
func LoadNetTableFile(path string) (*NetTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network table: %w", err)
	}
	defer f.Close()
	t, err := LoadNetTable(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// LoadNetTable reads a table in the simulator's networks format: CSV with
// the header prefix,asn,as_org,country,city,kind, or a JSON array of
// objects with those keys. A bad row is an error naming it.
func LoadNetTable(r io.Reader) (*NetTable, error) {
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, errors.New("network table: empty input")
		}
		if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			_, _ = br.ReadByte()
			continue
		}
		if b[0] == '[' {
			return loadNetJSON(br)
		}
		return loadNetCSV(br)
	}
}

func loadNetJSON(r io.Reader) (*NetTable, error) {
	var raw []struct {
		Prefix  string `json:"prefix"`
		ASN     uint32 `json:"asn"`
		ASOrg   string `json:"as_org"`
		Country string `json:"country"`
		City    string `json:"city"`
		Kind    string `json:"kind"`
	}
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("network table: %w", err)
	}
	t := &NetTable{}
	for i, x := range raw {
		p, err := parsePrefix(x.Prefix)
		if err != nil {
			return nil, fmt.Errorf("network table: entry %d: %w", i, err)
		}
		t.rows = append(t.rows, netRow{p, NetInfo{ASN: x.ASN, Org: x.ASOrg, Country: x.Country, Kind: strings.ToLower(x.Kind)}})
	}
	t.sort()
	return t, nil
}

func loadNetCSV(r io.Reader) (*NetTable, error) {
	cr := csv.NewReader(r)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("network table: header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, need := range []string{"prefix", "asn"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("network table: header has no %q column", need)
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	t := &NetTable{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("network table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		p, err := parsePrefix(get(rec, "prefix"))
		if err != nil {
			return nil, fmt.Errorf("network table: line %d: %w", line, err)
		}
		asn, err := strconv.ParseUint(get(rec, "asn"), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("network table: line %d: bad asn %q", line, get(rec, "asn"))
		}
		t.rows = append(t.rows, netRow{p, NetInfo{ASN: uint32(asn), Org: get(rec, "as_org"), Country: get(rec, "country"), Kind: strings.ToLower(get(rec, "kind"))}})
	}
	t.sort()
	return t, nil
}

func (t *NetTable) sort() {
	sort.SliceStable(t.rows, func(i, j int) bool { return t.rows[i].p.Bits() > t.rows[j].p.Bits() })
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
