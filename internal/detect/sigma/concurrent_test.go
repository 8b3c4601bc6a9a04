package sigma

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentMatch runs Match from several goroutines on one Ruleset
// with correlation state (run with -race): the spray correlation fires
// exactly once whatever the interleaving, since its ten users all fail
// within the hour.
func TestConcurrentMatch(t *testing.T) {
	rs := loadBuiltin(t)
	var spray atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if i%4 != g {
					continue
				}
				e := signin(t, fmt.Sprintf("u%d@x", i), "203.0.113.50", 50126, time.Duration(i)*time.Second)
				rs.Match(e, func(d Detection) {
					if d.Title == "Password Spray From One Address" {
						spray.Add(1)
					}
				})
			}
		}()
	}
	wg.Wait()
	rs.Flush(func(Detection) {})
	if spray.Load() != 1 {
		t.Errorf("spray fired %d times", spray.Load())
	}
}
