package entra

var seeds = []string{
	`{"id":"1","createdDateTime":"2023-06-16T02:59:58Z","userPrincipalName":"a@b","appId":"x","ipAddress":"1.2.3.4","status":{"errorCode":0},"location":{"countryOrRegion":"DE"},"autonomousSystemNumber":64500}`,
	`{"time":"2026-07-16T15:34:08Z","category":"SignInLogs","tenantId":"t","resultType":"0","properties":{"createdDateTime":"2026-07-16T15:31:34Z","appId":"a","status":{"errorCode":7000113}}}`,
	`{"activityDisplayName":"Add member to role","activityDateTime":"2025-05-02T00:00:00Z","initiatedBy":{"user":{"userPrincipalName":"a@b","ipAddress":"1.2.3.4"}}}`,
	`{"riskEventType":"anonymizedIPAddress","detectedDateTime":"2025-01-01T00:00:00Z","ipAddress":"1.2.3.4"}`,
	`{"event_timestamp":"2022-02-09T00:00:00Z","operation_name":{"value":"Microsoft.Compute/disks/write"},"status":{"value":"Started"}}`,
	`{"Timestamp":"2021-08-02T13:32:07Z","ActionType":"MailItemsAccessed","IPAddress":"1.2.3.4"}`,
	`{"time":"2026-07-16T15:34:08Z","category":"Other","properties":{}}`,
}
