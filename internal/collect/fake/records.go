package fake

import (
	"encoding/json"
	"fmt"
	"time"
)

// The record builders follow the field names of the vendors' documented
// shapes (and of the decoder fixtures in internal/source/testdata), so the
// decoders read what the fakes serve without quarantining anything.

// UAL returns a Management Activity API MailItemsAccessed record.
func UAL(id string, t time.Time, user string) []byte {
	return mustJSON(map[string]any{
		"CreationTime": t.UTC().Format("2006-01-02T15:04:05"), "Id": id, "Operation": "MailItemsAccessed",
		"OrganizationId": "11111111-2222-3333-4444-555555555555", "RecordType": 50, "ResultStatus": "Succeeded",
		"UserKey": "10032002A1B2C3D4", "UserType": 0, "Version": 1, "Workload": "Exchange",
		"ClientIP": "203.0.113.7", "UserId": user, "AppId": "00000002-0000-0ff1-ce00-000000000000",
		"ClientAppId": "9199bf20-a13f-4107-85dc-02114787ef48", "ClientIPAddress": "203.0.113.7",
		"MailboxOwnerUPN": user, "SessionId": "f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f",
		"OperationProperties": []map[string]string{{"Name": "MailAccessType", "Value": "Bind"}},
		"Folders":             []map[string]any{{"Path": "\\Inbox", "FolderItems": []map[string]string{{"InternetMessageId": "<" + id + "@contoso.com>"}}}},
		"OperationCount":      1,
	})
}

// SignIn returns a Graph signIn record.
func SignIn(id string, t time.Time, user, eventType string) []byte {
	return mustJSON(map[string]any{
		"id": id, "createdDateTime": t.UTC().Format(time.RFC3339), "userPrincipalName": user,
		"appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c", "appDisplayName": "Microsoft Office",
		"ipAddress": "203.0.113.7", "clientAppUsed": "Browser", "correlationId": "c-" + id,
		"isInteractive": eventType == "interactiveUser", "signInEventTypes": []string{eventType},
		"status": map[string]any{"errorCode": 0}, "location": map[string]any{"countryOrRegion": "DE"},
	})
}

// DirectoryAudit returns a Graph directoryAudit record.
func DirectoryAudit(id string, t time.Time, user string) []byte {
	return mustJSON(map[string]any{
		"id": id, "category": "ApplicationManagement", "correlationId": "c-" + id, "result": "success",
		"activityDisplayName": "Add service principal credentials", "activityDateTime": t.UTC().Format(time.RFC3339Nano),
		"loggedByService": "Core Directory", "operationType": "Update",
		"initiatedBy":     map[string]any{"user": map[string]any{"userPrincipalName": user, "ipAddress": "203.0.113.7"}},
		"targetResources": []map[string]any{{"displayName": "Mail Helper", "type": "ServicePrincipal"}},
	})
}

// RiskDetection returns a Graph riskDetection record.
func RiskDetection(id string, t time.Time, user string) []byte {
	return mustJSON(map[string]any{
		"id": id, "riskEventType": "unfamiliarFeatures", "riskLevel": "medium", "riskState": "atRisk",
		"detectedDateTime": t.UTC().Format(time.RFC3339Nano), "activityDateTime": t.UTC().Format(time.RFC3339Nano),
		"userPrincipalName": user, "ipAddress": "203.0.113.7", "activity": "signin", "detectionTimingType": "realtime",
	})
}

// Activity returns a Reports API activity of app.
func Activity(app, uq string, t time.Time, user string) []byte {
	return mustJSON(map[string]any{
		"kind":      "admin#reports#activity",
		"id":        map[string]any{"time": t.UTC().Format("2006-01-02T15:04:05.000Z"), "uniqueQualifier": uq, "applicationName": app, "customerId": "C0123abcd"},
		"actor":     map[string]any{"callerType": "USER", "email": user, "profileId": "100000000000000000001"},
		"ipAddress": "198.51.100.23",
		"events":    []map[string]any{{"type": app, "name": app + "_event", "parameters": []map[string]any{{"name": "login_type", "value": "google_password"}}}},
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint("fake: ", err))
	}
	return b
}
