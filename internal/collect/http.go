package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TokenSource hands out bearer tokens; auth implements it. Invalidate
// drops a cached token the API rejected.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate()
}

// Verdict is what a response means for the retry loop.
type Verdict int

const (
	OK        Verdict = iota // hand the response to the caller
	Throttled                // wait Retry-After or back off, then retry
	Transient                // server trouble: back off, then retry
	Failed                   // an error the caller interprets (APIError)
)

// Classifier decides a response's verdict and extracts the vendor error
// code from its body.
type Classifier func(status int, body []byte) (Verdict, string)

// Client performs one API's requests for one tenant: it waits on the
// tenant × API token bucket, attaches the bearer token, retries throttled
// and failed requests with bounded attempts, and measures clock skew.
type Client struct {
	HTTP     *http.Client
	Clock    Clock
	Limiter  *Limiter
	Tokens   TokenSource
	Classify Classifier
	Skew     *Skew
	Logger   *slog.Logger
	// MaxAttempts bounds tries per request (default 10); MaxBackoff caps
	// one back-off (default 5 min).
	MaxAttempts int
	MaxBackoff  time.Duration
	// MaxBody bounds a response body (default 256 MiB).
	MaxBody int64

	Counters Counters
}

// Counters count a client's requests; safe for concurrent use.
type Counters struct {
	Requests     atomic.Int64
	Throttled    atomic.Int64
	Retries      atomic.Int64
	ThrottleWait atomic.Int64 // nanoseconds spent waiting on throttling and the bucket
}

// Response is a successful response, body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request and returns the first response classified OK. A
// response classified Failed becomes an *APIError; throttling and
// transient failures are retried until MaxAttempts, then returned.
func (c *Client) Do(ctx context.Context, method, rawURL string, body []byte, header http.Header) (*Response, error) {
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 10
	}
	var last error
	authRetried := false
	for attempt := 0; attempt < attempts; attempt++ {
		waited, err := c.Limiter.Wait(ctx)
		c.Counters.ThrottleWait.Add(int64(waited))
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, method, rawURL, body, header)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var perm *PermanentError
			if errors.As(err, &perm) {
				return nil, err
			}
			last = err
			if err := c.backoff(ctx, attempt, "", err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		verdict, code := c.classify(resp.Status, resp.Body)
		switch verdict {
		case OK:
			return resp, nil
		case Throttled:
			c.Counters.Throttled.Add(1)
			last = c.apiError(method, rawURL, resp, code)
			if err := c.backoff(ctx, attempt, resp.Header.Get("Retry-After"), "throttled"); err != nil {
				return nil, err
			}
		case Transient:
			last = c.apiError(method, rawURL, resp, code)
			if err := c.backoff(ctx, attempt, resp.Header.Get("Retry-After"), fmt.Sprintf("HTTP %d", resp.Status)); err != nil {
				return nil, err
			}
		default:
			if resp.Status == http.StatusUnauthorized && !authRetried && c.Tokens != nil {
				// A token revoked or expired early: fetch a new one once.
				authRetried = true
				c.Tokens.Invalidate()
				attempt--
				continue
			}
			return nil, c.apiError(method, rawURL, resp, code)
		}
	}
	// %v, not %w: giving up on a retryable failure is not the API's verdict.
	return nil, fmt.Errorf("%s %s: gave up after %d attempts: %v", method, redactURL(rawURL), attempts, last)
}

func (c *Client) classify(status int, body []byte) (Verdict, string) {
	if c.Classify != nil {
		return c.Classify(status, body)
	}
	return DefaultClassify(status, body)
}

// DefaultClassify: 2xx OK, 429 throttled, 5xx and 408 transient, anything
// else failed.
func DefaultClassify(status int, _ []byte) (Verdict, string) {
	switch {
	case status >= 200 && status < 300:
		return OK, ""
	case status == http.StatusTooManyRequests:
		return Throttled, ""
	case status >= 500, status == http.StatusRequestTimeout:
		return Transient, ""
	}
	return Failed, ""
}

func (c *Client) apiError(method, rawURL string, resp *Response, code string) *APIError {
	return &APIError{Method: method, URL: redactURL(rawURL), Status: resp.Status, Code: code, Message: excerpt(resp.Body, 300)}
}

func (c *Client) send(ctx context.Context, method, rawURL string, body []byte, header http.Header) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, Permanent(fmt.Errorf("request %s: %w", redactURL(rawURL), err), "")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c.Tokens != nil {
		tok, err := c.Tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c.Counters.Requests.Add(1)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		// url.Error prints the URL; ours carry no secrets. Never the headers.
		return nil, fmt.Errorf("%s %s: %w", method, redactURL(rawURL), unwrapURLError(err))
	}
	defer res.Body.Close()
	limit := c.MaxBody
	if limit <= 0 {
		limit = 256 << 20
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, redactURL(rawURL), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: response larger than %d bytes", method, redactURL(rawURL), limit)
	}
	c.Skew.observe(res.Header.Get("Date"), c.Clock.Now())
	if c.Logger != nil {
		c.Logger.Debug("api request", "method", method, "url", redactURL(rawURL), "status", res.StatusCode, "bytes", len(b))
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// backoff sleeps before retry attempt+1: Retry-After when the server
// gave one (seconds or an HTTP date), else jittered exponential back-off
// from 1 s up to MaxBackoff.
func (c *Client) backoff(ctx context.Context, attempt int, retryAfter, why string) error {
	maxB := c.MaxBackoff
	if maxB <= 0 {
		maxB = 5 * time.Minute
	}
	d, ok := parseRetryAfter(retryAfter, c.Clock.Now())
	if !ok {
		base := time.Second << min(attempt, 16)
		base = min(base, maxB)
		// Full jitter over [base/2, base) spreads retries of many sources.
		d = base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
	}
	d = min(d, maxB)
	c.Counters.Retries.Add(1)
	c.Counters.ThrottleWait.Add(int64(d))
	if c.Logger != nil {
		c.Logger.Info("api retry", "reason", why, "attempt", attempt+1, "wait", d.String())
	}
	return c.Clock.Sleep(ctx, d)
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// redactURL drops user info and any query parameter that could carry a
// secret; the APIs vigil calls carry none, but errors are logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	q := u.Query()
	for k := range q {
		switch strings.ToLower(k) {
		case "code", "access_token", "client_secret", "assertion", "client_assertion", "sig", "signature", "token":
			q.Set(k, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Skew tracks the offset of the servers' clocks (Date header) from the
// local clock, shared by the clients of one tenant.
type Skew struct {
	mu     sync.Mutex
	offset time.Duration
	seen   bool
}

// Threshold under which skew is noise (Date has one-second resolution).
const skewNoise = 5 * time.Second

func (s *Skew) observe(date string, local time.Time) {
	if s == nil || date == "" {
		return
	}
	t, err := http.ParseTime(date)
	if err != nil {
		return
	}
	off := t.Sub(local.Truncate(time.Second))
	s.mu.Lock()
	s.offset, s.seen = off, true
	s.mu.Unlock()
}

// Offset is the last measured server − local offset.
func (s *Skew) Offset() time.Duration {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offset
}

// Correct returns local adjusted to the servers' clock when the measured
// skew exceeds the Date header's resolution.
func (s *Skew) Correct(local time.Time) time.Time {
	off := s.Offset()
	if off > skewNoise || off < -skewNoise {
		return local.Add(off)
	}
	return local
}
