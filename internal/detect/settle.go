package detect

import (
	"bufio"
	"container/heap"
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
// whole input. Each write is a run sorted in alert order, gob-encoded on
// its own (a decoder can start at any run); the result merges the runs,
// so reading them back holds one alert per run. Past maxSpoolRuns the
// runs are merged into one, so the merge's buffers stay bounded too.
type alertSpool struct {
	dir  string
	f    *os.File
	w    *bufio.Writer
	runs []spoolRun
	n    int
}

// spoolRun is one sorted run: where it starts and how many alerts.
type spoolRun struct {
	off int64
	n   int
}

// maxSpoolRuns bounds the runs a merge reads at once (64 KiB of buffer
// each).
const maxSpoolRuns = 64

// spooled is one alert in the spool.
type spooled struct {
	A         alert.Alert
	EmptyTags bool
}

// write adds as (which it sorts) as one run.
func (s *alertSpool) write(as []alert.Alert) error {
	if len(as) == 0 {
		return nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "vigil-alerts-*.gob")
		if err != nil {
			return fmt.Errorf("settled alerts: %w", err)
		}
		s.f, s.w = f, bufio.NewWriter(f)
	}
	alert.Sort(as)
	// The run starts where the file is written to, past what is buffered.
	at, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
	}
	s.runs = append(s.runs, spoolRun{off: at + int64(s.w.Buffered()), n: len(as)})
	enc := gob.NewEncoder(s.w)
	for i := range as {
		// gob sends no empty slice: say so, for the JSON of Tags.
		r := spooled{A: as[i], EmptyTags: as[i].Tags != nil && len(as[i].Tags) == 0}
		if err := enc.Encode(&r); err != nil {
			return fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
		}
	}
	s.n += len(as)
	if len(s.runs) > maxSpoolRuns {
		return s.compact()
	}
	return nil
}

// compact merges every run into one, in a new file.
func (s *alertSpool) compact() error {
	f, err := os.CreateTemp(s.dir, "vigil-alerts-*.gob")
	if err != nil {
		return fmt.Errorf("settled alerts: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := gob.NewEncoder(w)
	err = s.each(nil, func(a *alert.Alert) error {
		return enc.Encode(&spooled{A: *a, EmptyTags: a.Tags != nil && len(a.Tags) == 0})
	})
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("settled alerts %s: %w", f.Name(), err)
	}
	n := s.n
	s.remove()
	s.f, s.w = f, w
	s.runs, s.n = []spoolRun{{off: 0, n: n}}, n
	return nil
}

// each calls fn with every spooled alert and every alert of held (sorted
// in place), in alert order. The spool stays as it is.
func (s *alertSpool) each(held []alert.Alert, fn func(*alert.Alert) error) error {
	alert.Sort(held)
	var rs []*runReader
	if s != nil && s.f != nil {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("settled alerts %s: %w", s.f.Name(), err)
		}
		f, err := os.Open(s.f.Name())
		if err != nil {
			return fmt.Errorf("settled alerts: %w", err)
		}
		defer f.Close()
		for _, r := range s.runs {
			rr := &runReader{left: r.n, dec: gob.NewDecoder(bufio.NewReaderSize(io.NewSectionReader(f, r.off, 1<<62), 64<<10)), name: s.f.Name()}
			if err := rr.next(); err != nil {
				return err
			}
			rs = append(rs, rr)
		}
	}
	h := &alertMerge{}
	for _, rr := range rs {
		if rr.ok {
			h.items = append(h.items, rr)
		}
	}
	if len(held) > 0 {
		h.items = append(h.items, &runReader{held: held, ok: true, cur: held[0], key: held[0].Key()})
	}
	heap.Init(h)
	for h.Len() > 0 {
		rr := h.items[0]
		a := rr.cur
		if err := fn(&a); err != nil {
			return err
		}
		if err := rr.next(); err != nil {
			return err
		}
		if rr.ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return nil
}

// runReader is one run being merged: spooled, or the held alerts.
type runReader struct {
	dec  *gob.Decoder
	left int
	name string
	held []alert.Alert
	cur  alert.Alert
	key  string
	ok   bool
}

func (r *runReader) next() error {
	if r.dec == nil { // the held alerts
		r.held = r.held[1:]
		r.ok = len(r.held) > 0
		if r.ok {
			r.cur, r.key = r.held[0], r.held[0].Key()
		}
		return nil
	}
	if r.left == 0 {
		r.ok = false
		return nil
	}
	var sp spooled
	if err := r.dec.Decode(&sp); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("settled alerts %s: %w", r.name, err)
	}
	if sp.EmptyTags {
		sp.A.Tags = []string{}
	}
	r.left--
	r.cur, r.key, r.ok = sp.A, sp.A.Key(), true
	return nil
}

// alertMerge orders runs by their current alert, as alert.Sort does.
type alertMerge struct{ items []*runReader }

func (h *alertMerge) Len() int { return len(h.items) }
func (h *alertMerge) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if !a.cur.Time.Equal(b.cur.Time) {
		return a.cur.Time.Before(b.cur.Time)
	}
	return a.key < b.key
}
func (h *alertMerge) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *alertMerge) Push(x any)    { h.items = append(h.items, x.(*runReader)) }
func (h *alertMerge) Pop() any {
	n := len(h.items)
	x := h.items[n-1]
	h.items = h.items[:n-1]
	return x
}

// contents reads the spooled alerts back in alert order; the spool stays
// as it is.
func (s *alertSpool) contents() ([]alert.Alert, error) {
	if s == nil || s.f == nil {
		return nil, nil
	}
	out := make([]alert.Alert, 0, s.n)
	err := s.each(nil, func(a *alert.Alert) error {
		out = append(out, *a)
		return nil
	})
	return out, err
}

func (s *alertSpool) remove() {
	if s == nil || s.f == nil {
		return
	}
	s.f.Close()
	os.Remove(s.f.Name())
	s.f = nil
	s.runs, s.n = nil, 0
}

// Alerts is every alert of a finished run in alert order (time, then
// Key): those still held in memory and those settled to a temporary
// file, read back as Each walks them, so that a report over months of
// events does not hold them all. Close removes the file.
type Alerts struct {
	spool *alertSpool
	held  []alert.Alert
}

// Len is how many alerts there are.
func (a *Alerts) Len() int {
	if a == nil {
		return 0
	}
	n := len(a.held)
	if a.spool != nil {
		n += a.spool.n
	}
	return n
}

// Each calls fn with every alert in order; fn must not keep the pointer.
func (a *Alerts) Each(fn func(*alert.Alert) error) error {
	if a == nil {
		return nil
	}
	return a.spool.each(a.held, fn)
}

// All reads every alert into memory: for small runs and tests.
func (a *Alerts) All() ([]alert.Alert, error) {
	out := make([]alert.Alert, 0, a.Len())
	err := a.Each(func(x *alert.Alert) error {
		out = append(out, *x)
		return nil
	})
	return out, err
}

// Close removes the settled alerts' file.
func (a *Alerts) Close() {
	if a != nil {
		a.spool.remove()
	}
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
	as, err := p.spool.contents()
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
