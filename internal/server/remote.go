package server

import (
	"context"
	"maps"
	"slices"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/incident"
)

// AlertFeed delivers the alerts and incident updates of detection that
// runs elsewhere (a cluster's detect nodes, docs/scale.md), in order, from
// the first after position after, until ctx ends or deliver fails.
type AlertFeed func(ctx context.Context, after uint64, deliver func(RemoteDetection) error) error

// RemoteDetection is one message of an AlertFeed: an alert, an incident
// update (with its alert ids), or a message that could not be read.
type RemoteDetection struct {
	Seq    uint64 // position in the feed
	Alert  *alert.Alert
	Update *detect.Update
	// Current, non-nil in a message of its own, names every incident of
	// the grouping at a refresh elsewhere (sorted; empty for none): the
	// incidents not named have merged or dissolved.
	Current []string
	Err     error
}

// remoteView is what a watcher whose detection runs elsewhere keeps of the
// feed: where it stands, which incident holds each alert (to tell at once
// when an incident merged into others: all its alerts went to them), and
// the incidents that left the grouping.
type remoteView struct {
	seq    uint64
	owner  map[string]string // alert id → incident id
	owned  map[string]int    // incident id → alerts it holds
	errors int64
	// gone are incidents a grouping no longer names, as last updated: a
	// later grouping may name one again without a new update (its state
	// was sent once, and is not sent twice).
	gone map[string]*incident.Incident
	// recent are the latest alerts by id (as many as the watcher keeps),
	// oldest first in order, to give incidents their alerts.
	recent map[string]alert.Alert
	order  []string
}

func newRemoteView() *remoteView {
	return &remoteView{owner: map[string]string{}, owned: map[string]int{}, recent: map[string]alert.Alert{}, gone: map[string]*incident.Incident{}}
}

// remember keeps a's id for alertsOf, forgetting the oldest past max.
func (r *remoteView) remember(a *alert.Alert, max int) {
	id := a.ID()
	if _, ok := r.recent[id]; !ok {
		r.order = append(r.order, id)
	}
	r.recent[id] = *a
	if over := len(r.order) - max; over > max/4 {
		for _, old := range r.order[:over] {
			delete(r.recent, old)
		}
		r.order = slices.Delete(r.order, 0, over)
	}
}

// own gives ids to incident inc and returns the incidents left without
// alerts: merged into others.
func (r *remoteView) own(inc string, ids []string) (merged []string) {
	if _, ok := r.owned[inc]; !ok {
		r.owned[inc] = 0
	}
	for _, id := range ids {
		prev, had := r.owner[id]
		if had && prev == inc {
			continue
		}
		r.owner[id] = inc
		r.owned[inc]++
		if !had {
			continue
		}
		if r.owned[prev]--; r.owned[prev] <= 0 {
			delete(r.owned, prev)
			merged = append(merged, prev)
		}
	}
	return merged
}

// remoteState is the snapshot's part for a watcher fed from elsewhere.
type remoteState struct {
	Seq       uint64
	Incidents []*incident.Incident
	Owner     map[string]string
	Errors    int64
	Gone      []*incident.Incident // nil in snapshots taken before groupings were sent
}

