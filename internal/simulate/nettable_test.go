package simulate

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestNetTableRoundTrip(t *testing.T) {
	nets, _, err := buildNetworks()
	if err != nil {
		t.Fatal(err)
	}
	es := make([]NetEntry, len(nets))
	for i, n := range nets {
		es[i] = n.entry
	}
	var csvBuf bytes.Buffer
	if err := WriteNetTableCSV(&csvBuf, es); err != nil {
		t.Fatal(err)
	}
	jsonBytes, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"csv": csvBuf.Bytes(), "json": jsonBytes, "csv+bom": append([]byte{0xEF, 0xBB, 0xBF}, csvBuf.Bytes()...)} {
		nt, err := LoadNetTable(bytes.NewReader(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(nt.Entries()) != len(es) {
			t.Fatalf("%s: %d entries, want %d", name, len(nt.Entries()), len(es))
		}
		for _, n := range nets {
			for k := uint64(0); k < 50; k++ {
				ip := n.host(k)
				e, ok := nt.Lookup(ip)
				if !ok || e != n.entry {
					t.Fatalf("%s: %s (host of %s) looked up as %+v", name, ip, n.key, e)
				}
			}
		}
		if _, ok := nt.Lookup(netip.MustParseAddr("8.8.8.8")); ok {
			t.Fatalf("%s: an address outside the simulated networks was found", name)
		}
	}
}

func TestLoadNetTableErrors(t *testing.T) {
	cases := map[string]string{
		"":             "empty",
		"prefix,asn\n": "header",
		"prefix,asn,as_org,country,city,kind\n198.18.0.1/24,1,x,US,c,isp\n":                     "host bits",
		"prefix,asn,as_org,country,city,kind\n198.18.0.0/24,x,x,US,c,isp\n":                     "bad asn",
		"prefix,asn,as_org,country,city,kind\n198.18.0.0/24,1,x,usa,c,isp\n":                    "country",
		"prefix,asn,as_org,country,city,kind\n198.18.0.0/24,1,x,US,c,cloud\n":                   "kind",
		"prefix,asn,as_org,country,city,kind\nnope,1,x,US,c,isp\n":                              "line 2",
		`[{"prefix":"198.18.0.0/24","as_org":"x","country":"US","city":"c","kind":"isp"}]`:      "missing asn",
		`[{"prefix":"198.18.0.0/24","asn":1,"country":"US","city":"c","kind":"isp","extra":1}]`: "unknown field",
	}
	for in, want := range cases {
		_, err := LoadNetTable(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func FuzzLoadNetTable(f *testing.F) {
	f.Add([]byte("prefix,asn,as_org,country,city,kind\n198.18.0.0/24,64500,Contoso,US,New York,corporate\n"))
	f.Add([]byte(`[{"prefix":"2001:db8::/48","asn":21928,"as_org":"T","country":"US","city":"B","kind":"isp"}]`))
	f.Add([]byte("\xEF\xBB\xBF prefix,asn,as_org,country,city,kind\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nt, err := LoadNetTable(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, e := range nt.Entries() {
			if !e.Kind.valid() || e.Prefix.Masked() != e.Prefix || len(e.Country) != 2 {
				t.Fatalf("accepted invalid entry %+v", e)
			}
			if got, ok := nt.Lookup(e.Prefix.Addr()); !ok || got.Prefix.Bits() < e.Prefix.Bits() {
				t.Fatalf("lookup of %s gave %+v", e.Prefix.Addr(), got)
			}
		}
	})
}
