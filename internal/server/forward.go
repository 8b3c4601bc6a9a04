package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// JournalRoutes are the read-only routes answered from the journal and its
// index: in a cluster (docs/scale.md) only the node holding the journal
// has them, and every other node forwards them there.
var JournalRoutes = []string{"/api/v1/checkpoint", "/api/v1/proof", "/api/v1/search", "/api/v1/timeline"}

// forwardedHeaders are the answer headers a forwarded query carries back;
// no request header is forwarded at all.
var forwardedHeaders = []string{"Content-Type", "Retry-After", "X-Vigil-Index-Behind", "X-Vigil-Index-Error"}

// JournalQuery is a journal route's request as forwarded: the route and
// its query string, nothing else (no key, no header): the asking node has
// authenticated the caller and checked its role.
type JournalQuery struct {
	Path  string `json:"path"`
	Query string `json:"query"`
}

// JournalAnswer is the answer to a JournalQuery as the journal node's API
// gave it.
type JournalAnswer struct {
	Status int
	Header http.Header // only forwardedHeaders
	Body   []byte
}

// ErrNoJournalNode: no node holding the journal answered.
var ErrNoJournalNode = errors.New("no journal node answered")

// Forwarder sends a JournalQuery to the node holding the journal and
// returns its answer; ErrNoJournalNode (wrapped) when none answers.
type Forwarder func(ctx context.Context, q JournalQuery) (JournalAnswer, error)

// ForwardTimeout bounds a forwarded query: the longest a search may wait
// for the index and then run, and a margin for the round trip.
const ForwardTimeout = searchMaxWait + searchTimeout + 10*time.Second

// forward answers a journal route by asking the journal node, once the
// caller passed this node's guard.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ForwardTimeout)
	defer cancel()
	a, err := s.d.Forward(ctx, JournalQuery{Path: r.URL.Path, Query: r.URL.RawQuery})
	if err != nil {
		if r.Context().Err() != nil {
			return // the caller left
		}
		s.log.Warn("journal query not answered", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the journal node did not answer: "+err.Error())
		return
	}
	for _, k := range forwardedHeaders {
		if v := a.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(a.Status)
	w.Write(a.Body)
}

// AnswerJournalQuery answers a query forwarded by another node from this
// node's journal and index, as its own API would. Only JournalRoutes are
// answered (404 for anything else), as GET with no credentials: the
// asking node checked them.
func (s *Server) AnswerJournalQuery(ctx context.Context, q JournalQuery) JournalAnswer {
	rec := &recorder{header: http.Header{}}
	var h http.HandlerFunc
	switch q.Path {
	case "/api/v1/checkpoint":
		h = s.checkpoint
	case "/api/v1/proof":
		h = s.proof
	case "/api/v1/search":
		h = s.search
	case "/api/v1/timeline":
		h = s.timeline
	default:
		writeError(rec, http.StatusNotFound, "not a journal query")
		return rec.answer()
	}
	if _, err := url.ParseQuery(q.Query); err != nil {
		writeError(rec, http.StatusBadRequest, "query string: "+err.Error())
		return rec.answer()
	}
	// The path and query string as asked: cursors carry their digest.
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, (&url.URL{Path: q.Path, RawQuery: q.Query}).String(), nil)
	if err != nil {
		writeError(rec, http.StatusBadRequest, err.Error())
		return rec.answer()
	}
	h(rec, r)
	return rec.answer()
}

// recorder is the http.ResponseWriter of a forwarded query.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) answer() JournalAnswer {
	a := JournalAnswer{Status: r.status, Header: http.Header{}, Body: r.body.Bytes()}
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	for _, k := range forwardedHeaders {
		if v := r.header.Get(k); v != "" {
			a.Header.Set(k, v)
		}
	}
	return a
}
