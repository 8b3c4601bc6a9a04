package netinfo

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
)

// Kind classifies a network for detectors.
type Kind string

// The network kinds LoadStrict accepts and the simulator writes. Load
// accepts any word, lower-cased, so user tables may add others (tor,
// proxy).
const (
	KindISP       Kind = "isp"       // residential or mobile access provider
	KindCorporate Kind = "corporate" // the tenant's own offices
	KindHosting   Kind = "hosting"   // cloud, VPS and data-centre providers
	KindVPN       Kind = "vpn"       // commercial VPN and secure-access egress
)

// Known reports whether k is one of the kinds LoadStrict accepts.
func (k Kind) Known() bool {
	switch k {
	case KindISP, KindCorporate, KindHosting, KindVPN:
		return true
	}
	return false
}

// Entry is one row of the table: a prefix and what it is.
type Entry struct {
	Prefix  netip.Prefix `json:"prefix"`
	ASN     uint32       `json:"asn"`
	ASOrg   string       `json:"as_org"`
	Country string       `json:"country"` // ISO 3166-1 alpha-2 (LoadStrict checks it)
	City    string       `json:"city"`
	Kind    Kind         `json:"kind"`
}

// Table maps an address to its network; the longest matching prefix wins.
type Table struct {
	entries []Entry // sorted by prefix length, longest first
}

// NewTable returns a table of a copy of es.
func NewTable(es []Entry) *Table {
	cp := append([]Entry(nil), es...)
	// Stable, so that of two equal prefixes the earlier row wins.
	sort.SliceStable(cp, func(i, j int) bool { return cp[i].Prefix.Bits() > cp[j].Prefix.Bits() })
	return &Table{entries: cp}
}

// Entries returns the rows, longest prefix first (rows of equal length in
// input order). The slice must not be modified.
func (t *Table) Entries() []Entry { return t.entries }

// Len is the number of rows.
func (t *Table) Len() int { return len(t.entries) }

// Lookup returns the most specific entry containing ip. An IPv4-mapped
// IPv6 address is looked up as IPv4.
func (t *Table) Lookup(ip netip.Addr) (Entry, bool) {
	ip = ip.Unmap()
	for _, e := range t.entries {
		if e.Prefix.Contains(ip) {
			return e, true
		}
	}
	return Entry{}, false
}

// header is the CSV header, in the order WriteCSV writes and LoadStrict
// requires.
var header = []string{"prefix", "asn", "as_org", "country", "city", "kind"}

// WriteCSV writes es in the CSV format.
func WriteCSV(w io.Writer, es []Entry) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
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
