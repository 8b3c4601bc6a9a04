package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// scenario replays a `vigil simulate` tenant (with an intrusion) during the
// push, to measure how long an incident takes from the sending of the
// record that raised it to its message in the file sink. The history
// before the replay window goes in first, as fast as the server takes it;
// the rest is replayed an hour of event time every `hour` of wall time,
// and the background load is stamped with the replay's clock, so event
// time moves as one stream would.
type scenario struct {
	recs  []scRec
	paced int       // recs[paced:] are replayed in time
	from  time.Time // the replay clock's start: the first paced hour
	hour  time.Duration
	start atomic.Int64 // wall time the paced replay began (UnixNano)
	mu    sync.Mutex
	done  atomic.Bool
	seen  map[string]bool
	lat   []time.Duration
	early int // incidents raised by the history
	off   int64
}

type scRec struct {
	t   time.Time
	raw []byte
}

// loadScenario reads dir's logs; the paced replay starts lead before the
// first intrusion record named in truth.json.
func loadScenario(ctx context.Context, dir string, lead, hour time.Duration) (*scenario, error) {
	var truth struct {
		Campaigns []struct {
			Start time.Time `json:"start"`
		} `json:"campaigns"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		return nil, fmt.Errorf("truth.json: %w", err)
	}
	if len(truth.Campaigns) == 0 {
		return nil, fmt.Errorf("%s: the simulation has no intrusion campaign", dir)
	}
	first := truth.Campaigns[0].Start
	for _, c := range truth.Campaigns {
		if c.Start.Before(first) {
			first = c.Start
		}
	}
	var paths []string
	for _, f := range []string{"ual.jsonl", "signins.jsonl", "gws.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			paths = append(paths, filepath.Join(dir, f))
		}
	}
	sc := &scenario{hour: hour, seen: map[string]bool{}}
	var prev *event.Event
	if _, err := source.ReadPaths(ctx, paths, source.Options{}, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		sc.recs = append(sc.recs, scRec{e.Time, bytes.TrimSpace(bytes.Clone(e.Raw))})
		return nil
	}); err != nil {
		return nil, err
	}
	if len(sc.recs) == 0 {
		return nil, fmt.Errorf("%s: no records", dir)
	}
	slices.SortStableFunc(sc.recs, func(a, b scRec) int { return a.t.Compare(b.t) })
	sc.from = first.Add(-lead).Truncate(time.Hour)
	sc.paced, _ = slices.BinarySearchFunc(sc.recs, sc.from, func(r scRec, t time.Time) int { return r.t.Compare(t) })
	return sc, nil
}

// wallOf is when the replay clock read t: when a record of event time t
// was sent (background records carry the clock's time; a replayed hour is
// sent when the clock reaches its end, so for its records this is up to
// one hour of replay early, which only lengthens the latency measured).
func (sc *scenario) wallOf(t time.Time) time.Time {
	return time.Unix(0, sc.start.Load()).Add(time.Duration(float64(t.Sub(sc.from)) / float64(time.Hour) * float64(sc.hour)))
}

// now is the replay clock: event time for the background load. It runs
// an hour per sc.hour until the scenario's last record, then at the wall
// clock's pace.
func (sc *scenario) now() time.Time {
	s := sc.start.Load()
	if s == 0 {
		return sc.from
	}
	el := time.Since(time.Unix(0, s))
	t := sc.from.Add(time.Duration(float64(el) / float64(sc.hour) * float64(time.Hour)))
	if end := sc.recs[len(sc.recs)-1].t; t.After(end) {
		over := sc.wallOf(end)
		return end.Add(time.Since(over))
	}
	return t
}

// history pushes the records before the paced window in batches.
func (sc *scenario) history(ctx context.Context, post func([]byte) (int, error)) error {
	var body []byte
	flush := func() error {
		for len(body) > 0 {
			code, err := post(body)
			if err != nil {
				return err
			}
			if code == http.StatusTooManyRequests {
				time.Sleep(time.Second)
				continue
			}
			body = body[:0]
		}
		return nil
	}
	for _, r := range sc.recs[:sc.paced] {
		body = append(append(body, r.raw...), '\n')
		if len(body) > 4<<20 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// replay pushes the paced records as the replay clock passes them: every
// 50 ms, everything now due in one request (a slow answer makes the next
// request larger, not the replay later).
func (sc *scenario) replay(ctx context.Context, post func([]byte) (int, error)) {
	sc.start.Store(time.Now().UnixNano())
	i := sc.paced
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for i < len(sc.recs) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := sc.now()
		var body []byte
		for ; i < len(sc.recs) && sc.recs[i].t.Before(now); i++ {
			body = append(append(body, sc.recs[i].raw...), '\n')
		}
		for len(body) > 0 {
			code, err := post(body)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				time.Sleep(time.Second)
				continue
			}
			if code == http.StatusTooManyRequests {
				time.Sleep(time.Second)
				continue
			}
			break
		}
	}
	sc.done.Store(true)
}

// watchSink reads the file sink's new lines and measures each incident's
// first high or critical message from when its raising record was sent
// (the incident's "raised" event time on the replay clock).
func (sc *scenario) watchSink(ctx context.Context, path string) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		sc.readSink(path)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (sc *scenario) readSink(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(sc.off, io.SeekStart); err != nil {
		return
	}
	br := bufio.NewReader(f)
	now := time.Now()
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return // a partial line is read again next time
		}
		sc.off += int64(len(line))
		var m struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Severity string `json:"severity"`
			Data     struct {
				ID     string    `json:"id"`
				Raised time.Time `json:"raised"`
			} `json:"data"`
		}
		if json.Unmarshal(line, &m) != nil || !strings.HasPrefix(m.Type, "incident.") || (m.Severity != "high" && m.Severity != "critical") {
			continue
		}
		sc.mu.Lock()
		if !sc.seen[m.Data.ID] && !m.Data.Raised.IsZero() {
			sc.seen[m.Data.ID] = true
			if m.Data.Raised.Before(sc.from) {
				sc.early++
			} else {
				sc.lat = append(sc.lat, now.Sub(sc.wallOf(m.Data.Raised)))
			}
		}
		sc.mu.Unlock()
	}
}
