package behavior

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MMDB looks addresses up in a MaxMind-format database the user supplies
// (GeoLite2-ASN, GeoLite2-Country or -City, or a compatible one such as
// IPinfo's or DB-IP's). ASN databases give the ASN and organisation,
// country databases the country; neither says whether a network is
// hosting or VPN, so combine it with a network table or list such ASNs
// under network.suspect_asns.
type MMDB struct {
	r *maxminddb.Reader
}

type mmdbRecord struct {
	ASN     uint32 `maxminddb:"autonomous_system_number"`
	Org     string `maxminddb:"autonomous_system_organization"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// OpenMMDB opens a database file.
func OpenMMDB(path string) (*MMDB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("MMDB %s: %w", path, err)
	}
	return &MMDB{r: r}, nil
}

// OpenMMDBBytes reads a database held in memory.
func OpenMMDBBytes(b []byte) (*MMDB, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("MMDB: %w", err)
	}
	return &MMDB{r: r}, nil
}

// Lookup implements Networks.
func (m *MMDB) Lookup(ip netip.Addr) (NetInfo, bool) {
	res := m.r.Lookup(ip)
	if !res.Found() {
		return NetInfo{}, false
	}
	var rec mmdbRecord
	if err := res.Decode(&rec); err != nil {
		return NetInfo{}, false
	}
	return NetInfo{ASN: rec.ASN, Org: rec.Org, Country: rec.Country.ISOCode}, true
}

// Close releases the database.
func (m *MMDB) Close() error { return m.r.Close() }