func (w *Watcher) remoteSeq() uint64 {
	if w.feed == nil {
		return 0
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.remote.seq
}

func (w *Watcher) saveRemote() *remoteState {
	w.mu.RLock()
	defer w.mu.RUnlock()
	st := &remoteState{Seq: w.remote.seq, Owner: w.remote.owner, Errors: w.remote.errors}
	for _, id := range slices.Sorted(maps.Keys(w.incidents)) {
		st.Incidents = append(st.Incidents, w.incidents[id])
	}
	for _, id := range slices.Sorted(maps.Keys(w.remote.gone)) {
		st.Gone = append(st.Gone, w.remote.gone[id])
	}
	return st
}

// startRemote restores the views, the incidents and the feed position
// from the snapshot; one taken while this server detected itself is not
// used (the feed is then read from its start).
func (w *Watcher) startRemote() error {
	if w.stateDir == "" {
		return nil
	}
	st, err := w.loadState()
	switch {
	case err != nil:
		w.log.Warn("detection snapshot not usable: reading the journal and the detect nodes' alerts from their start", "err", err)
		return nil
	case st == nil:
		return nil
	case st.Remote == nil:
		w.log.Info("detection snapshot taken while this server detected: reading the detect nodes' alerts from their start")
		return nil
	}
	if w.rules != nil {
		w.rules.restore(st.Rules) // the switches the views have read
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.offset, w.resumed, w.undecoded = st.Offset, st.Offset, st.Undecoded
	if st.Sources != nil {
		w.sources = st.Sources
	}
	w.alerts = st.Alerts
	r := newRemoteView()
	r.seq, r.errors = st.Remote.Seq, st.Remote.Errors
	if st.Remote.Owner != nil {
		r.owner = st.Remote.Owner
	}
	for _, inc := range r.owner {
		r.owned[inc]++
	}
	for i := range w.alerts {
		r.remember(&w.alerts[i], w.maxAlerts)
	}
	w.remote = r
	for _, inc := range st.Remote.Incidents {
		w.incidents[inc.ID] = inc
	}
	for _, inc := range st.Remote.Gone {
		r.gone[inc.ID] = inc
	}
	w.log.Info("detection views resume from their snapshot", "offset", st.Offset, "alert_feed_position", r.seq)
	return nil
}

// follow runs the feed from after on its own goroutine; its messages come
// out of the first channel, its end out of the second.
func (w *Watcher) follow(ctx context.Context, after uint64) (<-chan RemoteDetection, <-chan error) {
	ch := make(chan RemoteDetection, 1024)
	errc := make(chan error, 1)
	go func() {
		errc <- w.feed(ctx, after, func(d RemoteDetection) error {
			select {
			case ch <- d:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return ch, errc
}

// applyRemote takes one feed message as a local pipeline's sink calls.
func (w *Watcher) applyRemote(d RemoteDetection) {
	switch {
	case d.Err != nil:
		w.mu.Lock()
		w.remote.errors++
		w.mu.Unlock()
		w.setErr(d.Err)
		w.log.Error("alert feed message not applied (it stays in the feed)", "position", d.Seq, "err", d.Err)
	case d.Alert != nil:
		w.mu.Lock()
		w.remote.remember(d.Alert, w.maxAlerts)
		w.mu.Unlock()
		w.Alert(d.Alert)
	case d.Update != nil && d.Update.Incident != nil:
		u := *d.Update
		w.mu.Lock()
		merged := w.remote.own(u.Incident.ID, u.AlertIDs)
		for _, id := range merged {
			w.leave(id)
		}
		delete(w.remote.gone, u.Incident.ID)
		if len(u.Incident.Alerts) == 0 {
			// The alerts this server keeps, so the web interface can follow
			// merged incidents as it does with local detection.
			for _, id := range u.AlertIDs {
				if a, ok := w.remote.recent[id]; ok {
					u.Incident.Alerts = append(u.Incident.Alerts, a)
				}
			}
		}
		w.mu.Unlock()
		w.Incident(u)
	case d.Current != nil:
		w.mu.Lock()
		missing, changed := w.regroupRemote(d.Current)
		if len(missing) > 0 {
			w.remote.errors++
		}
		w.mu.Unlock()
		if changed || !w.grouped {
			w.tellGrouping()
		}
		if len(missing) > 0 {
			w.log.Error("alert feed names incidents this server never had an update of", "position", d.Seq, "incidents", missing)
		}
	default:
		w.mu.Lock()
		w.remote.errors++
		w.mu.Unlock()
		w.log.Error("alert feed message with neither an alert nor an incident", "position", d.Seq)
	}
	w.mu.Lock()
	w.remote.seq = d.Seq
	w.mu.Unlock()
}

// leave moves incident id out of the list, keeping it in case a later
// grouping names it again. w.mu is held.
func (w *Watcher) leave(id string) {
	if inc, ok := w.incidents[id]; ok {
		w.remote.gone[id] = inc
		delete(w.incidents, id)
	}
}

// regroupRemote makes the incidents listed those of a grouping elsewhere
// (every update of that refresh came before it in the feed), and returns
// those named that this server has no state of, and whether the incidents
// listed changed. w.mu is held.
func (w *Watcher) regroupRemote(ids []string) (missing []string, changed bool) {
	named := make(map[string]bool, len(ids))
	for _, id := range ids {
		named[id] = true
		if _, ok := w.incidents[id]; ok {
			continue
		}
		if inc, ok := w.remote.gone[id]; ok {
			w.incidents[id] = inc
			delete(w.remote.gone, id)
			changed = true
			continue
		}
		missing = append(missing, id)
	}
	for id := range w.incidents {
		if !named[id] {
			w.leave(id)
			changed = true
		}
	}
	return missing, changed
}
