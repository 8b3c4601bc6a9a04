package netinfo

import (
	"strconv"
	"strings"
)

// Describe is how reports show a network next to an address: the parts
// that are known, in the order ASN and provider, country, kind
// ("AS8075 Microsoft Corporation · US · hosting"); "" when nothing is.
func Describe(asn uint32, org, country, kind string) string {
	var parts []string
	switch {
	case asn != 0 && org != "":
		parts = append(parts, "AS"+strconv.FormatUint(uint64(asn), 10)+" "+org)
	case asn != 0:
		parts = append(parts, "AS"+strconv.FormatUint(uint64(asn), 10))
	case org != "":
		parts = append(parts, org)
	}
	if country != "" {
		parts = append(parts, strings.ToUpper(country))
	}
	if kind != "" {
		parts = append(parts, kind)
	}
	return strings.Join(parts, " · ")
}

// Describe shows the entry as the package-level Describe does.
func (e Entry) Describe() string { return Describe(e.ASN, e.ASOrg, e.Country, string(e.Kind)) }
