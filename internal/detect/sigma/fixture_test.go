package sigma

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSigmaHQFixtures runs a sample of SigmaHQ cloud rules, unchanged,
// over events shaped as vigil's decoders produce them (Graph sign-ins and
// directory audits, Azure diagnostic records, UAL records, Workspace
// activities) and checks each fires on its positive event and not on its
// negative one. This is what the field mapping per source is for.
func TestSigmaHQFixtures(t *testing.T) {
	dir := sharedDir(t, "data/sigmahq-sigma/rules/cloud")
	cases := []struct {
		rule, source string
		failed       bool
		pos, neg     string
	}{
		{"azure/signin_logs/azure_ad_azurehound_discovery.yml", "entra.signin", false,
			`{"userPrincipalName":"a@x","userAgent":"azurehound/v2.1.0","status":{"errorCode":0}}`,
			`{"userPrincipalName":"a@x","userAgent":"azurehound/v2.1.0","status":{"errorCode":50126}}`},
		{"azure/signin_logs/azure_user_login_blocked_by_conditional_access.yml", "entra.signin", true,
			`{"status":{"errorCode":53003,"failureReason":"Access has been blocked by Conditional Access policies."}}`,
			`{"status":{"errorCode":50126}}`},
		// Azure Monitor diagnostic shape: resultType at the top level.
		{"azure/signin_logs/azure_user_login_blocked_by_conditional_access.yml", "entra.signin", true,
			`{"category":"SignInLogs","resultType":"53003","properties":{"status":{"errorCode":53003}}}`,
			`{"category":"SignInLogs","resultType":"0","properties":{"status":{"errorCode":0}}}`},
		{"azure/signin_logs/azure_mfa_denies.yml", "entra.signin", true,
			`{"authenticationRequirement":"multiFactorAuthentication","status":{"errorCode":500121,"additionalDetails":"MFA denied; user declined the authentication"}}`,
			`{"authenticationRequirement":"multiFactorAuthentication","status":{"errorCode":0,"additionalDetails":"MFA completed in Azure AD"}}`},
		{"azure/signin_logs/azure_ad_only_single_factor_auth_required.yml", "entra.signin", false,
			`{"authenticationRequirement":"singleFactorAuthentication","status":{"errorCode":0}}`,
			`{"authenticationRequirement":"multiFactorAuthentication","status":{"errorCode":0}}`},
		{"azure/signin_logs/azure_ad_risky_sign_ins_with_singlefactorauth_from_unknown_devices.yml", "entra.signin", false,
			`{"authenticationRequirement":"singleFactorAuthentication","riskState":"atRisk","status":{"errorCode":0},"deviceDetail":{"deviceId":"","trustType":""}}`,
			`{"authenticationRequirement":"singleFactorAuthentication","riskState":"atRisk","status":{"errorCode":0},"deviceDetail":{"deviceId":"d1","trustType":"Azure AD joined"}}`},
		{"azure/signin_logs/azure_ad_device_registration_or_join_without_mfa.yml", "entra.signin", false,
			`{"resourceDisplayName":"Device Registration Service","conditionalAccessStatus":"success","authenticationRequirement":"singleFactorAuthentication"}`,
			`{"resourceDisplayName":"Device Registration Service","conditionalAccessStatus":"success","authenticationRequirement":"multiFactorAuthentication"}`},
		{"azure/signin_logs/azure_mfa_interrupted.yml", "entra.signin", true,
			`{"status":{"errorCode":50074,"failureReason":"Strong Auth required"}}`,
			`{"status":{"errorCode":50074,"failureReason":"Something else"}}`},
		{"azure/audit_logs/azure_service_principal_created.yml", "entra.audit", false,
			`{"activityDisplayName":"Add service principal","category":"ApplicationManagement","result":"success"}`,
			`{"activityDisplayName":"Remove service principal","category":"ApplicationManagement","result":"success"}`},
		{"azure/audit_logs/azure_app_permissions_msft.yml", "entra.audit", false,
			`{"activityDisplayName":"Add app role assignment to service principal"}`,
			`{"activityDisplayName":"Add app role assignment grant to user"}`},
		{"azure/audit_logs/azure_ad_users_added_to_device_admin_roles.yml", "entra.audit", false,
			`{"category":"RoleManagement","activityDisplayName":"Add member to role","targetResources":[{"id":"u1","type":"User"},{"id":"62e90394-69f5-4237-9190-012177145e10","type":"Role"}]}`,
			`{"category":"RoleManagement","activityDisplayName":"Add member to role","targetResources":[{"id":"u1","type":"User"},{"id":"88d8e3e3-8f55-4a1e-953a-9b9898b8876b","type":"Role"}]}`},
		{"azure/audit_logs/azure_app_end_user_consent.yml", "entra.audit", false,
			`{"activityDisplayName":"Consent to application","targetResources":[{"modifiedProperties":[{"displayName":"ConsentContext.IsAdminConsent","oldValue":null,"newValue":"\"False\""}]}]}`,
			`{"activityDisplayName":"Consent to application","targetResources":[{"modifiedProperties":[{"displayName":"ConsentContext.IsAdminConsent","oldValue":null,"newValue":"\"True\""}]}]}`},
		{"azure/audit_logs/azure_user_account_mfa_disable.yml", "entra.audit", false,
			`{"loggedByService":"Core Directory","category":"UserManagement","activityDisplayName":"Update user","targetResources":[{"modifiedProperties":[{"displayName":"StrongAuthenticationRequirement","oldValue":"[{\"State\":1}]","newValue":"[{\"RelyingParty\":\"*\",\"State\":0}]"}]}]}`,
			`{"loggedByService":"Core Directory","category":"UserManagement","activityDisplayName":"Update user","targetResources":[{"modifiedProperties":[{"displayName":"StrongAuthenticationRequirement","oldValue":"[]","newValue":"[{\"RelyingParty\":\"*\",\"State\":1}]"}]}]}`},
		{"azure/identity_protection/azure_identity_protection_atypical_travel.yml", "entra.risk", false,
			`{"riskEventType":"unlikelyTravel","riskLevel":"medium"}`,
			`{"riskEventType":"unfamiliarFeatures","riskLevel":"medium"}`},
		{"azure/activity_logs/azure_keyvault_modified_or_deleted.yml", "azure.activity", false,
			`{"operationName":"MICROSOFT.KEYVAULT/VAULTS/WRITE","category":"Administrative"}`,
			`{"operationName":"MICROSOFT.KEYVAULT/VAULTS/READ","category":"Administrative"}`},
		// Azure SDK shape (plaso test data): operation_name.value.
		{"azure/activity_logs/azure_keyvault_modified_or_deleted.yml", "azure.activity", false,
			`{"operation_name":{"value":"Microsoft.KeyVault/vaults/delete","localized_value":"Delete Key Vault"}}`,
			`{"operation_name":{"value":"Microsoft.Compute/disks/write","localized_value":"Create disk"}}`},
		{"azure/activity_logs/azure_granting_permission_detection.yml", "azure.activity", false,
			`{"operationName":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"}`,
			`{"operationName":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/DELETE"}`},
		{"azure/activity_logs/azure_virtual_network_modified_or_deleted.yml", "azure.activity", false,
			`{"operationName":"MICROSOFT.NETWORK/VIRTUALNETWORKS/SUBNETS/DELETE"}`,
			`{"operationName":"MICROSOFT.NETWORK/VIRTUALNETWORKS/READ"}`},
		{"m365/threat_management/microsoft365_susp_inbox_forwarding.yml", "m365.ual", false,
			`{"RecordType":40,"Workload":"SecurityComplianceCenter","Operation":"AlertTriggered","Name":"Suspicious inbox forwarding","ResultStatus":"Succeeded"}`,
			`{"RecordType":40,"Workload":"SecurityComplianceCenter","Operation":"AlertTriggered","Name":"Suspicious email sending patterns detected","ResultStatus":"Succeeded"}`},
		{"m365/exchange/microsoft365_new_federated_domain_added_exchange.yml", "m365.ual", false,
			`{"RecordType":1,"Workload":"Exchange","Operation":"Add-FederatedDomain","ResultStatus":"True"}`,
			`{"RecordType":1,"Workload":"Exchange","Operation":"Set-Mailbox","ResultStatus":"True"}`},
		{"m365/audit/microsoft365_bypass_conditional_access.yml", "m365.ual", false,
			`{"Operation":"UserLoggedIn","ApplicationId":"9ba1a5c7-f17a-4de9-a1f1-6178c8d51223","ResultStatus":"Success","RequestType":"Cmsi:Cmsi","ObjectId":"00000003-0000-0000-c000-000000000000"}`,
			`{"Operation":"UserLoggedIn","ApplicationId":"9ba1a5c7-f17a-4de9-a1f1-6178c8d51223","ResultStatus":"Success","RequestType":"Cmsi:Cmsi","ObjectId":"0000000a-0000-0000-c000-000000000000"}`},
		{"m365/audit/microsoft365_disabling_mfa.yml", "m365.ual", false,
			`{"Operation":"Disable Strong Authentication.","Workload":"AzureActiveDirectory"}`,
			`{"Operation":"Enable Strong Authentication.","Workload":"AzureActiveDirectory"}`},
		{"m365/threat_management/microsoft365_pst_export_alert_using_new_compliancesearchaction.yml", "m365.ual", false,
			`{"Workload":"SecurityComplianceCenter","Operation":"New-ComplianceSearchAction","Parameters":"-SearchName \"s1\" -Export -Format FxStream -ExchangeArchiveFormat PerUserPst"}`,
			`{"Workload":"SecurityComplianceCenter","Operation":"New-ComplianceSearchAction","Parameters":"-SearchName \"s1\" -Purge"}`},
		{"gcp/gworkspace/admin/gcp_gworkspace_mfa_disabled.yml", "gws.admin", false,
			`{"id":{"applicationName":"admin"},"eventName":"ENFORCE_STRONG_AUTHENTICATION","eventService":"admin.googleapis.com","NEW_VALUE":"false"}`,
			`{"id":{"applicationName":"admin"},"eventName":"ENFORCE_STRONG_AUTHENTICATION","eventService":"admin.googleapis.com","NEW_VALUE":"true"}`},
		// Without the decoder's hoisted names: the mapping finds the event
		// name and parameters under events[].
		{"gcp/gworkspace/admin/gcp_gworkspace_granted_domain_api_access.yml", "gws.admin", false,
			`{"id":{"applicationName":"admin"},"events":{"name":"AUTHORIZE_API_CLIENT_ACCESS","parameters":[{"name":"API_CLIENT_NAME","value":"x"}]}}`,
			`{"id":{"applicationName":"admin"},"events":{"name":"CREATE_USER"}}`},
		{"gcp/gworkspace/login/gcp_gworkspace_suspicious_login.yml", "gws.login", false,
			`{"id":{"applicationName":"login"},"events":{"name":"suspicious_login"}}`,
			`{"id":{"applicationName":"login"},"events":{"name":"login_success"}}`},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, c.rule))
			if err != nil {
				t.Fatal(err)
			}
			cp := NewCompiler(Options{})
			cp.AddFile(c.rule, data)
			rs, ref := cp.Compile()
			if len(ref) > 0 {
				t.Fatal(ref[0].Reason)
			}
			for _, x := range []struct {
				rec  string
				want bool
			}{{c.pos, true}, {c.neg, false}} {
				e := mkEvent(t, c.source, x.rec)
				e.Failed = c.failed && x.want
				if e.Source == "m365.ual" || e.Source == "gws.admin" || e.Source == "gws.login" {
					e.Operation = e.Get("Operation")
					if ev := e.Get("events.name"); ev != "" {
						e.Operation = ev
					}
					e.Normalize()
				}
				var got []Detection
				rs.Match(e, func(d Detection) { got = append(got, d) })
				if (len(got) > 0) != x.want {
					t.Errorf("on %s: fired %v, want %v", x.rec, len(got) > 0, x.want)
				}
				if x.want && len(got) > 0 && len(got[0].Fields) == 0 {
					t.Errorf("detection has no matched fields")
				}
			}
		})
	}
}
