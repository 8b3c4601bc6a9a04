package collect_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/fake"
)

// TestT4RestartExactlyOnce kills the collectors at random points — after
// a page is fetched, in the middle of a journal append (part of the batch
// stored), after the append, before and after the state commit — and
// starts new ones from what is on disk, as a restarted process would.
// Whatever the crash points, every record ends up in the (real) journal
// exactly once and the collector never hands the journal a record it
// already holds.
func TestT4RestartExactlyOnce(t *testing.T) {
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			e := newEnv(t, 10+seed, true)
			e.srv.Faults = fake.Faults{Throttle: 0.05, ServerErr: 0.05, EmptyPage: 0.1, PageSize: 4}
			rnd := rand.New(rand.NewPCG(seed, 99))
			ual := publishUAL(e.srv, rnd, []string{"Audit.Exchange"}, 3)
			gw := publishGWS(e.srv, rnd, []string{"login"}, 3)
			crashes := map[string]int{}
			fault := func(point string) error {
				if rnd.IntN(12) == 0 {
					crashes[point]++
					return errCrash
				}
				return nil
			}
			e.log.failAfter = func(n int) int {
				if rnd.IntN(25) == 0 {
					crashes["mid-append"]++
					return rnd.IntN(n + 1)
				}
				return -1
			}
			start := func() []*collect.Collector {
				return append(newO365(t, e, []string{"audit.exchange"}, fault), newGWS(t, e, []string{"login"}, fault)...)
			}
			cs := start()
			stop := t0.Add(3 * 24 * time.Hour)
			for e.clock.Now().Before(stop) {
				for i := 0; i < len(cs); i++ {
					if err := cs[i].Once(t.Context()); errors.Is(err, errCrash) {
						cs = start() // the process died; a new one starts from disk
						i = -1
						continue
					} else if collect.IsPermanent(err) {
						t.Fatal(err)
					}
				}
				e.clock.Advance(time.Hour)
			}
			e.log.failAfter = nil
			fault = func(string) error { return nil }
			cs = start()
			e.srv.Faults = fake.Faults{PageSize: 4}
			for _, c := range cs {
				if err := c.Once(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if len(crashes) < 5 {
				t.Errorf("crash points exercised: %v; want all five", crashes)
			}
			t.Logf("crashes: %v", crashes)
			checkUAL(t, e, ual, cs[:1])
			all := e.readJournal(func(raw []byte) string {
				if k := gwsKey(raw); k != "" {
					return k
				}
				return ualKey(raw)
			})
			for id := range gw.want {
				if n := all.count[id]; n != 1 {
					t.Errorf("activity %s stored %d times", id, n)
				}
			}
		})
	}
}
