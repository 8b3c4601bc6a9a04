package main

import (
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

// user is one mailbox owner / identity in the synthetic tenant.
type user struct {
	upn       string
	objectID  string // Entra object id (UserKey of AAD records)
	puid      string // UserKey of Exchange records
	sid       string
	mailbox   string // MailboxGuid
	homeIP    [2]string
	ua        int // index into userAgents
	session   string
	token     string
	folderIDs [len(mailFolders)]string
}

type stats struct {
	records, bytes, triggers int64
}

// generator holds the deterministic random state and the buffer one
// record is formatted into.
type generator struct {
	r        *rand.Rand
	t        time.Time
	sec      int64 // unix second whose formatting is cached in ts
	ts       []byte
	buf      []byte
	tenant   string
	users    []user
	servers  []string
	ipPool   []string
	triggers int64
	// itemsMin..itemsMax is the number of FolderItems a MailItemsAccessed
	// Bind record lists in all (0, 0: the default of 1-4 per folder).
	itemsMin, itemsMax int
}

const (
	orgName = "contoso.onmicrosoft.com"
	domain  = "contoso.com"
)

var (
	firstNames  = []string{"adele", "alex", "allan", "bianca", "cameron", "christie", "debra", "diego", "emily", "enrico", "grady", "henrietta", "isaiah", "joni", "johanna", "lee", "lidia", "lynne", "megan", "miriam", "nestor", "patti", "pradeep", "raul", "sanjay", "sofia", "tomas", "yuki", "zara", "kwame", "ingrid", "mateo", "priya", "olga", "farid", "chen", "amara", "lukas", "noor", "hiro"}
	lastNames   = []string{"vance", "wilber", "deyoung", "pila", "white", "cline", "berg", "siciliani", "braun", "ruiz", "archie", "wilson", "morales", "sherman", "lauer", "gu", "holloway", "patterson", "bowen", "graham", "wilke", "fernandez", "gupta", "garcia", "novak", "rossi", "tanaka", "khan", "okafor", "schmidt", "silva", "hansen", "nguyen", "kowalski", "dubois", "murphy", "ivanova", "haddad", "lindqvist", "mensah"}
	mailFolders = [...]string{`\\Inbox`, `\\Sent Items`, `\\Archive`, `\\Deleted Items`, `\\Drafts`, `\\Inbox\\Projects`, `\\Conversation History`}
	userAgents  = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:144.0) Gecko/20100101 Firefox/144.0",
		"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.19127; Pro)",
		"Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
	}
	uaOS      = []string{"Windows10", "MacOs", "Ios", "Windows10", "Windows10", "Android"}
	uaBrowser = []string{"Edge", "Chrome", "Mobile Safari", "Firefox", "Rich Client", "Chrome Mobile"}
	// ClientInfoString values as Exchange writes them for MailItemsAccessed.
	clientInfos = []string{
		"Client=OWA;Action=ViaProxy",
		"Client=REST;Client=RESTSystem;;",
		"Client=MSExchangeRPC",
		"Client=OutlookService;Outlook-iOS/2.0;",
		"Client=Microsoft.Exchange.ActiveSync;Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X);",
		"Client=WebServices;Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.19127; Pro);",
	}
	// (AppId, ClientAppId) pairs seen on mailbox access.
	mailApps = [][2]string{
		{"00000002-0000-0ff1-ce00-000000000000", ""},
		{"00000003-0000-0000-c000-000000000000", "5a95e683-08ad-424e-a441-1d1aec52c02c"},
		{"27922004-5251-4030-b22d-91ecd9a37ea4", "27922004-5251-4030-b22d-91ecd9a37ea4"},
		{"d3590ed6-52b3-4102-aeff-aad2292ab01c", "d3590ed6-52b3-4102-aeff-aad2292ab01c"},
		{"00000002-0000-0ff1-ce00-000000000000", "9199bf20-a13f-4107-85dc-02114787ef48"},
	}
	// ApplicationId of sign-ins (Office, Teams, Outlook, OneDrive, Azure portal).
	signinApps = []string{"4765445b-32c6-49b0-83e6-1d93765276ca", "1fec8e78-bce4-4aaf-ab1b-5451cc387264", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "ab9b8c07-8f02-4f72-87fa-80105867a763", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"}
	signinObjs = []string{"00000003-0000-0ff1-ce00-000000000000", "00000002-0000-0ff1-ce00-000000000000", "00000003-0000-0000-c000-000000000000", "797f4846-ba00-4fd7-ba43-dac1f8f63013"}
	sites      = []string{"sites/Finance", "sites/Legal", "sites/Engineering", "sites/HR", "sites/Marketing", "sites/ExecTeam"}
	docWords   = []string{"Budget", "Q3-Forecast", "Contract", "Roadmap", "Payroll", "Design", "Minutes", "Invoice", "Strategy", "Audit"}
	docExts    = []string{"docx", "xlsx", "pptx", "pdf", "txt", "csv"}
	subjects   = []string{"Re: Quarterly review", "Invoice 4471 overdue", "Updated contract draft", "Team offsite logistics", "FW: Wire transfer details", "Meeting notes", "Security awareness training", "Re: Budget approval"}
	// SigmaHQ m365 threat_management alert names (AlertTriggered Name).
	alertNames = []string{"Impossible travel activity", "Activity from infrequent country", "Suspicious inbox forwarding", "Activity from anonymous IP addresses", "Unusual volume of file deletion", "Log on from a risky IP address"}
)

