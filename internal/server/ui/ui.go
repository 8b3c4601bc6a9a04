package ui

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the UI is mounted.
const Prefix = "/ui/"

const cookieName = "vigil_session"

// CSP allows script and style from the UI's own origin only: no inline
// script, no inline style, no eval, nothing from elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options configure the UI.
type Options struct {
	Keys *auth.Store
	Data Data
	// Secure marks cookies Secure: set it when the server speaks TLS.
	Secure bool
	Logger *slog.Logger
	// Idle and Absolute end sessions (defaults 30 min and 12 h); TokenTTL
	// bounds a one-time login token's life (default 15 min).
	Idle, Absolute, TokenTTL time.Duration
	// RatePerSession and Burst bound each session's requests per second
	// (defaults 20 and 60), as the API bounds each key's.
	RatePerSession float64
	Burst          int
	// Now is the clock (tests).
	Now func() time.Time
}

// UI is the web interface.
type UI struct {
	o     Options
	s     *sessions
	pages map[string]*template.Template
	log   *slog.Logger
}

// New parses the embedded templates.
func New(o Options) (*UI, error) {
	if o.Keys == nil || o.Data == nil {
		return nil, errors.New("ui: keys and data are required")
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Minute
	}
	if o.Absolute <= 0 {
		o.Absolute = 12 * time.Hour
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RatePerSession <= 0 {
		o.RatePerSession = 20
	}
	if o.Burst <= 0 {
		o.Burst = 60
	}
	u := &UI{o: o, s: newSessions(o.Idle, o.Absolute, o.TokenTTL), pages: map[string]*template.Template{}, log: o.Logger}
	if o.Now != nil {
		u.s.now = o.Now
	}
	u.s.rate, u.s.burst = rate.Limit(o.RatePerSession), o.Burst
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("ui: templates: %w", err)
	}
	names, _ := fs.Glob(templateFS, "templates/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	return u, nil
}

// LoginToken mints a one-time login token for role; the server prints
// Prefix+"login?token="+token at every start.
func (u *UI) LoginToken(role auth.Role) string { return u.s.mint(role) }

// Handler serves everything under Prefix.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	st, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticHandler(http.FileServerFS(st))))
	mux.HandleFunc("GET /ui/login", u.loginPage)
	mux.HandleFunc("POST /ui/login", u.login)
	mux.HandleFunc("POST /ui/logout", u.logout)
	mux.Handle("GET /ui/{$}", u.page(auth.PermRead, u.overview))
	mux.Handle("GET /ui/incidents", u.page(auth.PermRead, u.incidents))
	mux.Handle("GET /ui/incidents/{id}", u.page(auth.PermRead, u.incident))
	mux.Handle("GET /ui/incidents/{id}/messages.csv", u.page(auth.PermRead, u.messagesCSV))
	mux.Handle("GET /ui/incidents/{id}/messages.json", u.page(auth.PermRead, u.messagesJSON))
	mux.Handle("POST /ui/incidents/{id}/triage", u.action(auth.PermTriage, u.triage))
	mux.Handle("GET /ui/timeline", u.page(auth.PermRead, u.timeline))
	mux.Handle("GET /ui/search", u.page(auth.PermRead, u.search))
	mux.Handle("GET /ui/rules", u.page(auth.PermRead, u.rules))
	mux.Handle("POST /ui/rules/{id}", u.action(auth.PermAdmin, u.setRule))
	mux.Handle("GET /ui/integrity", u.page(auth.PermRead, u.integrity))
	mux.Handle("GET /ui/admin", u.page(auth.PermAdmin, u.admin))
	mux.Handle("POST /ui/admin/keys", u.action(auth.PermAdmin, u.createKey))
	mux.Handle("POST /ui/admin/keys/{id}/revoke", u.action(auth.PermAdmin, u.revokeKey))
	mux.Handle("POST /ui/admin/sinks/{name}/test", u.action(auth.PermAdmin, u.testSink))
	// Cross-origin POSTs are refused before any handler runs, a second
	// wall behind the CSRF tokens (and the only one for the login form).
	return headers(u.o.Secure, http.NewCrossOriginProtection().Handler(mux))
}

