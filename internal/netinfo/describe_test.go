package netinfo

import "testing"

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		asn                uint32
		org, country, kind string
		want               string
	}{
		{8075, "Microsoft Corporation", "us", "hosting", "AS8075 Microsoft Corporation · US · hosting"},
		{64500, "", "NL", "", "AS64500 · NL"},
		{0, "Example ISP", "", "isp", "Example ISP · isp"},
		{0, "", "", "", ""},
	} {
		if got := Describe(c.asn, c.org, c.country, c.kind); got != c.want {
			t.Errorf("Describe(%d, %q, %q, %q) = %q, want %q", c.asn, c.org, c.country, c.kind, got, c.want)
		}
	}
	e := Entry{ASN: 3320, ASOrg: "Deutsche Telekom", Country: "DE", Kind: KindISP}
	if got := e.Describe(); got != "AS3320 Deutsche Telekom · DE · isp" {
		t.Errorf("Entry.Describe = %q", got)
	}
}
