package detect

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/incident"
)

// settleAfter is Config.Settle, or its default.
func (p *Pipeline) settleAfter() time.Duration {
	if d := p.cfg.Settle; d != 0 {
		return d
	}
	d := p.cfg.Reorder
	if b := p.cfg.Behaviours; b != nil {
		d += b.AlertDelay()
	}
	return d
}

// group groups the alerts held as of event time at (zero: the end of the
// input) and settles the groups no alert still to come can reach: the
// alert raised next is dated at the earliest at (or the newest alert's
// time, if older) less settleAfter, and
// links only to alerts within the incident window of it. A settled group
// that qualifies stays as a final incident; its alerts, and those of a
// settled group that does not, leave the held alerts (to the spool, or
// forgotten). It returns every incident, settled or not, in Group's
// order.
func (p *Pipeline) group(at time.Time) ([]*incident.Incident, error) {
	cfg := *p.cfg.Incidents
	// Measured from the newest alert when it is older: one event dated
	// far ahead of the stream (a clock gone wrong, a record written now
	// among a backfill) must not settle every group behind it.
	var horizon time.Time
	if d := p.settleAfter(); !at.IsZero() && d >= 0 && !p.alerted.IsZero() {
		if p.alerted.Before(at) {
			at = p.alerted
		}
		horizon = at.Add(-d)
	}
	g := incident.GroupUntil(cfg, p.alerts, &p.tally, horizon)
	if len(g.Left) > 0 {
		p.tally.Add(cfg, g.Left)
		if !p.cfg.ForgetSettled {
			if p.spool == nil {
				p.spool = &alertSpool{dir: p.cfg.TempDir}
			}
			if err := p.spool.write(g.Left); err != nil {
				return nil, err
			}
		}
		p.alerts = g.Held
		if s := horizon.Add(-cfg.Window); s.After(p.horizon) {
			p.horizon = s
		}
	}
	n := len(p.settled)
	incs := make([]*incident.Incident, 0, len(p.settled)+len(g.Incidents))
	for i, inc := range g.Incidents {
		if g.Settled[i] {
			p.settled = append(p.settled, inc)
		} else {
			incs = append(incs, inc)
		}
	}
	if len(p.settled) > n {
		sort.SliceStable(p.settled, func(i, j int) bool { return incident.IncidentLess(p.settled[i], p.settled[j]) })
	}
	incs = append(incs, p.settled...)
	sort.SliceStable(incs, func(i, j int) bool { return incident.IncidentLess(incs[i], incs[j]) })
	return incs, nil
}

// fail keeps the first error the pipeline met where it could not return
// it; Refresh and Close return it.
func (p *Pipeline) fail(err error) {
	if p.err == nil {
		p.err = fmt.Errorf("detect: %w", err)
	}
}

// alertSpool holds settled alerts on disk for Close's result, so that an
// offline run's memory follows the alerts of its last days, not of the
// whole input.
type alertSpool struct {
	dir string
	f   *os.File
	w   *bufio.Writer
	enc *gob.Encoder
	n   int
}

// spooled is one alert in the spool.
type spooled struct {
	A         alert.Alert
	EmptyTags bool
}

func (s *alertSpool) write(as []alert.Alert) error {
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "vigil-alerts-*.gob")
		if err != nil {
			return fmt.Errorf("settled alerts: %w", err)
		}
		s.f, s.w = f, bufio.NewWriter(f)
		s.enc = gob.NewEncoder(s.w)
	}
	for i := range as {
		// gob sends no empty slice: say so, for the JSON of Tags.
		r := spooled{A: as[i], EmptyTags: as[i].Tags != nil && len(as[i].Tags) == 0}
		if err := s.enc.Encode(&r); err != nil {
			return fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
		}
	}
	s.n += len(as)
	return nil
}

// readAll returns the spooled alerts followed by held, and removes the
// spool. A nil spool returns held.
func (s *alertSpool) readAll(held []alert.Alert) ([]alert.Alert, error) {
	if s == nil || s.f == nil {
		return held, nil
	}
	defer s.remove()
	out, err := s.contents(len(held))
	if err != nil {
		return nil, err
	}
	return append(out, held...), nil
}

// contents reads the spooled alerts back, with room for more; the spool
// stays as it is.
func (s *alertSpool) contents(more int) ([]alert.Alert, error) {
	if s == nil || s.f == nil {
		return nil, nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
	}
	f, err := os.Open(s.f.Name())
	if err != nil {
		return nil, fmt.Errorf("settled alerts: %w", err)
	}
	defer f.Close()
	out := make([]alert.Alert, 0, s.n+more)
	dec := gob.NewDecoder(bufio.NewReader(f))
	for range s.n {
		var r spooled
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
		}
		if r.EmptyTags {
			r.A.Tags = []string{}
		}
		out = append(out, r.A)
	}
	return out, nil
}

func (s *alertSpool) remove() {
	if s == nil || s.f == nil {
		return
	}
	s.f.Close()
	os.Remove(s.f.Name())
	s.f = nil
}

// settledIncident is a settled incident in a snapshot: what Incident
// sends, and the actors its impact follows.
type settledIncident struct {
	Incident     incident.Incident
	ImpactActors []alert.Actor
}

// saveSettled puts the settled state into a snapshot. The incidents'
// impact is left out: a restored pipeline measures it again from the
// access log.
func (p *Pipeline) saveSettled(s *snapshot) error {
	s.Tally, s.Horizon, s.SettledAt, s.Alerted = p.tally, p.horizon, p.settledAt, p.alerted
	for _, inc := range p.settled {
		c := *inc
		c.Impact = incident.Impact{}
		s.Settled = append(s.Settled, settledIncident{Incident: c, ImpactActors: inc.ImpactActors()})
	}
	as, err := p.spool.contents(0)
	if err != nil {
		return err
	}
	s.Spooled = as
	return nil
}

// restoreSettled takes the settled state from a snapshot.
func (p *Pipeline) restoreSettled(s *snapshot) error {
	p.tally, p.horizon, p.settledAt, p.alerted = s.Tally, s.Horizon, s.SettledAt, s.Alerted
	p.settled = nil
	for _, si := range s.Settled {
		inc := si.Incident
		inc.SetImpactActors(si.ImpactActors)
		p.settled = append(p.settled, &inc)
	}
	if len(s.Spooled) > 0 {
		p.spool = &alertSpool{dir: p.cfg.TempDir}
		if err := p.spool.write(s.Spooled); err != nil {
			return err
		}
	}
	return nil
}
