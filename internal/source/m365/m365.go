// Package m365 decodes Microsoft 365 Unified Audit Log records in the
// shapes they are exported in: Management Activity API JSON, the Graph
// audit log query API (auditLogRecord with nested auditData), Microsoft
// Sentinel OfficeActivity rows, and the AuditData column of a Purview /
// Search-UnifiedAuditLog CSV export.
package m365

import (
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Source is the event source of every record this package decodes.
const Source = "m365.ual"

// Shape names one of the UAL export shapes.
type Shape int

// The UAL export shapes.
const (
	None Shape = iota
	ManagementAPI
	GraphQuery
	Sentinel
)

// Detect reports which UAL shape record v has, if any.
func Detect(v *fastjson.Value) Shape {
	switch {
	case v.Get("auditData") != nil && v.Get("auditLogRecordType") != nil:
		return GraphQuery
	case v.Get("CreationTime") != nil && v.Get("Operation") != nil && v.Get("RecordType") != nil:
		return ManagementAPI
	case v.Get("OfficeWorkload") != nil && v.Get("Operation") != nil:
		return Sentinel
	}
	return None
}

// Hoisted returns the object Flatten hoists to the top level (auditData
// of Graph query records), or nil.
func Hoisted(v *fastjson.Value) *fastjson.Value {
	if ad := v.Get("auditData"); ad != nil && ad.Type() == fastjson.TypeObject && v.Get("auditLogRecordType") != nil {
		return ad
	}
	return nil
}

// Flatten adds the source fields of a record of any UAL shape to b. For
// Graph query records auditData (the Management API record) is also
// hoisted to the top level, so rules written for the API shape match.
func Flatten(b *event.Builder, v *fastjson.Value, _ int) {
	b.Flatten("", v)
	if ad := Hoisted(v); ad != nil {
		b.Flatten("", ad)
	}
}

var (
	symMailAccessType = event.Intern("OperationProperties.MailAccessType")
	symIsThrottled    = event.Intern("OperationProperties.IsThrottled")
	symOpProperties   = event.Intern("OperationProperties")
)

// Lazy adds, up front, MailItemsAccessed's access type and throttling
// flag, which impact assessment reads on every mail-access record; they
// sit in a name/value list, out of reach of the hot top-level fields
// (record.Cache.Eager). GraphQuery records are left alone: their fields
// are hoisted from auditData.
func Lazy(v *fastjson.Value, shape Shape, sh *record.Shape, e *event.Event, c *record.Cache) {
	if shape != ManagementAPI && shape != Sentinel {
		return
	}
	if !sh.Single(symOpProperties) {
		return
	}
	var seen [2]int
	for _, p := range v.GetArray("OperationProperties") {
		switch string(strBytes(p, "Name")) {
		case "MailAccessType":
			seen[0]++
		case "IsThrottled":
			seen[1]++
		}
	}
	for _, p := range v.GetArray("OperationProperties") {
		// Only a plain {Name, Value} element flattens to one value at
		// OperationProperties.<Name>, and only if the name is not repeated.
		x := p.Get("Value")
		if x == nil || x.Type() != fastjson.TypeString || p.Get("NewValue") != nil || p.Get("OldValue") != nil || p.Get("value") != nil {
			continue
		}
		val, _ := x.StringBytes()
		switch string(strBytes(p, "Name")) {
		case "MailAccessType":
			if seen[0] == 1 {
				e.AddEager(symMailAccessType, "OperationProperties.MailAccessType", c.Bytes(val), event.String)
			}
		case "IsThrottled":
			if seen[1] == 1 {
				e.AddEager(symIsThrottled, "OperationProperties.IsThrottled", c.Bytes(val), event.String)
			}
		}
	}
}

// Decode fills e's normalized fields from record v of the given shape; the
// source fields come from Flatten.
func Decode(v *fastjson.Value, shape Shape, e *event.Event, c *record.Cache) error {
	e.Source = Source
	switch shape {
	case GraphQuery:
		ad := v.Get("auditData")
		if ad.Type() != fastjson.TypeObject {
			return fmt.Errorf("auditData is %s, not an object", ad.Type())
		}
		if err := fill(ad, e, c, nil); err != nil {
			// Some query records carry the time only on the envelope.
			t, _, err2 := record.TimeOf(v, "createdDateTime")
			if err2 != nil {
				return err
			}
			e.Time = t
		}
		if e.Operation == "" {
			e.Operation = record.Str(v, "operation")
		}
		if e.User == "" {
			e.User = strings.ToLower(record.Str(v, "userPrincipalName"))
		}
		if e.IP == "" {
			e.IP = record.IP(record.Str(v, "clientIp"))
		}
		if e.RecordID == "" {
			e.RecordID = record.Str(v, "id")
		}
		if e.Tenant == "" {
			e.Tenant = record.Str(v, "organizationId")
		}
		return nil
	case ManagementAPI:
		return fill(v, e, c, nil)
	case Sentinel:
		return fillSentinel(v, e)
	}
	return fmt.Errorf("not a unified audit log record")
}

// DecodeSkimmed is Decode for a Management Activity API record whose
// Folders list s read from the raw bytes (v being the record Skim.Record
// returned, with that list emptied).
func DecodeSkimmed(v *fastjson.Value, e *event.Event, c *record.Cache, s *Skim) error {
	e.Source = Source
	return fill(v, e, c, s)
}

// fill reads the Management Activity API common and Exchange schemas.
// Repeating values go through the cache c; unique ids do not. A non-nil
// s holds the Folders list, read from the raw record.
func fill(v *fastjson.Value, e *event.Event, c *record.Cache, s *Skim) error {
	// One pass over the record's keys instead of a lookup per field:
	// records have a few dozen keys and this is the hottest decoder.
	var f struct {
		creation, tenant, op, result, user, appID, applicationID, clientAppID     *fastjson.Value
		clientIPAddress, clientIP, actorIP, clientInfo, extProps, appAccess, sess *fastjson.Value
		mailbox, id, folders, item, opCount                                       *fastjson.Value
	}
	o, err := v.Object()
	if err != nil {
		return err
	}
	o.Visit(func(k []byte, x *fastjson.Value) {
		switch string(k) {
		case "CreationTime":
			f.creation = x
		case "OrganizationId":
			f.tenant = x
		case "Operation":
			f.op = x
		case "ResultStatus":
			f.result = x
		case "UserId":
			f.user = x
		case "AppId":
			f.appID = x
		case "ApplicationId":
			f.applicationID = x
		case "ClientAppId":
			f.clientAppID = x
		case "ClientIPAddress":
			f.clientIPAddress = x
		case "ClientIP":
			f.clientIP = x
		case "ActorIpAddress":
			f.actorIP = x
		case "ClientInfoString":
			f.clientInfo = x
		case "ExtendedProperties":
			f.extProps = x
		case "AppAccessContext":
			f.appAccess = x
		case "SessionId":
			f.sess = x
		case "MailboxOwnerUPN":
			f.mailbox = x
		case "Id":
			f.id = x
		case "Folders":
			f.folders = x
		case "Item":
			f.item = x
		case "OperationCount":
			f.opCount = x
		}
	})
	if f.creation == nil {
		return fmt.Errorf("no timestamp field (looked for CreationTime)")
	}
	var t time.Time
	if b := strBytes1(f.creation); b != nil {
		t, err = record.ParseTimeBytes(b)
	} else {
		t, err = record.ParseTime(record.Str(f.creation))
	}
	if err != nil {
		return fmt.Errorf("field CreationTime: %w", err)
	}
	e.Time = t
	e.Tenant = c.Str(f.tenant)
	e.Operation = c.Str(f.op)
	e.Result = c.Str(f.result)
	e.Failed = failed(e.Result)
	e.User = lowerInterned(c, c.Str(f.user))
	if e.AppID = c.Str(f.appID); e.AppID == "" {
		e.AppID = c.Str(f.applicationID)
	}
	e.ClientAppID = c.Str(f.clientAppID)
	addr := c.Str(f.clientIPAddress)
	if addr == "" {
		addr = c.Str(f.clientIP)
	}
	if addr == "" {
		addr = c.Str(f.actorIP)
	}
	e.IP = ip(c, addr)
	e.UserAgent = c.Str(f.clientInfo)
	if e.UserAgent == "" && f.extProps != nil {
		e.UserAgent = nameValue(f.extProps, "UserAgent")
	}
	// The session, token and record ids are unique or nearly: they share
	// one new string rather than take one each.
	var scratch [192]byte
	ids := scratch[:0]
	var sess, tok [2]int
	if f.appAccess != nil {
		sess[0] = len(ids)
		ids = appendScalar(ids, f.appAccess.Get("AADSessionId"))
		sess[1], tok[0] = len(ids), len(ids)
		ids = appendScalar(ids, f.appAccess.Get("UniqueTokenId"))
		tok[1] = len(ids)
	}
	if sess[0] == sess[1] {
		sess[0] = len(ids)
		ids = appendScalar(ids, f.sess)
		sess[1] = len(ids)
	}
	rid := len(ids)
	ids = appendScalar(ids, f.id)
	backing := string(ids)
	e.SessionID, e.TokenID, e.RecordID = backing[sess[0]:sess[1]], backing[tok[0]:tok[1]], backing[rid:]
	e.Mailbox = lowerInterned(c, c.Str(f.mailbox))
	mailItems(f.folders, f.item, f.opCount, e, c, s)
	return nil
}

// appendScalar appends what record.Str returns for x: a string's bytes,
// a number or boolean as written, nothing for anything else.
func appendScalar(b []byte, x *fastjson.Value) []byte {
	if x == nil {
		return b
	}
	switch x.Type() {
	case fastjson.TypeString:
		s, _ := x.StringBytes()
		return append(b, s...)
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		// Not x.MarshalTo(b): b would escape, and callers pass a buffer on
		// their stack; ids are seldom numbers.
		return append(b, x.String()...)
	}
	return b
}

// fillSentinel reads an OfficeActivity row: the same data with columns
// renamed (Client_IPAddress, TimeGenerated) and nested JSON as strings.
func fillSentinel(v *fastjson.Value, e *event.Event) error {
	t, _, err := record.TimeOf(v, "TimeGenerated", "CreationTime")
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(v, "OrganizationId", "TenantId")
	e.Operation = record.Str(v, "Operation")
	e.Result = record.Str(v, "ResultStatus")
	e.Failed = failed(e.Result)
	e.User = strings.ToLower(record.Str(v, "UserId"))
	e.AppID = record.First(v, "AppId", "ApplicationId")
	e.ClientAppID = record.Str(v, "ClientAppId")
	e.IP = record.IP(record.First(v, "Client_IPAddress", "ClientIP"))
	e.UserAgent = record.Str(v, "ClientInfoString")
	e.SessionID = record.First(v, "SessionId")
	e.Mailbox = strings.ToLower(record.Str(v, "MailboxOwnerUPN"))
	e.RecordID = record.First(v, "OfficeId", "Id", "SourceRecordId")
	if s := record.Str(v, "Folders"); s != "" {
		var p fastjson.Parser
		if fv, err := p.Parse(s); err == nil {
			e.Folders = record.Strings(fv, "Path")
			e.MessageIDs = record.Strings(fv, "FolderItems", "InternetMessageId")
		}
	}
	e.ItemCount = len(e.MessageIDs)
	return nil
}

// mailItems fills the mail target of MailItemsAccessed, Send and similar.
func mailItems(folders, item, opCount *fastjson.Value, e *event.Event, c *record.Cache, s *Skim) {
	if s != nil {
		s.Fill(e, c)
	} else {
		e.Folders = c.Strings(folders, "Path")
		e.MessageIDs = record.Strings(folders, "FolderItems", "InternetMessageId")
	}
	if item != nil {
		if id := record.Str(item, "InternetMessageId"); id != "" {
			e.MessageIDs = append(e.MessageIDs, id)
		}
		if p := record.Str(item, "ParentFolder", "Path"); p != "" {
			e.Folders = append(e.Folders, p)
		}
	}
	e.ItemCount = len(e.MessageIDs)
	if n := opCount.GetInt(); n > e.ItemCount {
		e.ItemCount = n
	}
}

// nameValue returns the Value of the element called name in a list of
// {"Name":..,"Value":..} objects.
func nameValue(list *fastjson.Value, name string) string {
	a, _ := list.Array()
	for _, el := range a {
		if record.Str(el, "Name") == name {
			return record.Str(el, "Value")
		}
	}
	return ""
}

// strBytes1 returns the bytes of x when it is a string, else nil; they
// alias x.
func strBytes1(x *fastjson.Value) []byte {
	if x == nil || x.Type() != fastjson.TypeString {
		return nil
	}
	b, _ := x.StringBytes()
	return b
}

// strBytes returns the bytes of the string at key, nil when there is
// none (or it is not a string); they alias v.
func strBytes(v *fastjson.Value, key string) []byte {
	x := v.Get(key)
	if x == nil || x.Type() != fastjson.TypeString {
		return nil
	}
	b, _ := x.StringBytes()
	return b
}

func failed(result string) bool {
	return strings.EqualFold(result, "failed") || strings.EqualFold(result, "failure") || strings.EqualFold(result, "false")
}

// lowerInterned lower-cases s, interning the result; s is usually already
// lower-case, so usually nothing is allocated.
func lowerInterned(c *record.Cache, s string) string {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b >= 'A' && b <= 'Z' || b >= 0x80 {
			return c.Bytes([]byte(strings.ToLower(s)))
		}
	}
	return s
}

// ip normalizes a client address, interning the result.
func ip(c *record.Cache, s string) string {
	n := record.IP(s)
	if n == s {
		return s
	}
	return c.Bytes([]byte(n))
}