func newGenerator(seed uint64, start time.Time, nUsers int) *generator {
	g := &generator{
		r:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		t:   start.UTC(),
		sec: -1,
		buf: make([]byte, 0, 8192),
	}
	g.tenant = string(g.appendGUID(nil))
	for i := range 40 {
		g.servers = append(g.servers, "BN"+strconv.Itoa(1+i%9)+"PR"+strconv.Itoa(10+i%7)+"MB"+strconv.Itoa(2000+g.r.IntN(8000)))
	}
	for range 4000 {
		g.ipPool = append(g.ipPool, g.randIPv4())
	}
	seen := map[string]int{}
	for range nUsers {
		name := firstNames[g.r.IntN(len(firstNames))] + "." + lastNames[g.r.IntN(len(lastNames))]
		seen[name]++
		if seen[name] > 1 {
			name += strconv.Itoa(seen[name])
		}
		u := user{
			upn:      name + "@" + domain,
			objectID: string(g.appendGUID(nil)),
			puid:     "100320" + g.hex(10),
			sid:      "S-1-5-21-1825954961-3338807533-2873504967-" + strconv.Itoa(1000000+g.r.IntN(9000000)),
			mailbox:  string(g.appendGUID(nil)),
			ua:       g.r.IntN(len(userAgents)),
			session:  string(g.appendGUID(nil)),
			token:    g.tokenID(),
		}
		u.homeIP[0] = g.ipPool[g.r.IntN(len(g.ipPool))]
		if g.r.IntN(5) == 0 {
			u.homeIP[1] = "2001:db8:" + strconv.FormatInt(int64(g.r.IntN(0xffff)), 16) + "::" + strconv.FormatInt(int64(1+g.r.IntN(0xfffe)), 16)
		} else {
			u.homeIP[1] = g.ipPool[g.r.IntN(len(g.ipPool))]
		}
		for j := range u.folderIDs {
			u.folderIDs[j] = "LgAAAAA" + g.b64(57) + "AQ"
		}
		g.users = append(g.users, u)
	}
	return g
}

// write emits records until at least n bytes are written.
func (g *generator) write(w io.Writer, n int64) (stats, error) {
	var st stats
	for st.bytes < n {
		g.buf = g.record(g.buf[:0])
		g.buf = append(g.buf, '\n')
		if _, err := w.Write(g.buf); err != nil {
			return st, err
		}
		st.records++
		st.bytes += int64(len(g.buf))
	}
	st.triggers = g.triggers
	return st, nil
}

