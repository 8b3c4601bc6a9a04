package simulate

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// NetKind classifies a network for detectors.
type NetKind string

// Network kinds in the table.
const (
	KindISP       NetKind = "isp"       // residential or mobile access provider
	KindCorporate NetKind = "corporate" // the tenant's own offices
	KindHosting   NetKind = "hosting"   // cloud, VPS and data-centre providers
	KindVPN       NetKind = "vpn"       // commercial VPN and secure-access egress
)

func (k NetKind) valid() bool {
	switch k {
	case KindISP, KindCorporate, KindHosting, KindVPN:
		return true
	}
	return false
}

// NetEntry is one row of the network table: a prefix and what it is.
type NetEntry struct {
	Prefix  netip.Prefix `json:"prefix"`
	ASN     uint32       `json:"asn"`
	ASOrg   string       `json:"as_org"`
	Country string       `json:"country"` // ISO 3166-1 alpha-2
	City    string       `json:"city"`
	Kind    NetKind      `json:"kind"`
}

// NetTable maps an IP to its simulated network (longest prefix wins).
type NetTable struct {
	entries []NetEntry // sorted by prefix length, longest first
}

// Entries returns the table's rows in file order of prefix length
// (longest first). The slice must not be modified.
func (t *NetTable) Entries() []NetEntry { return t.entries }

// Lookup returns the most specific entry containing ip.
func (t *NetTable) Lookup(ip netip.Addr) (NetEntry, bool) {
	ip = ip.Unmap()
	for _, e := range t.entries {
		if e.Prefix.Contains(ip) {
			return e, true
		}
	}
	return NetEntry{}, false
}

func newNetTable(es []NetEntry) *NetTable {
	cp := append([]NetEntry(nil), es...)
	sort.SliceStable(cp, func(i, j int) bool { return cp[i].Prefix.Bits() > cp[j].Prefix.Bits() })
	return &NetTable{entries: cp}
}

// netCSVHeader is the networks.csv header; see docs/simulate.md.
var netCSVHeader = []string{"prefix", "asn", "as_org", "country", "city", "kind"}

// WriteNetTableCSV writes entries in the networks.csv format.
func WriteNetTableCSV(w io.Writer, es []NetEntry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(netCSVHeader); err != nil {
		return fmt.Errorf("write network table: %w", err)
	}
	for _, e := range es {
		rec := []string{e.Prefix.String(), strconv.FormatUint(uint64(e.ASN), 10), e.ASOrg, e.Country, e.City, string(e.Kind)}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write network table: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write network table: %w", err)
	}
	return nil
}

// LoadNetTable reads a network table in either format: CSV with the
// header prefix,asn,as_org,country,city,kind, or a JSON array of objects
// with those keys. Every row is validated; the first bad one is an error
// naming its row (CSV line or array index) and the reason.
func LoadNetTable(r io.Reader) (*NetTable, error) {
	br := bufio.NewReader(r)
	for {
		b, err := br.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("network table: empty input")
			}
			return nil, fmt.Errorf("network table: %w", err)
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.ReadByte()
			continue
		case 0xEF: // UTF-8 BOM
			bom, _ := br.Peek(3)
			if bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
				_, _ = br.Discard(3)
				continue
			}
		case '[':
			return loadNetJSON(br)
		}
		return loadNetCSV(br)
	}
}

func loadNetJSON(r io.Reader) (*NetTable, error) {
	var raw []struct {
		Prefix  string `json:"prefix"`
		ASN     *int64 `json:"asn"`
		ASOrg   string `json:"as_org"`
		Country string `json:"country"`
		City    string `json:"city"`
		Kind    string `json:"kind"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("network table: decode JSON: %w", err)
	}
	es := make([]NetEntry, 0, len(raw))
	for i, x := range raw {
		if x.ASN == nil {
			return nil, fmt.Errorf("network table: entry %d: missing asn", i)
		}
		e, err := parseNetEntry(x.Prefix, strconv.FormatInt(*x.ASN, 10), x.ASOrg, x.Country, x.City, x.Kind)
		if err != nil {
			return nil, fmt.Errorf("network table: entry %d: %w", i, err)
		}
		es = append(es, e)
	}
	return newNetTable(es), nil
}

func loadNetCSV(r io.Reader) (*NetTable, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(netCSVHeader)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("network table: read CSV header: %w", err)
	}
	for i, h := range netCSVHeader {
		if strings.TrimSpace(strings.ToLower(head[i])) != h {
			return nil, fmt.Errorf("network table: CSV header column %d is %q, want %q", i+1, head[i], h)
		}
	}
	var es []NetEntry
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("network table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		e, err := parseNetEntry(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5])
		if err != nil {
			return nil, fmt.Errorf("network table: line %d: %w", line, err)
		}
		es = append(es, e)
	}
	return newNetTable(es), nil
}

func parseNetEntry(prefix, asn, org, country, city, kind string) (NetEntry, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(prefix))
	if err != nil {
		return NetEntry{}, fmt.Errorf("bad prefix %q: %w", prefix, err)
	}
	if p.Masked() != p {
		return NetEntry{}, fmt.Errorf("prefix %q has host bits set", prefix)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(asn), 10, 32)
	if err != nil {
		return NetEntry{}, fmt.Errorf("bad asn %q: %w", asn, err)
	}
	if len(country) != 2 || strings.ToUpper(country) != country {
		return NetEntry{}, fmt.Errorf("country %q is not an upper-case ISO 3166-1 alpha-2 code", country)
	}
	k := NetKind(strings.TrimSpace(kind))
	if !k.valid() {
		return NetEntry{}, fmt.Errorf("kind %q is not one of isp, corporate, hosting, vpn", kind)
	}
	return NetEntry{Prefix: p, ASN: uint32(n), ASOrg: org, Country: country, City: city, Kind: k}, nil
}
