// Package entra decodes Microsoft Entra ID logs — sign-ins (interactive,
// non-interactive, service principal, managed identity), directory audits
// and risk detections — in the Graph API shape, the Azure Monitor
// diagnostic-settings / Event Hub shape (time, category, operationName,
// properties) and the Sentinel table shape. It also decodes the other
// Azure Monitor records that arrive through the same pipelines: the Azure
// activity log, Graph activity logs and Defender advanced-hunting exports.
package entra

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Event sources this package produces.
const (
	SourceSignIn        = "entra.signin"
	SourceAudit         = "entra.audit"
	SourceRisk          = "entra.risk"
	SourceGraphActivity = "entra.graphactivity"
	SourceActivity      = "azure.activity"
	SourceDefender      = "m365.defender"
)

// Kind is what a record is.
type Kind int

// Record kinds.
const (
	None Kind = iota
	SignIn
	Audit
	Risk
	GraphActivity
	Activity
	Defender
	Diagnostic // another Azure Monitor diagnostic category
)

// Detect classifies v. Diagnostic envelopes are classified by category.
func Detect(v *fastjson.Value) Kind {
	// The activity log as the Azure SDKs and REST API serialize it also has
	// category and properties, but with operation_name/eventTimestamp.
	if (v.Get("event_timestamp") != nil && v.Get("operation_name") != nil) ||
		(v.Get("eventTimestamp") != nil && v.Get("operationName") != nil) {
		return Activity
	}
	if p := v.Get("properties"); p != nil && p.Type() == fastjson.TypeObject && v.Get("category") != nil {
		return byCategory(record.Str(v, "category"))
	}
	switch {
	case v.Get("riskEventType") != nil && (v.Get("detectedDateTime") != nil || v.Get("activityDateTime") != nil),
		v.Get("RiskEventType") != nil && (v.Get("DetectedDateTime") != nil || v.Get("ActivityDateTime") != nil):
		return Risk
	case v.Get("activityDisplayName") != nil && v.Get("activityDateTime") != nil,
		v.Get("ActivityDisplayName") != nil && v.Get("ActivityDateTime") != nil && v.Get("LoggedByService") != nil:
		return Audit
	case v.Get("createdDateTime") != nil && v.Get("appId") != nil &&
		(v.Get("status") != nil || v.Get("clientAppUsed") != nil || v.Get("isInteractive") != nil || v.Get("signInEventTypes") != nil || v.Get("conditionalAccessStatus") != nil):
		return SignIn
	case v.Get("TimeGenerated") != nil && v.Get("Type") != nil:
		switch strings.ToLower(record.Str(v, "Type")) {
		case "signinlogs", "aadnoninteractiveusersigninlogs", "aadserviceprincipalsigninlogs", "aadmanagedidentitysigninlogs":
			return SignIn
		case "auditlogs":
			return Audit
		case "aaduserriskevents", "aadriskyusers":
			return Risk
		case "microsoftgraphactivitylogs":
			return GraphActivity
		case "azureactivity":
			return Activity
		}
	case v.Get("Timestamp") != nil && v.Get("ActionType") != nil:
		return Defender
	}
	return None
}

func byCategory(c string) Kind {
	switch strings.ToLower(c) {
	case "signinlogs", "noninteractiveusersigninlogs", "serviceprincipalsigninlogs", "managedidentitysigninlogs",
		"microsoftserviceprincipalsigninlogs", "adfssigninlogs":
		return SignIn
	case "auditlogs":
		return Audit
	case "riskyusers", "userriskevents", "serviceprincipalriskevents", "riskyserviceprincipals":
		return Risk
	case "microsoftgraphactivitylogs":
		return GraphActivity
	case "administrative", "policy", "security", "servicehealth", "alert", "recommendation", "autoscale", "resourcehealth":
		return Activity
	}
	if strings.HasPrefix(strings.ToLower(c), "advancedhunting-") {
		return Defender
	}
	return Diagnostic
}

// Flatten adds v's source fields to b. For diagnostic envelopes the
// properties object is flattened both under "properties." and at the top
// level, so rules written for the Graph or Sentinel shape also match.
func Flatten(b *event.Builder, v *fastjson.Value, _ int) {
	b.Flatten("", v)
	if p := Hoisted(v); p != nil {
		b.Flatten("", p)
	}
}

