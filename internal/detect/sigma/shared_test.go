package sigma

import (
	"context"
	"sync"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// TestGoldenSAMLDataset decodes the OTRF "Golden SAML AD FS mail access"
// recording (Sentinel AuditLogs rows) with vigil's decoders and runs the
// built-in rules: the attacker's credential added to the application and
// the delegated Mail.Read grant must both be detected.
func TestGoldenSAMLDataset(t *testing.T) {
	dir := sharedDir(t, "data/otrf-security-datasets")
	rs := loadBuiltin(t)
	var mu sync.Mutex
	hits := map[string]int{}
	_, err := source.ReadPaths(context.Background(), []string{dir}, source.Options{}, func(e *event.Event) error {
		rs.Match(e, func(d Detection) {
			mu.Lock()
			hits[d.Title]++
			mu.Unlock()
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for title, want := range map[string]int{
		"Credentials Added To An Application Or Service Principal": 2,
		"Delegated Permissions Granted For All Users":              1,
		"App Granted Microsoft Permissions":                        1,
	} {
		if hits[title] != want {
			t.Errorf("%s: %d detections, want %d (all: %v)", title, hits[title], want, hits)
		}
	}
}
