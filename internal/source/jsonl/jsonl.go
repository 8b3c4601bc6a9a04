// Package jsonl decodes generic JSON records — any JSON lines a tool or
// appliance writes — into vigil events, by a field mapping the user
// supplies (or, without one, by common field names for the time).
package jsonl

import (
	"fmt"
	"os"
	"strings"

	"github.com/valyala/fastjson"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Source is the default event source of generic records.
const Source = "json"

// Mapping says which record field (a dotted path) fills each normalized
// field. Unset entries stay empty; the original fields are always kept.
type Mapping struct {
	Source      string `yaml:"source"` // event source to report, default "json"
	Time        string `yaml:"time"`   // required
	Tenant      string `yaml:"tenant"`
	Operation   string `yaml:"operation"`
	Result      string `yaml:"result"`
	User        string `yaml:"user"`
	AppID       string `yaml:"app_id"`
	ClientAppID string `yaml:"client_app_id"`
	IP          string `yaml:"ip"`
	UserAgent   string `yaml:"user_agent"`
	SessionID   string `yaml:"session_id"`
	TokenID     string `yaml:"token_id"`
	Mailbox     string `yaml:"mailbox"`
	MessageIDs  string `yaml:"message_ids"`
	RecordID    string `yaml:"record_id"`
	// Force applies the mapping to every record, even ones that look like
	// a supported vendor format.
	Force bool `yaml:"force"`
}

// LoadMapping reads a YAML mapping file; unknown keys are an error.
func LoadMapping(path string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var m Mapping
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	if m.Time == "" {
		return nil, fmt.Errorf("mapping %s: the time field is required", path)
	}
	if m.Source == "" {
		m.Source = Source
	}
	return &m, nil
}

// guessTime lists the time fields tried without a mapping.
var guessTime = []string{"time", "timestamp", "@timestamp", "Timestamp", "TimeGenerated", "eventTime", "createdDateTime", "CreationTime", "ts", "date"}

func get(v *fastjson.Value, path string) string {
	if path == "" {
		return ""
	}
	return record.Str(v, strings.Split(path, ".")...)
}

// Flatten adds v's fields to b.
func Flatten(b *event.Builder, v *fastjson.Value, _ int) { b.Flatten("", v) }

// Decode fills e's normalized fields from v by m (nil: guess the time
// only); the source fields come from Flatten.
func Decode(v *fastjson.Value, m *Mapping, e *event.Event) error {
	if v.Type() != fastjson.TypeObject {
		return fmt.Errorf("record is a JSON %s, not an object", v.Type())
	}
	if m == nil {
		t, _, err := record.TimeOf(v, guessTime...)
		if err != nil {
			return fmt.Errorf("unrecognized record format and %w; supply a field mapping (--mapping)", err)
		}
		e.Time = t
		selfDescribed(v, e)
		return nil
	}
	t, _, err := record.TimeOf(v, m.Time)
	if err != nil {
		return err
	}
	e.Time = t
	e.Source = m.Source
	e.Tenant = get(v, m.Tenant)
	e.Operation = get(v, m.Operation)
	e.Result = get(v, m.Result)
	e.User = strings.ToLower(get(v, m.User))
	e.AppID = get(v, m.AppID)
	e.ClientAppID = get(v, m.ClientAppID)
	e.IP = record.IP(get(v, m.IP))
	e.UserAgent = get(v, m.UserAgent)
	e.SessionID = get(v, m.SessionID)
	e.TokenID = get(v, m.TokenID)
	e.Mailbox = strings.ToLower(get(v, m.Mailbox))
	if m.MessageIDs != "" {
		e.MessageIDs = record.Strings(v, strings.Split(m.MessageIDs, ".")...)
		e.ItemCount = len(e.MessageIDs)
	}
	e.RecordID = get(v, m.RecordID)
	return nil
}

// selfDescribed fills e from vigil's own normalized names, when a record
// uses them (vigil's token audit events do): source, operation, result,
// tenant, user, app_id, client_app_id, client_ip (or src_ip), user_agent,
// session_id, token_id, mailbox and id (or record_id).
func selfDescribed(v *fastjson.Value, e *event.Event) {
	e.Source = record.Str(v, "source")
	if e.Source == "" {
		e.Source = Source
	}
	e.Operation = record.Str(v, "operation")
	e.Result = record.Str(v, "result")
	e.Failed = strings.EqualFold(e.Result, "failure") || strings.EqualFold(e.Result, "failed")
	e.Tenant = record.Str(v, "tenant")
	e.User = strings.ToLower(record.Str(v, "user"))
	e.AppID = record.Str(v, "app_id")
	e.ClientAppID = record.Str(v, "client_app_id")
	e.IP = record.IP(record.First(v, "client_ip", "src_ip"))
	e.UserAgent = record.Str(v, "user_agent")
	e.SessionID = record.Str(v, "session_id")
	e.TokenID = record.Str(v, "token_id")
	e.Mailbox = strings.ToLower(record.Str(v, "mailbox"))
	e.RecordID = record.First(v, "id", "record_id")
}
