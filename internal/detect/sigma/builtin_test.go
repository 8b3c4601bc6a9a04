package sigma

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/rules"
)

func loadBuiltin(t testing.TB) *Ruleset {
	t.Helper()
	rs, ref, err := Load(rules.FS, Options{}, rules.Dirs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ref {
		t.Errorf("built-in rule refused: %s: %s", r.File, r.Reason)
	}
	return rs
}

func TestBuiltinRulesLoad(t *testing.T) {
	rs := loadBuiltin(t)
	vigil := 0
	for _, r := range rs.Rules() {
		if r.Author == "" {
			t.Errorf("%s: no author (DRL 1.1 and our own rules keep one)", r.File)
		}
		if strings.HasPrefix(r.File, "vigil/") {
			vigil++
			if r.Author != "vigil" {
				t.Errorf("%s: author %q", r.File, r.Author)
			}
		}
		if r.Correlation == "" && len(r.Sources) == 0 {
			t.Errorf("%s: routes to no source", r.File)
		}
	}
	if vigil < 10 {
		t.Errorf("only %d vigil rules", vigil)
	}
}

// ualAdmin is an Exchange admin-cmdlet UAL record with Parameters.
func ualAdmin(t testing.TB, op string, params map[string]string) *event.Event {
	var ps []string
	for k, v := range params {
		ps = append(ps, fmt.Sprintf(`{"Name":%q,"Value":%q}`, k, v))
	}
	e := mkEvent(t, "m365.ual", fmt.Sprintf(`{"CreationTime":"2023-06-15T03:12:44","RecordType":1,"Workload":"Exchange","Operation":%q,"ResultStatus":"True","UserId":"eve@contoso.com","Parameters":[%s]}`, op, strings.Join(ps, ",")))
	e.Operation = op
	e.Normalize()
	return e
}

func fired(rs *Ruleset, e *event.Event) []string {
	var out []string
	rs.Match(e, func(d Detection) { out = append(out, d.Title) })
	return out
}

func TestVigilRules(t *testing.T) {
	rs := loadBuiltin(t)
	mia := func(throttled string) *event.Event {
		e := mkEvent(t, "m365.ual", `{"RecordType":50,"Workload":"Exchange","Operation":"MailItemsAccessed","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"`+throttled+`"}]}`)
		e.Operation = "MailItemsAccessed"
		e.Normalize()
		return e
	}
	cases := []struct {
		title string
		pos   *event.Event
		neg   *event.Event
	}{
		{"Inbox Rule Forwards Or Redirects Mail",
			ualAdmin(t, "New-InboxRule", map[string]string{"Name": "x", "ForwardTo": "eve@evil.example"}),
			ualAdmin(t, "New-InboxRule", map[string]string{"Name": "x", "MoveToFolder": "Archive"})},
		{"Mailbox Forwarding To SMTP Address Set",
			ualAdmin(t, "Set-Mailbox", map[string]string{"Identity": "alice", "ForwardingSmtpAddress": "smtp:eve@evil.example"}),
			ualAdmin(t, "Set-Mailbox", map[string]string{"Identity": "alice", "ForwardingSmtpAddress": ""})},
		{"Full Access Granted On A Mailbox",
			ualAdmin(t, "Add-MailboxPermission", map[string]string{"Identity": "ceo", "User": "eve", "AccessRights": "FullAccess"}),
			ualAdmin(t, "Add-MailboxPermission", map[string]string{"Identity": "ceo", "User": "eve", "AccessRights": "ReadPermission"})},
		{"Mail Access Throttled (Bulk Mail Read)", mia("True"), mia("False")},
		{"Consent Granted To An Application",
			mkEvent(t, "entra.audit", `{"activityDisplayName":"Consent to application","result":"success"}`),
			mkEvent(t, "entra.audit", `{"activityDisplayName":"Add application","result":"success"}`)},
		{"Credentials Added To An Application Or Service Principal",
			mkEvent(t, "entra.audit", `{"activityDisplayName":"Add service principal credentials"}`),
			mkEvent(t, "entra.audit", `{"activityDisplayName":"Remove service principal credentials"}`)},
		// Sentinel AuditLogs row as recorded in the OTRF Golden SAML dataset
		// (trailing space included).
		{"Credentials Added To An Application Or Service Principal",
			mkEvent(t, "entra.audit", `{"OperationName":"Update application – Certificates and secrets management ","Category":"ApplicationManagement"}`),
			mkEvent(t, "entra.audit", `{"OperationName":"Update application","Category":"ApplicationManagement"}`)},
	}
	for _, c := range cases {
		if got := fired(rs, c.pos); !containsStr(got, c.title) {
			t.Errorf("%s: positive event fired %v", c.title, got)
		}
		if got := fired(rs, c.neg); containsStr(got, c.title) {
			t.Errorf("%s: negative event fired", c.title)
		}
	}
}

func TestVigilCorrelations(t *testing.T) {
	rs := loadBuiltin(t)
	var got []string
	emit := func(d Detection) { got = append(got, d.Title) }
	// Spray: 12 users fail from one IP within an hour.
	for i := 0; i < 12; i++ {
		rs.Match(signin(t, fmt.Sprintf("u%d@x", i), "203.0.113.9", 50126, time.Duration(i)*time.Minute), emit)
	}
	// Brute force on one user, then success.
	for i := 0; i < 5; i++ {
		rs.Match(signin(t, "ceo@x", "198.51.100.1", 50126, 20*time.Minute+time.Duration(i)*time.Minute), emit)
	}
	rs.Match(signin(t, "ceo@x", "198.51.100.1", 0, 40*time.Minute), emit)
	rs.Match(signin(t, "other@x", "198.51.100.1", 0, 41*time.Minute), emit)
	rs.Flush(emit)
	if count(got, "Password Spray From One Address") != 1 {
		t.Errorf("spray: %v", got)
	}
	if count(got, "Successful Sign-in After Repeated Failures") != 1 {
		t.Errorf("brute force then success: %v", got)
	}
	for _, noisy := range []string{"Sign-in Failed With A Bad Password", "Successful Sign-in", "Repeated Failed Sign-ins For One User"} {
		if count(got, noisy) != 0 {
			t.Errorf("%s emitted standalone", noisy)
		}
	}
}
