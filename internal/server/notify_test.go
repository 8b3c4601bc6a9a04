package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

// Vendor notifications wake the right collectors only when they carry the
// endpoint's secret; the O365 validation handshake is answered; anything
// else is refused and wakes nothing. Secrets never reach the log.
func TestNotifications(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(t.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ks, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := New(Config{}, Deps{Journal: j, Keys: ks, Ingest: NewIngester(j, filepath.Join(dir, "q.jsonl")), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	do := func(path, body string, hdr ...string) int {
		req := httptest.NewRequestWithContext(t.Context(), "POST", path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	// Nothing configured: every notification endpoint is closed.
	if code := do("/api/v1/notify/o365/contoso", "[]", "Webhook-AuthID", "x"); code != http.StatusNotFound {
		t.Fatalf("unconfigured endpoint answered %d", code)
	}
	const authID, token = "o365-auth-7f3a9c", "gws-channel-token-51be"
	var o365, google atomic.Int64
	if err := s.SetNotifications([]Notification{
		{Type: "o365", Tenant: "contoso", Secret: authID, Wake: func() { o365.Add(1) }},
		{Type: "google", Tenant: "contoso", Secret: token, Wake: func() { google.Add(1) }},
	}); err != nil {
		t.Fatal(err)
	}
	blob := `[{"tenantId":"t","clientId":"c","contentType":"Audit.Exchange","contentId":"id1","contentUri":"https://manage.office.com/api/v1.0/t/activity/feed/audit/id1","contentCreated":"2026-01-01T00:00:00.000Z","contentExpiration":"2026-01-08T00:00:00.000Z"}]`
	for _, c := range []struct {
		name, path, body string
		hdr              []string
		code             int
		o365, google     int64
	}{
		{"o365 validation handshake", "/api/v1/notify/o365/contoso", `{"validationCode":"abc123"}`, []string{"Webhook-ValidationCode", "abc123"}, 200, 0, 0},
		{"o365 validation without its body", "/api/v1/notify/o365/contoso", ``, []string{"Webhook-ValidationCode", "abc123"}, 400, 0, 0},
		{"o365 notification", "/api/v1/notify/o365/contoso", blob, []string{"Webhook-AuthID", authID}, 200, 1, 0},
		{"o365 wrong authId", "/api/v1/notify/o365/contoso", blob, []string{"Webhook-AuthID", authID + "x"}, 401, 0, 0},
		{"o365 no authId", "/api/v1/notify/o365/contoso", blob, nil, 401, 0, 0},
		{"o365 the Google token", "/api/v1/notify/o365/contoso", blob, []string{"Webhook-AuthID", token}, 401, 0, 0},
		{"o365 body not a list", "/api/v1/notify/o365/contoso", `{"a":1}`, []string{"Webhook-AuthID", authID}, 400, 0, 0},
		{"google channel sync", "/api/v1/notify/google/contoso", ``, []string{"X-Goog-Channel-Token", token, "X-Goog-Resource-State", "sync"}, 200, 0, 0},
		{"google activity", "/api/v1/notify/google/contoso", `{"kind":"admin#reports#activity"}`, []string{"X-Goog-Channel-Token", token, "X-Goog-Resource-State", "login"}, 200, 0, 1},
		{"google wrong token", "/api/v1/notify/google/contoso", `{}`, []string{"X-Goog-Channel-Token", "nope", "X-Goog-Resource-State", "login"}, 401, 0, 0},
		{"google the O365 authId", "/api/v1/notify/google/contoso", `{}`, []string{"X-Goog-Channel-Token", authID}, 401, 0, 0},
		{"unknown tenant", "/api/v1/notify/o365/fabrikam", blob, []string{"Webhook-AuthID", authID}, 404, 0, 0},
		{"unknown type", "/api/v1/notify/slack/contoso", blob, []string{"Webhook-AuthID", authID}, 404, 0, 0},
		{"body too large", "/api/v1/notify/google/contoso", strings.Repeat("x", notifyMaxBody+1), []string{"X-Goog-Channel-Token", token}, 413, 0, 0},
	} {
		o0, g0 := o365.Load(), google.Load()
		if code := do(c.path, c.body, c.hdr...); code != c.code {
			t.Errorf("%s: %d, want %d", c.name, code, c.code)
		}
		if o, g := o365.Load()-o0, google.Load()-g0; o != c.o365 || g != c.google {
			t.Errorf("%s: woke O365 %d and Google %d times, want %d and %d", c.name, o, g, c.o365, c.google)
		}
	}
	if strings.Contains(logs.String(), authID) || strings.Contains(logs.String(), token) {
		t.Errorf("a secret reached the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "Webhook-AuthID does not match") {
		t.Errorf("refused notifications are not logged:\n%s", logs.String())
	}
}