// Hoisted returns the object Flatten hoists to the top level (properties
// of a diagnostic envelope), or nil.
func Hoisted(v *fastjson.Value) *fastjson.Value {
	if p := v.Get("properties"); p != nil && p.Type() == fastjson.TypeObject && v.Get("category") != nil {
		return p
	}
	return nil
}

// Decode fills e's normalized fields from v, a record of kind k; the
// source fields come from Flatten.
func Decode(v *fastjson.Value, k Kind, e *event.Event) error {
	body := v
	diag := false
	if p := v.Get("properties"); p != nil && p.Type() == fastjson.TypeObject && v.Get("category") != nil {
		diag = true
		body = p
	}
	var err error
	switch k {
	case SignIn:
		err = signIn(v, body, e)
	case Audit:
		err = audit(v, body, e)
	case Risk:
		err = risk(v, body, e)
	case GraphActivity:
		err = graphActivity(v, body, e)
	case Activity:
		err = activity(v, body, e)
	case Defender:
		err = defender(v, body, e)
	case Diagnostic:
		e.Source = "azure." + strings.ToLower(record.Str(v, "category"))
		err = envelope(v, e)
	default:
		return fmt.Errorf("not an Entra ID or Azure Monitor record")
	}
	if err == nil && diag && e.Tenant == "" {
		e.Tenant = record.Str(v, "tenantId")
	}
	return err
}

// envelope reads the common diagnostic fields.
func envelope(v *fastjson.Value, e *event.Event) error {
	t, _, err := record.TimeOf(v, "time")
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.Str(v, "tenantId")
	e.Operation = record.Str(v, "operationName")
	e.Result = record.First(v, "resultType", "resultSignature")
	e.IP = record.IP(record.Str(v, "callerIpAddress"))
	e.RecordID = record.First(v, "correlationId")
	return nil
}

func signIn(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceSignIn
	t, _, err := record.TimeOf(v, "createdDateTime", "TimeGenerated")
	if err != nil && env != v {
		t, _, err = record.TimeOf(env, "time")
	}
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(v, "resourceTenantId", "homeTenantId", "tenantId", "TenantId", "AADTenantId")
	e.Operation = "SignIn"
	e.User = strings.ToLower(record.First(v, "userPrincipalName", "UserPrincipalName"))
	e.AppID = record.First(v, "appId", "AppId")
	e.ServicePrincipal = record.First(v, "servicePrincipalId", "ServicePrincipalId")
	e.IP = record.IP(record.First(v, "ipAddress", "IPAddress"))
	e.UserAgent = record.First(v, "userAgent", "UserAgent")
	e.SessionID = record.First(v, "sessionId", "SessionId")
	e.TokenID = record.First(v, "uniqueTokenIdentifier", "UniqueTokenIdentifier")
	e.Country = record.Str(v, "location", "countryOrRegion")
	if e.Country == "" {
		e.Country = record.Str(v, "LocationDetails", "countryOrRegion")
	}
	if n := v.GetUint("autonomousSystemNumber"); n > 0 {
		e.ASN = uint32(n)
	} else if n := v.GetUint("AutonomousSystemNumber"); n > 0 {
		e.ASN = uint32(n)
	}
	e.RecordID = record.First(v, "id", "Id")
	code := record.Str(v, "status", "errorCode")
	if code == "" {
		code = record.First(v, "ResultType")
	}
	if code == "" && env != v {
		code = record.Str(env, "resultType")
	}
	e.Result = code
	e.Failed = code != "" && code != "0"
	return nil
}

func audit(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceAudit
	t, _, err := record.TimeOf(v, "activityDateTime", "ActivityDateTime", "TimeGenerated")
	if err != nil && env != v {
		t, _, err = record.TimeOf(env, "time")
	}
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(v, "tenantId", "TenantId", "AADTenantId")
	e.Operation = record.First(v, "activityDisplayName", "ActivityDisplayName", "OperationName")
	e.Result = record.First(v, "result", "Result")
	e.Failed = strings.EqualFold(e.Result, "failure")
	e.User = strings.ToLower(record.Str(v, "initiatedBy", "user", "userPrincipalName"))
	e.AppID = record.Str(v, "initiatedBy", "app", "appId")
	e.ServicePrincipal = record.Str(v, "initiatedBy", "app", "servicePrincipalId")
	e.IP = record.IP(record.Str(v, "initiatedBy", "user", "ipAddress"))
	if s := record.Str(v, "InitiatedBy"); s != "" {
		// Sentinel keeps initiatedBy as a JSON string.
		var p fastjson.Parser
		if iv, err := p.Parse(s); err == nil {
			e.User = strings.ToLower(record.Str(iv, "user", "userPrincipalName"))
			e.AppID = record.Str(iv, "app", "appId")
			e.IP = record.IP(record.Str(iv, "user", "ipAddress"))
		}
	}
	e.RecordID = record.First(v, "id", "Id")
	return nil
}

