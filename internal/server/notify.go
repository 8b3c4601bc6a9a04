package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Notification is one vendor push endpoint, POST /api/v1/notify/{type}/{tenant}.
// Vendors cannot present an API key: each endpoint is authenticated by
// the shared value given to the vendor when the subscription or channel
// was made, compared in constant time. A notification only wakes the
// tenant's collectors of that vendor; what they collect still comes from
// polling, which continues on its schedule regardless.
type Notification struct {
	// Type is "o365" (Office 365 Management Activity API webhook) or
	// "google" (Google Workspace Reports API watch channel).
	Type   string
	Tenant string
	// Secret is the O365 subscription's authId (Webhook-AuthID) or the
	// Google channel's token (X-Goog-Channel-Token).
	Secret string
	// Wake asks the collectors for a poll now.
	Wake func()
}

// notifyMaxBody bounds a notification body: O365 sends a list of content
// blobs, Google one activity; neither is stored.
const notifyMaxBody = 1 << 20

type notifier struct {
	byKey   map[string]*Notification
	limiter sync.Map // key → *rate.Limiter
	counts  *prometheus.CounterVec
}

// SetNotifications configures the vendor push endpoints; without any,
// every request to /api/v1/notify/ is answered 404 (deny by default).
func (s *Server) SetNotifications(ns []Notification) error {
	n := &notifier{byKey: map[string]*Notification{}, counts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_notifications_total", Help: "Vendor push notifications, by type (o365, google) and outcome (wake, validation, sync, denied, unknown).",
	}, []string{"type", "outcome"})}
	for i := range ns {
		x := &ns[i]
		if x.Type != "o365" && x.Type != "google" {
			return errors.New("notification type " + x.Type + ": want o365 or google")
		}
		if x.Secret == "" || x.Wake == nil {
			return errors.New("notification " + x.Type + "/" + x.Tenant + ": needs a secret and something to wake")
		}
		n.byKey[x.Type+"/"+x.Tenant] = x
	}
	if err := s.metrics.Register(n.counts); err != nil {
		return err
	}
	s.notify = n
	return nil
}

// sameSecret compares in constant time, lengths included (both sides are
// hashed first).
func sameSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1 && want != ""
}

func (s *Server) notifyHandler(w http.ResponseWriter, r *http.Request) {
	typ, tenant := r.PathValue("type"), r.PathValue("tenant")
	n := s.notify
	var x *Notification
	if n != nil {
		x = n.byKey[typ+"/"+tenant]
	}
	if x == nil {
		if n != nil && (typ == "o365" || typ == "google") {
			n.counts.WithLabelValues(typ, "unknown").Inc()
		}
		s.deny(w, r, http.StatusNotFound, "no notification endpoint configured here", "")
		return
	}
	// Unauthenticated until the secret is checked: bound the rate per endpoint.
	l, _ := n.limiter.LoadOrStore(typ+"/"+tenant, rate.NewLimiter(20, 100))
	if !l.(*rate.Limiter).Allow() {
		w.Header().Set("Retry-After", "1")
		s.deny(w, r, http.StatusTooManyRequests, "notification rate limit", "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, notifyMaxBody))
	if err != nil {
		s.deny(w, r, http.StatusRequestEntityTooLarge, "notification body too large", "")
		return
	}
	switch typ {
	case "o365":
		// The validation handshake when the subscription is started: it
		// carries a code, no authId; answering 200 is all it needs.
		if code := r.Header.Get("Webhook-ValidationCode"); code != "" {
			var v struct {
				ValidationCode string `json:"validationCode"`
			}
			if json.Unmarshal(body, &v) != nil || v.ValidationCode == "" {
				n.counts.WithLabelValues(typ, "denied").Inc()
				s.deny(w, r, http.StatusBadRequest, "validation request without a validationCode body", "")
				return
			}
			n.counts.WithLabelValues(typ, "validation").Inc()
			s.log.Info("O365 webhook validation answered", "tenant", tenant)
			w.WriteHeader(http.StatusOK)
			return
		}
		if !sameSecret(r.Header.Get("Webhook-AuthID"), x.Secret) {
			n.counts.WithLabelValues(typ, "denied").Inc()
			s.deny(w, r, http.StatusUnauthorized, "Webhook-AuthID does not match", "")
			return
		}
		var blobs []json.RawMessage
		if err := json.Unmarshal(body, &blobs); err != nil {
			n.counts.WithLabelValues(typ, "denied").Inc()
			s.deny(w, r, http.StatusBadRequest, "notification body is not a JSON array", "")
			return
		}
	case "google":
		if !sameSecret(r.Header.Get("X-Goog-Channel-Token"), x.Secret) {
			n.counts.WithLabelValues(typ, "denied").Inc()
			s.deny(w, r, http.StatusUnauthorized, "X-Goog-Channel-Token does not match", "")
			return
		}
		// The first message of a channel says it exists; nothing happened yet.
		if r.Header.Get("X-Goog-Resource-State") == "sync" {
			n.counts.WithLabelValues(typ, "sync").Inc()
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	n.counts.WithLabelValues(typ, "wake").Inc()
	x.Wake()
	w.WriteHeader(http.StatusOK)
}
