// Package o365 reads the Office 365 Management Activity API: it keeps the
// subscription of one content type started, lists the content blobs
// available in a window (following NextPageUri to the end), and fetches
// each blob's records. It always sends PublisherIdentifier, so the tenant's
// own throttling pool is used.
//
// It knows nothing of watermarks, deduplication or the journal.
package o365

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

// ContentTypes maps config source names to Management API content types.
var ContentTypes = map[string]string{
	"audit.exchange":             "Audit.Exchange",
	"audit.azureactivedirectory": "Audit.AzureActiveDirectory",
	"audit.sharepoint":           "Audit.SharePoint",
	"audit.general":              "Audit.General",
	"dlp.all":                    "DLP.All",
}

// Policy: content is listed by when it became available (not event
// time); settle 15 min, re-read 1 h, windows ≤ 24 h, start ≥ 7 d − 10 min
// ago (the API refuses older with AF20055).
var Policy = collect.Policy{
	Settle: 15 * time.Minute, Overlap: time.Hour, MaxWindow: 24 * time.Hour,
	MaxAge: 7*24*time.Hour - 10*time.Minute, Poll: 5 * time.Minute, Journal: "m365.ual",
}

// subscriptionRecheck bounds list calls; the API asks for ≥ 15 min
// between start requests.
const subscriptionRecheck = 15 * time.Minute

// Source is one content type of one tenant.
type Source struct {
	name, contentType string
	base              *url.URL // https://manage.office.com
	tenant, publisher string
	client            *collect.Client
	webhook           *Webhook
}

// Webhook is where the Management API should notify vigil of new content
// (vigil serve's /api/v1/notify/o365/TENANT) and the authId it must send
// back (Webhook-AuthID). A notification only wakes the poller.
type Webhook struct {
	Address string // https URL
	AuthID  string // a secret: never logged
}

// SetWebhook makes Prepare keep the subscription's webhook pointing at w:
// added when missing, re-enabled when the API disabled it after failed
// deliveries or it expired, replaced when its address or authId differ.
func (s *Source) SetWebhook(w *Webhook) { s.webhook = w }

// New returns the source for config name (a key of ContentTypes).
// publisher defaults to tenantID.
func New(name, baseURL, tenantID, publisher string, client *collect.Client) (*Source, error) {
	ct, ok := ContentTypes[name]
	if !ok {
		return nil, fmt.Errorf("o365: unknown source %q", name)
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, err
	}
	if publisher == "" {
		publisher = tenantID
	}
	client.Classify = Classify
	return &Source{name: name, contentType: ct, base: u, tenant: tenantID, publisher: publisher, client: client}, nil
}

// Name implements collect.Source.
func (s *Source) Name() string { return s.name }

// Policy implements collect.Source.
func (s *Source) Policy() collect.Policy { return Policy }

// Classify maps Management API responses: throttling comes as 403 with
// AF429 (and 429); AF50000-AF50006 and 5xx are the service's own trouble.
func Classify(status int, body []byte) (collect.Verdict, string) {
	code := errorCode(body)
	switch {
	case status >= 200 && status < 300:
		return collect.OK, ""
	case status == http.StatusTooManyRequests, code == "AF429":
		return collect.Throttled, code
	case status >= 500, strings.HasPrefix(code, "AF500"):
		return collect.Transient, code
	}
	return collect.Failed, code
}

// errorCode reads {"error":{"code":"AF20051","message":...}}.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code
	}
	if strings.Contains(string(body), "AF429") {
		return "AF429"
	}
	return ""
}

func (s *Source) feed(op string, q url.Values) string {
	q.Set("PublisherIdentifier", s.publisher)
	return s.base.String() + "/api/v1.0/" + url.PathEscape(s.tenant) + "/activity/feed/" + op + "?" + q.Encode()
}

func (s *Source) permission() string {
	if s.contentType == "DLP.All" {
		return "ActivityFeed.ReadDlp"
	}
	return "ActivityFeed.Read"
}

// explain turns a refused request into a permanent error naming the fix,
// or returns err as it is.
func (s *Source) explain(err error) error {
	var ae *collect.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == http.StatusUnauthorized, ae.Status == http.StatusForbidden:
		return collect.Permanent(err, "grant the app the Office 365 Management APIs application permission "+s.permission()+" and admin consent; unified audit logging must be on")
	case ae.Code == "AF20010", ae.Code == "AF20011", ae.Code == "AF20012", ae.Code == "AF20013":
		return collect.Permanent(err, "tenant_id must be the tenant the app's token is issued for")
	case ae.Status == http.StatusBadRequest && (ae.Code == "" || strings.HasPrefix(ae.Code, "AF1")):
		return collect.Permanent(err, "")
	}
	return err
}

type subscription struct {
	ContentType string `json:"contentType"`
	Status      string `json:"status"`
	Webhook     *struct {
		Status  string `json:"status"`
		Address string `json:"address"`
		AuthID  string `json:"authId"`
	} `json:"webhook"`
}

