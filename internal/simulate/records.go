package simulate

import (
	"net/netip"
	"strconv"
)

// Record writers: one function per record shape, writing the fields in
// the order, casing, nesting and value types of the real records (see
// docs/simulate.md for the sources each shape follows).

// ualCommon writes the common schema fields every UAL record starts with.
func (s *sim) ualCommon(w *jw, t int64, id id16, op string, recordType int, userType int, workload, userKey, userID string) {
	w.open()
	w.time("CreationTime", t, layoutUAL)
	w.guid("Id", id)
	w.str("Operation", op)
	w.str("OrganizationId", s.t.ID)
	w.int("RecordType", int64(recordType))
	w.int("UserType", int64(userType))
	w.int("Version", 1)
	w.str("Workload", workload)
	w.str("UserKey", userKey)
	w.str("UserId", userID)
}

// access is the authorisation context of an Exchange request.
type access struct {
	appID       string
	clientAppID string
	ip          netip.Addr
	clientInfo  string
	session     id16 // AAD session; zero for app-only tokens
	token       id16 // uniqueTokenIdentifier of the token used
	issued      int64
	unlinked    bool // the token has no sign-in record (not written; for the truth)
}

func (a *access) hasSession() bool { return a.session != id16{} }

// actor is who performed an Exchange operation.
type actor struct {
	userID   string
	userKey  string
	sid      string
	userType int
}

func userActor(u *User) actor {
	return actor{userID: u.UPN, userKey: u.puid, sid: u.sid, userType: 0}
}

func appActor(a *App) actor {
	// App-only access is attributed to the application, not a user.
	return actor{userID: a.ID, userKey: a.ID, sid: "", userType: 5}
}

func (s *sim) appAccessContext(w *jw, a *access) {
	w.obj("AppAccessContext")
	if a.hasSession() {
		w.guid("AADSessionId", a.session)
	}
	w.str("ClientAppId", a.clientAppID)
	w.time("IssuedAtTime", a.issued, layoutUAL)
	w.token("UniqueTokenId", a.token)
	w.close()
}

// folderRead is one folder's part of a MailItemsAccessed record.
type folderRead struct {
	folder int
	items  []int // message sequence numbers; empty for Sync
}

// mailItemsAccessed writes a MailItemsAccessed (RecordType 50) record.
func (s *sim) mailItemsAccessed(w *jw, t int64, id id16, who actor, mb *Mailbox, logonType int, a *access, sync, throttled bool, reads []folderRead) {
	s.ualCommon(w, t, id, "MailItemsAccessed", 50, who.userType, "Exchange", who.userKey, who.userID)
	w.str("ResultStatus", "Succeeded")
	w.str("OriginatingServer", mb.server+" (15.20.8293.019)\r\n")
	w.int("InternalLogonType", int64(logonType))
	w.str("OrganizationName", s.t.OrgName)
	w.str("ClientInfoString", a.clientInfo)
	w.str("MailboxOwnerSid", mb.sid)
	w.str("ClientIPAddress", a.ip.String())
	w.str("MailboxOwnerUPN", mb.UPN)
	w.bool("ExternalAccess", false)
	w.str("LogonUserSid", who.sid)
	w.str("MailboxGuid", mb.guid)
	w.int("LogonType", int64(logonType))
	if a.hasSession() {
		w.guid("SessionId", a.session)
	}
	s.appAccessContext(w, a)
	w.arr("OperationProperties")
	w.elemOpen()
	w.str("Name", "MailAccessType")
	if sync {
		w.str("Value", "Sync")
	} else {
		w.str("Value", "Bind")
	}
	w.close()
	w.elemOpen()
	w.str("Name", "IsThrottled")
	if throttled {
		w.str("Value", "True")
	} else {
		w.str("Value", "False")
	}
	w.close()
	w.endArr()
	n := 0
	for _, r := range reads {
		if sync {
			n++
		} else {
			n += len(r.items)
		}
	}
	w.int("OperationCount", int64(n))
	w.str("AppId", a.appID)
	w.arr("Folders")
	for _, r := range reads {
		w.elemOpen()
		if !sync {
			w.arr("FolderItems")
			for _, it := range r.items {
				w.elemOpen()
				w.key("InternetMessageId")
				w.b = append(w.b, '"')
				w.b = s.t.appendMessageID(w.b, mb, r.folder, it)
				w.b = append(w.b, '"')
				w.int("SizeInBytes", s.t.messageSize(mb, r.folder, it))
				w.close()
			}
			w.endArr()
		}
		w.str("Id", s.t.folderID(mb, r.folder))
		w.str("Path", folderPaths[r.folder])
		w.close()
	}
	w.endArr()
	w.str("ClientAppId", a.clientAppID)
	w.close()
}

