package simulate

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// TestNetTableRoundTrip checks that the simulated networks survive the
// networks table format (internal/netinfo) in both loaders: the strict one
// that guards the simulator's output, and the one `vigil hunt --networks`
// uses.
func TestNetTableRoundTrip(t *testing.T) {
	nets, _, err := buildNetworks()
	if err != nil {
		t.Fatal(err)
	}
	es := make([]netinfo.Entry, len(nets))
	for i, n := range nets {
		es[i] = n.entry
	}
	var csvBuf bytes.Buffer
	if err := netinfo.WriteCSV(&csvBuf, es); err != nil {
		t.Fatal(err)
	}
	jsonBytes, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	loaders := map[string]func(*bytes.Reader) (*netinfo.Table, error){
		"strict": func(r *bytes.Reader) (*netinfo.Table, error) { return netinfo.LoadStrict(r) },
		"load":   func(r *bytes.Reader) (*netinfo.Table, error) { return netinfo.Load(r) },
	}
	for name, in := range map[string][]byte{"csv": csvBuf.Bytes(), "json": jsonBytes, "csv+bom": append([]byte{0xEF, 0xBB, 0xBF}, csvBuf.Bytes()...)} {
		for lname, load := range loaders {
			name := name + "/" + lname
			nt, err := load(bytes.NewReader(in))
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
}
