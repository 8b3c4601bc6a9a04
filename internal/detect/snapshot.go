package detect

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/incident"
)

// snapshotVersion names the layout Snapshot writes.
// Version 2 holds the settled state (settle.go) beside the alerts still
// held.
const snapshotVersion = 2

type snapshot struct {
	Version                   int
	Newest, Released, Grouped time.Time
	Fresh, Counting           bool
	Alerts                    []alert.Alert
	Open                      map[string]openState
	Impact                    map[string]int
	Stats                     Stats
	Log                       []logSeg
	Behaviours                []byte
	Rules                     []byte
	// Settled state: final incidents, the breadth of the alerts let go,
	// the horizon settled, when an offline run last settled, and the
	// settled alerts kept for Close (none with Config.ForgetSettled).
	Settled            []settledIncident
	Tally              incident.Tally
	Horizon, SettledAt time.Time
	Alerted            time.Time
	Spooled            []alert.Alert
}

type openState struct {
	Alerts   int
	Severity alert.Level
}

// Snapshot writes the whole state of a pipeline that never ends (vigil
// serve): the detectors' state, the alerts and incidents so far, what the
// sink was last told, and the access log's files up to now (made durable;
// they stay where they are). Like Refresh it first processes the buffered
// events, so the snapshot holds no event half way. A pipeline restored
// from it and fed what came after continues as this one would.
func (p *Pipeline) Snapshot(w io.Writer) error { return p.snapshot(w, false) }

// snapshot writes a Snapshot; portable, the behaviours' accesses awaiting
// judgement are copied into it rather than named on this machine's disk.
func (p *Pipeline) snapshot(w io.Writer, portable bool) error {
	if p.closed {
		return errors.New("detect: Snapshot after Close")
	}
	p.Drain()
	s := snapshot{Version: snapshotVersion, Newest: p.newest, Released: p.released, Grouped: p.grouped,
		Fresh: p.fresh, Counting: p.counting, Alerts: p.alerts, Impact: p.impact, Stats: p.stats,
		Open: make(map[string]openState, len(p.open))}
	for id, o := range p.open {
		s.Open[id] = openState{o.alerts, o.severity}
	}
	if err := p.saveSettled(&s); err != nil {
		return fmt.Errorf("detect: snapshot: %w", err)
	}
	if p.log != nil {
		segs, err := p.log.seal()
		if err != nil {
			return fmt.Errorf("detect: snapshot: %w", err)
		}
		s.Log = segs
	}
	if b := p.cfg.Behaviours; b != nil {
		var buf bytes.Buffer
		save := b.SaveLocal
		if portable {
			save = b.Save
		}
		if err := save(&buf); err != nil {
			return fmt.Errorf("detect: snapshot: %w", err)
		}
		s.Behaviours = buf.Bytes()
	}
	if rs := p.cfg.Rules; rs != nil {
		var buf bytes.Buffer
		if err := rs.SaveState(&buf); err != nil {
			return fmt.Errorf("detect: snapshot: %w", err)
		}
		s.Rules = buf.Bytes()
	}
	if err := gob.NewEncoder(w).Encode(&s); err != nil {
		return fmt.Errorf("detect: snapshot: %w", err)
	}
	return nil
}

// Restore loads a Snapshot into a new pipeline built with the same
// configuration, before its first event. The sink is not told again of
// what the snapshot's pipeline told its own.
func (p *Pipeline) Restore(r io.Reader) error {
	if p.stats.Events > 0 || len(p.alerts) > 0 || p.buf.Len() > 0 {
		return errors.New("detect: Restore into a pipeline that has seen events")
	}
	var s snapshot
	if err := gob.NewDecoder(r).Decode(&s); err != nil {
		return fmt.Errorf("detect: restore: %w", err)
	}
	// Version 1 is version 2 with nothing settled.
	if s.Version != snapshotVersion && s.Version != 1 {
		return fmt.Errorf("detect: restore: snapshot version %d, want %d", s.Version, snapshotVersion)
	}
	if (s.Behaviours != nil) != (p.cfg.Behaviours != nil) || (s.Rules != nil) != (p.cfg.Rules != nil) {
		return errors.New("detect: restore: the snapshot was taken with other detectors")
	}
	// The ruleset may be shared with the pipeline built after a failed
	// restore: it is loaded last, and LoadState changes nothing unless it
	// succeeds.
	var log *accessLog
	if len(s.Log) > 0 {
		log = &accessLog{dir: p.cfg.TempDir}
		if err := log.restore(s.Log); err != nil {
			return fmt.Errorf("detect: restore: %w", err)
		}
	}
	if b := p.cfg.Behaviours; b != nil {
		if err := b.Load(bytes.NewReader(s.Behaviours)); err != nil {
			return fmt.Errorf("detect: restore: %w", err)
		}
	}
	if rs := p.cfg.Rules; rs != nil {
		if err := rs.LoadState(bytes.NewReader(s.Rules)); err != nil {
			return fmt.Errorf("detect: restore: %w", err)
		}
	}
	if err := p.restoreSettled(&s); err != nil {
		return fmt.Errorf("detect: restore: %w", err)
	}
	p.log = log
	p.newest, p.released, p.grouped = s.Newest, s.Released, s.Grouped
	p.fresh, p.counting = s.Fresh, s.Counting
	p.alerts, p.impact, p.stats = s.Alerts, s.Impact, s.Stats
	if p.stats.Sources == nil {
		p.stats.Sources = map[string]int{}
	}
	for id, o := range s.Open {
		p.open[id] = incState{o.Alerts, o.Severity}
	}
	return nil
}

// AccessLogFiles names the files of the pipeline's access log (to tell
// them from files a crashed run left behind).
func (p *Pipeline) AccessLogFiles() []string {
	if p.log == nil {
		return nil
	}
	return p.log.files()
}
