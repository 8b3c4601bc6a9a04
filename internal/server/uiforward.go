package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// The web interface's journal queries, forwarded like JournalRoutes: the
// page's parameters only, answered from the journal node's index and
// journal as JSON of the ui types.
const (
	uiSearchQuery    = "/ui/search"
	uiTimelineQuery  = "/ui/timeline"
	uiIntegrityQuery = "/ui/integrity"
	uiTriageQuery    = "/ui/triage"
)

// ask forwards a web interface query and decodes its answer into v.
func (d *UIData) ask(ctx context.Context, path string, params url.Values, v any) error {
	a, err := d.o.Forward(ctx, JournalQuery{Path: path, Query: params.Encode()})
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(a.Body, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(a.Status)
		}
		return fmt.Errorf("the journal node answered %d: %s", a.Status, e.Error)
	}
	if err := json.Unmarshal(a.Body, v); err != nil {
		return fmt.Errorf("the journal node's answer: %w", err)
	}
	return nil
}

func (d *UIData) forwardSearch(ctx context.Context, q string, limit int) (ui.SearchResult, error) {
	var r ui.SearchResult
	err := d.ask(ctx, uiSearchQuery, url.Values{"q": {q}, "limit": {strconv.Itoa(limit)}}, &r)
	return r, err
}

// forwardTimeline asks for the timeline's records; the incidents naming
// the entity are this node's (Timeline adds them).
func (d *UIData) forwardTimeline(ctx context.Context, q ui.TimelineQuery) (ui.Timeline, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return ui.Timeline{}, err
	}
	var tl ui.Timeline
	err = d.ask(ctx, uiTimelineQuery, url.Values{"q": {string(b)}}, &tl)
	tl.Cases = nil
	return tl, err
}

// forwardIntegrity asks for the journal node's latest signed checkpoint
// and checks its signature here.
func (d *UIData) forwardIntegrity(ctx context.Context) (ui.Integrity, error) {
	var in ui.Integrity
	if err := d.ask(ctx, uiIntegrityQuery, nil, &in); err != nil {
		return ui.Integrity{}, err
	}
	in.Verified, in.VerifiedAt = false, time.Time{}
	v, err := journal.NewVerifier(in.VerifierKey)
	var cp journal.Checkpoint
	if err == nil {
		cp, err = journal.ParseCheckpoint([]byte(in.Checkpoint), v)
	}
	switch {
	case err != nil:
		in.VerifyDetail = err.Error()
	case cp.Size != in.Size:
		in.VerifyDetail = fmt.Sprintf("the signed checkpoint says %d entries, the answer %d", cp.Size, in.Size)
	default:
		in.Verified, in.VerifiedAt = true, time.Now().UTC()
		in.VerifyDetail = "the checkpoint's signature checks with the verifier key (checked on this node; the journal node signed it)"
	}
	return in, nil
}

// AnswerJournalQuery answers the web interface's queries forwarded by
// another node (ok false for any other path: the API's are the
// server's). Only search, timeline records and integrity are answered.
func (d *UIData) AnswerJournalQuery(ctx context.Context, q JournalQuery) (a JournalAnswer, ok bool) {
	var v any
	var err error
	params, perr := url.ParseQuery(q.Query)
	switch q.Path {
	case uiSearchQuery:
		limit, lerr := strconv.Atoi(params.Get("limit"))
		if perr != nil || lerr != nil || limit <= 0 {
			return uiAnswerError(http.StatusBadRequest, "search: want q and a positive limit"), true
		}
		v, err = d.Search(ctx, params.Get("q"), limit)
	case uiTimelineQuery:
		var tq ui.TimelineQuery
		if perr != nil || json.Unmarshal([]byte(params.Get("q")), &tq) != nil {
			return uiAnswerError(http.StatusBadRequest, "timeline: want its query as JSON"), true
		}
		v, err = d.timelineRecords(ctx, tq)
	case uiIntegrityQuery:
		v, err = d.Integrity(ctx)
	case uiTriageQuery:
		v = d.triageStates()
	default:
		return JournalAnswer{}, false
	}
	if err != nil {
		return uiAnswerError(http.StatusInternalServerError, err.Error()), true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return uiAnswerError(http.StatusInternalServerError, err.Error()), true
	}
	return JournalAnswer{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}, true
}

func uiAnswerError(status int, msg string) JournalAnswer {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return JournalAnswer{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
}

// TriageState is an incident's triage as the journal node's pages show
// it, forwarded to the other nodes of a cluster.
type TriageState struct {
	Status  string      `json:"status"`
	Owner   string      `json:"owner,omitempty"`
	History []ui.Change `json:"history"`
}

// triageStates is the triage of every incident changed.
func (d *UIData) triageStates() map[string]TriageState {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]TriageState, len(d.triage))
	for id, st := range d.triage {
		out[id] = TriageState{Status: st.status, Owner: st.owner, History: slices.Clone(st.history)}
	}
	return out
}

// syncTriage takes the journal node's triage (the changes made on any
// node, as journaled), then the changes made here it does not have yet.
// When the journal node does not answer, the pages show what it last
// said and the changes made here since.
func (d *UIData) syncTriage(ctx context.Context) {
	if d.o.Forward == nil {
		return
	}
	var states map[string]TriageState
	if err := d.ask(ctx, uiTriageQuery, nil, &states); err != nil {
		d.o.Logger.Warn("triage of the journal node not read; showing the last known", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.triage = make(map[string]*triageState, len(states))
	seen := map[string]bool{}
	for id, st := range states {
		d.triage[id] = &triageState{status: st.Status, owner: st.Owner, history: st.History}
		for _, ch := range st.History {
			seen[ch.ID] = true
		}
	}
	d.pending = slices.DeleteFunc(d.pending, func(ch ui.Change) bool { return seen[ch.ID] })
	for _, ch := range d.pending {
		d.apply(ch)
	}
}
