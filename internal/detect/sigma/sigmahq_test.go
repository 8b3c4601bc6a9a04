package sigma

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedDir locates ../shared relative to the repository root.
func sharedDir(t testing.TB, sub string) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "..", "shared", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared data not available (%s): %v", dir, err)
	}
	return dir
}

func loadSigmaHQ(t testing.TB) *Ruleset {
	t.Helper()
	dir := sharedDir(t, "data/sigmahq-sigma/rules")
	rs, refused, err := Load(os.DirFS(dir), Options{}, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refused {
		t.Errorf("refused %s: %s", r.File, r.Reason)
	}
	return rs
}

// TestSigmaHQCloudRulesLoad: every SigmaHQ cloud rule loads (none of them
// needs placeholder values) and routes to a vigil source.
func TestSigmaHQCloudRulesLoad(t *testing.T) {
	rs := loadSigmaHQ(t)
	if rs.Len() != 152 {
		t.Errorf("loaded %d rules, want 152", rs.Len())
	}
	for _, r := range rs.Rules() {
		if len(r.Sources) == 0 {
			t.Errorf("%s (%s): no source for %s", r.File, r.Title, r.Logsource)
		}
	}
	t.Logf("index: %v", rs.IndexStats())
}
