// Package graph reads Microsoft Graph audit lists: sign-ins (interactive
// from v1.0; non-interactive, service-principal and managed-identity
// sign-ins from beta with signInEventTypes), directory audits and risk
// detections, by time window ($filter on the record's time, dates
// unquoted), following @odata.nextLink until it is absent. Skip tokens are
// never persisted: a window is always read again whole.
//
// It knows nothing of watermarks, deduplication or the journal.
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

// Stream is one Graph list.
type Stream struct {
	Version    string // v1.0 or beta
	Path       string // auditLogs/signIns
	TimeField  string // the field filtered on
	EventType  string // signInEventTypes value (beta sign-ins), or ""
	Journal    string // journal source of its records
	Permission string // the application permission it needs
}

// Streams maps config source names to Graph lists.
var Streams = map[string]Stream{
	"signins":                  {"v1.0", "auditLogs/signIns", "createdDateTime", "", "entra.signin", "AuditLog.Read.All and Directory.Read.All (sign-in logs also need Entra ID P1 or P2)"},
	"signins.noninteractive":   {"beta", "auditLogs/signIns", "createdDateTime", "nonInteractiveUser", "entra.signin", "AuditLog.Read.All and Directory.Read.All (sign-in logs also need Entra ID P1 or P2)"},
	"signins.serviceprincipal": {"beta", "auditLogs/signIns", "createdDateTime", "servicePrincipal", "entra.signin", "AuditLog.Read.All and Directory.Read.All (sign-in logs also need Entra ID P1 or P2)"},
	"signins.managedidentity":  {"beta", "auditLogs/signIns", "createdDateTime", "managedIdentity", "entra.signin", "AuditLog.Read.All and Directory.Read.All (sign-in logs also need Entra ID P1 or P2)"},
	"directory_audits":         {"v1.0", "auditLogs/directoryAudits", "activityDateTime", "", "entra.audit", "AuditLog.Read.All"},
	"risk_detections":          {"v1.0", "identityProtection/riskDetections", "detectedDateTime", "", "entra.risk", "IdentityRiskEvent.Read.All (risk detections also need Entra ID P2)"},
}

// Policy: Graph lists lag minutes to half an hour (non-interactive
// sign-ins the most); settle 20 min, re-read 30 min, day windows, and at
// most 29 days back (30 days on P1/P2; set MaxAge lower for Entra Free).
var Policy = collect.Policy{
	Settle: 20 * time.Minute, Overlap: 30 * time.Minute, MaxWindow: 24 * time.Hour,
	MaxAge: 29 * 24 * time.Hour, Poll: 5 * time.Minute,
}

// Source is one Graph list of one tenant.
type Source struct {
	name   string
	stream Stream
	base   *url.URL
	client *collect.Client
	policy collect.Policy
}

// New returns the source for config name (a key of Streams).
func New(name, baseURL string, client *collect.Client) (*Source, error) {
	st, ok := Streams[name]
	if !ok {
		return nil, fmt.Errorf("graph: unknown source %q", name)
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, err
	}
	p := Policy
	p.Journal = st.Journal
	return &Source{name: name, stream: st, base: u, client: client, policy: p}, nil
}

// Name implements collect.Source.
func (s *Source) Name() string { return s.name }

// Policy implements collect.Source.
func (s *Source) Policy() collect.Policy { return s.policy }

// Prepare implements collect.Source; Graph lists need no set-up.
func (s *Source) Prepare(context.Context, collect.Sink) error { return nil }

func graphTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// Fetch reads [w.Start, w.End] (inclusive; the record at End is read
// again by the next window and deduplicated) page by page.
func (s *Source) Fetch(ctx context.Context, w collect.Window, out collect.Sink) error {
	f := fmt.Sprintf("%s ge %s and %s le %s", s.stream.TimeField, graphTime(w.Start), s.stream.TimeField, graphTime(w.End))
	if s.stream.EventType != "" {
		f = fmt.Sprintf("(signInEventTypes/any(t: t eq '%s')) and %s", s.stream.EventType, f)
	}
	q := url.Values{"$filter": {f}, "$top": {"1000"}}
	next := s.base.String() + "/" + s.stream.Version + "/" + s.stream.Path + "?" + q.Encode()
	for pages := 0; next != ""; pages++ {
		if pages > 100000 {
			return errors.New("more than 100000 pages in one window; refusing to loop")
		}
		resp, err := s.client.Do(ctx, http.MethodGet, next, nil, http.Header{"Accept": {"application/json"}})
		if err != nil {
			return s.explain(err)
		}
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return fmt.Errorf("page %d: %w", pages+1, err)
		}
		// An empty page with a next link is not the end (B7).
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

func (s *Source) explain(err error) error {
	var ae *collect.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return collect.Permanent(err, "grant the app the Microsoft Graph application permission "+s.stream.Permission+" and admin consent")
	case http.StatusBadRequest, http.StatusNotFound:
		return collect.Permanent(err, "")
	}
	return err
}

// Key is the record's id.
func (s *Source) Key(raw []byte) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", errors.New("record has no id")
	}
	return r.ID, nil
}
