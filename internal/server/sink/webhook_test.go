package sink

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The published Standard Webhooks test vector: a receiver library must
// accept what we send, so we must reproduce it exactly.
func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	oldKey, _ := DecodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	newKey := []byte(strings.Repeat("k", 32))
	body := []byte(`{"test": 2432232314}`)
	id, ts := "msg_p5jXN8AQM9LWM0D4loKWxJek", int64(1614265330)
	now := time.Unix(ts, 0).Add(time.Minute)
	both := Sign(newKey, id, ts, body) + " " + Sign(oldKey, id, ts, body)
	cases := []struct {
		name    string
		keys    [][]byte
		ts      string
		sigs    string
		body    []byte
		wantErr string
	}{
		{"old key only", [][]byte{oldKey}, "1614265330", both, body, ""},
		{"new key only", [][]byte{newKey}, "1614265330", both, body, ""},
		{"stale timestamp", [][]byte{oldKey}, "1614264330", Sign(oldKey, id, 1614264330, body), body, "outside"},
		{"future timestamp", [][]byte{oldKey}, "1614269330", Sign(oldKey, id, 1614269330, body), body, "outside"},
		{"body changed", [][]byte{oldKey}, "1614265330", both, []byte(`{"test": 1}`), "no webhook-signature"},
		{"unknown key", [][]byte{[]byte(strings.Repeat("x", 32))}, "1614265330", both, body, "no webhook-signature"},
		{"bad timestamp", [][]byte{oldKey}, "soon", both, body, "not a number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.keys, id, c.ts, c.sigs, c.body, now, 5*time.Minute)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, c.wantErr)
			}
		})
	}
}

func TestDecodeSecret(t *testing.T) {
	for _, s := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := DecodeSecret(s); err == nil {
			t.Errorf("DecodeSecret(%q) accepted", s)
		}
	}
}

// T7 of the research note: the guard denies loopback, metadata and private
// ranges, in every spelling.
func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "127.1.2.3": false, "169.254.169.254": false, "10.0.0.1": false,
		"172.16.5.4": false, "192.168.1.1": false, "100.64.0.1": false, "0.0.0.0": false,
		"::1": false, "::": false, "::ffff:127.0.0.1": false, "::ffff:169.254.169.254": false,
		"fe80::1": false, "fd00::1": false, "64:ff9b::a9fe:a9fe": false, "224.0.0.1": false,
		"8.8.8.8": true, "52.96.1.1": true, "2606:4700::1111": true, "172.32.0.1": true,
	} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestWebhookRefusesPrivateTargets(t *testing.T) {
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hit = true }))
	defer srv.Close()
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		w, err := NewWebhook("hook", WebhookConfig{URL: u, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
		if err != nil {
			t.Fatal(err)
		}
		err = w.Deliver(t.Context(), Message{ID: "a1", Type: "incident.opened", Time: time.Now()})
		if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "non-public address") {
			t.Fatalf("%s: err = %v, want a refusal naming the non-public address", u, err)
		}
	}
	if hit {
		t.Fatal("the receiver on loopback was reached")
	}
	if _, err := NewWebhook("hook", WebhookConfig{URL: "http://hooks.example.com/x", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("plain http to a remote host accepted: %v", err)
	}
}

func TestWebhookDelivery(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := DecodeSecret(secret)
	status := http.StatusOK
	var got struct {
		id, ts, sig string
		body        []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.id, got.ts, got.sig = r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		got.body, _ = io.ReadAll(r.Body)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	w, err := NewWebhook("hook", WebhookConfig{URL: srv.URL + "/in", Secrets: []string{secret}, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	m := Message{ID: "inc-1/opened", Type: "incident.opened", Time: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC),
		Severity: "critical", Title: "x", Data: json.RawMessage(`{"incident":"inc-1"}`)}
	if err := w.Deliver(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if got.id != m.ID {
		t.Fatalf("webhook-id %q", got.id)
	}
	if err := Verify([][]byte{key}, got.id, got.ts, got.sig, got.body, time.Now(), time.Minute); err != nil {
		t.Fatalf("receiver cannot verify: %v", err)
	}
	var payload struct {
		Type, Timestamp string
		Data            map[string]string
	}
	if err := json.Unmarshal(got.body, &payload); err != nil || payload.Type != "incident.opened" || payload.Data["incident"] != "inc-1" || payload.Timestamp != "2026-11-02T03:04:05Z" {
		t.Fatalf("payload %s (%v)", got.body, err)
	}

	status = http.StatusTooManyRequests
	err = w.Deliver(t.Context(), m)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After != 7*time.Second {
		t.Fatalf("429: err = %v, want RetryAfter 7s", err)
	}
	status = http.StatusGone
	if err := w.Deliver(t.Context(), m); !errors.Is(err, ErrPermanent) {
		t.Fatalf("410: err = %v, want permanent", err)
	}
	status = http.StatusFound
	if err := w.Deliver(t.Context(), m); err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("302: err = %v, want a retryable failure", err)
	}
}