func risk(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceRisk
	t, _, err := record.TimeOf(v, "detectedDateTime", "activityDateTime", "riskLastUpdatedDateTime", "DetectedDateTime", "TimeGenerated")
	if err != nil && env != v {
		t, _, err = record.TimeOf(env, "time")
	}
	if err != nil {
		return err
	}
	e.Time = t
	e.Operation = record.First(v, "riskEventType", "RiskEventType")
	if e.Operation == "" {
		e.Operation = record.First(env, "operationName")
	}
	e.Result = record.First(v, "riskState", "RiskState")
	e.User = strings.ToLower(record.First(v, "userPrincipalName", "UserPrincipalName"))
	e.AppID = record.First(v, "appId")
	e.ServicePrincipal = record.First(v, "servicePrincipalId")
	e.IP = record.IP(record.First(v, "ipAddress", "IPAddress"))
	e.Country = record.Str(v, "location", "countryOrRegion")
	e.RecordID = record.First(v, "id", "Id")
	return nil
}

func graphActivity(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceGraphActivity
	t, _, err := record.TimeOf(env, "time", "TimeGenerated")
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(v, "tenantId")
	e.Operation = record.First(v, "requestMethod", "RequestMethod") + " " + record.First(v, "requestUri", "RequestUri")
	e.Result = record.First(v, "responseStatusCode", "ResponseStatusCode")
	e.AppID = record.First(v, "appId", "AppId")
	e.IP = record.IP(record.First(v, "ipAddress", "IPAddress", "callerIpAddress"))
	if e.IP == "" {
		e.IP = record.IP(record.Str(env, "callerIpAddress"))
	}
	e.UserAgent = record.First(v, "userAgent", "UserAgent")
	e.SessionID = record.First(v, "signInActivityId", "SignInActivityId")
	e.TokenID = e.SessionID
	e.RecordID = record.First(v, "requestId", "RequestId")
	return nil
}

func activity(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceActivity
	t, _, err := record.TimeOf(env, "time", "event_timestamp", "eventTimestamp", "TimeGenerated")
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(env, "tenantId", "tenant_id", "TenantId")
	e.Operation = record.First(env, "operationName", "OperationNameValue")
	if e.Operation == "" || env.Get("operationName", "value") != nil {
		e.Operation = record.Str(env, "operationName", "value")
	}
	if e.Operation == "" {
		e.Operation = record.Str(env, "operation_name", "value")
	}
	e.Result = record.First(env, "resultType", "ActivityStatusValue")
	if e.Result == "" {
		e.Result = record.First(env.Get("status"), "value")
	}
	e.Failed = strings.EqualFold(e.Result, "failure") || strings.EqualFold(e.Result, "failed")
	e.User = strings.ToLower(record.First(env, "caller", "Caller"))
	e.IP = record.IP(record.First(env, "callerIpAddress", "CallerIpAddress"))
	if e.IP == "" {
		e.IP = record.IP(record.Str(env, "http_request", "client_ip_address"))
	}
	e.RecordID = record.First(env, "id", "event_data_id", "eventDataId", "correlationId")
	return nil
}

func defender(env, v *fastjson.Value, e *event.Event) error {
	e.Source = SourceDefender
	t, _, err := record.TimeOf(v, "Timestamp")
	if err != nil {
		t, _, err = record.TimeOf(env, "time", "Timestamp")
	}
	if err != nil {
		return err
	}
	e.Time = t
	e.Tenant = record.First(env, "tenantId", "TenantId")
	e.Operation = record.First(v, "ActionType")
	e.User = strings.ToLower(record.First(v, "AccountUpn", "AccountName", "AccountDisplayName"))
	e.AppID = record.First(v, "ApplicationId")
	e.IP = record.IP(record.First(v, "IPAddress", "RemoteIP"))
	e.Country = record.First(v, "CountryCode")
	e.RecordID = record.First(v, "ReportId")
	return nil
}