// Prepare lists the subscriptions (at most every 15 min) and starts this
// content type's when it is missing or disabled. A subscription found
// disabled after it had been enabled is a gap: content published while
// it was off is lost.
func (s *Source) Prepare(ctx context.Context, out collect.Sink) error {
	now := out.Now()
	if t, err := time.Parse(time.RFC3339, out.Extra("checked")); err == nil && now.Sub(t) < subscriptionRecheck && now.After(t) {
		return nil
	}
	resp, err := s.client.Do(ctx, http.MethodGet, s.feed("subscriptions/list", url.Values{}), nil, nil)
	if err != nil {
		return s.explain(err)
	}
	var subs []subscription
	if err := json.Unmarshal(resp.Body, &subs); err != nil {
		return fmt.Errorf("subscriptions/list: %w", err)
	}
	status := ""
	var mine *subscription
	for i, sub := range subs {
		if strings.EqualFold(sub.ContentType, s.contentType) {
			status, mine = strings.ToLower(sub.Status), &subs[i]
		}
	}
	switch {
	case status != "enabled":
		if err := s.start(ctx, out, status, now); err != nil {
			return err
		}
	case s.webhook != nil && !s.hooked(mine):
		// Enabled, but notifications would not reach vigil: a start on an
		// enabled subscription only changes its webhook, losing nothing.
		out.SetExtra("enabled", now.UTC().Format(time.RFC3339))
		if err := s.start(ctx, out, status, now); err != nil {
			return err
		}
	default:
		out.SetExtra("enabled", now.UTC().Format(time.RFC3339))
	}
	out.SetExtra("checked", now.UTC().Format(time.RFC3339))
	return nil
}

func (s *Source) start(ctx context.Context, out collect.Sink, status string, now time.Time) error {
	if t, err := time.Parse(time.RFC3339, out.Extra("started")); err == nil && now.Sub(t) < subscriptionRecheck && now.After(t) {
		return nil // started moments ago; the API asks us to wait
	}
	if last, err := time.Parse(time.RFC3339, out.Extra("enabled")); err == nil && status != "enabled" {
		if err := out.Gap(ctx, collect.Gap{Reason: collect.GapSubscription, Window: collect.Window{Start: last, End: now},
			Detail: fmt.Sprintf("subscription to %s was %s; content published while it was off cannot be listed", s.contentType, orMissing(status))}); err != nil {
			return err
		}
	}
	q := url.Values{"contentType": {s.contentType}}
	body := []byte("{}")
	if w := s.webhook; w != nil {
		// No expiration: the webhook lasts as long as the subscription.
		b, err := json.Marshal(map[string]any{"webhook": map[string]string{"address": w.Address, "authId": w.AuthID, "expiration": ""}})
		if err != nil {
			return err
		}
		body = b
	}
	if _, err := s.client.Do(ctx, http.MethodPost, s.feed("subscriptions/start", q), body, http.Header{"Content-Type": {"application/json"}}); err != nil {
		var ae *collect.APIError
		if errors.As(err, &ae) && ae.Code == "AF20024" { // already enabled
			return nil
		}
		return s.explain(err)
	}
	if s.client.Logger != nil {
		switch {
		case status != "enabled":
			s.client.Logger.Warn("started the Management API subscription; the first content can take up to 12 hours to appear", "content_type", s.contentType, "webhook", s.webhook != nil)
		default:
			s.client.Logger.Info("set the Management API subscription's webhook", "content_type", s.contentType, "address", s.webhook.Address)
		}
	}
	out.SetExtra("started", now.UTC().Format(time.RFC3339))
	out.SetExtra("enabled", now.UTC().Format(time.RFC3339))
	return nil
}

// hooked says whether sub's webhook delivers to s.webhook.
func (s *Source) hooked(sub *subscription) bool {
	if sub == nil || sub.Webhook == nil {
		return false
	}
	h := sub.Webhook
	// The list may leave authId out; when it is there it must match.
	return strings.EqualFold(h.Status, "enabled") && h.Address == s.webhook.Address && (h.AuthID == "" || h.AuthID == s.webhook.AuthID)
}

func orMissing(s string) string {
	if s == "" {
		return "missing"
	}
	return s
}

// blob is one entry of a content listing.
type blob struct {
	ContentType       string `json:"contentType"`
	ContentID         string `json:"contentId"`
	ContentURI        string `json:"contentUri"`
	ContentCreated    string `json:"contentCreated"`
	ContentExpiration string `json:"contentExpiration"`
}

