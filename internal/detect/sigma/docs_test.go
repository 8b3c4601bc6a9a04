package sigma

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsFieldMapping keeps the mapping table in docs/rules.md (between
// the mapping markers) equal to the code's.
func TestDocsFieldMapping(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "rules.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok1 := strings.Cut(string(doc), "<!-- mapping:start -->")
	table, _, ok2 := strings.Cut(rest, "<!-- mapping:end -->")
	if !ok1 || !ok2 {
		t.Fatal("docs/rules.md has no mapping markers")
	}
	want := map[string]bool{}
	for src, aliases := range FieldMappings() {
		for k, v := range aliases {
			want[fmt.Sprintf("| `%s` | `%s` | `%s` |", src, k, strings.Join(v, "`, `"))] = true
		}
	}
	got := map[string]bool{}
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "| `") {
			got[strings.TrimSpace(l)] = true
		}
	}
	for r := range want {
		if !got[r] {
			t.Errorf("docs/rules.md lacks %s", r)
		}
	}
	for r := range got {
		if !want[r] {
			t.Errorf("docs/rules.md has a row the code lacks: %s", r)
		}
	}
}
