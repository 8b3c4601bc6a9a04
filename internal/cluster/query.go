package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// QueryAnswer is the answer to a journal query: the status, headers and
// body the journal node's API gave.
type QueryAnswer struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrNoJournalNode: no node serves the tenant's journal queries (none
// holds the journal, or it did not answer in time).
var ErrNoJournalNode = errors.New("cluster: no journal node answered")

// statusHeader carries an answer's status code in its NATS message.
const statusHeader = "Vigil-Status"

// maxConcurrentQueries bounds the journal queries a journal node answers
// at once; past it, queries are refused as busy (503) rather than queued
// behind a slow search.
const maxConcurrentQueries = 32

// journalQuery is a query on the wire: the API route and its query
// string. Nothing else travels: the asking node authenticated the caller.
type journalQuery struct {
	Path  string `json:"path"`
	Query string `json:"query"`
}

func journalQuerySubject(tenant string) string { return "vigil.journal." + token(tenant) + ".query" }

// ServeJournalQueries answers the tenant's journal queries with answer,
// each under a context of at most timeout, until stop is called. Only the
// node holding the tenant's journal serves them (they join one queue
// group, so a query is answered once). confirm, when set, is asked before
// every answer (Sequencer.ConfirmLease): a node that lost the journal
// lease answers 503 with Retry-After rather than from a journal another
// node now writes.
func (c *Conn) ServeJournalQueries(tenant string, timeout time.Duration, confirm func(context.Context) error, answer func(ctx context.Context, path, query string) QueryAnswer) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	slots := make(chan struct{}, maxConcurrentQueries)
	sub, err := c.nc.QueueSubscribe(journalQuerySubject(tenant), "vigil-journal", func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		var q journalQuery
		if err := json.Unmarshal(m.Data, &q); err != nil {
			c.respond(m, errorAnswer(http.StatusBadRequest, "journal query does not decode"))
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			a := errorAnswer(http.StatusServiceUnavailable, "the journal node is answering too many queries")
			a.Header.Set("Retry-After", "1")
			c.respond(m, a)
			return
		}
		// A slow search must not hold up the subscription's other queries.
		go func() {
			defer func() { <-slots }()
			qctx, qcancel := context.WithTimeout(ctx, timeout)
			defer qcancel()
			if confirm != nil {
				if err := confirm(qctx); err != nil {
					a := errorAnswer(http.StatusServiceUnavailable, "the journal node could not confirm it still holds the journal of tenant "+tenant)
					a.Header.Set("Retry-After", "1")
					c.respond(m, a)
					return
				}
			}
			c.respond(m, answer(qctx, q.Path, q.Query))
		}()
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: serving journal queries: %w", err)
	}
	return func() {
		sub.Unsubscribe()
		cancel()
	}, nil
}

func errorAnswer(status int, msg string) QueryAnswer {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return QueryAnswer{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: append(b, '\n')}
}

// respond sends a as the reply to m. An answer past the connection's
// largest message is replaced by an error saying so.
func (c *Conn) respond(m *nats.Msg, a QueryAnswer) {
	if max := c.nc.MaxPayload(); int64(len(a.Body))+4096 > max {
		a = errorAnswer(http.StatusBadGateway, fmt.Sprintf("the answer (%d bytes) is larger than the NATS servers' max_payload (%d bytes): ask for fewer rows (limit) or raise max_payload", len(a.Body), max))
	}
	r := nats.NewMsg(m.Reply)
	for k, vs := range a.Header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.Header.Set(statusHeader, strconv.Itoa(a.Status))
	r.Data = a.Body
	if err := m.RespondMsg(r); err != nil {
		c.opts.Logger.Warn("cluster: journal query answer not sent", "err", err)
	}
}

// AskJournal sends a journal query (an API route and its query string)
// to the node holding the tenant's journal and returns its answer; an
// error wrapping ErrNoJournalNode when none answers before ctx ends.
func (c *Conn) AskJournal(ctx context.Context, tenant, path, query string) (QueryAnswer, error) {
	data, err := json.Marshal(journalQuery{Path: path, Query: query})
	if err != nil {
		return QueryAnswer{}, err
	}
	m, err := c.nc.RequestWithContext(ctx, journalQuerySubject(tenant), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return QueryAnswer{}, fmt.Errorf("%w (none holds the journal of tenant %q)", ErrNoJournalNode, tenant)
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)):
		return QueryAnswer{}, fmt.Errorf("%w in time: %v", ErrNoJournalNode, err)
	case err != nil:
		return QueryAnswer{}, fmt.Errorf("%w: %v", ErrNoJournalNode, err)
	}
	status, err := strconv.Atoi(m.Header.Get(statusHeader))
	if err != nil || status < 100 || status > 599 {
		return QueryAnswer{}, fmt.Errorf("cluster: journal query answer without a status (%q)", m.Header.Get(statusHeader))
	}
	h := http.Header{}
	for k, vs := range m.Header {
		if k != statusHeader {
			h[http.CanonicalHeaderKey(k)] = vs
		}
	}
	return QueryAnswer{Status: status, Header: h, Body: m.Data}, nil
}
