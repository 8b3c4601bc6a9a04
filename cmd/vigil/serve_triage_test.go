package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
)

// uiSession is a browser logged in to a served vigil's web interface.
type uiSession struct {
	s    *servedVigil
	c    *http.Client
	csrf string
}

// uiLogin logs in with the server's admin key and takes the session's
// CSRF token from the page of incident id ("": no token, for reading).
func uiLogin(t *testing.T, s *servedVigil, id string) *uiSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(s.url+"/ui/login", url.Values{"key": {s.key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	u := &uiSession{s: s, c: c}
	if id == "" {
		return u
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(u.page(t, "/ui/incidents/"+id))
	if m == nil {
		t.Fatalf("no CSRF token on the page of incident %s", id)
	}
	u.csrf = m[1]
	return u
}

// page gets a page of the web interface.
func (u *uiSession) page(t *testing.T, path string) string {
	t.Helper()
	b, code := u.tryPage(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, code, b)
	}
	return b
}

// tryPage gets a page and its status.
func (u *uiSession) tryPage(t *testing.T, path string) (string, int) {
	t.Helper()
	resp, err := u.c.Get(u.s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// triage sets incident id's status with a note, as the incident page's
// form does.
func (u *uiSession) triage(t *testing.T, id, status, note string) {
	t.Helper()
	resp, err := u.c.PostForm(u.s.url+"/ui/incidents/"+id+"/triage", url.Values{"csrf": {u.csrf}, "status": {status}, "note": {note}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("triage of %s: %d", id, resp.StatusCode)
	}
}
