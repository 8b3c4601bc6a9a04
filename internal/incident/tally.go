package incident

import (
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
)

// TallyRetention is how long the Tally remembers an actor after its last
// settled alert. Breadth is then counted over the alerts still held plus
// the settled alerts of the last TallyRetention, not over a whole run of
// months: memory follows the actors of a month, not every token a
// tenant's history ever saw.
const TallyRetention = 30 * 24 * time.Hour

// Tally is what grouping still needs of alerts that have left memory
// (GroupUntil's Left): which accessing users each actor was seen with, up
// to one more than Config.BroadActorUsers, so that an actor broad over
// all the alerts is broad for the alerts still held too.
type Tally struct {
	Actors map[alert.Actor]*ActorTally
}

// ActorTally is one actor's breadth.
type ActorTally struct {
	Users []string  // sorted, at most BroadActorUsers+1
	Last  time.Time // its latest settled alert
}

func (t *Tally) users(ac alert.Actor) []string {
	if t == nil {
		return nil
	}
	if e := t.Actors[ac]; e != nil {
		return e.Users
	}
	return nil
}

// Add counts settled alerts, then forgets actors with no settled alert
// in the TallyRetention before the latest of them.
func (t *Tally) Add(cfg Config, as []alert.Alert) {
	if cfg.BroadActorUsers <= 0 || len(as) == 0 {
		return
	}
	if t.Actors == nil {
		t.Actors = map[alert.Actor]*ActorTally{}
	}
	var latest time.Time
	for i := range as {
		a := &as[i]
		if a.Time.After(latest) {
			latest = a.Time
		}
		u := alertUser(a)
		if u == "" {
			continue
		}
		for _, ac := range a.Actors {
			e := t.Actors[ac]
			if e == nil {
				e = &ActorTally{}
				t.Actors[ac] = e
			}
			if a.Time.After(e.Last) {
				e.Last = a.Time
			}
			if len(e.Users) > cfg.BroadActorUsers {
				continue // broad already: more users change nothing
			}
			if j, found := slices.BinarySearch(e.Users, u); !found {
				e.Users = slices.Insert(e.Users, j, u)
			}
		}
	}
	cut := latest.Add(-TallyRetention)
	for ac, e := range t.Actors {
		if e.Last.Before(cut) {
			delete(t.Actors, ac)
		}
	}
}

// Len is the number of actors the tally holds.
func (t *Tally) Len() int {
	if t == nil {
		return 0
	}
	return len(t.Actors)
}
