package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server/ui"
)

// RuleSource is the journal source of rule switches (an admin disabling
// or enabling a rule in the web interface or the API): each switch is a
// journal entry, signed into the checkpoints like the logs, and detection
// applies it where it stands in the journal.
const RuleSource = "vigil.rules"

// Operations of rule switches as journaled.
const (
	opRuleDisabled = "RuleDisabled"
	opRuleEnabled  = "RuleEnabled"
)

// ruleRecord is a rule switch as journaled; its fields are those of the
// generic JSON decoder, so `source:vigil.rules` finds it in search.
type ruleRecord struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
	Operation string    `json:"operation"`
	User      string    `json:"user"`
	Rule      string    `json:"rule"`
	Reason    string    `json:"reason,omitempty"`
}

// RuleSwitches are the rules disabled as detection has read the journal:
// the watcher applies the journal's rule switches in journal order, and
// the pipeline asks Mute about every alert it raises. Safe for concurrent
// use (the pages read it while detection runs).
type RuleSwitches struct {
	mu         sync.RWMutex
	last       map[string]ui.RuleChange // the latest switch applied, per rule
	suppressed map[string]int           // alerts dropped, per rule
}

// NewRuleSwitches returns switches with every rule enabled.
func NewRuleSwitches() *RuleSwitches {
	return &RuleSwitches{last: map[string]ui.RuleChange{}, suppressed: map[string]int{}}
}

// Mute is detect.Config.Mute: true, and counted, for an alert of a
// disabled rule.
func (s *RuleSwitches) Mute(a *alert.Alert) bool {
	s.mu.RLock()
	ch, ok := s.last[a.Signal]
	s.mu.RUnlock()
	if !ok || ch.Enabled {
		return false
	}
	s.mu.Lock()
	s.suppressed[a.Signal]++
	s.mu.Unlock()
	return true
}

// State returns a rule's latest switch (ok false: never switched) and the
// alerts it raised while disabled.
func (s *RuleSwitches) State(id string) (ch ui.RuleChange, suppressed int, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ch, ok = s.last[id]
	return ch, s.suppressed[id], ok
}

func (s *RuleSwitches) apply(ch ui.RuleChange) {
	s.mu.Lock()
	s.last[ch.Rule] = ch
	s.mu.Unlock()
}

// Apply applies a journaled rule switch (the raw bytes of a vigil.rules
// entry at index) where it stands in p's input: what p holds in its
// reordering window is processed first, so the switch cuts the alerts
// exactly at its place. p may be nil (detection runs elsewhere: the
// switch is only shown).
func (s *RuleSwitches) Apply(p *detect.Pipeline, index uint64, raw []byte) (ui.RuleChange, error) {
	ch, err := parseRuleEntry(index, raw)
	if err != nil {
		return ch, err
	}
	if p != nil {
		p.Drain()
	}
	s.apply(ch)
	return ch, nil
}

// MarshalState is the switches as JSON, for a detection snapshot kept
// elsewhere (the cluster's).
func (s *RuleSwitches) MarshalState() ([]byte, error) { return json.Marshal(s.save()) }

// RestoreState sets the switches from MarshalState's bytes (nil or empty:
// every rule enabled).
func (s *RuleSwitches) RestoreState(b []byte) error {
	if len(b) == 0 {
		s.restore(nil)
		return nil
	}
	var st ruleSwitchState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("rule switches: %w", err)
	}
	s.restore(&st)
	return nil
}

// ruleSwitchState is what a detection snapshot keeps of the switches.
type ruleSwitchState struct {
	Last       []ui.RuleChange
	Suppressed map[string]int
}

func (s *RuleSwitches) save() *ruleSwitchState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := &ruleSwitchState{Suppressed: maps.Clone(s.suppressed)}
	for _, id := range slices.Sorted(maps.Keys(s.last)) {
		st.Last = append(st.Last, s.last[id])
	}
	return st
}

func (s *RuleSwitches) restore(st *ruleSwitchState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.suppressed = map[string]ui.RuleChange{}, map[string]int{}
	if st == nil {
		return
	}
	for _, ch := range st.Last {
		s.last[ch.Rule] = ch
	}
	maps.Copy(s.suppressed, st.Suppressed)
}

