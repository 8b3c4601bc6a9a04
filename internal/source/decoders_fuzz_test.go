package source

import (
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/entra"
	"github.com/vigil-audit/vigil/internal/source/gws"
	"github.com/vigil-audit/vigil/internal/source/inboxrule"
	"github.com/vigil-audit/vigil/internal/source/jsonl"
	"github.com/vigil-audit/vigil/internal/source/m365"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// fuzzDecoder checks that decode never panics on any JSON value the
// fuzzer derives from seeds, and that what it builds can be finished.
func fuzzDecoder(f *testing.F, seeds []string, decode func(v *fastjson.Value, b *event.Builder, e *event.Event)) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p fastjson.Parser
		v, err := p.ParseBytes(data)
		if err != nil {
			return
		}
		b := event.NewBuilder()
		var e event.Event
		decode(v, b, &e)
		b.Finish(&e)
		_ = e.Fields()
	})
}

// FuzzM365 fuzzes the Unified Audit Log decoder (every shape).
func FuzzM365(f *testing.F) {
	fuzzDecoder(f, m365Seeds, func(v *fastjson.Value, b *event.Builder, e *event.Event) {
		if s := m365.Detect(v); s != m365.None {
			c := record.NewCache()
			_ = m365.Decode(v, s, e, c)
			m365.Lazy(v, s, c.Shape(v, m365.Hoisted(v)), e, c)
			m365.Flatten(b, v, 0)
		}
	})
}

// FuzzEntra fuzzes the Entra ID / Azure Monitor decoder.
func FuzzEntra(f *testing.F) {
	fuzzDecoder(f, entraSeeds, func(v *fastjson.Value, b *event.Builder, e *event.Event) {
		if k := entra.Detect(v); k != entra.None {
			_ = entra.Decode(v, k, e)
			entra.Flatten(b, v, 0)
		}
	})
}

// FuzzGWS fuzzes the Google Workspace activity decoder.
func FuzzGWS(f *testing.F) {
	fuzzDecoder(f, gwsSeeds, func(v *fastjson.Value, b *event.Builder, e *event.Event) {
		if gws.Detect(v) {
			_ = gws.Decode(v, func(x *event.Event, i int) { gws.Flatten(b, v, i); b.Finish(x) })
		}
	})
}

// FuzzInboxRule fuzzes the Get-InboxRule snapshot decoder.
func FuzzInboxRule(f *testing.F) {
	fuzzDecoder(f, inboxRuleSeeds, func(v *fastjson.Value, b *event.Builder, e *event.Event) {
		if inboxrule.Detect(v) {
			_ = inboxrule.Decode(v, time.Unix(1700000000, 0), e)
			inboxrule.Flatten(b, v, 0)
		}
	})
}

var inboxRuleSeeds = []string{
	`{"UserName":"a@b.example","RuleName":"r","ForwardTo":"\"x\" [SMTP:x@c.example] \"y\" [EX:/o=x]","MoveToFolder":"a:\\RSS Feeds","DeleteMessage":"True"}`,
	`{"Name":".","Identity":"Owner\\1","RuleIdentity":15394007230974001153,"ForwardTo":["[SMTP:]","a@","@b"],"RedirectTo":"p@q.example; r@s.example","CopyToFolder":["\\",""]}`,
	`{"Name":1,"ForwardTo":{},"MoveToFolder":[[["x"]]]}`,
}

// FuzzJSONL fuzzes the generic decoder, without and with a mapping.
func FuzzJSONL(f *testing.F) {
	fuzzDecoder(f, jsonlSeeds, func(v *fastjson.Value, b *event.Builder, e *event.Event) {
		_ = jsonl.Decode(v, nil, e)
		_ = jsonl.Decode(v, &jsonl.Mapping{Time: "t", User: "u.e", MessageIDs: "m.id"}, e)
		jsonl.Flatten(b, v, 0)
	})
}