// record formats the next record. The mix, in parts per 100 000, roughly
// follows a mail-heavy tenant: mailbox access and sign-ins dominate,
// administrative changes are rare, attack-shaped records rarer still.
func (g *generator) record(b []byte) []byte {
	// Mean gap 1.5 s: a 1 GiB file covers about two weeks.
	g.t = g.t.Add(time.Duration(g.r.IntN(3000)) * time.Millisecond)
	u := &g.users[g.userIndex()]
	if g.r.IntN(50) == 0 {
		u.session = string(g.appendGUID(nil))
		u.token = g.tokenID()
	}
	p := g.r.IntN(100000)
	switch {
	case p < 26000:
		return g.mailItemsAccessed(b, u, "Bind", false)
	case p < 32000:
		return g.mailItemsAccessed(b, u, "Sync", false)
	case p < 37000:
		return g.send(b, u)
	case p < 44000:
		return g.mailboxLogin(b, u)
	case p < 64000:
		return g.userLoggedIn(b, u, false, false)
	case p < 66500:
		return g.userLoggedIn(b, u, true, false)
	case p < 81000:
		return g.fileOp(b, u, "FileAccessed")
	case p < 85000:
		return g.fileOp(b, u, "FileDownloaded")
	case p < 89000:
		return g.fileOp(b, u, "FileModified")
	case p < 92000:
		return g.fileOp(b, u, "FilePreviewed")
	case p < 95000:
		return g.itemOp(b, u, "Update")
	case p < 97000:
		return g.itemOp(b, u, "MoveToDeletedItems")
	case p < 98000:
		return g.itemOp(b, u, "SoftDelete")
	case p < 99800:
		return g.aadAudit(b, u, "Update user.", 8)
	}
	// The remaining 200 parts per 100 000 are attack-shaped.
	g.triggers++
	switch p -= 99800; {
	case p < 40:
		return g.newInboxRule(b, u, p%2 == 0)
	case p < 70:
		return g.setMailbox(b, u, p%2 == 0)
	case p < 90:
		return g.addMailboxPermission(b, u)
	case p < 100:
		return g.aadAudit(b, u, "Consent to application.", 8)
	case p < 105:
		return g.aadAudit(b, u, "Add service principal credentials.", 8)
	case p < 110:
		return g.aadAudit(b, u, "Disable Strong Authentication.", 8)
	case p < 113:
		return g.aadAudit(b, u, "Add domain to company.", 8)
	case p < 118:
		return g.userLoggedIn(b, u, false, true)
	case p < 178:
		return g.tiMailData(b, u, p%3 != 0)
	case p < 190:
		return g.alertTriggered(b, u)
	case p < 193:
		return g.complianceSearchExport(b, u)
	default:
		return g.mailItemsAccessed(b, u, "Bind", true)
	}
}

// userIndex skews activity: a fifth of the users produce most records.
func (g *generator) userIndex() int {
	n := len(g.users)
	if g.r.IntN(4) != 0 {
		return g.r.IntN(n / 5)
	}
	return g.r.IntN(n)
}

// ip returns the address a user acts from: mostly a home address,
// occasionally a random one.
func (g *generator) ip(u *user) string {
	switch g.r.IntN(40) {
	case 0:
		return g.ipPool[g.r.IntN(len(g.ipPool))]
	case 1, 2, 3, 4, 5:
		return u.homeIP[1]
	}
	return u.homeIP[0]
}

func (g *generator) header(b []byte, op string, recordType int, userType int, workload, userKey, userID, result string) []byte {
	b = append(b, `{"CreationTime":"`...)
	b = g.appendTime(b)
	b = append(b, `","Id":"`...)
	b = g.appendGUID(b)
	b = append(b, `","Operation":"`...)
	b = append(b, op...)
	b = append(b, `","OrganizationId":"`...)
	b = append(b, g.tenant...)
	b = append(b, `","RecordType":`...)
	b = strconv.AppendInt(b, int64(recordType), 10)
	if result != "" {
		b = append(b, `,"ResultStatus":"`...)
		b = append(b, result...)
		b = append(b, '"')
	}
	b = append(b, `,"UserKey":"`...)
	b = append(b, userKey...)
	b = append(b, `","UserType":`...)
	b = strconv.AppendInt(b, int64(userType), 10)
	b = append(b, `,"Version":1,"Workload":"`...)
	b = append(b, workload...)
	b = append(b, `","UserId":"`...)
	b = append(b, userID...)
	return append(b, '"')
}

func (g *generator) server(b []byte) []byte {
	b = append(b, `,"OriginatingServer":"`...)
	b = append(b, g.servers[g.r.IntN(len(g.servers))]...)
	return append(b, ` (15.20.9115.014)\r\n"`...)
}

func (g *generator) appendMessageID(b []byte) []byte {
	s := g.servers[g.r.IntN(len(g.servers))]
	b = append(b, '<')
	b = append(b, s...)
	b = g.appendHexUpper(b, 12)
	b = append(b, '@')
	b = append(b, s...)
	return append(b, `.namprd11.prod.outlook.com>`...)
}

func (g *generator) mailboxCommon(b []byte, u *user, ip string) []byte {
	b = append(b, `,"ClientIPAddress":"`...)
	b = append(b, ip...)
	b = append(b, `","ClientInfoString":"`...)
	b = append(b, clientInfos[g.r.IntN(len(clientInfos))]...)
	b = append(b, `","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"`...)
	b = append(b, u.sid...)
	b = append(b, `","MailboxGuid":"`...)
	b = append(b, u.mailbox...)
	b = append(b, `","MailboxOwnerSid":"`...)
	b = append(b, u.sid...)
	b = append(b, `","MailboxOwnerUPN":"`...)
	b = append(b, u.upn...)
	b = append(b, `","OrganizationName":"`...)
	b = append(b, orgName...)
	b = append(b, '"')
	return g.server(b)
}