// apiTime formats times as the API takes them.
func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// Fetch lists the blobs that became available in w, following
// NextPageUri until it is absent, and stores each blob not stored before.
//
// A window the API refuses as too old (AF20055/AF20030, e.g. when its
// clock runs ahead of ours) is clamped forward by an hour at a time, at
// most three times, and the cut part recorded as a gap: never retried
// forever (B4).
func (s *Source) Fetch(ctx context.Context, w collect.Window, out collect.Sink) error {
	for clamps := 0; ; clamps++ {
		err := s.list(ctx, w, out)
		var ae *collect.APIError
		if err == nil || !errors.As(err, &ae) || (ae.Code != "AF20055" && ae.Code != "AF20030") {
			return err
		}
		edge := out.Now().Add(-7 * 24 * time.Hour)
		if clamps == 3 || w.Start.After(edge.Add(time.Hour)) || !w.End.After(w.Start.Add(time.Hour)) {
			return fmt.Errorf("window %s refused (%s) though it is within 7 days by our clock: %w", w, ae.Code, err)
		}
		cut := collect.Window{Start: w.Start, End: w.Start.Add(time.Hour)}
		if gerr := out.Gap(ctx, collect.Gap{Reason: collect.GapClamped, Window: cut,
			Detail: fmt.Sprintf("%s listing refused with %s at the 7-day limit", s.contentType, ae.Code)}); gerr != nil {
			return gerr
		}
		w.Start = cut.End
	}
}

func (s *Source) list(ctx context.Context, w collect.Window, out collect.Sink) error {
	q := url.Values{"contentType": {s.contentType}, "startTime": {apiTime(w.Start)}, "endTime": {apiTime(w.End)}}
	next := s.feed("subscriptions/content", q)
	for pages := 0; next != ""; pages++ {
		if pages > 100000 {
			return errors.New("more than 100000 pages in one window; refusing to loop")
		}
		resp, err := s.client.Do(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			var ae *collect.APIError
			if errors.As(err, &ae) && (ae.Code == "AF20022" || ae.Code == "AF20023") {
				// Subscription gone or disabled: restart it; the window
				// is read again on the next poll.
				out.SetExtra("checked", "")
				if perr := s.Prepare(ctx, out); perr != nil {
					return perr
				}
				return fmt.Errorf("%s subscription was off (%s); restarted", s.contentType, ae.Code)
			}
			return s.explain(err)
		}
		var blobs []blob
		if err := json.Unmarshal(resp.Body, &blobs); err != nil {
			return fmt.Errorf("content listing: %w", err)
		}
		for _, b := range blobs {
			if err := s.blob(ctx, b, out); err != nil {
				return err
			}
		}
		next = resp.Header.Get("NextPageUri")
		if next != "" {
			if err := s.sameOrigin(next); err != nil {
				return err
			}
			// NextPageUri carries the query but, per the docs' examples,
			// not always PublisherIdentifier.
			if u, err := url.Parse(next); err == nil && u.Query().Get("PublisherIdentifier") == "" {
				qq := u.Query()
				qq.Set("PublisherIdentifier", s.publisher)
				u.RawQuery = qq.Encode()
				next = u.String()
			}
		}
	}
	return nil
}

// sameOrigin refuses to send the bearer token to a host other than the
// configured API's.
func (s *Source) sameOrigin(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != s.base.Scheme || u.Host != s.base.Host {
		return collect.Permanent(fmt.Errorf("the API returned a link to %q, not to %s", raw, s.base.Host), "check manage_url")
	}
	return nil
}

func (s *Source) blob(ctx context.Context, b blob, out collect.Sink) error {
	if b.ContentID == "" || b.ContentURI == "" {
		return fmt.Errorf("content listing entry without contentId/contentUri")
	}
	if out.Done(b.ContentID) {
		return nil
	}
	if err := s.sameOrigin(b.ContentURI); err != nil {
		return err
	}
	u, _ := url.Parse(b.ContentURI)
	q := u.Query()
	q.Set("PublisherIdentifier", s.publisher)
	u.RawQuery = q.Encode()
	resp, err := s.client.Do(ctx, http.MethodGet, u.String(), nil, nil)
	if err != nil {
		var ae *collect.APIError
		if errors.As(err, &ae) && (ae.Code == "AF20051" || ae.Code == "AF20050") {
			created, _ := time.Parse(time.RFC3339Nano, b.ContentCreated)
			expires, _ := time.Parse(time.RFC3339Nano, b.ContentExpiration)
			gerr := out.Gap(ctx, collect.Gap{Reason: collect.GapExpired, Window: collect.Window{Start: created, End: expires},
				Detail: fmt.Sprintf("%s blob %s: %s", s.contentType, b.ContentID, ae.Code), Key: "blob|" + b.ContentID})
			if gerr != nil {
				return gerr
			}
			return out.Records(ctx, nil, b.ContentID)
		}
		return s.explain(err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(resp.Body, &raws); err != nil {
		return fmt.Errorf("blob %s: %w", b.ContentID, err)
	}
	return collect.Emit(ctx, out, raws, b.ContentID)
}

// Key is the UAL record's Id.
func (s *Source) Key(raw []byte) (string, error) {
	var r struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", errors.New("record has no Id")
	}
	return r.ID, nil
}
