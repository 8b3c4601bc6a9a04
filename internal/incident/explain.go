package incident

import (
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-audit/vigil/internal/alert"
)

// Reason is one signal of an incident in words: what it saw, what that
// means and what would make it benign.
type Reason struct {
	Signal   string      `json:"signal"`
	Level    alert.Level `json:"level"`
	Evidence string      `json:"evidence"` // the strongest alert's title
	Count    int         `json:"count"`    // alerts of this signal
	Counts   bool        `json:"counts"`   // counted towards the incident
	Means    string      `json:"means"`
	Benign   string      `json:"benign"`
	Points   int         `json:"points"`
}

type meaning struct{ means, benign string }

// meanings say what each behaviour's alert means and what would explain
// it innocently; a responder reads them to weigh an incident.
var meanings = map[string]meaning{
	"D1": {"mail was read with a token or session that no sign-in in the logs issued, from somewhere unfamiliar: a forged or stolen token",
		"a sign-in the exported logs do not hold (a gap in the sign-in export), or a token refreshed on the user's own device from a new network"},
	"D2": {"an application never seen reading mail in this tenant or mailbox did so",
		"a client roll-out or an app the organisation approved: check its consent and who uses it"},
	"D3": {"read volume far above the mailbox's baseline, one app reading many mailboxes, or throttling",
		"a migration, backup, e-discovery search or an approved integration"},
	"D4": {"mail was read from a network none of the user's sign-ins came from, or from a hosting, VPN or spraying address",
		"travel, a new VPN or SASE egress, a cloud PC: the user's own sign-ins from that network would show it"},
	"D5": {"a token or key anomaly vigil checks for forgery", "a key rotation the key audit does not know yet"},
	"D7": {"a script-style client (Python, curl, PowerShell) new to the mailbox read it",
		"an admin's or an integration's script run with the mailbox owner's knowledge"},
	"D8": {"mail was read right after a search for sensitive terms by the same party", "the owner searching their own mail"},
	"D9": {"the audit evidence has a gap or logging was weakened, so more may have happened than the logs show",
		"an export gap or a planned change to audit settings"},
	"D11": {"an indicator of compromise from a published report matched", "an indicator outside its published window or reused infrastructure"},
}

// Means says what a behaviour's alert suggests ("" for an unknown signal).
func Means(signal string) string { return meanings[signal].means }

// signalPoints weighs a counting alert by signal and level.
func signalPoints(sig string, lv alert.Level) int {
	base := map[string]int{"D1": 40, "D5": 40, "D2": 20, "D4": 20, "D7": 15, "D3": 10, "D8": 10, "D11": 25}[sig]
	if base == 0 {
		base = 15 // a Sigma rule that counts
	}
	switch lv {
	case alert.Critical:
		base += 15
	case alert.High:
		base += 5
	}
	return base
}

// explain scores an incident and puts its signals into words.
func explain(cfg Config, inc *Incident) {
	bySig := map[string]*Reason{}
	for i := range inc.Alerts {
		a := &inc.Alerts[i]
		r := bySig[a.Signal]
		if r == nil {
			r = &Reason{Signal: a.Signal, Level: a.Level, Evidence: a.Title}
			if m, ok := meanings[a.Signal]; ok {
				r.Means, r.Benign = m.means, m.benign
			} else {
				r.Means = "the detection rule \"" + a.Title + "\" matched"
				r.Benign = "what the rule's own false-positive notes list"
			}
			bySig[a.Signal] = r
		}
		r.Count++
		if a.Level > r.Level {
			r.Level, r.Evidence = a.Level, a.Title
		}
		if cfg.counts(a) {
			r.Counts = true
		}
	}
	score, counting := 0, 0
	for _, r := range bySig {
		if r.Counts {
			r.Points = signalPoints(r.Signal, r.Level)
			counting++
		} else {
			r.Points = 3 // context only
		}
		score += r.Points
		inc.Reasons = append(inc.Reasons, *r)
	}
	sort.Slice(inc.Reasons, func(i, j int) bool {
		a, b := inc.Reasons[i], inc.Reasons[j]
		if a.Points != b.Points {
			return a.Points > b.Points
		}
		return a.Signal < b.Signal
	})
	if counting >= 2 {
		score += 10 * (counting - 1)
	}
	inc.Score = min(score, 100)
	var shared []string
	for _, l := range []struct {
		n    string
		vals []string
	}{{"token", inc.Actors.Tokens}, {"session", inc.Actors.Sessions}, {"address", inc.Actors.IPs}, {"app", inc.Actors.Apps}, {"client app", inc.Actors.ClientApps}} {
		if len(l.vals) > 0 {
			shared = append(shared, strconv.Itoa(len(l.vals))+" "+plural(l.n, len(l.vals)))
		}
	}
	who := "the same actor"
	if len(shared) > 0 {
		who += " (" + strings.Join(shared, ", ") + ")"
	}
	switch {
	case counting >= 2:
		inc.Confidence = strconv.Itoa(counting) + " independent signals point at " + who + ". Each has an innocent explanation on its own; for all of them to be innocent at once, every one of those explanations must hold for the same accesses."
	case counting == 1:
		inc.Confidence = "One high-fidelity signal about " + who + ", which makes an incident on its own. It is benign only if its innocent explanation holds; check that first."
	default:
		inc.Confidence = "No signal counts on its own; the incident is context for review."
	}
	inc.Confidence += " Severity " + inc.Severity.String() + ": " + severityMeaning(inc.Severity) + "."
}

func severityMeaning(l alert.Level) string {
	switch l {
	case alert.Critical, alert.High:
		return "act now"
	case alert.Medium:
		return "review"
	}
	return "context"
}

func plural(noun string, n int) string {
	switch {
	case n == 1:
		return noun
	case strings.HasSuffix(noun, "s"):
		return noun + "es"
	}
	return noun + "s"
}