func (g *generator) mailItemsAccessed(b []byte, u *user, access string, throttled bool) []byte {
	b = g.header(b, "MailItemsAccessed", 50, 0, "Exchange", u.puid, u.upn, "Succeeded")
	app := mailApps[g.r.IntN(len(mailApps))]
	b = append(b, `,"AppId":"`...)
	b = append(b, app[0]...)
	b = append(b, `","ClientAppId":"`...)
	b = append(b, app[1]...)
	b = append(b, '"')
	b = g.mailboxCommon(b, u, g.ip(u))
	b = append(b, `,"OperationProperties":[{"Name":"MailAccessType","Value":"`...)
	b = append(b, access...)
	b = append(b, `"},{"Name":"IsThrottled","Value":"`...)
	if throttled {
		b = append(b, `True"}]`...)
	} else {
		b = append(b, `False"}]`...)
	}
	b = append(b, `,"SessionId":"`...)
	b = append(b, u.session...)
	b = append(b, `","AppAccessContext":{"AADSessionId":"`...)
	b = append(b, u.session...)
	b = append(b, `","IssuedAtTime":"`...)
	b = g.appendTime(b)
	b = append(b, `","UniqueTokenId":"`...)
	b = append(b, u.token...)
	b = append(b, `"},"Folders":[`...)
	items := 0
	nf := 1 + g.r.IntN(2)
	// With --folder-items, a Bind lists a total drawn from the range,
	// spread over up to three folders (as a client syncing a conversation
	// view or a bulk reader would produce).
	total := 0
	if g.itemsMax > 0 && access == "Bind" {
		total = g.itemsMin + g.r.IntN(g.itemsMax-g.itemsMin+1)
		nf = min(1+g.r.IntN(3), max(total, 1))
	}
	for i := range nf {
		if i > 0 {
			b = append(b, ',')
		}
		f := g.r.IntN(len(mailFolders))
		b = append(b, '{')
		if access == "Bind" {
			b = append(b, `"FolderItems":[`...)
			n := 1 + g.r.IntN(4)
			if g.itemsMax > 0 {
				// Even shares; the last folder takes the remainder.
				n = total / nf
				if i == nf-1 {
					n = total - items
				}
			}
			for j := range n {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"Id":"RgAAAAA`...)
				b = g.appendB64(b, 40)
				b = append(b, `AAA","InternetMessageId":"`...)
				b = g.appendMessageID(b)
				b = append(b, `","SizeInBytes":`...)
				b = strconv.AppendInt(b, int64(2000+g.r.IntN(200000)), 10)
				b = append(b, '}')
			}
			items += n
			b = append(b, `],`...)
		}
		b = append(b, `"Id":"`...)
		b = append(b, u.folderIDs[f]...)
		b = append(b, `","Path":"`...)
		b = append(b, mailFolders[f]...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"OperationCount":`...)
	if access == "Sync" {
		items = 1
	}
	b = strconv.AppendInt(b, int64(items), 10)
	return append(b, '}')
}

func (g *generator) send(b []byte, u *user) []byte {
	b = g.header(b, "Send", 2, 0, "Exchange", u.puid, u.upn, "Succeeded")
	b = append(b, `,"AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":""`...)
	b = g.mailboxCommon(b, u, g.ip(u))
	b = append(b, `,"SessionId":"`...)
	b = append(b, u.session...)
	b = append(b, `","Item":{"Id":"RgAAAAA`...)
	b = g.appendB64(b, 60)
	b = append(b, `AAJ","InternetMessageId":"`...)
	b = g.appendMessageID(b)
	b = append(b, `","IsRecord":false,"ParentFolder":{"Id":"`...)
	b = append(b, u.folderIDs[1]...)
	b = append(b, `","Path":"\\Sent Items"},"SizeInBytes":`...)
	b = strconv.AppendInt(b, int64(3000+g.r.IntN(80000)), 10)
	b = append(b, `,"Subject":"`...)
	b = append(b, subjects[g.r.IntN(len(subjects))]...)
	return append(b, `"}}`...)
}

func (g *generator) mailboxLogin(b []byte, u *user) []byte {
	b = g.header(b, "MailboxLogin", 2, 0, "Exchange", u.puid, u.upn, "Succeeded")
	app := mailApps[g.r.IntN(len(mailApps))]
	b = append(b, `,"AppId":"`...)
	b = append(b, app[0]...)
	b = append(b, `","ClientAppId":"`...)
	b = append(b, app[1]...)
	b = append(b, '"')
	b = g.mailboxCommon(b, u, g.ip(u))
	b = append(b, `,"SessionId":"`...)
	b = append(b, u.session...)
	return append(b, `"}`...)
}

func (g *generator) userLoggedIn(b []byte, u *user, failed, cmsi bool) []byte {
	op, result, errNo := "UserLoggedIn", "Success", "0"
	if failed {
		op, result = "UserLoginFailed", "Failed"
		errNo = [...]string{"50126", "50053", "50074", "50140"}[g.r.IntN(4)]
	}
	app := signinApps[g.r.IntN(len(signinApps))]
	reqType := [...]string{"OAuth2:Authorize", "OAuth2:Token", "Login:login", "SAS:ProcessAuth", "Kmsi:kmsi"}[g.r.IntN(5)]
	obj := signinObjs[g.r.IntN(len(signinObjs))]
	if cmsi {
		// Device-registration sign-in that bypasses Conditional Access.
		app, reqType, obj = "9ba1a5c7-f17a-4de9-a1f1-6178c8d51223", "Cmsi:Cmsi", "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9"
	}
	ip := g.ip(u)
	b = g.header(b, op, 15, 0, "AzureActiveDirectory", u.objectID, u.upn, result)
	b = append(b, `,"ClientIP":"`...)
	b = append(b, ip...)
	b = append(b, `","ObjectId":"`...)
	b = append(b, obj...)
	b = append(b, `","AzureActiveDirectoryEventType":1,"ExtendedProperties":[{"Name":"ResultStatusDetail","Value":"`...)
	if failed {
		b = append(b, `UserError"}`...)
	} else {
		b = append(b, `Success"}`...)
	}
	b = append(b, `,{"Name":"UserAgent","Value":"`...)
	b = append(b, userAgents[u.ua]...)
	b = append(b, `"},{"Name":"RequestType","Value":"`...)
	b = append(b, reqType...)
	b = append(b, `"}],"ModifiedProperties":[],"Actor":[{"ID":"`...)
	b = append(b, u.objectID...)
	b = append(b, `","Type":0},{"ID":"`...)
	b = append(b, u.upn...)
	b = append(b, `","Type":5}],"ActorContextId":"`...)
	b = append(b, g.tenant...)
	b = append(b, `","ActorIpAddress":"`...)
	b = append(b, ip...)
	b = append(b, `","InterSystemsId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","IntraSystemId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","SupportTicketId":"","Target":[{"ID":"`...)
	b = append(b, obj...)
	b = append(b, `","Type":0}],"TargetContextId":"`...)
	b = append(b, g.tenant...)
	b = append(b, `","ApplicationId":"`...)
	b = append(b, app...)
	b = append(b, `","DeviceProperties":[{"Name":"OS","Value":"`...)
	b = append(b, uaOS[u.ua]...)
	b = append(b, `"},{"Name":"BrowserType","Value":"`...)
	b = append(b, uaBrowser[u.ua]...)
	b = append(b, `"},{"Name":"IsCompliantAndManaged","Value":"False"},{"Name":"SessionId","Value":"`...)
	b = append(b, u.session...)
	b = append(b, `"}],"ErrorNumber":"`...)
	b = append(b, errNo...)
	return append(b, `"}`...)
}

func (g *generator) fileOp(b []byte, u *user, op string) []byte {
	site := sites[g.r.IntN(len(sites))]
	name := docWords[g.r.IntN(len(docWords))] + "-" + strconv.Itoa(g.r.IntN(500))
	ext := docExts[g.r.IntN(len(docExts))]
	ip := g.ip(u)
	b = g.header(b, op, 6, 0, "SharePoint", "i:0h.f|membership|"+u.puid+"@live.com", u.upn, "")
	b = append(b, `,"ClientIP":"`...)
	b = append(b, ip...)
	b = append(b, `","ObjectId":"https://contoso.sharepoint.com/`...)
	b = append(b, site...)
	b = append(b, `/Shared Documents/`...)
	b = append(b, name...)
	b = append(b, '.')
	b = append(b, ext...)
	b = append(b, `","CorrelationId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","EventSource":"SharePoint","ItemType":"File","ListId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","ListItemUniqueId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","Site":"`...)
	b = g.appendGUID(b)
	b = append(b, `","UserAgent":"`...)
	b = append(b, userAgents[u.ua]...)
	b = append(b, `","WebId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","HighPriorityMediaProcessing":false,"SourceFileExtension":"`...)
	b = append(b, ext...)
	b = append(b, `","SiteUrl":"https://contoso.sharepoint.com/`...)
	b = append(b, site...)
	b = append(b, `/","SourceFileName":"`...)
	b = append(b, name...)
	b = append(b, '.')
	b = append(b, ext...)
	b = append(b, `","SourceRelativeUrl":"Shared Documents","ApplicationDisplayName":"Microsoft Office","GeoLocation":"NAM","IsManagedDevice":false,"Platform":"`...)
	b = append(b, uaOS[u.ua]...)
	b = append(b, `","AppAccessContext":{"AADSessionId":"`...)
	b = append(b, u.session...)
	b = append(b, `","CorrelationId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","UniqueTokenId":"`...)
	b = append(b, u.token...)
	b = append(b, `"},"FileSizeBytes":`...)
	b = strconv.AppendInt(b, int64(10000+g.r.IntN(5000000)), 10)
	return append(b, '}')
}

// itemOp is an ExchangeItem / ExchangeItemGroup mailbox audit record.
func (g *generator) itemOp(b []byte, u *user, op string) []byte {
	b = g.header(b, op, 2, 0, "Exchange", u.puid, u.upn, "Succeeded")
	b = append(b, `,"AppId":"","ClientAppId":""`...)
	b = g.mailboxCommon(b, u, g.ip(u))
	b = append(b, `,"SessionId":"`...)
	b = append(b, u.session...)
	f := g.r.IntN(len(mailFolders))
	b = append(b, `","Folder":{"Id":"`...)
	b = append(b, u.folderIDs[f]...)
	b = append(b, `","Path":"`...)
	b = append(b, mailFolders[f]...)
	b = append(b, `"},"AffectedItems":[{"Id":"RgAAAAA`...)
	b = g.appendB64(b, 60)
	b = append(b, `AAJ","InternetMessageId":"`...)
	b = g.appendMessageID(b)
	b = append(b, `","Subject":"`...)
	b = append(b, subjects[g.r.IntN(len(subjects))]...)
	return append(b, `"}]}`...)
}

// exchangeAdmin writes an ExchangeAdmin (RecordType 1) cmdlet record;
// params alternate name, value.
func (g *generator) exchangeAdmin(b []byte, u *user, op, objectID string, params ...string) []byte {
	b = g.header(b, op, 1, 2, "Exchange", u.puid, u.upn, "True")
	b = append(b, `,"ClientIP":"`...)
	b = append(b, g.ip(u)...)
	b = append(b, `:`...)
	b = strconv.AppendInt(b, int64(1024+g.r.IntN(60000)), 10)
	b = append(b, `","ObjectId":"`...)
	b = append(b, objectID...)
	b = append(b, `","AppId":"fb78d390-0c51-40cd-8e17-fdbfab77341b","ClientAppId":"","ExternalAccess":false,"OrganizationName":"`...)
	b = append(b, orgName...)
	b = append(b, '"')
	b = g.server(b)
	b = append(b, `,"Parameters":[`...)
	for i := 0; i+1 < len(params); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":"`...)
		b = append(b, params[i]...)
		b = append(b, `","Value":"`...)
		b = append(b, params[i+1]...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"SessionId":"`...)
	b = append(b, u.session...)
	return append(b, `"}`...)
}

func (g *generator) outsider() string {
	return "archive" + strconv.Itoa(g.r.IntN(1000)) + "@protonmail.example"
}

func (g *generator) newInboxRule(b []byte, u *user, forward bool) []byte {
	if forward {
		return g.exchangeAdmin(b, u, "New-InboxRule", u.upn+`\\.`, "Name", "..", "From", "finance@"+domain, "ForwardTo", g.outsider(), "MarkAsRead", "True", "StopProcessingRules", "True")
	}
	return g.exchangeAdmin(b, u, "New-InboxRule", u.upn+`\\Newsletters`, "Name", "Newsletters", "SubjectContainsWords", "newsletter", "MoveToFolder", "Newsletters", "StopProcessingRules", "False")
}

func (g *generator) setMailbox(b []byte, u *user, forward bool) []byte {
	if forward {
		return g.exchangeAdmin(b, u, "Set-Mailbox", u.upn, "Identity", u.upn, "ForwardingSmtpAddress", "smtp:"+g.outsider(), "DeliverToMailboxAndForward", "True")
	}
	return g.exchangeAdmin(b, u, "Set-Mailbox", u.upn, "Identity", u.upn, "ForwardingSmtpAddress", "", "RetainDeletedItemsFor", "30.00:00:00")
}

func (g *generator) addMailboxPermission(b []byte, u *user) []byte {
	other := g.users[g.r.IntN(len(g.users))].upn
	return g.exchangeAdmin(b, u, "Add-MailboxPermission", other, "Identity", other, "User", u.upn, "AccessRights", "FullAccess", "InheritanceType", "All", "AutoMapping", "False")
}

// aadAudit writes an AzureActiveDirectory directory-audit record
// (RecordType 8) such as "Consent to application." or "Update user.".
func (g *generator) aadAudit(b []byte, u *user, op string, recordType int) []byte {
	target := g.users[g.r.IntN(len(g.users))]
	b = g.header(b, op, recordType, 0, "AzureActiveDirectory", u.objectID, u.upn, "Success")
	b = append(b, `,"ObjectId":"`...)
	b = append(b, target.upn...)
	b = append(b, `","AzureActiveDirectoryEventType":1,"ExtendedProperties":[{"Name":"additionalDetails","Value":"{\"User-Agent\":\"`...)
	b = append(b, userAgents[u.ua]...)
	b = append(b, `\"}"},{"Name":"extendedAuditEventCategory","Value":"`...)
	switch op {
	case "Consent to application.", "Add service principal credentials.":
		b = append(b, `ServicePrincipal"}]`...)
	case "Add domain to company.":
		b = append(b, `Domain"}]`...)
	default:
		b = append(b, `User"}]`...)
	}
	b = append(b, `,"ModifiedProperties":[`...)
	switch op {
	case "Consent to application.":
		b = append(b, `{"Name":"ConsentContext.IsAdminConsent","NewValue":"True","OldValue":""},{"Name":"ConsentContext.OnBehalfOfAll","NewValue":"False","OldValue":""},{"Name":"ConsentAction.Permissions","NewValue":"[] => [[Id: `...)
		b = g.appendB64(b, 43)
		b = append(b, `, ClientId: `...)
		b = g.appendGUID(b)
		b = append(b, `, Scope:  Mail.Read Mail.Send offline_access User.Read, ]]","OldValue":""}`...)
	case "Add domain to company.":
		b = append(b, `{"Name":"Included Updated Properties","NewValue":"","OldValue":""}`...)
	default:
		b = append(b, `{"Name":"StrongAuthenticationRequirement","NewValue":"[]","OldValue":"[{\"RelyingParty\":\"*\",\"State\":1}]"},{"Name":"Included Updated Properties","NewValue":"StrongAuthenticationRequirement","OldValue":""}`...)
	}
	b = append(b, `],"Actor":[{"ID":"`...)
	b = append(b, u.upn...)
	b = append(b, `","Type":5},{"ID":"`...)
	b = append(b, u.objectID...)
	b = append(b, `","Type":2}],"ActorContextId":"`...)
	b = append(b, g.tenant...)
	b = append(b, `","ActorIpAddress":"`...)
	b = append(b, g.ip(u)...)
	b = append(b, `","InterSystemsId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","IntraSystemId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","SupportTicketId":"","Target":[{"ID":"`...)
	b = append(b, target.upn...)
	b = append(b, `","Type":5},{"ID":"`...)
	b = append(b, target.objectID...)
	b = append(b, `","Type":2}],"TargetContextId":"`...)
	b = append(b, g.tenant...)
	return append(b, `"}`...)
}

func (g *generator) tiMailData(b []byte, u *user, delivered bool) []byte {
	b = g.header(b, "TIMailData", 28, 4, "ThreatIntelligence", "ThreatIntel", "ThreatIntel", "")
	b = append(b, `,"ObjectId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","AttachmentData":[{"FileName":"Invoice_`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(9999)), 10)
	b = append(b, `.html","FileType":"html","FileVerdict":1,"MalwareFamily":"Phish","SHA256":"`...)
	b = g.appendHexUpper(b, 32)
	b = append(b, `"}],"DeliveryAction":"`...)
	if delivered {
		b = append(b, `Delivered`...)
	} else {
		b = append(b, `Blocked`...)
	}
	b = append(b, `","DetectionMethod":"File detonation","DetectionType":"Delivered","Directionality":"Inbound","InternetMessageId":"`...)
	b = g.appendMessageID(b)
	b = append(b, `","MessageTime":"`...)
	b = g.appendTime(b)
	b = append(b, `Z","NetworkMessageId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","P1Sender":"billing@invoices.example","P2Sender":"billing@invoices.example","Policy":5,"PolicyAction":1,"Recipients":["`...)
	b = append(b, u.upn...)
	b = append(b, `"],"SenderIp":"`...)
	b = append(b, g.ipPool[g.r.IntN(len(g.ipPool))]...)
	b = append(b, `","Subject":"Invoice overdue - action required","Verdict":"Phish"}`...)
	return b
}

