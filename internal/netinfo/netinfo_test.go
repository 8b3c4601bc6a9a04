package netinfo

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var sample = []Entry{
	{Prefix: netip.MustParsePrefix("198.18.0.0/19"), ASN: 7922, ASOrg: "Comcast Cable Communications, LLC", Country: "US", City: "Philadelphia", Kind: KindISP},
	{Prefix: netip.MustParsePrefix("198.18.0.0/24"), ASN: 64500, ASOrg: "Contoso Ltd", Country: "US", City: "New York", Kind: KindCorporate},
	{Prefix: netip.MustParsePrefix("198.18.173.0/24"), ASN: 16509, ASOrg: "Amazon.com, Inc.", Country: "US", City: "Ashburn", Kind: KindHosting},
	{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), ASN: 9009, ASOrg: "M247 Europe SRL", Country: "RO", City: "Bucharest", Kind: KindVPN},
}

func TestWriteLoadRoundTrip(t *testing.T) {
	var csvBuf bytes.Buffer
	if err := WriteCSV(&csvBuf, sample); err != nil {
		t.Fatal(err)
	}
	jsonBytes, err := json.Marshal(sample)
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{"csv": csvBuf.Bytes(), "json": jsonBytes, "csv+bom": append([]byte{0xEF, 0xBB, 0xBF}, csvBuf.Bytes()...)}
	for name, in := range inputs {
		for mode, load := range map[string]func([]byte) (*Table, error){
			"strict": func(b []byte) (*Table, error) { return LoadStrict(bytes.NewReader(b)) },
			"loose":  func(b []byte) (*Table, error) { return Load(bytes.NewReader(b)) },
		} {
			nt, err := load(in)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, mode, err)
			}
			if nt.Len() != len(sample) {
				t.Fatalf("%s/%s: %d entries, want %d", name, mode, nt.Len(), len(sample))
			}
			for _, e := range sample {
				if got, ok := nt.Lookup(e.Prefix.Addr().Next()); !ok || got.Prefix.Bits() < e.Prefix.Bits() {
					t.Fatalf("%s/%s: %s looked up as %+v, %v", name, mode, e.Prefix.Addr().Next(), got, ok)
				}
			}
		}
	}
}

func TestLookup(t *testing.T) {
	nt := NewTable(sample)
	cases := []struct {
		ip   string
		want string // prefix, or "" for not found
	}{
		{"198.18.0.10", "198.18.0.0/24"}, // the /24 inside the /19 wins
		{"198.18.1.10", "198.18.0.0/19"},
		{"::ffff:198.18.173.9", "198.18.173.0/24"}, // v4-mapped is looked up as v4
		{"2001:db8:1:2::1", "2001:db8:1::/48"},
		{"2001:db8:2::1", ""},
		{"8.8.8.8", ""},
	}
	for _, c := range cases {
		e, ok := nt.Lookup(netip.MustParseAddr(c.ip))
		if c.want == "" {
			if ok {
				t.Errorf("%s: found %+v, want none", c.ip, e)
			}
			continue
		}
		if !ok || e.Prefix.String() != c.want {
			t.Errorf("%s: got %+v (%v), want %s", c.ip, e, ok, c.want)
		}
	}
	if es := nt.Entries(); es[0].Prefix.Bits() != 48 || es[len(es)-1].Prefix.Bits() != 19 {
		t.Errorf("entries not longest prefix first: %v", es)
	}
}

