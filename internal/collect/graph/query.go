package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
)

// QueryPolicy is the audit log query's: it reads only what the Management
// API no longer keeps (records older than 7 days − 1 h), in windows of at
// most 6 hours (each a query job, of which a tenant may submit about 150 a
// day), up to the Unified Audit Log's 180 days.
var QueryPolicy = collect.Policy{
	Settle: 7*24*time.Hour - time.Hour, Overlap: 0, MaxWindow: 6 * time.Hour,
	MaxAge: 179 * 24 * time.Hour, Poll: 6 * time.Hour, Journal: "m365.ual",
}

// MinQueryWindow is the smallest window a truncated query is split into;
// a query of this size that is still truncated is recorded as a gap.
const MinQueryWindow = 15 * time.Minute

// QuerySource backfills Unified Audit Log records through Microsoft
// Graph's audit log query (security/auditLog/queries): create a query per
// window, poll it until it succeeds, read its records page by page. A
// query that hits its record limit is split in halves down to
// MinQueryWindow; past that the truncation is a gap, never taken as
// complete. Available in the commercial cloud only.
type QuerySource struct {
	base   *url.URL
	client *collect.Client
	// PollEvery and MaxPolls bound the wait for one query (default 30 s
	// and 240, two hours).
	PollEvery time.Duration
	MaxPolls  int
}

// QueryName is the config name of the backfill source.
const QueryName = "audit.query"

// NewQuery returns the backfill source.
func NewQuery(baseURL string, client *collect.Client) (*QuerySource, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, err
	}
	return &QuerySource{base: u, client: client, PollEvery: 30 * time.Second, MaxPolls: 240}, nil
}

// Name implements collect.Source.
func (s *QuerySource) Name() string { return QueryName }

// Policy implements collect.Source.
func (s *QuerySource) Policy() collect.Policy { return QueryPolicy }

// Prepare implements collect.Source.
func (s *QuerySource) Prepare(context.Context, collect.Sink) error { return nil }

type auditQuery struct {
	ID                   string `json:"id"`
	Status               string `json:"status"`
	IsRecordCountLimited *bool  `json:"isRecordCountLimitExceeded"`
}

func (s *QuerySource) queries() string { return s.base.String() + "/v1.0/security/auditLog/queries" }

func (s *QuerySource) explain(err error) error {
	var ae *collect.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
		return collect.Permanent(err, "grant the app the Microsoft Graph application permission AuditLogsQuery.Read.All and admin consent")
	}
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return collect.Permanent(err, "")
	}
	return err
}

// Fetch runs one query for w, or several when it is truncated.
func (s *QuerySource) Fetch(ctx context.Context, w collect.Window, out collect.Sink) error {
	q, err := s.run(ctx, w, out)
	if err != nil {
		return err
	}
	truncated := q.IsRecordCountLimited != nil && *q.IsRecordCountLimited
	if truncated && w.End.Sub(w.Start) > MinQueryWindow {
		mid := w.Start.Add(w.End.Sub(w.Start) / 2).Truncate(time.Second)
		if err := s.Fetch(ctx, collect.Window{Start: w.Start, End: mid}, out); err != nil {
			return err
		}
		return s.Fetch(ctx, collect.Window{Start: mid, End: w.End}, out)
	}
	if err := s.records(ctx, q.ID, out); err != nil {
		return err
	}
	if truncated {
		return out.Gap(ctx, collect.Gap{Reason: collect.GapTruncated, Window: w,
			Detail: fmt.Sprintf("audit log query %s hit its record limit on a %s window", q.ID, w.End.Sub(w.Start))})
	}
	return nil
}

// run creates the query for w (or finds the one created for it before a
// restart) and waits for it to finish.
func (s *QuerySource) run(ctx context.Context, w collect.Window, out collect.Sink) (*auditQuery, error) {
	key := "query " + w.String()
	id := out.Extra(key)
	if id == "" {
		body, _ := json.Marshal(map[string]any{
			"displayName":         "vigil backfill " + w.String(),
			"filterStartDateTime": w.Start.UTC().Format(time.RFC3339),
			"filterEndDateTime":   w.End.UTC().Format(time.RFC3339),
		})
		resp, err := s.client.Do(ctx, http.MethodPost, s.queries(), body, http.Header{"Content-Type": {"application/json"}})
		if err != nil {
			return nil, s.explain(err)
		}
		var q auditQuery
		if err := json.Unmarshal(resp.Body, &q); err != nil || q.ID == "" {
			return nil, fmt.Errorf("audit log query: created without an id")
		}
		id = q.ID
		out.SetExtra(key, id)
	}
	for polls := 0; ; polls++ {
		resp, err := s.client.Do(ctx, http.MethodGet, s.queries()+"/"+url.PathEscape(id), nil, nil)
		if err != nil {
			var ae *collect.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				out.SetExtra(key, "") // gone: create it anew next time
			}
			return nil, s.explain(err)
		}
		var q auditQuery
		if err := json.Unmarshal(resp.Body, &q); err != nil {
			return nil, fmt.Errorf("audit log query %s: %w", id, err)
		}
		switch q.Status {
		case "succeeded":
			out.SetExtra(key, "")
			q.ID = id
			return &q, nil
		case "failed", "cancelled":
			out.SetExtra(key, "")
			return nil, fmt.Errorf("audit log query %s for %s %s", id, w, q.Status)
		}
		if polls >= s.MaxPolls {
			return nil, fmt.Errorf("audit log query %s for %s still %s; it is polled again next time", id, w, q.Status)
		}
		if err := s.client.Clock.Sleep(ctx, s.PollEvery); err != nil {
			return nil, err
		}
	}
}

func (s *QuerySource) records(ctx context.Context, id string, out collect.Sink) error {
	next := s.queries() + "/" + url.PathEscape(id) + "/records?$top=1000"
	for pages := 0; next != ""; pages++ {
		if pages > 100000 {
			return errors.New("more than 100000 pages in one query; refusing to loop")
		}
		resp, err := s.client.Do(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			return s.explain(err)
		}
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return fmt.Errorf("query %s page %d: %w", id, pages+1, err)
		}
		if err := collect.Emit(ctx, out, page.Value, ""); err != nil {
			return err
		}
		next = page.NextLink
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || u.Scheme != s.base.Scheme || u.Host != s.base.Host {
				return collect.Permanent(fmt.Errorf("nextLink points to %q, not to %s", next, s.base.Host), "check graph_url")
			}
		}
	}
	return nil
}

// Key is the UAL record's Id (auditData.Id, the id the Management API
// gives the same record), else the query record's id.
func (s *QuerySource) Key(raw []byte) (string, error) {
	var r struct {
		ID        string `json:"id"`
		AuditData struct {
			ID string `json:"Id"`
		} `json:"auditData"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.AuditData.ID != "" {
		return r.AuditData.ID, nil
	}
	if r.ID == "" {
		return "", errors.New("record has no id")
	}
	return r.ID, nil
}