// exchangeItem writes a single-item mailbox audit record (RecordType 2):
// Send and MailboxLogin.
func (s *sim) exchangeItem(w *jw, t int64, id id16, op string, who actor, mb *Mailbox, logonType int, a *access, sentSeq int) {
	s.ualCommon(w, t, id, op, 2, who.userType, "Exchange", who.userKey, who.userID)
	w.str("ResultStatus", "Succeeded")
	w.str("AppId", a.appID)
	w.str("ClientAppId", a.clientAppID)
	w.str("ClientIPAddress", a.ip.String())
	w.str("ClientInfoString", a.clientInfo)
	w.bool("ExternalAccess", false)
	w.int("InternalLogonType", int64(logonType))
	w.int("LogonType", int64(logonType))
	w.str("LogonUserSid", who.sid)
	w.str("MailboxGuid", mb.guid)
	w.str("MailboxOwnerSid", mb.sid)
	w.str("MailboxOwnerUPN", mb.UPN)
	w.str("OrganizationName", s.t.OrgName)
	w.str("OriginatingServer", mb.server+" (15.20.8293.019)\r\n")
	if a.hasSession() {
		w.guid("SessionId", a.session)
	}
	s.appAccessContext(w, a)
	if op == "Send" {
		w.obj("Item")
		w.str("Id", "RgAAAAA"+s.t.folderID(mb, 1)[7:30]+strconv.Itoa(sentSeq))
		w.str("InternetMessageId", s.t.messageID(mb, 1, sentSeq))
		w.obj("ParentFolder")
		w.str("Id", s.t.folderID(mb, 1))
		w.str("Path", folderPaths[1])
		w.close()
		w.int("SizeInBytes", s.t.messageSize(mb, 1, sentSeq))
		w.str("Subject", subjects[sentSeq%len(subjects)])
		w.close()
		w.bool("SaveToSentItems", true)
	}
	w.close()
}

var subjects = []string{"Re: Q3 forecast", "Weekly sync notes", "Contract draft v4", "Travel booking", "Re: Budget approval", "Customer escalation", "FW: Board pack", "Lunch on Friday?", "Re: Hiring plan", "Invoice 2291"}

// searchQuery writes SearchQueryInitiatedExchange (RecordType 101, ExchangeSearch).
func (s *sim) searchQuery(w *jw, t int64, id id16, who actor, mb *Mailbox, a *access, query string) {
	s.ualCommon(w, t, id, "SearchQueryInitiatedExchange", 101, who.userType, "Exchange", who.userKey, who.userID)
	w.str("ResultStatus", "Succeeded")
	w.str("ClientIP", a.ip.String())
	w.str("ObjectId", mb.UPN)
	w.str("AppId", a.appID)
	w.str("ClientAppId", a.clientAppID)
	if a.hasSession() {
		w.guid("SessionId", a.session)
	}
	s.appAccessContext(w, a)
	w.str("QueryText", query)
	w.str("QuerySource", "Owa")
	w.str("ScenarioName", "mail")
	w.str("ClientInfoString", a.clientInfo)
	w.close()
}

// nv is one Name/Value pair of an admin cmdlet's Parameters.
type nv struct{ name, value string }

