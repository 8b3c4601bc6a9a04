package sigma

import (
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// benchUAL are Management Activity API records of the kinds that dominate
// a tenant's Unified Audit Log.
var benchUAL = []string{
	`{"CreationTime":"2023-06-15T03:12:44","Id":"5b2f6a3c-0c0e-4a55-9d2e-1f7f0b0a1c11","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002A1B2C3D4","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.7","UserId":"alice@contoso.com","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"d3590ed6-52b3-4102-aeff-aad2292ab01c","ClientIPAddress":"203.0.113.7","ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1","MailboxGuid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","MailboxOwnerSid":"S-1-5-21-1","MailboxOwnerUPN":"alice@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR01MB0000 (15.20.6500.000)","SessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","AppAccessContext":{"AADSessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","IssuedAtTime":"2023-06-15T03:00:01","UniqueTokenId":"q1w2e3r4t5y6u7i8o9p0"},"Folders":[{"FolderItems":[{"InternetMessageId":"<AM0PR01MB0001@contoso.com>"},{"InternetMessageId":"<AM0PR01MB0002@contoso.com>"}],"Id":"LgAAAAAAAAAA","Path":"\\Inbox"}],"OperationCount":2}`,
	`{"CreationTime":"2023-06-15T03:13:02","Id":"6c3f7b4d-1d1f-4b66-8e3f-2a8f1c1b2d22","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002A1B2C3D5","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.23","UserId":"bob@contoso.com","AppId":"bb9ff2f3-4f86-4b24-a7f1-2f5b3c2b8a10","ClientAppId":"","ClientIPAddress":"198.51.100.23","ClientInfoString":"Client=WebServices;ExchangeWebServices/15.0;","ExternalAccess":false,"LogonType":0,"MailboxGuid":"bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee","MailboxOwnerUPN":"bob@contoso.com","OperationProperties":[{"Name":"MailAccessType","Value":"Sync"},{"Name":"IsThrottled","Value":"False"}],"Folders":[{"Id":"LgAAAAAAAAAB","Path":"\\Sent Items"}],"OperationCount":57}`,
	`{"CreationTime":"2023-06-15T03:14:10","Id":"7d408c5e-2e20-4c77-9f40-3b902d2c3e33","Operation":"UserLoggedIn","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":15,"ResultStatus":"Success","UserKey":"1003200212345678","UserType":0,"Version":1,"Workload":"AzureActiveDirectory","ClientIP":"203.0.113.7","ObjectId":"00000003-0000-0ff1-ce00-000000000000","UserId":"alice@contoso.com","AzureActiveDirectoryEventType":1,"ExtendedProperties":[{"Name":"ResultStatusDetail","Value":"Success"},{"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},{"Name":"RequestType","Value":"OAuth2:Authorize"}],"ModifiedProperties":[],"Actor":[{"ID":"a1","Type":0},{"ID":"alice@contoso.com","Type":5}],"ActorContextId":"11111111-2222-3333-4444-555555555555","ApplicationId":"00000002-0000-0ff1-ce00-000000000000","InterSystemsId":"c1","IntraSystemId":"d1","Target":[{"ID":"00000003-0000-0ff1-ce00-000000000000","Type":0}],"TargetContextId":"11111111-2222-3333-4444-555555555555","ErrorNumber":"0"}`,
	`{"CreationTime":"2023-06-15T03:15:00","Id":"8e519d6f-3f31-4d88-a051-4ca13e3d4f44","Operation":"FileAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":6,"UserKey":"i:0h.f|membership|10032002a1b2c3d4@live.com","UserType":0,"Version":1,"Workload":"SharePoint","ClientIP":"203.0.113.7","ObjectId":"https://contoso.sharepoint.com/sites/finance/Shared Documents/q2.xlsx","UserId":"alice@contoso.com","EventSource":"SharePoint","ItemType":"File","ListId":"e1","ListItemUniqueId":"e2","Site":"e3","UserAgent":"Mozilla/5.0","WebId":"e4","SourceFileExtension":"xlsx","SiteUrl":"https://contoso.sharepoint.com/sites/finance/","SourceFileName":"q2.xlsx","SourceRelativeUrl":"Shared Documents"}`,
	`{"CreationTime":"2023-06-15T03:16:30","Id":"9f62ae70-4042-4e99-b162-5db24f4e5055","Operation":"Send","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":2,"ResultStatus":"Succeeded","UserKey":"10032002A1B2C3D4","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.7","UserId":"alice@contoso.com","ClientIPAddress":"203.0.113.7","ClientInfoString":"Client=OWA;Action=ViaProxy","ExternalAccess":false,"LogonType":0,"MailboxOwnerUPN":"alice@contoso.com","Item":{"Id":"RgAAAAA","InternetMessageId":"<AM0PR01MB0003@contoso.com>","ParentFolder":{"Id":"LgAAAAAAAAAC","Path":"\\Drafts"},"SizeInBytes":40211,"Subject":"Q2 numbers"}}`,
	`{"CreationTime":"2023-06-15T03:17:45","Id":"a073bf81-5153-4faa-8273-6ec3505f6166","Operation":"New-InboxRule","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":1,"ResultStatus":"True","UserKey":"10032002A1B2C3D4","UserType":2,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.7:52110","ObjectId":"alice@contoso.com\\fw","UserId":"alice@contoso.com","AppId":"","ClientAppId":"","ExternalAccess":false,"OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR01MB0000 (15.20.6500.000)","Parameters":[{"Name":"Name","Value":"fw"},{"Name":"ForwardTo","Value":"eve@evil.example"},{"Name":"StopProcessingRules","Value":"True"}],"SessionId":"s2"}`,
}

func benchEvents(b *testing.B) ([]*event.Event, int64) {
	var evs []*event.Event
	var size int64
	for _, js := range benchUAL {
		e := mkEvent(b, "m365.ual", js)
		e.Operation = e.Get("Operation")
		e.User = e.Get("UserId")
		e.Normalize()
		evs = append(evs, e)
		size += int64(len(js))
	}
	return evs, size / int64(len(evs))
}

// BenchmarkMatch: all 152 SigmaHQ cloud rules against UAL events (one
// event per iteration; SetBytes is the raw record size).
func BenchmarkMatch(b *testing.B) {
	rs := loadSigmaHQ(b)
	evs, size := benchEvents(b)
	b.SetBytes(size)
	b.ReportAllocs()
	n := 0
	emit := func(Detection) { n++ }
	i := 0
	for b.Loop() {
		rs.Match(evs[i%len(evs)], emit)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMatchBuiltin: the embedded rule set (SigmaHQ identity and mail
// rules plus vigil's, including correlations).
func BenchmarkMatchBuiltin(b *testing.B) {
	rs := loadBuiltin(b)
	evs, size := benchEvents(b)
	b.SetBytes(size)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rs.Match(evs[i%len(evs)], func(Detection) {})
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMatchParallel: Match from every core on one Ruleset.
func BenchmarkMatchParallel(b *testing.B) {
	rs := loadSigmaHQ(b)
	evs, size := benchEvents(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			rs.Match(evs[i%len(evs)], func(Detection) {})
			i++
		}
	})
}

// BenchmarkMatchSignIn: sign-ins against the built-in set, where the
// password-spray and brute-force correlations keep state.
func BenchmarkMatchSignIn(b *testing.B) {
	rs := loadBuiltin(b)
	var evs []*event.Event
	var size int64
	for i := 0; i < 64; i++ {
		code := 0
		if i%3 == 0 {
			code = 50126
		}
		e := signin(b, "user"+string(rune('a'+i%26))+"@contoso.com", "203.0.113."+string(rune('0'+i%10)), code, 0)
		evs = append(evs, e)
		size += int64(len(e.Raw))
	}
	b.SetBytes(size / int64(len(evs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := evs[i%len(evs)]
		e.Time = t0.Add(timeStep * timeDuration(i))
		rs.Match(e, func(Detection) {})
		i++
	}
}

// graphSignIn is a Graph sign-in as `vigil simulate` and the Graph API
// write them: status and deviceDetail are objects, most lists empty.
const graphSignIn = `{"id":"f6cf5a2b-bbea-4237-9403-caf3f645a3d2","createdDateTime":"2026-03-02T01:00:19Z",` +
	`"userPrincipalName":"alice@contoso.com","appId":"c097e870-babc-4c5c-bef3-7c016294df40","ipAddress":"198.18.173.91",` +
	`"clientAppUsed":"Browser","userAgent":"Mozilla/5.0","conditionalAccessStatus":"success","isInteractive":true,` +
	`"riskState":"atRisk","resourceDisplayName":"Microsoft Graph","authenticationRequirement":"singleFactorAuthentication",` +
	`"status":{"errorCode":0,"failureReason":"Other.","additionalDetails":null},` +
	`"deviceDetail":{"deviceId":"","displayName":"","operatingSystem":"Windows","browser":"Edge","isCompliant":false,"trustType":""},` +
	`"location":{"city":"Boydton","countryOrRegion":"US","geoCoordinates":{"latitude":36.67}},` +
	`"networkLocationDetails":[],"authenticationDetails":[]}`

// BenchmarkMatchSignInDecoded: Graph sign-ins decoded as hunt decodes
// them (lazily, reading the names rules look up from the parse) and
// matched against the built-in rules; decoding is part of each iteration,
// since an event is flattened at most once.
func BenchmarkMatchSignInDecoded(b *testing.B) {
	rs := loadBuiltin(b)
	d := source.NewDecoder(nil, append(rs.FieldSyms(), event.HotFields...))
	raw := []byte(graphSignIn)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := d.Decode(raw, event.Origin{})
		if err != nil || len(evs) != 1 {
			b.Fatalf("decoded %d events: %v", len(evs), err)
		}
		rs.Match(evs[0], func(Detection) {})
	}
}

const timeStep = 1e8 // 100 ms of event time per event

func timeDuration(i int) time.Duration { return time.Duration(i) }
