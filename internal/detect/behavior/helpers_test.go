package behavior

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC) // a Monday

const tenantID = "11111111-2222-3333-4444-555555555555"

func build(t testing.TB, rec map[string]any) *event.Event {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	bl := event.NewBuilder()
	bl.Flatten("", v)
	e := &event.Event{}
	bl.Finish(e)
	e.Raw = b
	return e
}

// access describes a MailItemsAccessed record.
type access struct {
	at              time.Time
	user, mailbox   string
	app, client     string
	ip, ua          string
	token, session  string
	folder          string
	msgs            []string
	sync, throttled bool
	opCount         int
	id              string
}

func (a access) event(t testing.TB) *event.Event {
	if a.app == "" {
		a.app = "00000002-0000-0ff1-ce00-000000000000"
	}
	if a.mailbox == "" {
		a.mailbox = a.user
	}
	if a.folder == "" {
		a.folder = `\Inbox`
	}
	mode := "Bind"
	if a.sync {
		mode = "Sync"
	}
	items := []map[string]any{}
	for _, m := range a.msgs {
		items = append(items, map[string]any{"InternetMessageId": m})
	}
	folder := map[string]any{"Path": a.folder}
	if !a.sync {
		folder["FolderItems"] = items
	}
	n := a.opCount
	if n == 0 {
		n = len(a.msgs)
	}
	rec := map[string]any{
		"CreationTime": a.at.Format("2006-01-02T15:04:05"), "Id": a.id, "Operation": "MailItemsAccessed",
		"OrganizationId": tenantID, "UserId": a.user, "MailboxOwnerUPN": a.mailbox, "AppId": a.app,
		"ClientAppId": a.client, "ClientIPAddress": a.ip, "ClientInfoString": a.ua, "SessionId": a.session,
		"AppAccessContext":    map[string]any{"AADSessionId": a.session, "UniqueTokenId": a.token},
		"OperationProperties": []map[string]any{{"Name": "MailAccessType", "Value": mode}, {"Name": "IsThrottled", "Value": fmt.Sprint(a.throttled)}},
		"OperationCount":      n, "Folders": []any{folder},
	}
	e := build(t, rec)
	e.Time, e.Tenant, e.Source, e.Operation = a.at, tenantID, "m365.ual", "MailItemsAccessed"
	e.User, e.Mailbox, e.AppID, e.ClientAppID, e.IP, e.UserAgent = a.user, a.mailbox, a.app, a.client, a.ip, a.ua
	e.SessionID, e.TokenID, e.RecordID, e.ItemCount = a.session, a.token, a.id, n
	e.Folders = []string{a.folder}
	e.MessageIDs = a.msgs
	e.Normalize()
	return e
}

type signin struct {
	at             time.Time
	user, ip       string
	asn            uint32
	token, session string
	failed         bool
	nonInteractive bool // from the non-interactive sign-ins list
}

func (s signin) event(t testing.TB) *event.Event {
	rec := map[string]any{"createdDateTime": s.at.Format(time.RFC3339), "userPrincipalName": s.user, "ipAddress": s.ip,
		"uniqueTokenIdentifier": s.token, "sessionId": s.session, "tenantId": tenantID}
	if s.nonInteractive {
		rec["isInteractive"] = false
	}
	e := build(t, rec)
	e.Time, e.Tenant, e.Source, e.Operation = s.at, tenantID, "entra.signin", "Sign-in activity"
	e.User, e.IP, e.ASN, e.TokenID, e.SessionID, e.Failed = s.user, s.ip, s.asn, s.token, s.session, s.failed
	e.Normalize()
	return e
}

func ualOp(t testing.TB, at time.Time, op, user string, extra map[string]any) *event.Event {
	rec := map[string]any{"CreationTime": at.Format("2006-01-02T15:04:05"), "Operation": op, "UserId": user, "OrganizationId": tenantID, "Id": fmt.Sprintf("%s-%d", op, at.Unix())}
	for k, v := range extra {
		rec[k] = v
	}
	e := build(t, rec)
	e.Time, e.Tenant, e.Source, e.Operation, e.User, e.RecordID = at, tenantID, "m365.ual", op, user, rec["Id"].(string)
	if ip, ok := extra["ClientIP"].(string); ok {
		e.IP = ip
	}
	e.Normalize()
	return e
}

// nets is a small network table for the tests.
func nets(t testing.TB) Networks {
	tab, err := LoadNetTable(stringsReader("prefix,asn,as_org,country,city,kind\n" +
		"198.18.0.0/24,7922,Comcast,US,Philadelphia,isp\n" +
		"198.18.1.0/24,3320,Deutsche Telekom,DE,Berlin,isp\n" +
		"198.18.9.0/24,16276,OVH SAS,FR,Roubaix,hosting\n" +
		"198.18.11.0/24,14061,DigitalOcean,US,New York,hosting\n" +
		"198.18.10.0/24,64500,Contoso,US,New York,corporate\n" +
		"198.18.12.0/24,53813,Zscaler,US,San Jose,vpn\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// baseline feeds `days` days of ordinary activity for users: a sign-in
// each morning from the user's home address and reads with that token.
func baseline(t testing.TB, e *Engine, users []string, days int) time.Time {
	at := t0
	for d := 0; d < days; d++ {
		for i, u := range users {
			day := t0.Add(time.Duration(d) * 24 * time.Hour)
			ip := fmt.Sprintf("198.18.0.%d", 10+i)
			tok := fmt.Sprintf("tok-%s-%d", u, d)
			ses := fmt.Sprintf("ses-%s", u)
			e.Process(signin{at: day.Add(time.Duration(i) * time.Minute), user: u, ip: ip, asn: 7922, token: tok, session: ses}.event(t))
			for k := 0; k < 3; k++ {
				at = day.Add(time.Duration(i)*time.Minute + time.Duration(k+1)*time.Hour)
				e.Process(access{at: at, user: u, client: "d3590ed6-52b3-4102-aeff-aad2292ab01c", ip: ip, ua: "Client=MSExchangeRPC",
					token: tok, session: ses, msgs: []string{fmt.Sprintf("<%s-%d-%d@x>", u, d, k)}, id: fmt.Sprintf("r-%s-%d-%d", u, d, k)}.event(t))
			}
		}
	}
	return at
}

func signals(as []alert.Alert) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		m[a.Signal]++
	}
	return m
}

func only(as []alert.Alert, sig string) []alert.Alert {
	var out []alert.Alert
	for _, a := range as {
		if a.Signal == sig {
			out = append(out, a)
		}
	}
	return out
}

var _ = netip.Addr{}