func TestLoadStrictErrors(t *testing.T) {
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
		_, err := LoadStrict(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

// TestLoadLoose covers what users write that LoadStrict refuses.
func TestLoadLoose(t *testing.T) {
	in := "\xEF\xBB\xBF Kind,Prefix,ASN,note\n" +
		"TOR,203.0.113.7,60729,exit\n" +
		"Hosting,198.18.9.77/24,16276,host bits cleared\n" +
		"proxy,2001:db8::5,0,v6 address\n"
	nt, err := Load(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Entry{
		"203.0.113.7": {Prefix: netip.MustParsePrefix("203.0.113.7/32"), ASN: 60729, Kind: "tor"},
		"198.18.9.1":  {Prefix: netip.MustParsePrefix("198.18.9.0/24"), ASN: 16276, Kind: KindHosting},
		"2001:db8::5": {Prefix: netip.MustParsePrefix("2001:db8::5/128"), Kind: "proxy"},
	}
	for ip, w := range want {
		if got, ok := nt.Lookup(netip.MustParseAddr(ip)); !ok || got != w {
			t.Errorf("%s: got %+v (%v), want %+v", ip, got, ok, w)
		}
	}
	if _, ok := nt.Lookup(netip.MustParseAddr("203.0.113.8")); ok {
		t.Error("a plain address matched its neighbour")
	}
	js := `[{"prefix":"192.0.2.0/24","asn":64496,"country":"NL","kind":" VPN ","comment":"ok"},{"prefix":"192.0.2.9"}]`
	nt, err = Load(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := nt.Lookup(netip.MustParseAddr("192.0.2.1")); e.Kind != KindVPN || e.ASN != 64496 || e.Country != "NL" {
		t.Errorf("JSON row: %+v", e)
	}
	if e, _ := nt.Lookup(netip.MustParseAddr("192.0.2.9")); e.Prefix.Bits() != 32 || e.ASN != 0 {
		t.Errorf("JSON row without asn: %+v", e)
	}
}

func TestLoadLooseErrors(t *testing.T) {
	cases := map[string]string{
		"":                                "empty",
		" \n\t":                           "empty",
		"prefix,as_org\n":                 `no "asn" column`,
		"asn,kind\n":                      `no "prefix" column`,
		"prefix,asn\n1.2.3.4,x\n":         "line 2: bad asn",
		"prefix,asn\n1.2.3.4,1\nnope,1\n": `line 3: bad address or prefix "nope"`,
		"prefix,asn\n10.0.0.0/33,1\n":     "line 2: bad prefix",
		"prefix,asn\n1.2.3.4,1,extra\n":   "wrong number of fields",
		`[{"prefix":"1.2.3.4","asn":-1}]`: "entry 0: bad asn",
		`[{"prefix":"x","asn":1}]`:        "entry 0: bad address or prefix",
		`[{"prefix":"1.2.3.4","asn":1}`:   "decode JSON",
	}
	for in, want := range cases {
		_, err := Load(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "networks.csv")
	var buf bytes.Buffer
	if err := WriteCSV(&buf, sample); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if nt, err := LoadFile(good); err != nil || nt.Len() != len(sample) {
		t.Fatalf("LoadFile: %v, %v", nt, err)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("prefix,asn\nnope,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), bad+": network table: line 2") {
		t.Errorf("bad file: %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzLoadNetTable(f *testing.F) {
	f.Add([]byte("prefix,asn,as_org,country,city,kind\n198.18.0.0/24,64500,Contoso,US,New York,corporate\n"))
	f.Add([]byte(`[{"prefix":"2001:db8::/48","asn":21928,"as_org":"T","country":"US","city":"B","kind":"isp"}]`))
	f.Add([]byte("\xEF\xBB\xBF prefix,asn,as_org,country,city,kind\n"))
	f.Add([]byte("kind,prefix,asn\ntor,203.0.113.7,1\nhosting,10.1.2.3/8,2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nt, err := LoadStrict(bytes.NewReader(b))
		if err == nil {
			for _, e := range nt.Entries() {
				if !e.Kind.Known() || e.Prefix.Masked() != e.Prefix || len(e.Country) != 2 {
					t.Fatalf("strict: accepted invalid entry %+v", e)
				}
				if got, ok := nt.Lookup(e.Prefix.Addr()); !ok || got.Prefix.Bits() < e.Prefix.Bits() {
					t.Fatalf("strict: lookup of %s gave %+v", e.Prefix.Addr(), got)
				}
			}
			// What the strict loader accepts, the loose one must too.
			if _, err := Load(bytes.NewReader(b)); err != nil {
				t.Fatalf("strict accepted, loose refused: %v", err)
			}
		}
		nt, err = Load(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, e := range nt.Entries() {
			if !e.Prefix.IsValid() || e.Prefix.Masked() != e.Prefix || strings.ToLower(string(e.Kind)) != string(e.Kind) {
				t.Fatalf("loose: accepted invalid entry %+v", e)
			}
			if got, ok := nt.Lookup(e.Prefix.Addr()); !ok || got.Prefix.Bits() < e.Prefix.Bits() {
				t.Fatalf("loose: lookup of %s gave %+v", e.Prefix.Addr(), got)
			}
		}
	})
}
