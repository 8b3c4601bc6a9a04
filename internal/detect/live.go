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
	incs := p.regroup()
	if len(incs) == 0 {
		return nil, nil
	}
	if err := p.measure(ctx, incs); err != nil {
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