// alertTriggered is a Security & Compliance alert (RecordType 40) whose
// Name is one of the alerts the SigmaHQ threat_management rules name.
func (g *generator) alertTriggered(b []byte, u *user) []byte {
	name := alertNames[g.r.IntN(len(alertNames))]
	b = g.header(b, "AlertTriggered", 40, 4, "SecurityComplianceCenter", "SecurityComplianceAlerts", "SecurityComplianceAlerts", "Succeeded")
	b = append(b, `,"ObjectId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","AlertEntityId":"`...)
	b = append(b, u.upn...)
	b = append(b, `","AlertId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","AlertLinks":[],"AlertType":"System","Category":"ThreatManagement","Comments":"New alert","Data":"{\"f3u\":\"`...)
	b = append(b, u.upn...)
	b = append(b, `\",\"ts\":\"`...)
	b = g.appendTime(b)
	b = append(b, `\",\"cip\":\"`...)
	b = append(b, g.ipPool[g.r.IntN(len(g.ipPool))]...)
	b = append(b, `\"}","EntityType":"User","Name":"`...)
	b = append(b, name...)
	b = append(b, `","PolicyId":"`...)
	b = g.appendGUID(b)
	b = append(b, `","Severity":"Medium","Source":"Cloud App Security","Status":"Active"}`...)
	return b
}