// parseRuleEntry reads a journaled rule switch.
func parseRuleEntry(index uint64, raw []byte) (ui.RuleChange, error) {
	var rec ruleRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return ui.RuleChange{}, fmt.Errorf("rule switch at journal entry %d: %w", index, err)
	}
	ch := ui.RuleChange{Rule: rec.Rule, Reason: rec.Reason, Actor: rec.User, At: rec.Time, Index: index, ID: rec.ID}
	switch rec.Operation {
	case opRuleEnabled:
		ch.Enabled = true
	case opRuleDisabled:
	default:
		return ch, fmt.Errorf("rule switch at journal entry %d: operation %q", index, rec.Operation)
	}
	if rec.Rule == "" {
		return ch, fmt.Errorf("rule switch at journal entry %d names no rule", index)
	}
	return ch, nil
}

// switchRule applies a journaled rule switch where it stands: the events
// of the entries before it are processed first (drained from the
// reordering window), so the switch cuts the alerts exactly at its place
// in the journal, the same at every replay.
func (w *Watcher) switchRule(p *detect.Pipeline, index uint64, raw []byte) {
	ch, err := w.rules.Apply(p, index, raw)
	if err != nil {
		// Written by this server; one that does not parse is counted.
		w.mu.Lock()
		w.undecoded++
		w.mu.Unlock()
		w.log.Warn("rule switch not applied", "index", index, "err", err)
		return
	}
	w.log.Info("rule switched", "rule", ch.Rule, "enabled", ch.Enabled, "actor", ch.Actor, "index", index)
}

