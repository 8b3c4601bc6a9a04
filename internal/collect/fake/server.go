package fake

import (
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vigil-audit/vigil/internal/collect"
)

// Faults is what a Server does wrong, at random (seeded).
type Faults struct {
	Throttle   float64       // share of API requests throttled (403 AF429 / 429 / 503)
	RetryAfter time.Duration // sent with throttling when > 0
	ServerErr  float64       // share of API requests answered 500/502/504
	EmptyPage  float64       // share of pages that come back empty with a next link
	PageSize   int           // largest page; pages are 1..PageSize long (default 5)
}

// Blob is a Management API content blob.
type Blob struct {
	ID          string
	ContentType string
	Available   time.Time // contentCreated
	// Visible is when the listing starts to show it (default Available):
	// content is not listed in the order it was created.
	Visible time.Time
	Records [][]byte
}

// Hook is a Management API subscription's webhook as the API keeps it.
type Hook struct {
	Address, AuthID string
	Status          string // enabled, disabled (after failed deliveries), expired
	Starts          int    // start requests that set it
}

// Channel is a Reports API watch channel.
type Channel struct {
	App, ID, ResourceID, Token, Address string
	Expiration                          time.Time
	Stopped                             bool
}

// Item is a Graph or Reports record.
type Item struct {
	Raw       []byte
	Time      time.Time // the time the API filters on
	Available time.Time // when it shows up
	EventType string    // sign-ins: interactiveUser, nonInteractiveUser, …
}

// Stats is what the server saw.
type Stats struct {
	Requests, Throttled, ServerErrors, TokenRequests int
	// GraphMaxPer10s is the most Graph requests seen in any 10 s.
	GraphMaxPer10s int
	// Violations are requests that broke the APIs' documented rules.
	Violations []string
}

// Server is one httptest server holding every fake API.
type Server struct {
	URL   string
	Clock collect.Clock
	// Skew is how far the server's clock is ahead of Clock.
	Skew   time.Duration
	Faults Faults

	// Credentials it accepts.
	TenantID, ClientID, Secret string
	Cert                       *x509.Certificate
	ServiceAccount             string
	ServiceKey                 *rsa.PublicKey
	Subject                    string
	TokenLife                  time.Duration

	// QueryLimit caps the records of one audit log query (0: no cap);
	// a query over it succeeds truncated.
	QueryLimit int
	// Deny answers every request of an API ("o365", "graph", "gws") 403,
	// as when the app lacks the permission.
	Deny string

	srv *httptest.Server

	mu       sync.Mutex
	rnd      *rand.Rand
	tokens   map[string]time.Time
	blobs    []*Blob
	expired  map[string]bool
	subs     map[string]string
	hooks    map[string]*Hook        // content type -> its subscription's webhook
	channels []*Channel              // Reports API watch channels, in creation order
	off      map[string][2]time.Time // content type -> disabled period
	graph    map[string][]*Item      // "auditLogs/signIns" …
	reports  map[string][]*Item      // app -> activities
	uals     []*Item                 // audit log query records
	queries  map[string]*query
	stats    Stats
	graphLog []time.Time
}

