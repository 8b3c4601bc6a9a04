package collect_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect/fake"
)

// TestT5ClockSkew runs two days with the local clock ten minutes behind
// and ahead of the servers'. The skew is measured from the Date header,
// reported, and corrected for: no window the API refuses (which would
// show as a clamped gap), nothing lost, watermarks never past the
// server's now.
func TestT5ClockSkew(t *testing.T) {
	for _, off := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		t.Run(off.String(), func(t *testing.T) {
			e := newEnv(t, 5, false)
			e.local = fake.Offset{Clock: e.clock, By: off}
			e.srv.Faults = fake.Faults{PageSize: 5}
			rnd := rand.New(rand.NewPCG(7, 8))
			ual := publishUAL(e.srv, rnd, []string{"Audit.Exchange"}, 2)
			gr := publishGraph(e.srv, rnd, 2)
			cs := append(newO365(t, e, []string{"audit.exchange"}, nil), newGraph(t, e, []string{"signins", "signins.noninteractive", "directory_audits", "risk_detections"})...)
			runDays(t, e, cs, 2, time.Hour)
			for _, c := range cs {
				if s := c.Status().Skew; (s + off).Abs() > 2*time.Second {
					t.Errorf("%s: skew %s reported, local clock is %s off", c.Name(), s, off)
				}
			}
			st := e.readJournal(func(raw []byte) string {
				if k := ualKey(raw); k != "" {
					return k
				}
				return field("id")(raw)
			})
			for id := range ual.want {
				if st.count[id] != 1 {
					t.Errorf("UAL record %s stored %d times", id, st.count[id])
				}
			}
			for id := range gr.want {
				if st.count[id] != 1 {
					t.Errorf("Graph record %s stored %d times", id, st.count[id])
				}
			}
			checkOnlySilentAfter(t, st.gaps, t0.Add(2*24*time.Hour-5*time.Hour))
		})
	}
}
