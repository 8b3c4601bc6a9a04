package incident

import (
	"sort"
	"strings"
	"time"
)

// ActorKind names what an actor identifier is.
type ActorKind string

// Actor kinds. Only identifiers that single out the suspicious party are
// attached to alerts: a first-party resource app id shared by every mail
// client is never an actor.
const (
	ActorToken     ActorKind = "token"
	ActorSession   ActorKind = "session"
	ActorIP        ActorKind = "ip"
	ActorApp       ActorKind = "app"
	ActorClientApp ActorKind = "client_app"
	ActorUser      ActorKind = "user"
)

// Actor is one identifier of whoever did what an alert describes.
type Actor struct {
	Kind  ActorKind `json:"kind"`
	Value string    `json:"value"`
}

func (a Actor) String() string { return string(a.Kind) + ":" + a.Value }

// Levels in increasing order, as Sigma spells them.
var levels = map[string]int{"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

// LevelRank orders levels; unknown levels rank as informational.
func LevelRank(level string) int { return levels[strings.ToLower(level)] }

// Alert is one detection, from a Sigma rule or a behaviour.
type Alert struct {
	Time      time.Time         `json:"time"`           // event time of the evidence
	Raised    time.Time         `json:"raised"`         // event time (watermark) at which the detector could say so
	Signal    string            `json:"signal"`         // behaviour id (D1..D11) or Sigma rule id
	Title     string            `json:"title"`          // one line a person can read
	Level     string            `json:"level"`          // informational, low, medium, high, critical
	Tags      []string          `json:"tags,omitempty"` // ATT&CK tags, "attack.t1114.002"
	Tenant    string            `json:"tenant,omitempty"`
	Source    string            `json:"source,omitempty"`
	Operation string            `json:"operation,omitempty"`
	User      string            `json:"user,omitempty"`
	Mailbox   string            `json:"mailbox,omitempty"`
	Actors    []Actor           `json:"actors,omitempty"`
	RecordIDs []string          `json:"record_ids,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"` // matched or explaining fields
	// Posture marks alerts about the logging itself (coverage gaps, audit
	// disabled): they enrich incidents but never make one.
	Posture bool `json:"posture,omitempty"`
}

// Key is a stable identity for sorting and de-duplication.
func (a *Alert) Key() string {
	return a.Time.UTC().Format(time.RFC3339Nano) + "|" + a.Signal + "|" + strings.Join(a.RecordIDs, ",") + "|" + a.Mailbox + "|" + a.Title
}

// SortAlerts orders alerts by time, then signal, then the rest of the key,
// so every consumer sees the same order for the same input.
func SortAlerts(as []Alert) {
	sort.SliceStable(as, func(i, j int) bool {
		if !as[i].Time.Equal(as[j].Time) {
			return as[i].Time.Before(as[j].Time)
		}
		return as[i].Key() < as[j].Key()
	})
}

// AddActor appends an actor unless the value is empty or already present.
func (a *Alert) AddActor(kind ActorKind, value string) {
	if value == "" {
		return
	}
	for _, x := range a.Actors {
		if x.Kind == kind && x.Value == value {
			return
		}
	}
	a.Actors = append(a.Actors, Actor{Kind: kind, Value: value})
}