// exchangeAdmin writes an Exchange admin cmdlet record (RecordType 1):
// New-InboxRule, Set-Mailbox, Add-MailboxPermission.
func (s *sim) exchangeAdmin(w *jw, t int64, id id16, op string, who actor, objectID string, a *access, params []nv) {
	s.ualCommon(w, t, id, op, 1, who.userType, "Exchange", who.userKey, who.userID)
	w.str("ResultStatus", "True")
	w.str("ClientIP", a.ip.String())
	w.str("ObjectId", objectID)
	w.str("AppId", a.appID)
	w.str("ClientAppId", a.clientAppID)
	w.bool("ExternalAccess", false)
	w.str("OrganizationName", s.t.OrgName)
	w.str("OriginatingServer", "PH0PR17MB5041 (15.20.8293.019)")
	if a.hasSession() {
		w.guid("SessionId", a.session)
	}
	s.appAccessContext(w, a)
	w.arr("Parameters")
	for _, p := range params {
		w.elemOpen()
		w.str("Name", p.name)
		w.str("Value", p.value)
		w.close()
	}
	w.endArr()
	w.close()
}

// userLoggedIn writes the UAL mirror of an Entra sign-in (RecordType 15,
// AzureActiveDirectoryStsLogon): UserLoggedIn or UserLoginFailed.
func (s *sim) userLoggedIn(w *jw, si *signIn) {
	op := "UserLoggedIn"
	status := "Success"
	errNum := "0"
	if si.errorCode != 0 {
		op = "UserLoginFailed"
		status = "Failed"
		errNum = strconv.Itoa(si.errorCode)
	}
	s.ualCommon(w, si.t, si.id, op, 15, 0, "AzureActiveDirectory", si.user.ObjectID, si.user.UPN)
	w.str("ResultStatus", status)
	w.str("ClientIP", si.ip.String())
	w.str("ObjectId", si.resource.ID)
	w.int("AzureActiveDirectoryEventType", 1)
	w.str("ActorContextId", s.t.ID)
	w.str("ActorIpAddress", si.ip.String())
	w.guid("InterSystemsId", si.corr)
	w.guid("IntraSystemId", si.id)
	w.str("SupportTicketId", "")
	w.str("TargetContextId", s.t.ID)
	w.str("ApplicationId", si.app.ID)
	w.str("ErrorNumber", errNum)
	w.arr("ExtendedProperties")
	ext := [...]nv{{"ResultStatusDetail", status}, {"UserAgent", si.ua}, {"RequestType", si.requestType()}}
	for _, p := range ext {
		w.elemOpen()
		w.str("Name", p.name)
		w.str("Value", p.value)
		w.close()
	}
	w.endArr()
	w.emptyArr("ModifiedProperties")
	w.arr("Actor")
	w.elemOpen()
	w.str("ID", si.user.ObjectID)
	w.int("Type", 0)
	w.close()
	w.elemOpen()
	w.str("ID", si.user.UPN)
	w.int("Type", 5)
	w.close()
	w.endArr()
	w.arr("Target")
	w.elemOpen()
	w.str("ID", si.resource.ID)
	w.int("Type", 0)
	w.close()
	w.endArr()
	w.arr("DeviceProperties")
	dev := [...]nv{{"OS", si.dev.os}, {"BrowserType", browserType(si.dev.browser)}, {"IsCompliant", pyBool(si.dev.managed)}, {"IsCompliantAndManaged", pyBool(si.dev.managed)}}
	for _, p := range dev {
		w.elemOpen()
		w.str("Name", p.name)
		w.str("Value", p.value)
		w.close()
	}
	if si.session != (id16{}) {
		w.elemOpen()
		w.str("Name", "SessionId")
		w.guid("Value", si.session)
		w.close()
	}
	w.endArr()
	w.close()
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func browserType(b string) string {
	for i := 0; i < len(b); i++ {
		if b[i] == ' ' {
			return b[:i]
		}
	}
	return b
}

// directoryAudit writes an Entra directory change mirrored into the UAL
// (RecordType 8, AzureActiveDirectory): "Consent to application.",
// "Add service principal.", "Add service principal credentials.".
func (s *sim) directoryAudit(w *jw, t int64, id id16, op string, u *User, target *App, modified [][3]string, ua string) {
	s.ualCommon(w, t, id, op, 8, 0, "AzureActiveDirectory", u.puid, u.UPN)
	w.str("ResultStatus", "Success")
	w.str("ObjectId", target.ServicePrincipalID)
	w.int("AzureActiveDirectoryEventType", 1)
	w.arr("ExtendedProperties")
	w.elemOpen()
	w.str("Name", "additionalDetails")
	w.str("Value", `{"User-Agent":"`+ua+`","AppId":"`+target.ID+`"}`)
	w.close()
	w.elemOpen()
	w.str("Name", "extendedAuditEventCategory")
	w.str("Value", "ServicePrincipal")
	w.close()
	w.endArr()
	w.arr("ModifiedProperties")
	for _, m := range modified {
		w.elemOpen()
		w.str("Name", m[0])
		w.str("NewValue", m[1])
		w.str("OldValue", m[2])
		w.close()
	}
	w.endArr()
	w.arr("Actor")
	w.elemOpen()
	w.str("ID", u.UPN)
	w.int("Type", 5)
	w.close()
	w.elemOpen()
	w.str("ID", u.puid)
	w.int("Type", 3)
	w.close()
	w.elemOpen()
	w.str("ID", "User_"+u.ObjectID)
	w.int("Type", 2)
	w.close()
	w.endArr()
	w.str("ActorContextId", s.t.ID)
	w.guid("InterSystemsId", idFrom(mix(uint64(t))^strKey(op)))
	w.guid("IntraSystemId", id)
	w.str("SupportTicketId", "")
	w.arr("Target")
	for _, x := range [...][2]string{{"ServicePrincipal_" + target.ServicePrincipalID, "2"}, {target.ServicePrincipalID, "2"}, {"ServicePrincipal", "2"}, {target.DisplayName, "1"}, {target.ID, "2"}} {
		w.elemOpen()
		w.str("ID", x[0])
		n, _ := strconv.Atoi(x[1])
		w.int("Type", int64(n))
		w.close()
	}
	w.endArr()
	w.str("TargetContextId", s.t.ID)
	w.close()
}

// signIn is an Entra ID sign-in (Graph signIn resource, beta shape).
type signIn struct {
	t           int64
	id, corr    id16
	user        *User // nil for service-principal sign-ins
	sp          *App  // the service principal for app-only sign-ins
	app         *App  // client application
	resource    *App
	ip          netip.Addr
	net         *network
	dev         device
	ua          string
	interactive bool
	errorCode   int
	session     id16
	token       id16
	clientApp   string // clientAppUsed
	credential  string // clientCredentialType for service principals
	incoming    string // incomingTokenType
}

func (si *signIn) requestType() string {
	if si.interactive {
		return "OAuth2:Authorize"
	}
	return "OAuth2:Token"
}

var failureReasons = map[int]string{
	0:     "Other.",
	50126: "Error validating credentials due to invalid username or password.",
	50053: "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
	50074: "Strong Authentication is required.",
	50140: "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
}

// entraSignIn writes a sign-in in the Graph beta signIn shape (as exported
// by Graph, PowerShell and Event Hub properties).
func (s *sim) entraSignIn(w *jw, si *signIn) {
	w.open()
	w.guid("id", si.id)
	w.time("createdDateTime", si.t, layoutGraph)
	if si.user != nil {
		w.str("userDisplayName", si.user.DisplayName)
		w.str("userPrincipalName", si.user.UPN)
		w.str("userId", si.user.ObjectID)
	} else {
		w.str("userDisplayName", "")
		w.str("userPrincipalName", "")
		w.str("userId", "")
	}
	w.str("appId", si.app.ID)
	w.str("appDisplayName", si.app.DisplayName)
	w.str("ipAddress", si.ip.String())
	w.null("ipAddressFromResourceProvider")
	w.str("clientAppUsed", si.clientApp)
	w.str("userAgent", si.ua)
	w.guid("correlationId", si.corr)
	if si.errorCode == 0 {
		w.str("conditionalAccessStatus", "success")
	} else {
		w.str("conditionalAccessStatus", "notApplied")
	}
	w.str("originalRequestId", "")
	w.bool("isInteractive", si.interactive)
	w.str("tokenIssuerName", "")
	w.str("tokenIssuerType", "AzureAD")
	if si.user == nil {
		w.str("clientCredentialType", si.credential)
	} else {
		w.str("clientCredentialType", "none")
	}
	w.int("processingTimeInMilliseconds", int64(40+si.id[0]%200))
	w.str("riskDetail", "none")
	w.str("riskLevelAggregated", "none")
	w.str("riskLevelDuringSignIn", "none")
	w.str("riskState", "none")
	w.emptyArr("riskEventTypes")
	w.emptyArr("riskEventTypes_v2")
	w.str("resourceDisplayName", si.resource.DisplayName)
	w.str("resourceId", si.resource.ID)
	w.str("resourceTenantId", s.t.ID)
	w.str("homeTenantId", s.t.ID)
	w.str("homeTenantName", "")
	w.arr("authenticationMethodsUsed")
	if si.interactive {
		w.elemStr("Password")
	}
	w.endArr()
	switch {
	case si.user == nil:
		w.str("authenticationRequirement", "")
	case si.interactive:
		w.str("authenticationRequirement", "multiFactorAuthentication")
	default:
		w.str("authenticationRequirement", "singleFactorAuthentication")
	}
	if si.user != nil {
		w.str("signInIdentifier", si.user.UPN)
		w.str("signInIdentifierType", "userPrincipalName")
	} else {
		w.str("signInIdentifier", "")
		w.null("signInIdentifierType")
	}
	if si.sp != nil {
		w.str("servicePrincipalName", si.sp.DisplayName)
	} else {
		w.str("servicePrincipalName", "")
	}
	w.arr("signInEventTypes")
	switch {
	case si.user == nil:
		w.elemStr("servicePrincipal")
	case si.interactive:
		w.elemStr("interactiveUser")
	default:
		w.elemStr("nonInteractiveUser")
	}
	w.endArr()
	if si.sp != nil {
		w.str("servicePrincipalId", si.sp.ServicePrincipalID)
	} else {
		w.str("servicePrincipalId", "")
	}
	w.str("federatedCredentialId", "")
	if si.user != nil {
		w.str("userType", "member")
	} else {
		w.null("userType")
	}
	w.bool("flaggedForReview", false)
	w.bool("isTenantRestricted", false)
	w.int("autonomousSystemNumber", int64(si.net.entry.ASN))
	w.str("crossTenantAccessType", "none")
	w.str("servicePrincipalCredentialKeyId", "")
	w.str("servicePrincipalCredentialThumbprint", "")
	w.token("uniqueTokenIdentifier", si.token)
	w.str("incomingTokenType", si.incoming)
	w.str("authenticationProtocol", "none")
	w.str("resourceServicePrincipalId", s.resourceSP(si.resource))
	w.str("signInTokenProtectionStatus", "none")
	w.str("originalTransferMethod", "none")
	w.bool("isThroughGlobalSecureAccess", false)
	w.str("globalSecureAccessIpAddress", "")
	if si.session != (id16{}) {
		w.guid("sessionId", si.session)
	} else {
		w.str("sessionId", "")
	}
	w.str("appOwnerTenantId", appOwnerTenant(si.app, s.t.ID))
	w.str("resourceOwnerTenantId", "f8cdef31-a31e-4b4a-93e4-5f571e91255a")
	w.null("mfaDetail")
	w.null("authenticationAppDeviceDetails")
	w.obj("status")
	w.int("errorCode", int64(si.errorCode))
	w.str("failureReason", failureReasons[si.errorCode])
	if si.errorCode == 0 && si.interactive {
		w.str("additionalDetails", "MFA requirement satisfied by claim in the token")
	} else {
		w.null("additionalDetails")
	}
	w.close()
	w.obj("deviceDetail")
	if si.dev.managed {
		w.guid("deviceId", si.dev.id)
	} else {
		w.str("deviceId", "")
	}
	w.str("displayName", "")
	w.str("operatingSystem", si.dev.os)
	w.str("browser", si.dev.browser)
	w.bool("isCompliant", si.dev.managed)
	w.bool("isManaged", si.dev.managed)
	w.str("trustType", si.dev.trust)
	w.close()
	w.obj("location")
	w.str("city", si.net.entry.City)
	w.str("state", si.net.state)
	w.str("countryOrRegion", si.net.entry.Country)
	w.obj("geoCoordinates")
	w.null("altitude")
	w.float("latitude", si.net.lat)
	w.float("longitude", si.net.lon)
	w.close()
	w.close()
	w.arr("appliedConditionalAccessPolicies")
	if si.user != nil {
		w.elemOpen()
		w.str("displayName", "Require multifactor authentication for all users")
		w.emptyArr("enforcedGrantControls")
		w.emptyArr("enforcedSessionControls")
		w.str("id", "013f1d6b-785b-4520-b0f9-31bfaefb8e2b")
		if si.errorCode == 0 {
			w.str("result", "success")
		} else {
			w.str("result", "notApplied")
		}
		w.close()
	}
	w.endArr()
	w.emptyArr("authenticationContextClassReferences")
	w.emptyArr("authenticationProcessingDetails")
	w.emptyArr("networkLocationDetails")
	w.emptyArr("authenticationDetails")
	w.emptyArr("authenticationRequirementPolicies")
	w.emptyArr("sessionLifetimePolicies")
	w.obj("privateLinkDetails")
	w.str("policyId", "")
	w.str("policyName", "")
	w.str("resourceId", "")
	w.str("policyTenantId", "")
	w.close()
	w.emptyArr("appliedEventListeners")
	w.emptyArr("authenticationAppPolicyEvaluationDetails")
	w.obj("managedServiceIdentity")
	w.str("msiType", "none")
	w.str("associatedResourceId", "")
	w.str("federatedTokenId", "")
	w.str("federatedTokenIssuer", "")
	w.close()
	w.obj("tokenProtectionStatusDetails")
	w.str("signInSessionStatus", "none")
	w.null("signInSessionStatusCode")
	w.close()
	w.close()
}

func appOwnerTenant(a *App, tenant string) string {
	if a.FirstParty {
		return "f8cdef31-a31e-4b4a-93e4-5f571e91255a" // Microsoft Services
	}
	return tenant
}

func (s *sim) resourceSP(a *App) string {
	return guid(idFrom(hashKey(s.t.seed, strKey(a.ID))))
}

// gwsParam is one Reports API event parameter.
type gwsParam struct {
	name  string
	value string
	ival  int64
	bval  bool
	multi []string
	msg   []gwsParam // nested parameters (messageValue)
	kind  byte       // 's', 'i', 'b', 'm', 'n'
}

func (s *sim) gwsParams(w *jw, params []gwsParam) {
	for _, p := range params {
		w.elemOpen()
		w.str("name", p.name)
		switch p.kind {
		case 'i':
			w.str("intValue", strconv.FormatInt(p.ival, 10))
		case 'b':
			w.bool("boolValue", p.bval)
		case 'm':
			w.arr("multiValue")
			for _, v := range p.multi {
				w.elemStr(v)
			}
			w.endArr()
		case 'n':
			w.obj("messageValue")
			w.arr("parameter")
			s.gwsParams(w, p.msg)
			w.endArr()
			w.close()
		default:
			w.str("value", p.value)
		}
		w.close()
	}
}

// gwsActivity writes a Google Workspace Reports API activity
// (admin#reports#activity) as returned by activities.list.
func (s *sim) gwsActivity(w *jw, t int64, uq uint64, app string, gu *gwsUser, ip netip.Addr, net *network, evType, evName string, params []gwsParam) {
	w.open()
	w.str("kind", "admin#reports#activity")
	w.key("etag")
	w.b = append(w.b, `"\"`...)
	w.b = strconv.AppendUint(w.b, uq>>8, 36)
	w.b = append(w.b, `/`...)
	w.b = strconv.AppendUint(w.b, mix(uq), 36)
	w.b = append(w.b, `\""`...)
	w.obj("id")
	w.time("time", t, layoutGWS)
	w.str("uniqueQualifier", strconv.FormatInt(int64(uq), 10))
	w.str("applicationName", app)
	w.str("customerId", s.t.GWSCust)
	w.close()
	w.obj("actor")
	w.str("callerType", "USER")
	w.str("email", gu.email)
	w.str("profileId", gu.profileID)
	w.close()
	w.str("ipAddress", ip.String())
	w.obj("networkInfo")
	w.arr("ipAsn")
	w.sep()
	w.b = strconv.AppendUint(w.b, uint64(net.entry.ASN), 10)
	w.comma = true
	w.endArr()
	w.str("regionCode", net.entry.Country)
	w.str("subdivisionCode", net.sub)
	w.close()
	w.arr("events")
	w.elemOpen()
	w.str("type", evType)
	w.str("name", evName)
	w.arr("parameters")
	s.gwsParams(w, params)
	w.endArr()
	w.close()
	w.endArr()
	w.close()
}