var m365Seeds = []string{
	`{"CreationTime":"2023-06-16T03:12:44","Id":"x","Operation":"MailItemsAccessed","RecordType":50,"UserId":"a@b","Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<m>"}]}],"AppAccessContext":{"UniqueTokenId":"t"},"OperationCount":3}`,
	`{"id":"x","createdDateTime":"2026-07-17T08:28:17Z","auditLogRecordType":"ExchangeItem","operation":"Send","auditData":{"CreationTime":"2026-07-17T08:28:17Z","Operation":"Send","RecordType":2,"Item":{"InternetMessageId":"<a>","ParentFolder":{"Path":"\\Sent"}}}}`,
	`{"TimeGenerated":"2021-08-02T13:32:07Z","Operation":"MailItemsAccessed","OfficeWorkload":"Exchange","Folders":"[{\"Path\":\"\\\\Inbox\",\"FolderItems\":[{\"InternetMessageId\":\"<x>\"}]}]"}`,
	`{"auditData":7,"auditLogRecordType":1}`,
}

var entraSeeds = []string{
	`{"id":"1","createdDateTime":"2023-06-16T02:59:58Z","userPrincipalName":"a@b","appId":"x","ipAddress":"1.2.3.4","status":{"errorCode":0},"location":{"countryOrRegion":"DE"},"autonomousSystemNumber":64500}`,
	`{"time":"2026-07-16T15:34:08Z","category":"SignInLogs","tenantId":"t","resultType":"0","properties":{"createdDateTime":"2026-07-16T15:31:34Z","appId":"a","status":{"errorCode":7000113}}}`,
	`{"activityDisplayName":"Add member to role","activityDateTime":"2025-05-02T00:00:00Z","initiatedBy":{"user":{"userPrincipalName":"a@b","ipAddress":"1.2.3.4"}}}`,
	`{"riskEventType":"anonymizedIPAddress","detectedDateTime":"2025-01-01T00:00:00Z","ipAddress":"1.2.3.4"}`,
	`{"event_timestamp":"2022-02-09T00:00:00Z","operation_name":{"value":"Microsoft.Compute/disks/write"},"status":{"value":"Started"}}`,
	`{"Timestamp":"2021-08-02T13:32:07Z","ActionType":"MailItemsAccessed","IPAddress":"1.2.3.4"}`,
	`{"time":"2026-07-16T15:34:08Z","category":"Other","properties":{}}`,
}

var gwsSeeds = []string{
	`{"kind":"admin#reports#activity","id":{"time":"2024-03-04T08:15:30.123Z","uniqueQualifier":"1","applicationName":"login"},"actor":{"email":"a@b"},"events":[{"name":"login_success","parameters":[{"name":"login_type","value":"x"},{"name":"m","multiValue":["a","b"]}]}]}`,
	`{"id":{"time":"2024-03-04T08:15:30Z","applicationName":"gmail"},"events":[{"name":"x","parameters":[{"name":"message_id","value":"<m>"}]},{"name":"y"}]}`,
	`{"kind":"admin#reports#activity","id":{"time":"bad"},"events":[]}`,
	`{"id":{"time":"2024-03-04 08:15:30.123456789","uniqueQualifier":-5,"applicationName":"token"},"actor":{"email":"a@b"},"name":"authorize","type":"auth","parameters":{"client_id":"c","scope":["x","y"],"n":5}}`,
	`{"id":{"time":{"dateOnly":false,"timeZoneShift":0,"value":1784393869239},"applicationName":"token"},"events":[{"name":"activity","parameters":[{"name":"num","intValue":5}]}]}`,
	`{"id":{"time":{"value":"x"},"applicationName":"a"},"name":"n","parameters":7}`,
}

var jsonlSeeds = []string{
	`{"t":"2024-01-01T00:00:00Z","u":{"e":"A@B"},"m":[{"id":"<1>"},{"id":"<2>"}]}`,
	`{"time":1700000000123,"x":1}`,
	`[1,2]`,
}