func headers(tls bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		if tls {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Embedded assets change only with the binary.
		w.Header().Set("Cache-Control", "private, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// levelRank orders level names; unknown ones sort below informational.
func levelRank(s string) int {
	l, err := alert.ParseLevel(s)
	if err != nil {
		return -1
	}
	return int(l)
}

// flashes are the notes a redirect after a change may ask for: fixed
// texts, so a crafted link cannot put words on the page.
var flashes = map[string]string{
	"recorded": "Recorded in the journal.",
	"disabled": "Rule disabled: recorded in the journal; its alerts are dropped from where detection reads the change.",
	"enabled":  "Rule enabled: recorded in the journal; it raises alerts again from where detection reads the change.",
	"revoked":  "Key revoked; its sessions have ended.",
	"tested":   "Test delivery sent.",
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string
	CSRF   string
	Actor  string
	Role   auth.Role
	Triage bool // may change status and notes
	Admin  bool
	Data   any
	Flash  string
	Error  string
}

type handler func(w http.ResponseWriter, r *http.Request, v *view) error

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errCode(code int, format string, a ...any) error {
	return &httpError{code, fmt.Sprintf(format, a...)}
}

func (u *UI) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	return u.s.get(c.Value)
}

// page guards a GET: no session sends the browser to the login form.
func (u *UI) page(p auth.Permission, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss, ok := u.session(r)
		if !ok {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", Prefix+"login")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		u.run(w, r, ss, p, h)
	})
}

// action guards a POST: a session, the role and the CSRF token.
func (u *UI) action(p auth.Permission, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss, ok := u.session(r)
		if !ok {
			u.fail(w, r, nil, errCode(http.StatusUnauthorized, "not logged in"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !csrfOK(ss, r.PostFormValue("csrf")) {
			u.log.Warn("ui: CSRF token missing or wrong", "path", r.URL.Path, "actor", ss.actor, "remote", r.RemoteAddr)
			u.fail(w, r, nil, errCode(http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page"))
			return
		}
		u.run(w, r, ss, p, h)
	})
}

func (u *UI) run(w http.ResponseWriter, r *http.Request, ss *session, p auth.Permission, h handler) {
	v := &view{CSRF: ss.csrf, Actor: ss.actor, Role: ss.role,
		Triage: ss.role.Allows(auth.PermTriage), Admin: ss.role.Allows(auth.PermAdmin)}
	if !ss.role.Allows(p) {
		u.log.Warn("ui: denied", "path", r.URL.Path, "actor", ss.actor, "role", ss.role)
		u.fail(w, r, v, errCode(http.StatusForbidden, "role %s may not do this", ss.role))
		return
	}
	if !ss.lim.Allow() {
		u.log.Warn("ui: rate limit", "path", r.URL.Path, "actor", ss.actor)
		w.Header().Set("Retry-After", "1")
		u.fail(w, r, v, errCode(http.StatusTooManyRequests, "too many requests from this session: wait a second"))
		return
	}
	if err := h(w, r, v); err != nil {
		u.fail(w, r, v, err)
	}
}

// render writes a whole page; htmx requests pick their part with
// hx-select, so every URL also works without script.
func (u *UI) render(w http.ResponseWriter, _ *http.Request, name string, v *view) error {
	t, ok := u.pages[name]
	if !ok {
		return fmt.Errorf("ui: no template %s", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		return fmt.Errorf("ui: rendering %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// A failed write means the browser went away; the headers are sent,
	// so there is no one to tell.
	w.Write(buf.Bytes())
	return nil
}

func (u *UI) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrUnsupported):
		code = http.StatusNotImplemented
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrQuery):
		// A timeline's value the index cannot read (a malformed address).
		code = http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return
	}
	if code >= 500 {
		u.log.Error("ui: request failed", "path", r.URL.Path, "err", err)
	}
	if v == nil {
		v = &view{}
	}
	v.Title, v.Error, v.Data = http.StatusText(code), err.Error(), nil
	var buf bytes.Buffer
	if terr := u.pages["error"].ExecuteTemplate(&buf, "layout.html", v); terr != nil {
		http.Error(w, http.StatusText(code), code)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Header.Get("HX-Request") != "" {
		// htmx swaps no error answers: send it as a page whose main
		// replaces the current one, whatever the form selected.
		w.Header().Set("HX-Retarget", "main")
		w.Header().Set("HX-Reselect", "main")
		w.Header().Set("HX-Reswap", "outerHTML")
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(code)
	}
	w.Write(buf.Bytes())
}

func (u *UI) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: u.o.Secure, SameSite: http.SameSiteStrictMode})
}

// loginPage shows the login form; with ?token= it asks to confirm the
// one-time link. Opening the link spends nothing: link previewers in mail
// and chat clients fetch it too, and would use it up. The POST spends it.
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Log in", Data: r.URL.Query().Get("token")}
	if err := u.render(w, r, "login", v); err != nil {
		u.fail(w, r, nil, err)
	}
}

