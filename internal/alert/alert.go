package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Level is a severity: critical and high mean act now, medium review,
// low and informational context.
type Level int

// Levels in increasing severity, as Sigma spells them.
const (
	Informational Level = iota
	Low
	Medium
	High
	Critical
)

var levelNames = []string{"informational", "low", "medium", "high", "critical"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return "unknown"
}

// ParseLevel parses a level name (case-insensitive; "info" is accepted).
func ParseLevel(s string) (Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "info" {
		return Informational, nil
	}
	for i, n := range levelNames {
		if n == s {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("unknown level %q (want one of %s)", s, strings.Join(levelNames, ", "))
}

// MustLevel parses a level already validated (settings files are checked
// when loaded); an unknown name is a programming error.
func MustLevel(s string) Level {
	l, err := ParseLevel(s)
	if err != nil {
		panic(err)
	}
	return l
}

// MarshalText writes the level's name.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level's name.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

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
	ActorUserAgent ActorKind = "user_agent"
	ActorUser      ActorKind = "user"
)

// Actor is one identifier of whoever did what an alert describes.
type Actor struct {
	Kind  ActorKind `json:"kind"`
	Value string    `json:"value"`
}

func (a Actor) String() string { return string(a.Kind) + ":" + a.Value }

// Alert is one detection, from a Sigma rule or correlation, a behaviour
// or an IOC match.
type Alert struct {
	Time      time.Time         `json:"time"`   // event time of the evidence
	Raised    time.Time         `json:"raised"` // event time (watermark) at which the detector could say so
	Signal    string            `json:"rule_id"`
	Title     string            `json:"title"` // one line a person can read
	Level     Level             `json:"level"`
	Tags      []string          `json:"tags"`             // ATT&CK tags, "attack.t1114.002"
	Author    string            `json:"author,omitempty"` // the rule's author, kept as the rule licence asks
	Tenant    string            `json:"tenant,omitempty"`
	Source    string            `json:"source"`
	Operation string            `json:"operation"`
	User      string            `json:"user"`
	Mailbox   string            `json:"mailbox,omitempty"`
	IP        string            `json:"ip,omitempty"` // the client address of the evidence
	Actors    []Actor           `json:"actors,omitempty"`
	RecordIDs []string          `json:"record_ids,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"` // matched or explaining fields
	// Correlation alerts name their group and how many events it counted.
	Group string `json:"group,omitempty"`
	Count int64  `json:"count,omitempty"`
	// File and Line say where the evidence was read (Sigma detections of
	// one record).
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Posture marks alerts about the logging itself (coverage gaps, audit
	// disabled): they enrich incidents but never make one.
	Posture bool `json:"posture,omitempty"`
}

// RecordID is the alert's last (most specific) record id, "" if none.
func (a *Alert) RecordID() string {
	if len(a.RecordIDs) == 0 {
		return ""
	}
	return a.RecordIDs[len(a.RecordIDs)-1]
}

// Key is a stable identity for sorting and de-duplication.
func (a *Alert) Key() string {
	k := a.Time.UTC().Format(time.RFC3339Nano) + "|" + a.Signal + "|" + strings.Join(a.RecordIDs, ",") + "|" + a.Mailbox + "|" + a.Title
	if a.Group != "" {
		k += "|" + a.Group
	}
	return k
}

// ID names the alert by its Key: 96 bits of its SHA-256, in hex. A
// replay raises the same alerts with the same ids, so the investigation
// index and the cluster's alert stream use it to store each once.
func (a *Alert) ID() string {
	h := sha256.Sum256([]byte(a.Key()))
	return hex.EncodeToString(h[:12])
}

// Sort orders alerts by time, then signal, then the rest of the key, so
// every consumer sees the same order for the same input.
func Sort(as []Alert) {
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

// Set records an explaining field unless the value is empty.
func (a *Alert) Set(name, value string) {
	if value == "" {
		return
	}
	if a.Fields == nil {
		a.Fields = map[string]string{}
	}
	a.Fields[name] = value
}

// FieldNames returns the names of the alert's fields, sorted.
func (a *Alert) FieldNames() []string {
	out := make([]string, 0, len(a.Fields))
	for k := range a.Fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
