package detect

import (
	"reflect"
	"testing"

	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/incident"
)

// TestRefreshMeasuresIncrementally: a pipeline that never ends refreshes
// often; each refresh's impact must equal a measure of the whole access
// log from scratch, while most refreshes read only what was logged since
// the last one.
func TestRefreshMeasuresIncrementally(t *testing.T) {
	evs, nets := scenarioStream(t)
	ic := behavior.DefaultConfig().IncidentConfig()
	p := New(Config{Behaviours: behavior.New(behavior.DefaultConfig(), behavior.Options{Networks: nets}), Incidents: &ic, TempDir: t.TempDir()}, &recordingSink{})
	const chunks = 60
	refreshes, measured := 0, 0
	for c := range chunks {
		for _, e := range evs[c*len(evs)/chunks : (c+1)*len(evs)/chunks] {
			if err := p.Process(e); err != nil {
				t.Fatal(err)
			}
		}
		incs, err := p.Refresh(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		refreshes++
		if len(incs) == 0 {
			continue
		}
		measured++
		// The same incidents measured from the whole log.
		fresh := make([]*incident.Incident, len(incs))
		for i, inc := range incs {
			cp := *inc
			fresh[i] = &cp
		}
		as := incident.NewAssessor(fresh)
		if err := p.log.replay(t.Context(), as.Add); err != nil {
			t.Fatal(err)
		}
		as.Finish()
		for i := range incs {
			if !reflect.DeepEqual(incs[i].Impact, fresh[i].Impact) {
				t.Fatalf("refresh %d, incident %s: impact %d accesses, %d messages; measured from scratch %d accesses, %d messages",
					refreshes, incs[i].ID, incs[i].Impact.Accesses, incs[i].Impact.MessageCount, fresh[i].Impact.Accesses, fresh[i].Impact.MessageCount)
			}
		}
	}
	if measured < chunks/3 {
		t.Fatalf("only %d of %d refreshes had incidents: the scenario does not exercise the measure", measured, refreshes)
	}
	if p.fullMeasures >= measured {
		t.Errorf("%d of %d refreshes with incidents read the whole access log; want most to read only what is new", p.fullMeasures, measured)
	}
	t.Logf("%d refreshes with incidents, %d read the whole log", measured, p.fullMeasures)
}
