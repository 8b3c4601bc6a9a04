package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookConfig configures a Standard Webhooks v1 receiver.
type WebhookConfig struct {
	URL string
	// Secrets sign every delivery; during a rotation give the new and the
	// old one and each delivery carries both signatures.
	Secrets      []string
	AllowPrivate bool
	Timeout      time.Duration // default 20 s
}

// Webhook posts each Message as a signed Standard Webhooks request.
type Webhook struct {
	name    string
	url     *url.URL
	keys    [][]byte
	client  *http.Client
	now     func() time.Time
	maxBody int64
}

// NewWebhook checks the configuration: an https URL (http only to a
// loopback host, for local receivers), at least one whsec_ secret.
func NewWebhook(name string, cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("webhook %s: bad url %q", name, cfg.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("webhook %s: %s must use https (http is accepted only for loopback receivers)", name, u.Redacted())
		}
	default:
		return nil, fmt.Errorf("webhook %s: unsupported scheme %q", name, u.Scheme)
	}
	if len(cfg.Secrets) == 0 {
		return nil, fmt.Errorf("webhook %s: no signing secret (secret_file)", name)
	}
	var keys [][]byte
	for i, s := range cfg.Secrets {
		k, err := DecodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: secret %d: %w", name, i+1, err)
		}
		keys = append(keys, k)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialContext(ctx, cfg.AllowPrivate, network, addr, timeout)
		},
		Proxy:                 nil, // a proxy would dial on our behalf, past the guard
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
	}
	return &Webhook{
		name: name,
		url:  u,
		keys: keys,
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// A redirect is a failure (Standard Webhooks) and could lead past the guard's intent.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now:     time.Now,
		maxBody: 64 << 10,
	}, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// DecodeSecret reads a Standard Webhooks symmetric secret: "whsec_" +
// base64 of 24 to 64 random bytes.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New(`secret must start with "whsec_"`)
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("secret is not valid base64 after whsec_")
	}
	if len(k) < 24 || len(k) > 64 {
		return nil, fmt.Errorf("secret holds %d bytes; Standard Webhooks asks for 24 to 64", len(k))
	}
	return k, nil
}

// Sign returns one "v1,<base64 HMAC-SHA256>" signature of id.timestamp.body.
func Sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a received webhook the way a receiver should: the
// timestamp within tolerance of now, and any v1 signature in the header
// matching one of the keys (constant-time comparison).
func Verify(keys [][]byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not a number")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %d is outside the %s tolerance", ts, tolerance)
	}
	for _, k := range keys {
		want := []byte(Sign(k, id, ts, body))
		for _, got := range strings.Fields(signatures) {
			if hmac.Equal([]byte(got), want) {
				return nil
			}
		}
	}
	return errors.New("no webhook-signature matches")
}

// Name identifies the sink in logs and metrics.
func (w *Webhook) Name() string { return w.name }

// Deliver posts m. 2xx is success; 410 disables the sink (ErrPermanent);
// 429, 502, 503 and 504 are throttling (Retry-After honoured); anything
// else, redirects included, is a failure to retry.
func (w *Webhook) Deliver(ctx context.Context, m Message) error {
	body, err := m.Payload()
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.name, err)
	}
	ts := w.now().Unix()
	sigs := make([]string, len(w.keys))
	for i, k := range w.keys {
		sigs[i] = Sign(k, m.ID, ts, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-webhook/1")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	resp, err := w.client.Do(req)
	if err != nil {
		// url.Error quotes the URL; ours carries no secret (secrets sign, they are not in the URL).
		return fmt.Errorf("webhook %s: %w", w.name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, w.maxBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusGone:
		return fmt.Errorf("webhook %s: receiver answered 410 Gone: %w", w.name, ErrPermanent)
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return &RetryAfterError{After: retryAfter(resp.Header.Get("Retry-After"), w.now()),
			Err: fmt.Errorf("webhook %s: receiver answered %d", w.name, resp.StatusCode)}
	default:
		return fmt.Errorf("webhook %s: receiver answered %d", w.name, resp.StatusCode)
	}
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
