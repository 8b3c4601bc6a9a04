package behavior

import (
	"slices"
	"testing"

	"github.com/vigil-audit/vigil/internal/incident"
)

// The behaviours the rules page lists: in numeric order, each with what
// its alert means.
func TestSignalsListedAndExplained(t *testing.T) {
	sigs := Signals()
	if want := []string{"D1", "D2", "D3", "D4", "D7", "D8", "D9", "D11"}; !slices.Equal(sigs, want) {
		t.Errorf("Signals() = %v, want %v", sigs, want)
	}
	for _, s := range sigs {
		if incident.Means(s) == "" {
			t.Errorf("%s: no meaning for the rules page", s)
		}
	}
	if incident.Means("D99") != "" {
		t.Error("an unknown signal has a meaning")
	}
}
