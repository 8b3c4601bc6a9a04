package detect

import (
	"context"
	"fmt"

	"github.com/vigil-audit/vigil/internal/incident"
)

// Refresh is for a pipeline that never ends (vigil serve): it processes
// the buffered events, groups the alerts so far and measures the impact of
// every incident from the access log, reporting incidents that opened or
// changed and ImpactChanged for each incident whose impact grew. The
// pipeline stays open. It returns every incident as grouped now: an
// incident reported earlier may have merged into another since (its
// alerts chained to a later actor), and is then no longer among them. An
// offline run does not need Refresh: Close does the same once.
func (p *Pipeline) Refresh(ctx context.Context) ([]*incident.Incident, error) {
	p.Drain()
	if b := p.cfg.Behaviours; b != nil && b.Err() != nil {
		return nil, fmt.Errorf("detect: %w", b.Err())
	}
	if p.cfg.Incidents == nil {
		return nil, nil
	}
	incs := p.regroup(p.released)
	if p.err != nil {
		return nil, p.err
	}
	if len(incs) == 0 {
		return nil, nil
	}
	if err := p.measureOn(ctx, incs); err != nil {
		return nil, err
	}
	if p.impact == nil {
		p.impact = map[string]int{}
	}
	for _, inc := range incs {
		n := inc.Impact.Accesses
		if n > p.impact[inc.ID] {
			p.impact[inc.ID] = n
			p.sink.Incident(Update{Kind: ImpactChanged, Incident: inc})
		}
	}
	return incs, nil
}

// measureOn measures the incidents' impact for Refresh. While the grouping
// attributes accesses as it did at the last refresh, the assessor goes on
// from where it stopped and reads only the accesses logged since: the cost
// of a refresh follows what is new, not the history. A grouping that
// changed (an incident opened, merged or gained an actor) is measured from
// the start of the log.
func (p *Pipeline) measureOn(ctx context.Context, incs []*incident.Incident) error {
	if p.live != nil && incident.SameAttribution(p.liveIncs, incs) {
		p.live.Rebind(incs)
	} else {
		p.live, p.livePos = incident.NewAssessor(incs), logPos{}
		p.fullMeasures++
	}
	p.liveIncs = incs
	if p.log != nil {
		pos, err := p.log.replayFrom(ctx, p.livePos, p.live.Add)
		if err != nil {
			// Half read: start again next time.
			p.live = nil
			return fmt.Errorf("detect: impact pass: %w", err)
		}
		p.livePos = pos
	}
	p.live.Finish()
	return nil
}