func (u *UI) loginToken(w http.ResponseWriter, r *http.Request, t string) {
	role, ok := u.s.redeem(t)
	if !ok {
		u.log.Warn("ui: login token refused", "remote", r.RemoteAddr)
		u.fail(w, r, nil, errCode(http.StatusUnauthorized, "this login link was used already or has expired: restart `vigil serve` for a new one, or log in with an API key"))
		return
	}
	v, _ := u.s.start(role, "login-link", "")
	u.log.Info("ui: logged in with a one-time link", "role", role, "remote", r.RemoteAddr)
	u.setCookie(w, v, 0)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if t := r.PostFormValue("token"); t != "" {
		u.loginToken(w, r, t)
		return
	}
	k, err := u.o.Keys.Authenticate(strings.TrimSpace(r.PostFormValue("key")))
	if err == nil && !k.Role.Allows(auth.PermRead) {
		err = errors.New("an ingest key cannot log in")
	}
	if err != nil {
		u.log.Warn("ui: login refused", "remote", r.RemoteAddr, "reason", err)
		w.WriteHeader(http.StatusUnauthorized)
		if rerr := u.render(w, r, "login", &view{Title: "Log in", Error: err.Error()}); rerr != nil {
			u.log.Error("ui: login page", "err", rerr)
		}
		return
	}
	v, _ := u.s.start(k.Role, k.Name, k.ID)
	u.log.Info("ui: logged in", "key_id", k.ID, "role", k.Role, "remote", r.RemoteAddr)
	u.setCookie(w, v, 0)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		if ss, ok := u.s.get(c.Value); ok && !csrfOK(ss, r.PostFormValue("csrf")) {
			u.fail(w, r, nil, errCode(http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page"))
			return
		}
		u.s.end(c.Value)
	}
	u.setCookie(w, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// ---- pages ----

func (u *UI) overview(w http.ResponseWriter, r *http.Request, v *view) error {
	o, err := u.o.Data.Overview(r.Context())
	if err != nil {
		return err
	}
	cs, err := u.o.Data.Cases(r.Context())
	if err != nil {
		return err
	}
	open := 0
	for _, c := range cs {
		if c.Status == "open" || c.Status == "" {
			open++
		}
	}
	v.Title, v.Nav = "Overview", "overview"
	v.Data = struct {
		Overview
		Open, Total int
	}{o, open, len(cs)}
	return u.render(w, r, "overview", v)
}

func (u *UI) incidents(w http.ResponseWriter, r *http.Request, v *view) error {
	cs, err := u.o.Data.Cases(r.Context())
	if err != nil {
		return err
	}
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains(Statuses, status) {
		return errCode(http.StatusBadRequest, "status: want one of %s", strings.Join(Statuses, ", "))
	}
	if status != "" {
		cs = slices.DeleteFunc(cs, func(c Case) bool { return c.Status != status })
	}
	v.Title, v.Nav = "Incidents", "incidents"
	v.Data = struct {
		Cases    []Case
		Status   string
		Statuses []string
	}{cs, status, Statuses}
	return u.render(w, r, "incidents", v)
}

func (u *UI) caseOf(r *http.Request) (Case, error) {
	c, ok, err := u.o.Data.Case(r.Context(), r.PathValue("id"))
	if err != nil {
		return Case{}, err
	}
	if !ok {
		return Case{}, errCode(http.StatusNotFound, "no incident %q", r.PathValue("id"))
	}
	return c, nil
}

func (u *UI) incident(w http.ResponseWriter, r *http.Request, v *view) error {
	c, err := u.caseOf(r)
	if err != nil {
		return err
	}
	v.Title, v.Nav = c.ID, "incidents"
	v.Flash = flashes[r.URL.Query().Get("done")]
	v.Data = struct {
		Case
		Statuses    []string
		MaxMessages int
	}{c, Statuses, maxMessagesShown}
	return u.render(w, r, "incident", v)
}

func (u *UI) messagesCSV(w http.ResponseWriter, r *http.Request, _ *view) error {
	c, err := u.caseOf(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write([]string{"mailbox", "folder", "message_id", "first_access", "last_access", "accesses", "client_app", "ip"})
	for _, m := range c.Impact.Reads {
		// Cells are log fields: neutralised so no spreadsheet runs them.
		cw.Write([]string{sanitize.CSVCell(m.Mailbox), sanitize.CSVCell(m.Folder), sanitize.CSVCell(m.MessageID),
			m.FirstAccess.UTC().Format(time.RFC3339), m.LastAccess.UTC().Format(time.RFC3339),
			fmt.Sprint(m.Count), sanitize.CSVCell(m.ClientApp), sanitize.CSVCell(m.IP)})
	}
	cw.Flush()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+safeName(c.ID)+`-messages.csv"`)
	w.Write(buf.Bytes()) // as in render
	return nil
}

type messageJSON struct {
	Mailbox     string    `json:"mailbox"`
	Folder      string    `json:"folder"`
	MessageID   string    `json:"message_id"`
	FirstAccess time.Time `json:"first_access"`
	LastAccess  time.Time `json:"last_access"`
	Accesses    int       `json:"accesses"`
	ClientApp   string    `json:"client_app,omitempty"`
	IP          string    `json:"ip,omitempty"`
	RecordIDs   []string  `json:"record_ids,omitempty"`
}

func (u *UI) messagesJSON(w http.ResponseWriter, r *http.Request, _ *view) error {
	c, err := u.caseOf(r)
	if err != nil {
		return err
	}
	out := make([]messageJSON, 0, len(c.Impact.Reads))
	for _, m := range c.Impact.Reads {
		out = append(out, messageJSON{m.Mailbox, m.Folder, m.MessageID, m.FirstAccess, m.LastAccess, m.Count, m.ClientApp, m.IP, m.RecordIDs})
	}
	b, err := json.MarshalIndent(map[string]any{"incident": c.ID, "messages": out}, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+safeName(c.ID)+`-messages.json"`)
	w.Write(append(b, '\n')) // as in render
	return nil
}

// safeName keeps a file name to characters no header or shell minds.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func (u *UI) triage(w http.ResponseWriter, r *http.Request, v *view) error {
	id := r.PathValue("id")
	status := r.PostFormValue("status")
	note := strings.TrimSpace(r.PostFormValue("note"))
	if status != "" && !slices.Contains(Statuses, status) {
		return errCode(http.StatusBadRequest, "status: want one of %s", strings.Join(Statuses, ", "))
	}
	if status == "" && note == "" {
		return errCode(http.StatusBadRequest, "nothing to record: choose a status or write a note")
	}
	if len(note) > 4000 {
		return errCode(http.StatusBadRequest, "note: at most 4000 bytes")
	}
	c, err := u.caseOf(r)
	if err != nil {
		return err
	}
	if status == c.Status {
		status = ""
		if note == "" {
			return errCode(http.StatusBadRequest, "the incident is already %s", c.Status)
		}
	}
	ch := Change{Incident: id, Status: status, Note: note, Actor: v.Actor, At: time.Now().UTC()}
	if err := u.o.Data.Triage(r.Context(), ch); err != nil {
		return err
	}
	u.log.Info("ui: incident triaged", "incident", id, "status", status, "note", note != "", "actor", v.Actor)
	http.Redirect(w, r, Prefix+"incidents/"+urlPath(id)+"?done=recorded", http.StatusSeeOther)
	return nil
}

// maxMessagesShown bounds the incident page's message list, so a large
// intrusion still answers fast; the exports hold every message.
const maxMessagesShown = 500

// Bounds of a timeline around a time.
const (
	defaultWindow = time.Hour
	maxWindow     = 31 * 24 * time.Hour
	contextRows   = 20
	timelineRows  = 500
)

func (u *UI) timeline(w http.ResponseWriter, r *http.Request, v *view) error {
	q := r.URL.Query()
	tq := TimelineQuery{Entity: Entity{Kind: q.Get("kind"), Value: strings.TrimSpace(q.Get("value"))}, Limit: timelineRows}
	v.Title, v.Nav = "Timeline", "timeline"
	var tl Timeline
	if tq.Entity.Value != "" {
		if !slices.Contains(EntityKinds, tq.Entity.Kind) {
			return errCode(http.StatusBadRequest, "kind: want one of %s", strings.Join(EntityKinds, ", "))
		}
		if a := q.Get("around"); a != "" {
			t, err := time.Parse(time.RFC3339, a)
			if err != nil {
				return errCode(http.StatusBadRequest, "around: want an RFC 3339 time such as 2026-03-06T01:13:16Z")
			}
			tq.Around, tq.Window, tq.Context = t, defaultWindow, contextRows
			if ws := q.Get("window"); ws != "" {
				d, err := time.ParseDuration(ws)
				if err != nil || d <= 0 || d > maxWindow {
					return errCode(http.StatusBadRequest, "window: want a duration from 1s to 744h, such as 1h")
				}
				tq.Window = d
			}
		}
		var err error
		if tl, err = u.o.Data.Timeline(r.Context(), tq); err != nil {
			return err
		}
		v.Title = tq.Entity.Kind + " " + tq.Entity.Value
	}
	tl.Entity = tq.Entity
	inWindow := 0
	for _, row := range tl.Rows {
		if row.At == "" {
			inWindow++
		}
	}
	v.Data = struct {
		Timeline
		Query    TimelineQuery
		Kinds    []string
		InWindow int
	}{tl, tq, EntityKinds, inWindow}
	return u.render(w, r, "timeline", v)
}

func (u *UI) search(w http.ResponseWriter, r *http.Request, v *view) error {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v.Title, v.Nav = "Search", "search"
	var res SearchResult
	var qerr string
	if q != "" {
		var err error
		if res, err = u.o.Data.Search(r.Context(), q, 500); err != nil {
			if errors.Is(err, ErrQuery) {
				qerr = err.Error()
			} else {
				return err
			}
		}
	}
	v.Error = qerr
	v.Data = struct {
		Query, Help string
		Entity      Entity // none: the rows template links no "around" times
		SearchResult
	}{q, u.o.Data.QueryHelp(), Entity{}, res}
	return u.render(w, r, "search", v)
}

// ErrQuery marks a query the user must fix (Search wraps it).
var ErrQuery = errors.New("query")

func (u *UI) rules(w http.ResponseWriter, r *http.Request, v *view) error {
	rs, err := u.o.Data.Rules(r.Context())
	if err != nil {
		return err
	}
	level := r.URL.Query().Get("level")
	if level != "" {
		rs = slices.DeleteFunc(rs, func(x Rule) bool { return x.Level != level })
	}
	// Rules that fired first, then the refused ones (they need fixing),
	// then the rest by level.
	group := func(x Rule) int {
		switch {
		case x.Hits > 0:
			return 0
		case !x.Loaded:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(rs, func(a, b Rule) int {
		return cmp.Or(cmp.Compare(group(a), group(b)), cmp.Compare(b.Hits, a.Hits),
			cmp.Compare(levelRank(b.Level), levelRank(a.Level)), cmp.Compare(a.ID, b.ID))
	})
	v.Title, v.Nav = "Rules", "rules"
	v.Flash = flashes[r.URL.Query().Get("done")]
	v.Data = struct {
		Rules  []Rule
		Level  string
		Levels []string
	}{rs, level, []string{"critical", "high", "medium", "low", "informational"}}
	return u.render(w, r, "rules", v)
}

func (u *UI) setRule(w http.ResponseWriter, r *http.Request, v *view) error {
	ch := RuleChange{Rule: r.PathValue("id"), Reason: strings.TrimSpace(r.PostFormValue("reason")), Actor: v.Actor, At: time.Now().UTC()}
	switch r.PostFormValue("enabled") {
	case "true":
		ch.Enabled = true
	case "false":
	default:
		return errCode(http.StatusBadRequest, "enabled: want true or false")
	}
	if len(ch.Reason) > MaxRuleReason {
		return errCode(http.StatusBadRequest, "reason: at most %d bytes", MaxRuleReason)
	}
	if err := u.o.Data.SetRule(r.Context(), &ch); err != nil {
		return err
	}
	u.log.Info("ui: rule switched", "rule", ch.Rule, "enabled", ch.Enabled, "actor", v.Actor)
	done := "disabled"
	if ch.Enabled {
		done = "enabled"
	}
	http.Redirect(w, r, Prefix+"rules?done="+done, http.StatusSeeOther)
	return nil
}

func (u *UI) integrity(w http.ResponseWriter, r *http.Request, v *view) error {
	in, err := u.o.Data.Integrity(r.Context())
	if err != nil {
		return err
	}
	v.Title, v.Nav = "Integrity", "integrity"
	v.Data = in
	return u.render(w, r, "integrity", v)
}

func (u *UI) admin(w http.ResponseWriter, r *http.Request, v *view) error {
	keys, err := u.o.Keys.List()
	if err != nil {
		return err
	}
	slices.Reverse(keys)
	sinks, err := u.o.Data.Sinks(r.Context())
	if err != nil {
		return err
	}
	cols, err := u.o.Data.Collectors(r.Context())
	if err != nil {
		return err
	}
	v.Title, v.Nav = "Admin", "admin"
	if v.Flash == "" {
		v.Flash = flashes[r.URL.Query().Get("done")]
	}
	v.Data = struct {
		Keys       []auth.Key
		Sinks      []Sink
		Collectors []Collector
		Roles      []auth.Role
		NewKey     string
	}{keys, sinks, cols, []auth.Role{auth.RoleViewer, auth.RoleAnalyst, auth.RoleAdmin, auth.RoleIngest}, newKeyOf(r)}
	return u.render(w, r, "admin", v)
}

type ctxKey struct{}

func newKeyOf(r *http.Request) string {
	s, _ := r.Context().Value(ctxKey{}).(string)
	return s
}

func (u *UI) createKey(w http.ResponseWriter, r *http.Request, v *view) error {
	role, err := auth.ParseRole(r.PostFormValue("role"))
	if err != nil {
		return errCode(http.StatusBadRequest, "%v", err)
	}
	plain, k, err := u.o.Keys.Create(r.PostFormValue("name"), role)
	if err != nil {
		return errCode(http.StatusBadRequest, "%v", err)
	}
	u.log.Info("ui: API key created", "key_id", k.ID, "role", k.Role, "actor", v.Actor)
	// The secret is shown once, in this answer, never in a URL.
	v.Flash = "Key " + k.Name + " created. Copy it now: it is not shown again."
	return u.admin(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, plain)), v)
}

func (u *UI) revokeKey(w http.ResponseWriter, r *http.Request, v *view) error {
	k, err := u.o.Keys.Revoke(r.PathValue("id"))
	if err != nil {
		return errCode(http.StatusNotFound, "%v", err)
	}
	u.s.endKey(k.ID)
	u.log.Info("ui: API key revoked", "key_id", k.ID, "actor", v.Actor)
	http.Redirect(w, r, Prefix+"admin?done=revoked", http.StatusSeeOther)
	return nil
}

func (u *UI) testSink(w http.ResponseWriter, r *http.Request, v *view) error {
	name := r.PathValue("name")
	if err := u.o.Data.TestSink(r.Context(), name, v.Actor); err != nil {
		if errors.Is(err, ErrNotFound) {
			return errCode(http.StatusNotFound, "no sink %q", name)
		}
		return errCode(http.StatusBadGateway, "test delivery through %s failed: %v", name, err)
	}
	http.Redirect(w, r, Prefix+"admin?done=tested", http.StatusSeeOther)
	return nil
}
