package behavior

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
)

// A mail log that arrives a day after the sign-in log (the unified audit
// log's documented latency) is judged against the sign-ins that issued
// its tokens, kept until the mail log has passed them: no routine read
// is taken for "no sign-in issued", and a forged-token read still is.
// One later than max_mail_lag is judged without them: D1 stays quiet
// and D9 says so once.
func TestMailLogArrivesLate(t *testing.T) {
	cases := []struct {
		name       string
		delay      int           // hours the reads arrive after the sign-ins
		maxMailLag time.Duration // the setting
		forgotten  bool          // beyond it
	}{
		{"mail log a day late", 24, 36 * time.Hour, false},
		{"mail log 30 h late", 30, 36 * time.Hour, false},
		{"mail log two days late, beyond max_mail_lag", 48, 36 * time.Hour, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.D1.MaxMailLag = Duration(c.maxMailLag)
			e := New(cfg, Options{Networks: nets(t)})
			// Every hour a sign-in; each read uses the token a sign-in
			// issued 20 hours before it (within token_lifetime).
			const age = 20
			hours := 10 * 24
			forgedAt := hours - 3*24
			read := func(r int) {
				at := t0.Add(time.Duration(r)*time.Hour + time.Minute)
				tok := fmt.Sprint("tok-", r-age)
				e.Process(access{at: at, user: users[0], client: outlook, ip: "198.18.0.10", ua: "Client=MSExchangeRPC",
					token: tok, session: "s-" + tok, id: fmt.Sprint("r-", r)}.event(t))
				if r == forgedAt {
					e.Process(access{at: at.Add(time.Minute), user: users[0], ip: "198.18.9.20", token: "forged", session: "forged-s", id: "forged"}.event(t))
				}
			}
			for h := range hours + c.delay {
				if h < hours {
					tok := fmt.Sprint("tok-", h)
					e.Process(signin{at: t0.Add(time.Duration(h) * time.Hour), user: users[0], ip: "198.18.0.10", asn: 7922, token: tok, session: "s-" + tok}.event(t))
				}
				if r := h - c.delay; r >= age {
					read(r)
				}
			}
			e.Flush()
			var routine, forged, notices []alert.Alert
			for _, a := range e.Alerts() {
				switch {
				case a.Signal == "D1" && a.RecordID() == "forged":
					forged = append(forged, a)
				case a.Signal == "D1":
					routine = append(routine, a)
				case a.Signal == "D9" && strings.Contains(a.Title, "judged without sign-in evidence"):
					notices = append(notices, a)
				}
			}
			if len(routine) > 0 {
				t.Errorf("%d routine reads taken for tokens no sign-in issued, first %s: %s", len(routine), routine[0].RecordID(), routine[0].Title)
			}
			if c.forgotten {
				if len(forged) != 0 {
					t.Errorf("the forged read judged by D1 without the sign-in evidence: %s", forged[0].Title)
				}
				if len(notices) != 1 {
					t.Fatalf("%d D9 notices that reads were judged without sign-in evidence, want 1", len(notices))
				}
				if want := fmt.Sprintf("Mail log arrives %d h after the sign-in log", c.delay); !strings.Contains(notices[0].Title, want) {
					t.Errorf("notice %q, want it to say %q", notices[0].Title, want)
				}
				return
			}
			if len(forged) != 1 || forged[0].Level != alert.High {
				t.Errorf("forged read: D1 %+v, want one high", forged)
			}
			if len(notices) != 0 {
				t.Errorf("a mail log within max_mail_lag noted as judged without sign-in evidence: %s", notices[0].Title)
			}
		})
	}
}