// SetRule journals a rule switch; detection applies it when it reads the
// entry (the pages show it pending until then).
func (d *UIData) SetRule(ctx context.Context, ch *ui.RuleChange) error {
	w, err := d.watcher()
	if err != nil {
		return err
	}
	if d.o.Switches == nil {
		why := "the rules are fixed while this server runs"
		if d.o.FixedWhy != "" {
			why = d.o.FixedWhy
		}
		return fmt.Errorf("rule %q: %s: %w", ch.Rule, why, ui.ErrUnsupported)
	}
	i := slices.IndexFunc(d.o.Rules, func(r ui.Rule) bool { return r.ID == ch.Rule })
	if i < 0 {
		return fmt.Errorf("rule %q: %w", ch.Rule, ui.ErrNotFound)
	}
	if !d.o.Rules[i].Loaded {
		return fmt.Errorf("rule %q was refused at start (%s): there is nothing to switch: %w", ch.Rule, d.o.Rules[i].Refused, ui.ErrConflict)
	}
	if len(ch.Reason) > ui.MaxRuleReason {
		return fmt.Errorf("reason: at most %d bytes: %w", ui.MaxRuleReason, ui.ErrInvalid)
	}
	if ch.At.IsZero() {
		ch.At = time.Now().UTC()
	}
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	rec := ruleRecord{ID: hex.EncodeToString(idb[:]), Time: ch.At, Source: RuleSource, Operation: opRuleDisabled,
		User: ch.Actor, Rule: ch.Rule, Reason: ch.Reason}
	if ch.Enabled {
		rec.Operation = opRuleEnabled
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// The lock spans the check and the append: two admins switching the
	// same rule at once journal one switch, the other is told it is moot.
	d.mu.Lock()
	defer d.mu.Unlock()
	if on, _ := d.ruleTarget(w, ch.Rule); on == ch.Enabled {
		state := "enabled"
		if !on {
			state = "disabled"
		}
		return fmt.Errorf("rule %q is already %s: %w", ch.Rule, state, ui.ErrConflict)
	}
	acks, err := d.changeLog().AppendBatch(ctx, []journal.Entry{{Source: RuleSource, Origin: "vigil serve: rules", RecordID: rec.ID, Raw: raw}})
	if err != nil {
		return fmt.Errorf("journaling the rule switch: %w", err)
	}
	ch.Index, ch.ID = acks[0].Index, rec.ID
	d.pendingRules[ch.Rule] = *ch
	w.Wake()
	return nil
}

// ruleTarget is the state a rule is in or is about to be in (a switch
// journaled that detection has not read yet), with that switch. Call
// with d.mu held.
func (d *UIData) ruleTarget(w *Watcher, id string) (enabled bool, pending *ui.RuleChange) {
	if p, ok := d.pendingRules[id]; ok {
		applied, _, _ := d.o.Switches.State(id)
		// Through the cluster's stream the entry's place in the journal is
		// not known at once: it is applied when its switch is.
		if applied.ID != p.ID && (d.o.ChangeLog != nil || p.Index >= w.Offset()) {
			return p.Enabled, &p
		}
		delete(d.pendingRules, id)
	}
	ch, _, ok := d.o.Switches.State(id)
	return !ok || ch.Enabled, nil
}

// apiRule is a rule as GET /api/v1/rules lists it.
type apiRule struct {
	ID         string     `json:"id"`
	Title      string     `json:"title"`
	Kind       string     `json:"kind"`
	Level      string     `json:"level,omitempty"`
	Loaded     bool       `json:"loaded"`
	Refused    string     `json:"refused,omitempty"`
	Enabled    bool       `json:"enabled"`
	Hits       int        `json:"hits"`
	Suppressed int        `json:"suppressed"`
	Changed    *apiSwitch `json:"changed,omitempty"`
	Pending    *apiSwitch `json:"pending,omitempty"`
}

// apiSwitch is a rule switch as the API shows it.
type apiSwitch struct {
	Rule         string    `json:"rule"`
	Enabled      bool      `json:"enabled"`
	Actor        string    `json:"actor"`
	At           time.Time `json:"at"`
	Reason       string    `json:"reason,omitempty"`
	JournalIndex uint64    `json:"journal_index"`
}

func apiSwitchOf(c ui.RuleChange) *apiSwitch {
	return &apiSwitch{Rule: c.Rule, Enabled: c.Enabled, Actor: c.Actor, At: c.At, Reason: c.Reason, JournalIndex: c.Index}
}

// rulesAPI answers GET /api/v1/rules.
func (s *Server) rulesAPI(w http.ResponseWriter, r *http.Request) {
	if s.d.UI == nil {
		writeError(w, http.StatusServiceUnavailable, "the rules are not served by this server")
		return
	}
	rs, err := s.d.UI.Rules(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := make([]apiRule, 0, len(rs))
	for _, x := range rs {
		a := apiRule{ID: x.ID, Title: x.Title, Kind: x.Kind, Level: x.Level, Loaded: x.Loaded, Refused: x.Refused,
			Enabled: x.Enabled, Hits: x.Hits, Suppressed: x.Suppressed}
		if x.Change.Actor != "" || x.Change.Index > 0 {
			a.Changed = apiSwitchOf(x.Change)
		}
		if x.Pending != nil {
			a.Pending = apiSwitchOf(*x.Pending)
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": out})
}

// switchRuleAPI answers POST /api/v1/rules/{id}/disable and /enable, with
// an optional JSON body {"reason": "..."}.
func (s *Server) switchRuleAPI(enabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.d.UI == nil {
			writeError(w, http.StatusServiceUnavailable, "the rules are not served by this server")
			return
		}
		var body struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, "body: want nothing or {\"reason\": \"...\"}: "+err.Error())
			return
		}
		k, _ := keyOf(r)
		ch := ui.RuleChange{Rule: r.PathValue("id"), Enabled: enabled, Reason: strings.TrimSpace(body.Reason), Actor: k.Name, At: time.Now().UTC()}
		if err := s.d.UI.SetRule(r.Context(), &ch); err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, ui.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, ui.ErrConflict):
				code = http.StatusConflict
			case errors.Is(err, ui.ErrInvalid):
				code = http.StatusBadRequest
			case errors.Is(err, ui.ErrUnsupported):
				code = http.StatusNotImplemented
			case errors.Is(err, errNoViews):
				code = http.StatusServiceUnavailable
			}
			writeError(w, code, err.Error())
			return
		}
		s.log.Info("rule switched through the API", "rule", ch.Rule, "enabled", enabled, "key_id", k.ID)
		// Accepted: durable in the journal, in effect from where detection
		// reads it (GET /api/v1/rules shows it pending until then).
		writeJSON(w, http.StatusAccepted, apiSwitchOf(ch))
	}
}