// NewServer starts a server on 127.0.0.1; Close stops it.
func NewServer(clock collect.Clock, seed uint64) *Server {
	s := &Server{
		Clock: clock, TokenLife: time.Hour, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		tokens: map[string]time.Time{}, expired: map[string]bool{}, subs: map[string]string{}, hooks: map[string]*Hook{},
		off: map[string][2]time.Time{}, graph: map[string][]*Item{}, reports: map[string][]*Item{}, queries: map[string]*query{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s.srv.Listener = l
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Stats returns a copy of what the server saw.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Violations = slices.Clone(s.stats.Violations)
	return st
}

// IssuedTokens returns every access token handed out.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// AddBlob publishes a blob; ExpireBlob makes fetching it fail with
// AF20051; Disable turns a content type's subscription off for a period
// (content published meanwhile is never listed).
func (s *Server) AddBlob(b *Blob) { s.mu.Lock(); s.blobs = append(s.blobs, b); s.mu.Unlock() }

// ExpireBlob makes the blob's fetch answer AF20051.
func (s *Server) ExpireBlob(id string) { s.mu.Lock(); s.expired[id] = true; s.mu.Unlock() }

// Disable turns the subscription of ct off during [from, to): listing
// answers AF20023 and content published then is lost, until a start.
func (s *Server) Disable(ct string, from, to time.Time) {
	s.mu.Lock()
	s.off[ct] = [2]time.Time{from, to}
	s.mu.Unlock()
}

// AddGraph adds a record to a Graph list ("auditLogs/signIns",
// "auditLogs/directoryAudits", "identityProtection/riskDetections").
func (s *Server) AddGraph(list string, it *Item) {
	s.mu.Lock()
	s.graph[list] = append(s.graph[list], it)
	s.mu.Unlock()
}

// AddActivity adds a Reports API activity of app.
func (s *Server) AddActivity(app string, it *Item) {
	s.mu.Lock()
	s.reports[app] = append(s.reports[app], it)
	s.mu.Unlock()
}

func (s *Server) now() time.Time { return s.Clock.Now().Add(s.Skew) }

func (s *Server) violation(format string, a ...any) {
	s.stats.Violations = append(s.stats.Violations, fmt.Sprintf(format, a...))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	s.stats.Requests++
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		s.entraToken(w, r, now)
	case p == "/token":
		s.googleToken(w, r, now)
	case strings.HasPrefix(p, "/api/v1.0/"):
		if s.authorized(w, r, now) && !s.fault(w, "o365") {
			s.management(w, r, now)
		}
	case strings.HasPrefix(p, "/v1.0/security/auditLog/queries"):
		if s.authorized(w, r, now) && !s.fault(w, "graph") {
			s.auditQuery(w, r)
		}
	case strings.HasPrefix(p, "/v1.0/") || strings.HasPrefix(p, "/beta/"):
		s.graphLog = append(s.graphLog, now)
		n := 0
		for _, t := range s.graphLog {
			if now.Sub(t) < 10*time.Second {
				n++
			}
		}
		s.stats.GraphMaxPer10s = max(s.stats.GraphMaxPer10s, n)
		if s.authorized(w, r, now) && !s.fault(w, "graph") {
			s.graphList(w, r, now)
		}
	case strings.HasPrefix(p, "/admin/reports/v1/activity/users/all/applications/") && strings.HasSuffix(p, "/watch"):
		if s.authorized(w, r, now) && !s.fault(w, "gws") {
			s.watch(w, r, now)
		}
	case p == "/admin/reports/v1/channels/stop":
		if s.authorized(w, r, now) {
			s.stopChannel(w, r)
		}
	case strings.HasPrefix(p, "/admin/reports/v1/activity/users/all/applications/"):
		if s.authorized(w, r, now) && !s.fault(w, "gws") {
			s.activities(w, r, now)
		}
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func msError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// fault injects throttling and server errors in each API's own way.
func (s *Server) fault(w http.ResponseWriter, api string) bool {
	if s.Deny == api {
		switch api {
		case "o365":
			msError(w, http.StatusForbidden, "AF10001", "The permission set () sent in the request does not include the expected permission.")
		case "graph":
			msError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		default:
			writeJSON(w, http.StatusForbidden, map[string]any{"error": map[string]any{"code": 403, "message": "Not Authorized to access this resource/api", "status": "PERMISSION_DENIED"}})
		}
		return true
	}
	if x := s.rnd.Float64(); x < s.Faults.Throttle {
		s.stats.Throttled++
		if s.Faults.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(s.Faults.RetryAfter/time.Second)))
		}
		switch api {
		case "o365":
			if s.rnd.IntN(2) == 0 {
				msError(w, http.StatusForbidden, "AF429", "Too many requests. Method=GetBlob, PublisherId=00000000-0000-0000-0000-000000000000")
			} else {
				msError(w, http.StatusTooManyRequests, "", "Too many requests")
			}
		case "graph":
			msError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests")
		case "gws":
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}})
		}
		return true
	}
	if x := s.rnd.Float64(); x < s.Faults.ServerErr {
		s.stats.ServerErrors++
		w.WriteHeader([]int{500, 502, 504}[s.rnd.IntN(3)])
		return true
	}
	return false
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if exp, found := s.tokens[tok]; ok && found && now.Before(exp) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	msError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is missing, invalid or expired.")
	return false
}