// complianceSearchExport is an eDiscovery PST export (RecordType 18).
func (g *generator) complianceSearchExport(b []byte, u *user) []byte {
	b = g.header(b, "New-ComplianceSearchAction", 18, 2, "SecurityComplianceCenter", u.puid, u.upn, "")
	b = append(b, `,"ClientIP":"`...)
	b = append(b, g.ip(u)...)
	b = append(b, `","ObjectId":"Search-`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(999)), 10)
	b = append(b, `_Export","ClientApplication":"EMC","CmdletVersion":"","EffectiveOrganization":"`...)
	b = append(b, orgName...)
	b = append(b, `","NonPIIParameters":"-SearchName \"Search\" -Export -Format \"FxStream\" -ExchangeArchiveFormat \"PerUserPst\"","Parameters":"-SearchName \"Search\" -Export -Format \"FxStream\" -ExchangeArchiveFormat \"PerUserPst\"","SecurityComplianceCenterEventType":0,"StartTime":"`...)
	b = g.appendTime(b)
	return append(b, `"}`...)
}

// --- formatting helpers --------------------------------------------------

const hexLower = "0123456789abcdef"
const hexUpper = "0123456789ABCDEF"
const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// appendTime writes the record time as UAL does: UTC, no zone suffix.
func (g *generator) appendTime(b []byte) []byte {
	if s := g.t.Unix(); s != g.sec {
		g.sec = s
		g.ts = g.t.Truncate(time.Second).AppendFormat(g.ts[:0], "2006-01-02T15:04:05")
	}
	return append(b, g.ts...)
}

