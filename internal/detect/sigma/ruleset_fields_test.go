package sigma

import (
	"testing"
	"testing/fstest"

	"github.com/vigil-audit/vigil/internal/event"
)

func TestFieldSyms(t *testing.T) {
	fsys := fstest.MapFS{"r.yml": {Data: []byte(`title: t
id: 11111111-2222-3333-4444-555555555555
logsource: {product: m365, service: exchange}
detection:
  sel: {Operation: New-InboxRule, Parameters.ForwardTo|exists: true}
  other: {ClientIP|fieldref: ActorIpAddress}
  condition: sel or other
`)}}
	rs, refused, err := Load(fsys, Options{}, ".")
	if err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	got := map[event.Sym]bool{}
	for _, s := range rs.FieldSyms() {
		got[s] = true
	}
	for _, want := range []string{"Operation", "Parameters.ForwardTo", "ClientIP", "ActorIpAddress"} {
		if !got[event.Intern(want)] {
			t.Errorf("FieldSyms lacks %s", want)
		}
	}
}