func (s *Server) issue(w http.ResponseWriter, now time.Time) {
	var b [18]byte
	_, _ = crand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	s.tokens[tok] = now.Add(s.TokenLife)
	s.stats.TokenRequests++
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": int(s.TokenLife / time.Second), "access_token": tok})
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func (s *Server) entraToken(w http.ResponseWriter, r *http.Request, now time.Time) {
	tenant := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/oauth2/v2.0/token")
	if tenant != s.TenantID {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "AADSTS90002: Tenant '"+tenant+"' not found.")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" || !strings.HasSuffix(r.PostForm.Get("scope"), "/.default") {
		oauthErr(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: bad request")
		return
	}
	if r.PostForm.Get("client_id") != s.ClientID {
		oauthErr(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application with identifier was not found in the directory.")
		return
	}
	if a := r.PostForm.Get("client_assertion"); a != "" {
		if s.Cert == nil || r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700027: Client assertion failed signature validation.")
			return
		}
		aud := s.URL + r.URL.Path
		if err := s.checkAssertion(a, s.Cert.PublicKey.(*rsa.PublicKey), aud, s.ClientID, s.ClientID, now, true); err != nil {
			oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS700027: Client assertion failed: "+err.Error())
			return
		}
	} else if s.Secret == "" || r.PostForm.Get("client_secret") != s.Secret {
		oauthErr(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	s.issue(w, now)
}

func (s *Server) googleToken(w http.ResponseWriter, r *http.Request, now time.Time) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthErr(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type")
		return
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || s.ServiceKey == nil {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	var cl jwt.Claims
	var extra struct {
		Scope string `json:"scope"`
	}
	if err := tok.Claims(s.ServiceKey, &cl, &extra); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if err := cl.ValidateWithLeeway(jwt.Expected{Issuer: s.ServiceAccount, AnyAudience: jwt.Audience{s.URL + "/token"}, Time: now}, time.Minute); err != nil {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+err.Error())
		return
	}
	if cl.Expiry.Time().Sub(cl.IssuedAt.Time()) > time.Hour {
		oauthErr(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: exp too far from iat")
		return
	}
	if cl.Subject != s.Subject || !slices.Contains(strings.Fields(extra.Scope), "https://www.googleapis.com/auth/admin.reports.audit.readonly") {
		oauthErr(w, http.StatusUnauthorized, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
		return
	}
	s.issue(w, now)
}

func (s *Server) checkAssertion(a string, key *rsa.PublicKey, aud, iss, sub string, now time.Time, x5t bool) error {
	tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{jose.RS256, jose.PS256})
	if err != nil {
		return err
	}
	if x5t {
		sum := sha256.Sum256(s.Cert.Raw)
		if got, _ := tok.Headers[0].ExtraHeaders["x5t#S256"].(string); got != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return fmt.Errorf("x5t#S256 %q does not match the registered certificate", got)
		}
	}
	var cl jwt.Claims
	if err := tok.Claims(key, &cl); err != nil {
		return err
	}
	if cl.ID == "" {
		return fmt.Errorf("no jti")
	}
	return cl.ValidateWithLeeway(jwt.Expected{Issuer: iss, Subject: sub, AnyAudience: jwt.Audience{aud}, Time: now}, time.Minute)
}

// management serves the Management Activity API.
func (s *Server) management(w http.ResponseWriter, r *http.Request, now time.Time) {
	rest := strings.TrimPrefix(r.URL.Path, "/api/v1.0/")
	tenant, op, _ := strings.Cut(rest, "/activity/feed/")
	if tenant != s.TenantID {
		msError(w, http.StatusBadRequest, "AF20010", "The tenant ID passed in the URL ("+tenant+") does not match the tenant ID passed in the access token.")
		return
	}
	q := r.URL.Query()
	if q.Get("PublisherIdentifier") == "" {
		s.violation("%s %s without PublisherIdentifier", r.Method, r.URL.Path)
	}
	switch {
	case op == "subscriptions/list" && r.Method == http.MethodGet:
		var out []map[string]any
		for _, ct := range []string{"Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"} {
			if st, ok := s.subs[ct]; ok {
				if p, off := s.off[ct]; off && !now.Before(p[0]) && now.Before(p[1]) {
					st = "disabled"
				}
				var hook any
				if h := s.hooks[ct]; h != nil {
					hook = map[string]any{"status": h.Status, "address": h.Address, "authId": h.AuthID, "expiration": nil}
				}
				out = append(out, map[string]any{"contentType": ct, "status": st, "webhook": hook})
			}
		}
		writeJSON(w, http.StatusOK, out)
	case op == "subscriptions/start" && r.Method == http.MethodPost:
		ct := q.Get("contentType")
		if p, off := s.off[ct]; off && !now.Before(p[0]) && now.Before(p[1]) {
			s.off[ct] = [2]time.Time{p[0], now} // an admin's start ends the outage
		}
		s.subs[ct] = "enabled"
		var body struct {
			Webhook *struct {
				Address    string  `json:"address"`
				AuthID     string  `json:"authId"`
				Expiration *string `json:"expiration"`
			} `json:"webhook"`
		}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				msError(w, http.StatusBadRequest, "AF20001", "bad request body")
				return
			}
		}
		var hook any
		if h := body.Webhook; h != nil {
			if !strings.HasPrefix(h.Address, "https://") {
				s.violation("webhook address %q is not https", h.Address)
			}
			old := s.hooks[ct]
			n := 1
			if old != nil {
				n = old.Starts + 1
			}
			s.hooks[ct] = &Hook{Address: h.Address, AuthID: h.AuthID, Status: "enabled", Starts: n}
			hook = map[string]any{"status": "enabled", "address": h.Address, "authId": h.AuthID, "expiration": nil}
		}
		writeJSON(w, http.StatusOK, map[string]any{"contentType": ct, "status": "enabled", "webhook": hook})
	case op == "subscriptions/content" && r.Method == http.MethodGet:
		s.content(w, r, q, now)
	case strings.HasPrefix(op, "audit/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(op, "audit/")
		for _, b := range s.blobs {
			if b.ID != id {
				continue
			}
			if s.expired[id] || now.After(b.Available.Add(7*24*time.Hour)) {
				msError(w, http.StatusBadRequest, "AF20051", "Content requested with the key "+id+" has already expired. Content older than 7 days cannot be retrieved.")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("["))
			for i, rec := range b.Records {
				if i > 0 {
					_, _ = w.Write([]byte(","))
				}
				_, _ = w.Write(rec)
			}
			_, _ = w.Write([]byte("]"))
			return
		}
		msError(w, http.StatusBadRequest, "AF20050", "The specified content ("+id+") does not exist.")
	default:
		http.NotFound(w, r)
	}
}

func parseAPITime(v string) (time.Time, error) {
	for _, f := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(f, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", v)
}

func (s *Server) content(w http.ResponseWriter, r *http.Request, q url.Values, now time.Time) {
	ct := q.Get("contentType")
	st, subscribed := s.subs[ct]
	if !subscribed {
		msError(w, http.StatusBadRequest, "AF20022", "No subscription found for the specified content type")
		return
	}
	if p, off := s.off[ct]; st != "enabled" || (off && !now.Before(p[0]) && now.Before(p[1])) {
		msError(w, http.StatusBadRequest, "AF20023", "The subscription was disabled by an administrator.")
		return
	}
	start, err1 := parseAPITime(q.Get("startTime"))
	end, err2 := parseAPITime(q.Get("endTime"))
	if err1 != nil || err2 != nil || end.Sub(start) > 24*time.Hour || !end.After(start) || start.Before(now.Add(-7*24*time.Hour)) {
		msError(w, http.StatusBadRequest, "AF20055", "Start time and end time must both be specified (or both omitted) and they must be less than or equal to 24 hours apart, with the start time no more than 7 days in the past.")
		return
	}
	var list []*Blob
	for _, b := range s.blobs {
		visible := b.Visible
		if visible.IsZero() {
			visible = b.Available
		}
		if b.ContentType != ct || b.Available.Before(start) || !b.Available.Before(end) || visible.After(now) {
			continue
		}
		if p, off := s.off[ct]; off && !b.Available.Before(p[0]) && b.Available.Before(p[1]) {
			continue // published while the subscription was off: lost
		}
		list = append(list, b)
	}
	slices.SortStableFunc(list, func(a, b *Blob) int { return a.Available.Compare(b.Available) })
	from, _ := strconv.Atoi(q.Get("nextPage"))
	n := s.pageLen()
	to := min(len(list), from+n)
	if from > len(list) {
		from = len(list)
	}
	out := []map[string]any{}
	for _, b := range list[from:to] {
		out = append(out, map[string]any{
			"contentType": ct, "contentId": b.ID,
			"contentUri":        s.URL + "/api/v1.0/" + s.TenantID + "/activity/feed/audit/" + b.ID,
			"contentCreated":    b.Available.UTC().Format("2006-01-02T15:04:05.000Z"),
			"contentExpiration": b.Available.Add(7 * 24 * time.Hour).UTC().Format("2006-01-02T15:04:05.000Z"),
		})
	}
	if to < len(list) {
		nq := url.Values{"contentType": {ct}, "startTime": {q.Get("startTime")}, "endTime": {q.Get("endTime")}, "nextPage": {strconv.Itoa(to)}}
		w.Header().Set("NextPageUri", s.URL+r.URL.Path+"?"+nq.Encode())
	}
	writeJSON(w, http.StatusOK, out)
}

// pageLen is the next page's length; 0 (an empty page with a next link)
// with probability EmptyPage.
func (s *Server) pageLen() int {
	if s.rnd.Float64() < s.Faults.EmptyPage {
		return 0
	}
	max := s.Faults.PageSize
	if max <= 0 {
		max = 5
	}
	return 1 + s.rnd.IntN(max)
}

var (
	graphFilter = regexp.MustCompile(`(\w+) ge (\S+) and (\w+) le (\S+)$`)
	eventFilter = regexp.MustCompile(`signInEventTypes/any\(t: t eq '(\w+)'\)`)
)

func (s *Server) graphList(w http.ResponseWriter, r *http.Request, now time.Time) {
	version, list, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	f := q.Get("$filter")
	m := graphFilter.FindStringSubmatch(f)
	if m == nil || strings.Contains(f, "'20") {
		msError(w, http.StatusBadRequest, "BadRequest", "Invalid filter clause")
		return
	}
	from, err1 := time.Parse(time.RFC3339, m[2])
	to, err2 := time.Parse(time.RFC3339, m[4])
	if err1 != nil || err2 != nil {
		msError(w, http.StatusBadRequest, "BadRequest", "Invalid filter clause")
		return
	}
	if top, _ := strconv.Atoi(q.Get("$top")); top > 1000 {
		s.violation("$top %d > 1000", top)
	}
	want := "interactiveUser"
	if em := eventFilter.FindStringSubmatch(f); em != nil {
		if version != "beta" {
			msError(w, http.StatusBadRequest, "BadRequest", "signInEventTypes is only available in beta")
			return
		}
		want = em[1]
	}
	items, ok := s.graph[list]
	if !ok {
		http.NotFound(w, r)
		return
	}
	var sel []*Item
	for _, it := range items {
		if it.Available.After(now) || it.Time.Before(from) || it.Time.After(to) {
			continue
		}
		if list == "auditLogs/signIns" && it.EventType != want {
			continue
		}
		sel = append(sel, it)
	}
	// Newest first, as the service returns them.
	slices.SortStableFunc(sel, func(a, b *Item) int { return b.Time.Compare(a.Time) })
	off, _ := strconv.Atoi(q.Get("$skiptoken"))
	off = min(off, len(sel))
	end := min(len(sel), off+s.pageLen())
	var raws []json.RawMessage
	for _, it := range sel[off:end] {
		raws = append(raws, it.Raw)
	}
	page := map[string]any{"@odata.context": "https://graph.microsoft.com/" + version + "/$metadata#" + list, "value": append([]json.RawMessage{}, raws...)}
	if end < len(sel) {
		nq := url.Values{"$filter": {f}, "$top": {q.Get("$top")}, "$skiptoken": {strconv.Itoa(end)}}
		page["@odata.nextLink"] = s.URL + r.URL.Path + "?" + nq.Encode()
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) activities(w http.ResponseWriter, r *http.Request, now time.Time) {
	app := strings.TrimPrefix(r.URL.Path, "/admin/reports/v1/activity/users/all/applications/")
	q := r.URL.Query()
	start, err1 := time.Parse(time.RFC3339, q.Get("startTime"))
	end, err2 := time.Parse(time.RFC3339, q.Get("endTime"))
	if err1 != nil || err2 != nil || end.Before(start) || (app == "gmail" && end.Sub(start) > 30*24*time.Hour) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "Bad Request", "status": "INVALID_ARGUMENT"}})
		return
	}
	if mr, _ := strconv.Atoi(q.Get("maxResults")); mr > 1000 || mr < 1 {
		s.violation("maxResults %s", q.Get("maxResults"))
	}
	var sel []*Item
	for _, it := range s.reports[app] {
		if it.Available.After(now) || it.Time.Before(start) || it.Time.After(end) {
			continue
		}
		sel = append(sel, it)
	}
	slices.SortStableFunc(sel, func(a, b *Item) int { return b.Time.Compare(a.Time) })
	off := 0
	if t := q.Get("pageToken"); t != "" {
		b, err := hex.DecodeString(t)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "Invalid pageToken"}})
			return
		}
		off, _ = strconv.Atoi(string(b))
	}
	off = min(off, len(sel))
	stop := min(len(sel), off+s.pageLen())
	page := map[string]any{"kind": "admin#reports#activities", "etag": `"x"`}
	var items []json.RawMessage
	for _, it := range sel[off:stop] {
		items = append(items, it.Raw)
	}
	if len(items) > 0 {
		page["items"] = items
	}
	if stop < len(sel) {
		page["nextPageToken"] = hex.EncodeToString([]byte(strconv.Itoa(stop)))
	}
	writeJSON(w, http.StatusOK, page)
}

