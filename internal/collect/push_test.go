package collect_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/gws"
	"github.com/vigil-audit/vigil/internal/collect/o365"
)

const (
	hookAddress = "https://vigil.example.com/api/v1/notify/o365/contoso"
	hookAuthID  = "authid-5f2b8c1e9a7d4e6f"
	watchAddr   = "https://vigil.example.com/api/v1/notify/google/contoso"
	watchToken  = "token-0c9e3a7b2d6f4a18"
)

// The Management API subscription gets vigil's webhook on the first poll;
// when the API disables it (failed deliveries) the next subscription check
// re-enables it with one start request, no gap recorded (the subscription
// itself stayed on), and no start comes sooner than 15 minutes after the
// last. The authId never appears in the logs.
func TestO365WebhookKeptEnabled(t *testing.T) {
	e := newEnv(t, 11, false)
	w := publishUAL(e.srv, rand.New(rand.NewPCG(3, 4)), []string{"Audit.Exchange"}, 2)
	cs := newO365(t, e, []string{"audit.exchange"}, nil)
	src := cs[0].Source().(*o365.Source)
	src.SetWebhook(&o365.Webhook{Address: hookAddress, AuthID: hookAuthID})
	if err := cs[0].Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := e.srv.Hook("Audit.Exchange")
	if h == nil || h.Address != hookAddress || h.AuthID != hookAuthID || h.Status != "enabled" {
		t.Fatalf("after the first poll the webhook is %+v, want enabled at %s", h, hookAddress)
	}
	starts := h.Starts
	// Polls within the hour change nothing.
	for range 3 {
		e.clock.Advance(5 * time.Minute)
		if err := cs[0].Once(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if h := e.srv.Hook("Audit.Exchange"); h.Starts != starts {
		t.Fatalf("%d start requests for a webhook already in place, want none", h.Starts-starts)
	}
	e.srv.DisableHook("Audit.Exchange")
	e.clock.Advance(16 * time.Minute)
	if err := cs[0].Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h := e.srv.Hook("Audit.Exchange"); h.Status != "enabled" || h.Starts != starts+1 {
		t.Fatalf("after the API disabled it: %+v, want enabled again by one start", h)
	}
	runDays(t, e, cs, 2, time.Hour)
	checkUAL(t, e, w, cs)
	if n := cs[0].Status().GapReasons[collect.GapSubscription]; n != 0 {
		t.Errorf("%d subscription gaps recorded for webhook changes; the subscription never stopped", n)
	}
	if v := e.srv.Stats().Violations; len(v) > 0 {
		t.Errorf("API rules broken: %v", v)
	}
	if strings.Contains(e.logs.String(), hookAuthID) {
		t.Error("the webhook's authId appears in the logs")
	}
}

// A Workspace watch channel is opened on the first poll, kept while it has
// more than an hour left, and replaced before it expires: at every moment
// of four simulated days exactly one live channel points at vigil, and
// every replaced one was stopped. The token is neither logged nor kept in
// the collector's state.
func TestGoogleWatchRenewed(t *testing.T) {
	e := newEnv(t, 12, false)
	w := publishGWS(e.srv, rand.New(rand.NewPCG(7, 8)), []string{"login"}, 4)
	cs := newGWS(t, e, []string{"login"}, nil)
	src := cs[0].Source().(*gws.Source)
	src.SetWatch(&gws.Watch{Address: watchAddr, Token: watchToken})
	stop := t0.Add(4 * 24 * time.Hour)
	for e.clock.Now().Before(stop) {
		if err := cs[0].Once(t.Context()); err != nil && collect.IsPermanent(err) {
			t.Fatal(err)
		}
		live := e.srv.Channels("login")
		if len(live) != 1 {
			t.Fatalf("at %s: %d live watch channels, want 1", e.clock.Now().Format(time.RFC3339), len(live))
		}
		if c := live[0]; c.Address != watchAddr || c.Token != watchToken {
			t.Fatalf("channel %+v does not point at vigil with its token", c)
		}
		if left := live[0].Expiration.Sub(e.clock.Now()); left < 30*time.Minute {
			t.Fatalf("at %s the channel has only %s left", e.clock.Now().Format(time.RFC3339), left)
		}
		e.clock.Advance(20 * time.Minute)
	}
	all := e.srv.AllChannels()
	if len(all) < 4*24/6 {
		t.Fatalf("%d channels over four days of 6-hour channels: not renewed", len(all))
	}
	for _, c := range all[:len(all)-1] {
		if !c.Stopped {
			t.Errorf("replaced channel %s was not stopped", c.ID)
		}
	}
	checkItems(t, e, w, gwsKey, cs)
	if strings.Contains(e.logs.String(), watchToken) {
		t.Error("the channel token appears in the logs")
	}
	for _, k := range []string{"channel_id", "channel_resource", "channel_expires", "channel_address", "channel_token"} {
		if v := cs[0].Extra(k); v == "" || strings.Contains(v, watchToken) {
			t.Errorf("state %s = %q: missing, or holds the channel token", k, v)
		}
	}
}
