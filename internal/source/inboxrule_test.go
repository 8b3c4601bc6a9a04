package source

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/inboxrule"
)

// copyWithTime copies a file into a temporary directory and sets its
// modification time, the time its snapshot records are observed at.
func copyWithTime(t *testing.T, src string, mtime time.Time) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dst, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return dst
}

func byRule(evs []*event.Event) map[string]*event.Event {
	m := map[string]*event.Event{}
	for _, e := range evs {
		name := e.Get("RuleName")
		if name == "" {
			name = e.Get("Name")
		}
		m[e.User+"/"+name] = e
	}
	return m
}

func values(e *event.Event, name string) []string {
	var out []string
	for _, f := range e.Values(event.Intern(name)) {
		out = append(out, f.Value)
	}
	return out
}

func TestInboxRulesJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 14, 5, 0, 0, time.UTC)
	path := copyWithTime(t, "testdata/inbox_rules.json", at)
	evs, st, rej := readAll(t, []string{path}, Options{})
	if len(evs) != 3 || st.Sources[inboxrule.Source] != 3 {
		t.Fatalf("%d events, sources %v, rejects %v", len(evs), st.Sources, rej)
	}
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "inbox rule snapshot: inbox rule without a mailbox owner") {
		t.Fatalf("the rule without an owner should be quarantined with its reason, got %v", rej)
	}
	for _, e := range evs {
		if !e.Time.Equal(at) || e.Operation != "Get-InboxRule" || e.RecordID != "" || e.Mailbox != e.User {
			t.Errorf("%s: time %v operation %q record id %q mailbox %q", e.User, e.Time, e.Operation, e.RecordID, e.Mailbox)
		}
	}
	rules := byRule(evs)
	cases := []struct {
		key               string
		external, folders []string
	}{
		{"dana@contoso.example/Invoices", []string{"pay.desk@fabrikam.example"}, nil},
		// The owner is a display name: every SMTP address would count as
		// external; this rule has none.
		{"frank miller/.", nil, []string{"RSS Subscriptions"}},
		{"grace@contoso.example/Newsletters", []string{"grace.private@mail.example"}, []string{".."}},
	}
	for _, c := range cases {
		e := rules[c.key]
		if e == nil {
			t.Errorf("no event for rule %s (have %v)", c.key, keys(rules))
			continue
		}
		if got := values(e, inboxrule.FieldExternalRecipients); !reflect.DeepEqual(got, c.external) {
			t.Errorf("%s: ExternalRecipients %q, want %q", c.key, got, c.external)
		}
		if got := values(e, inboxrule.FieldTargetFolders); !reflect.DeepEqual(got, c.folders) {
			t.Errorf("%s: TargetFolders %q, want %q", c.key, got, c.folders)
		}
	}
	if got := rules["frank miller/."].Get("RuleIdentity"); got != "2984999251357990913" {
		t.Errorf("RuleIdentity %q", got)
	}
}

func keys(m map[string]*event.Event) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The real Get-InboxRule export of a lab tenant (Microsoft-Extractor-Suite
// CSV) decodes rule by rule.
func TestInboxRulesRealCSV(t *testing.T) {
	at := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	path := copyWithTime(t, filepath.Join(sharedData(t), "invictus-microsoft-extractor-suite", "MailboxRules.csv"), at)
	evs, st, rej := readAll(t, []string{path}, Options{})
	if len(evs) != 110 || st.Records != 110 || len(rej) != 0 || st.Sources[inboxrule.Source] != 110 {
		t.Fatalf("%d events of %d records, sources %v, rejects %v", len(evs), st.Records, st.Sources, rej)
	}
	rules := byRule(evs)
	cases := []struct {
		key      string
		external []string
		folders  []string
		del      string
	}{
		{"jacksone@bonacu.onmicrosoft.com/forward", []string{"Law1234567890@protonmail.com"}, nil, "True"},
		// One directory recipient (internal) and one outside address.
		{"richardd16@bonacu.onmicrosoft.com/Forward Invoices", []string{"richardd16@bauscn.com"}, nil, "False"},
		{"davism@bonacu.onmicrosoft.com/pay slip", []string{"marydavis@gmail.com"}, nil, "False"},
		// Forwarding inside the owner's domain is not external.
		{"garciad@bonacu.onmicrosoft.com/IT invoices", nil, nil, "False"},
		{"garciad@bonacu.onmicrosoft.com/United Airlines", nil, []string{"travel"}, "False"},
		{"garciad@bonacu.onmicrosoft.com/发", nil, nil, "True"},
	}
	for _, c := range cases {
		e := rules[c.key]
		if e == nil {
			t.Errorf("no event for rule %s", c.key)
			continue
		}
		if !e.Time.Equal(at) || e.User != strings.SplitN(c.key, "/", 2)[0] {
			t.Errorf("%s: time %v user %q", c.key, e.Time, e.User)
		}
		if got := values(e, inboxrule.FieldExternalRecipients); !reflect.DeepEqual(got, c.external) {
			t.Errorf("%s: ExternalRecipients %q, want %q", c.key, got, c.external)
		}
		if got := values(e, inboxrule.FieldTargetFolders); !reflect.DeepEqual(got, c.folders) {
			t.Errorf("%s: TargetFolders %q, want %q", c.key, got, c.folders)
		}
		if got := e.Get("DeleteMessage"); got != c.del {
			t.Errorf("%s: DeleteMessage %q, want %q", c.key, got, c.del)
		}
	}
}

// A snapshot record decoded on its own (from the journal) takes the time
// it is given; it carries none.
func TestInboxRuleObservedTime(t *testing.T) {
	raw := []byte(`{"UserName":"a@contoso.example","RuleName":"r","ForwardTo":null,"MoveToFolder":"x","DeleteMessage":false}`)
	d := NewDecoder(nil, nil)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d.SetObserved(at)
	evs, err := d.Decode(raw, event.Origin{File: "journal:x"})
	if err != nil || len(evs) != 1 || !evs[0].Time.Equal(at) || evs[0].Source != inboxrule.Source {
		t.Fatalf("%v %v", evs, err)
	}
}