func (g *generator) appendGUID(b []byte) []byte {
	hi, lo := g.r.Uint64(), g.r.Uint64()
	// Version 4, variant 10xx, as Microsoft's ids are.
	hi = hi&^(0xf<<12) | 4<<12
	lo = lo&^(3<<62) | 2<<62
	for i := range 16 {
		var x byte
		if i < 8 {
			x = byte(hi >> (56 - 8*i))
		} else {
			x = byte(lo >> (56 - 8*(i-8)))
		}
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexLower[x>>4], hexLower[x&15])
	}
	return b
}

func (g *generator) appendHexUpper(b []byte, n int) []byte {
	var x uint64
	for i := range n {
		if i%16 == 0 {
			x = g.r.Uint64()
		}
		b = append(b, hexUpper[x&15])
		x >>= 4
	}
	return b
}

func (g *generator) appendB64(b []byte, n int) []byte {
	var x uint64
	for i := range n {
		if i%10 == 0 {
			x = g.r.Uint64()
		}
		b = append(b, b64chars[x&63])
		x >>= 6
	}
	return b
}

func (g *generator) hex(n int) string { return string(g.appendHexUpper(nil, n)) }
func (g *generator) b64(n int) string { return string(g.appendB64(nil, n)) }
func (g *generator) tokenID() string  { return g.b64(22) }

func (g *generator) randIPv4() string {
	// Skip 0/8, 10/8, 127/8 and the multicast/reserved ranges.
	a := 11 + g.r.IntN(212)
	if a == 127 {
		a = 128
	}
	b := []byte(strconv.Itoa(a))
	for range 3 {
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	}
	return string(b)
}
