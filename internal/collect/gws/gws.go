// Package gws reads the Google Workspace Admin SDK Reports API
// (activities.list) for one application, by time window, following
// nextPageToken until it is absent. Results come newest first, so a
// window is complete only after its last page.
//
// It knows nothing of watermarks, deduplication or the journal.
package gws

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
)

// Scope is the OAuth scope the service account needs.
const Scope = "https://www.googleapis.com/auth/admin.reports.audit.readonly"

// Applications vigil knows how to collect (applicationName values).
var Applications = []string{
	"login", "token", "gmail", "admin", "drive", "saml", "user_accounts", "groups_enterprise", "calendar",
	"meet", "chrome", "context_aware_access", "rules", "gcp", "vault", "cloud_search", "mobile", "groups",
}

// Policy returns the timing of app: most logs arrive within minutes,
// Drive, Calendar, token and Cloud Search ones up to hours late.
func Policy(app string) collect.Policy {
	p := collect.Policy{
		Settle: 10 * time.Minute, Overlap: 2 * time.Hour, MaxWindow: 24 * time.Hour,
		MaxAge: 179 * 24 * time.Hour, Poll: 5 * time.Minute, Journal: "gws." + app,
	}
	switch app {
	case "calendar", "drive", "token", "cloud_search":
		p.Settle = 3 * time.Hour
	}
	return p
}

// Source is one application of one customer.
type Source struct {
	app      string
	base     *url.URL
	customer string
	client   *collect.Client
	watch    *Watch
}

// Watch is where the Reports API should push notice of new activities
// (vigil serve's /api/v1/notify/google/TENANT) and the channel token it
// must carry (X-Goog-Channel-Token). A notification only wakes the poller.
type Watch struct {
	Address string // https URL, on a domain registered with Google
	Token   string // a secret: never logged or kept in the state
}

// SetWatch makes Prepare keep a watch channel open to w, renewing it
// before it expires.
func (s *Source) SetWatch(w *Watch) { s.watch = w }

// Channels are asked to live watchTTL and renewed when less than
// watchRenew is left (or they are gone): polling every few minutes, a
// renewal is never late.
const (
	watchTTL   = 6 * time.Hour
	watchRenew = time.Hour
)

// New returns the source for app.
func New(app, baseURL, customerID string, client *collect.Client) (*Source, error) {
	ok := false
	for _, a := range Applications {
		ok = ok || a == app
	}
	if !ok {
		return nil, fmt.Errorf("gws: unknown application %q", app)
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, err
	}
	client.Classify = Classify
	return &Source{app: app, base: u, customer: customerID, client: client}, nil
}

// Classify: Google signals quota exhaustion with 503 (and 429).
func Classify(status int, _ []byte) (collect.Verdict, string) {
	switch {
	case status >= 200 && status < 300:
		return collect.OK, ""
	case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests:
		return collect.Throttled, ""
	case status >= 500:
		return collect.Transient, ""
	}
	return collect.Failed, ""
}

// Name implements collect.Source.
func (s *Source) Name() string { return "gws." + s.app }

// Policy implements collect.Source.
func (s *Source) Policy() collect.Policy { return Policy(s.app) }