// NewCert makes a self-signed certificate and key for an app registration.
func NewCert() (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(crand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
	tmpl.Subject.CommonName = "vigil collector"
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

type query struct {
	start, end time.Time
	polls      int
	matched    []*Item
}

// AddQueryRecord adds a Unified Audit Log record for the audit log query,
// in Graph's auditLogRecord shape (the Management API record in auditData).
func (s *Server) AddQueryRecord(id string, t time.Time, ual []byte) {
	raw := mustJSON(map[string]any{
		"id": id, "createdDateTime": t.UTC().Format(time.RFC3339), "auditLogRecordType": "ExchangeItemAggregated",
		"operation": "MailItemsAccessed", "organizationId": "11111111-2222-3333-4444-555555555555", "userType": "regular",
		"userId": "alice@contoso.com", "service": "Exchange", "objectId": "", "userPrincipalName": "alice@contoso.com",
		"clientIp": "203.0.113.7", "administrativeUnits": []string{}, "auditData": json.RawMessage(ual),
	})
	s.mu.Lock()
	s.uals = append(s.uals, &Item{Raw: raw, Time: t, Available: t})
	s.mu.Unlock()
}

// QueriesCreated is how many audit log queries were submitted.
func (s *Server) QueriesCreated() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.queries) }

func (s *Server) auditQuery(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1.0/security/auditLog/queries"), "/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case id == "" && r.Method == http.MethodPost:
		var body struct {
			Start time.Time `json:"filterStartDateTime"`
			End   time.Time `json:"filterEndDateTime"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.End.After(body.Start) {
			msError(w, http.StatusBadRequest, "BadRequest", "Invalid filter dates")
			return
		}
		q := &query{start: body.Start, end: body.End}
		for _, it := range s.uals {
			if !it.Time.Before(body.Start) && it.Time.Before(body.End) {
				q.matched = append(q.matched, it)
			}
		}
		qid := fmt.Sprintf("q%d", len(s.queries)+1)
		s.queries[qid] = q
		writeJSON(w, http.StatusCreated, map[string]any{"id": qid, "status": "notStarted"})
	case r.Method == http.MethodGet && sub == "":
		q, ok := s.queries[id]
		if !ok {
			msError(w, http.StatusNotFound, "NotFound", "query not found")
			return
		}
		q.polls++
		status := []string{"notStarted", "running", "succeeded"}[min(q.polls-1, 2)]
		limited := s.QueryLimit > 0 && len(q.matched) > s.QueryLimit
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "status": status, "isRecordCountLimitExceeded": limited})
	case r.Method == http.MethodGet && sub == "records":
		q, ok := s.queries[id]
		if !ok || q.polls < 3 {
			msError(w, http.StatusBadRequest, "BadRequest", "query not finished")
			return
		}
		recs := q.matched
		if s.QueryLimit > 0 && len(recs) > s.QueryLimit {
			recs = recs[:s.QueryLimit]
		}
		off, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
		off = min(off, len(recs))
		end := min(len(recs), off+s.pageLen())
		var raws []json.RawMessage
		for _, it := range recs[off:end] {
			raws = append(raws, it.Raw)
		}
		page := map[string]any{"value": append([]json.RawMessage{}, raws...)}
		if end < len(recs) {
			page["@odata.nextLink"] = s.URL + r.URL.Path + "?$skiptoken=" + strconv.Itoa(end)
		}
		writeJSON(w, http.StatusOK, page)
	default:
		http.NotFound(w, r)
	}
}

// Hook returns the webhook of content type ct's subscription, nil if none.
func (s *Server) Hook(ct string) *Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hooks[ct]; h != nil {
		c := *h
		return &c
	}
	return nil
}

// DisableHook marks ct's webhook disabled, as the API does after failed
// deliveries.
func (s *Server) DisableHook(ct string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hooks[ct]; h != nil {
		h.Status = "disabled"
	}
}

// Channels returns the watch channels of app that are live now (neither
// stopped nor expired).
func (s *Server) Channels(app string) []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Channel
	now := s.now()
	for _, c := range s.channels {
		if c.App == app && !c.Stopped && now.Before(c.Expiration) {
			out = append(out, *c)
		}
	}
	return out
}

// AllChannels returns every watch channel ever made, stopped and expired
// ones too.
func (s *Server) AllChannels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, len(s.channels))
	for i, c := range s.channels {
		out[i] = *c
	}
	return out
}

// watchTTL is the longest channel the fake makes (the real API's default
// is 6 h when no ttl is asked for).
const watchTTL = 6 * time.Hour

func (s *Server) watch(w http.ResponseWriter, r *http.Request, now time.Time) {
	app := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/admin/reports/v1/activity/users/all/applications/"), "/watch")
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	var c struct {
		ID      string            `json:"id"`
		Type    string            `json:"type"`
		Address string            `json:"address"`
		Token   string            `json:"token"`
		Params  map[string]string `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || c.ID == "" || c.Type != "web_hook" || !strings.HasPrefix(c.Address, "https://") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "Bad Request", "status": "INVALID_ARGUMENT"}})
		return
	}
	for _, old := range s.channels {
		if old.ID == c.ID {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "channel id not unique", "status": "INVALID_ARGUMENT"}})
			return
		}
	}
	ttl := watchTTL
	if v, err := strconv.Atoi(c.Params["ttl"]); err == nil && v > 0 && time.Duration(v)*time.Second < ttl {
		ttl = time.Duration(v) * time.Second
	}
	ch := &Channel{App: app, ID: c.ID, ResourceID: fmt.Sprintf("res-%d", len(s.channels)+1), Token: c.Token, Address: c.Address, Expiration: now.Add(ttl)}
	s.channels = append(s.channels, ch)
	writeJSON(w, http.StatusOK, map[string]any{"kind": "api#channel", "id": ch.ID, "resourceId": ch.ResourceID,
		"resourceUri": s.URL + "/admin/reports/v1/activity/users/all/applications/" + app, "expiration": strconv.FormatInt(ch.Expiration.UnixMilli(), 10)})
}

func (s *Server) stopChannel(w http.ResponseWriter, r *http.Request) {
	var c struct {
		ID         string `json:"id"`
		ResourceID string `json:"resourceId"`
	}
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "Bad Request"}})
		return
	}
	for _, ch := range s.channels {
		if ch.ID == c.ID && ch.ResourceID == c.ResourceID && !ch.Stopped {
			ch.Stopped = true
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "message": "Channel not found"}})
}
