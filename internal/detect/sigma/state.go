package sigma

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"time"
)

// stateVersion names the layout SaveState writes.
const stateVersion = 1

// The gob mirror of the correlation state: plain data, no rule pointers.
type rulesetState struct {
	Version   int
	Watermark int64
	NextSweep int64
	Stats     Stats
	Corrs     []corrState
}

type corrState struct {
	Rule      string // the correlation rule's key
	LastSweep time.Time
	Groups    map[string]groupState
}

type groupState struct {
	Vals     []MatchedField
	Newest   time.Time
	Start    time.Time
	Entries  []entryState
	Distinct map[string]int
	Seen     []time.Time
	Chain    []time.Time
	Has      []bool
	Refs     []EventRef
}

type entryState struct {
	T     time.Time
	Value string
}

// SaveState writes the correlations' open windows, so that a ruleset
// compiled from the same rules continues where this one stopped
// (vigil serve resuming from a snapshot). Detection rules have no state.
func (rs *Ruleset) SaveState(w io.Writer) error {
	rs.mu.Lock()
	st := rulesetState{Version: stateVersion, Watermark: rs.watermark.Load(), NextSweep: rs.nextSweep.Load(), Stats: rs.stats}
	for _, co := range rs.corrs {
		cs := corrState{Rule: co.rule.Key(), LastSweep: co.lastSweep, Groups: make(map[string]groupState, len(co.groups))}
		for k, g := range co.groups {
			gs := groupState{Vals: g.vals, Newest: g.newest, Start: g.start, Distinct: g.distinct,
				Seen: g.seen, Chain: g.chain, Has: g.has, Refs: g.refs}
			gs.Entries = make([]entryState, len(g.entries))
			for i, e := range g.entries {
				gs.Entries[i] = entryState{e.t, e.value}
			}
			cs.Groups[k] = gs
		}
		st.Corrs = append(st.Corrs, cs)
	}
	// Encode under the lock: the groups' slices are shared with the live state.
	err := gob.NewEncoder(w).Encode(&st)
	rs.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save correlation state: %w", err)
	}
	return nil
}

// LoadState restores what SaveState wrote, before the first event. The
// ruleset must hold the same correlation rules; a state written by other
// rules is refused rather than half applied.
func (rs *Ruleset) LoadState(r io.Reader) error {
	var st rulesetState
	if err := gob.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("load correlation state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("load correlation state: version %d, want %d", st.Version, stateVersion)
	}
	if len(st.Corrs) != len(rs.corrs) {
		return fmt.Errorf("load correlation state: %d correlation rules saved, %d compiled", len(st.Corrs), len(rs.corrs))
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i, cs := range st.Corrs {
		co := rs.corrs[i]
		if cs.Rule != co.rule.Key() {
			return errors.New("load correlation state: saved for other correlation rules (" + cs.Rule + " where " + co.rule.Key() + " is compiled)")
		}
	}
	for i, cs := range st.Corrs {
		co := rs.corrs[i]
		co.lastSweep = cs.LastSweep
		co.groups = make(map[string]*group, len(cs.Groups))
		for k, gs := range cs.Groups {
			g := &group{vals: gs.Vals, newest: gs.Newest, start: gs.Start, distinct: gs.Distinct,
				seen: gs.Seen, chain: gs.Chain, has: gs.Has, refs: gs.Refs}
			g.entries = make([]entry, len(gs.Entries))
			for j, e := range gs.Entries {
				g.entries[j] = entry{e.T, e.Value}
			}
			co.groups[k] = g
		}
	}
	rs.watermark.Store(st.Watermark)
	rs.nextSweep.Store(st.NextSweep)
	rs.stats = st.Stats
	return nil
}