// Prepare implements collect.Source: with a Watch set, it opens a watch
// channel, and replaces it (stopping the old one) when it nears expiry or
// its address or token changed. Only the channel's id, resource id,
// expiry, address and a digest of the token are kept in the state.
func (s *Source) Prepare(ctx context.Context, out collect.Sink) error {
	w := s.watch
	if w == nil {
		return nil
	}
	now := out.Now()
	digest := sha256.Sum256([]byte(w.Token))
	want := hex.EncodeToString(digest[:8])
	oldID, oldRes := out.Extra("channel_id"), out.Extra("channel_resource")
	exp, err := time.Parse(time.RFC3339, out.Extra("channel_expires"))
	if oldID != "" && err == nil && exp.Sub(now) > watchRenew && out.Extra("channel_address") == w.Address && out.Extra("channel_token") == want {
		return nil
	}
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"id": "vigil-" + hex.EncodeToString(idb[:]), "type": "web_hook", "address": w.Address, "token": w.Token,
		"params": map[string]string{"ttl": strconv.Itoa(int(watchTTL / time.Second))}})
	if err != nil {
		return err
	}
	resp, err := s.client.Do(ctx, http.MethodPost, s.base.String()+"/admin/reports/v1/activity/users/all/applications/"+url.PathEscape(s.app)+"/watch",
		body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return fmt.Errorf("watch channel: %w", s.explain(err))
	}
	var ch struct {
		ID         string `json:"id"`
		ResourceID string `json:"resourceId"`
		Expiration string `json:"expiration"` // Unix milliseconds, as a string
	}
	if err := json.Unmarshal(resp.Body, &ch); err != nil {
		return fmt.Errorf("watch channel: %w", err)
	}
	ms, err := strconv.ParseInt(ch.Expiration, 10, 64)
	if err != nil || ch.ID == "" || ch.ResourceID == "" {
		return fmt.Errorf("watch channel: the answer lacks an id, resource id or expiration")
	}
	out.SetExtra("channel_id", ch.ID)
	out.SetExtra("channel_resource", ch.ResourceID)
	out.SetExtra("channel_expires", time.UnixMilli(ms).UTC().Format(time.RFC3339))
	out.SetExtra("channel_address", w.Address)
	out.SetExtra("channel_token", want)
	if s.client.Logger != nil {
		s.client.Logger.Info("opened a Reports API watch channel", "application", s.app, "address", w.Address, "expires", time.UnixMilli(ms).UTC())
	}
	if oldID != "" {
		// The new channel is open: the old one only doubles notifications.
		b, _ := json.Marshal(map[string]string{"id": oldID, "resourceId": oldRes})
		if _, err := s.client.Do(ctx, http.MethodPost, s.base.String()+"/admin/reports/v1/channels/stop", b, http.Header{"Content-Type": {"application/json"}}); err != nil {
			var ae *collect.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
				if s.client.Logger != nil {
					s.client.Logger.Warn("could not stop the previous watch channel; it expires by itself", "application", s.app, "err", err)
				}
			}
		}
	}
	return nil
}

// Fetch reads [w.Start, w.End] page by page.
func (s *Source) Fetch(ctx context.Context, w collect.Window, out collect.Sink) error {
	q := url.Values{
		"startTime":  {w.Start.UTC().Format(time.RFC3339)},
		"endTime":    {w.End.UTC().Format(time.RFC3339)},
		"maxResults": {"1000"},
	}
	if s.customer != "" {
		q.Set("customerId", s.customer)
	}
	base := s.base.String() + "/admin/reports/v1/activity/users/all/applications/" + url.PathEscape(s.app)
	for pages := 0; ; pages++ {
		if pages > 100000 {
			return errors.New("more than 100000 pages in one window; refusing to loop")
		}
		resp, err := s.client.Do(ctx, http.MethodGet, base+"?"+q.Encode(), nil, http.Header{"Accept": {"application/json"}})
		if err != nil {
			return s.explain(err)
		}
		var page struct {
			Items         []json.RawMessage `json:"items"`
			NextPageToken string            `json:"nextPageToken"`
		}
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return fmt.Errorf("page %d: %w", pages+1, err)
		}
		if err := collect.Emit(ctx, out, page.Items, ""); err != nil {
			return err
		}
		if page.NextPageToken == "" {
			return nil
		}
		q.Set("pageToken", page.NextPageToken)
	}
}

func (s *Source) explain(err error) error {
	var ae *collect.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return collect.Permanent(err, "allow the service account scope "+Scope+" by domain-wide delegation, and make subject a Workspace admin with the Reports privilege")
	case http.StatusBadRequest, http.StatusNotFound:
		return collect.Permanent(err, "check customer_id and applications")
	}
	return err
}

// Key is applicationName|id.time|id.uniqueQualifier.
func (s *Source) Key(raw []byte) (string, error) {
	var r struct {
		ID struct {
			Time            string `json:"time"`
			UniqueQualifier string `json:"uniqueQualifier"`
			ApplicationName string `json:"applicationName"`
		} `json:"id"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.ID.UniqueQualifier == "" || r.ID.Time == "" {
		return "", errors.New("activity has no id.time/id.uniqueQualifier")
	}
	app := r.ID.ApplicationName
	if app == "" {
		app = s.app
	}
	return app + "|" + r.ID.Time + "|" + r.ID.UniqueQualifier, nil
}
