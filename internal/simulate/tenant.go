package simulate

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// network is a simulated network: its table entry plus how to pick hosts.
type network struct {
	key   string
	entry netinfo.Entry
	lat   float64
	lon   float64
	state string
	sub   string
}

// host returns a stable host address in the network for key k.
func (n *network) host(k uint64) netip.Addr {
	p := n.entry.Prefix
	h := mix(k)
	if p.Addr().Is4() {
		a := p.Addr().As4()
		base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		size := uint32(1) << (32 - p.Bits())
		v := base + uint32(h%uint64(size))
		if b := byte(v); b == 0 || b == 255 {
			v = v&^0xff | (1 + uint32(h>>32)%250)
		}
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	a := p.Addr().As16()
	h2 := mix(h)
	for i := p.Bits() / 8; i < 16; i++ {
		if i < 8 {
			a[i] = byte(h >> (8 * i))
		} else {
			a[i] = byte(h2 >> (8 * (i - 8)))
		}
	}
	return netip.AddrFrom16(a)
}

// netSpec describes one simulated network before allocation.
type netSpec struct {
	key, org, country, city, state string
	sub                            string // ISO 3166-2 subdivision
	asn                            uint32
	kind                           netinfo.Kind
	v6                             bool
	v4Size                         int // number of /24s (power of two)
	lat, lon                       float64
}

// The simulated Internet. Addresses come from ranges that are never
// routed (198.18.0.0/15, RFC 2544; 2001:db8::/32, RFC 3849); corporate
// offices use documentation ASNs (RFC 5398). ISP, hosting and VPN
// networks carry the real operators' ASNs so detector lists of hosting
// and VPN providers behave as on real data.
var netSpecs = []netSpec{
	// residential and mobile access
	{key: "isp-us-comcast", sub: "US-PA", org: "Comcast Cable Communications, LLC", asn: 7922, country: "US", city: "Philadelphia", state: "Pennsylvania", kind: netinfo.KindISP, v4Size: 32, lat: 39.95, lon: -75.16},
	{key: "isp-us-verizon", sub: "US-NY", org: "Verizon Business", asn: 701, country: "US", city: "New York", state: "New York", kind: netinfo.KindISP, v4Size: 32, lat: 40.71, lon: -74.01},
	{key: "isp-us-charter", sub: "US-NC", org: "Charter Communications Inc", asn: 20115, country: "US", city: "Charlotte", state: "North Carolina", kind: netinfo.KindISP, v4Size: 16, lat: 35.23, lon: -80.84},
	{key: "mob-us-tmobile", sub: "US-WA", org: "T-Mobile USA, Inc.", asn: 21928, country: "US", city: "Bellevue", state: "Washington", kind: netinfo.KindISP, v6: true, lat: 47.61, lon: -122.2},
	{key: "isp-gb-bt", sub: "GB-LND", org: "British Telecommunications PLC", asn: 2856, country: "GB", city: "London", state: "England", kind: netinfo.KindISP, v4Size: 16, lat: 51.51, lon: -0.13},
	{key: "isp-gb-virgin", sub: "GB-MAN", org: "Virgin Media Limited", asn: 5089, country: "GB", city: "Manchester", state: "England", kind: netinfo.KindISP, v4Size: 16, lat: 53.48, lon: -2.24},
	{key: "mob-gb-ee", sub: "GB-LND", org: "EE Limited", asn: 12576, country: "GB", city: "London", state: "England", kind: netinfo.KindISP, v6: true, lat: 51.51, lon: -0.13},
	{key: "isp-de-telekom", sub: "DE-BE", org: "Deutsche Telekom AG", asn: 3320, country: "DE", city: "Berlin", state: "Berlin", kind: netinfo.KindISP, v4Size: 16, lat: 52.52, lon: 13.4},
	{key: "mob-de-vodafone", sub: "DE-NW", org: "Vodafone GmbH", asn: 3209, country: "DE", city: "Dusseldorf", state: "North Rhine-Westphalia", kind: netinfo.KindISP, v6: true, lat: 51.23, lon: 6.77},
	{key: "isp-in-airtel", sub: "IN-KA", org: "Bharti Airtel Ltd.", asn: 24560, country: "IN", city: "Bengaluru", state: "Karnataka", kind: netinfo.KindISP, v4Size: 16, lat: 12.97, lon: 77.59},
	{key: "mob-in-jio", sub: "IN-MH", org: "Reliance Jio Infocomm Limited", asn: 55836, country: "IN", city: "Mumbai", state: "Maharashtra", kind: netinfo.KindISP, v6: true, lat: 19.08, lon: 72.88},
	// travel destinations (hotels, conference Wi-Fi, roaming)
	{key: "isp-fr-orange", sub: "FR-75", org: "Orange S.A.", asn: 3215, country: "FR", city: "Paris", state: "Ile-de-France", kind: netinfo.KindISP, v4Size: 4, lat: 48.86, lon: 2.35},
	{key: "isp-sg-singtel", sub: "SG-01", org: "Singapore Telecommunications Ltd", asn: 7473, country: "SG", city: "Singapore", state: "Singapore", kind: netinfo.KindISP, v4Size: 4, lat: 1.29, lon: 103.85},
	{key: "isp-jp-ntt", sub: "JP-13", org: "NTT Communications Corporation", asn: 4713, country: "JP", city: "Tokyo", state: "Tokyo", kind: netinfo.KindISP, v4Size: 4, lat: 35.68, lon: 139.69},
	{key: "isp-es-telefonica", sub: "ES-M", org: "Telefonica de Espana S.A.U.", asn: 3352, country: "ES", city: "Madrid", state: "Madrid", kind: netinfo.KindISP, v4Size: 4, lat: 40.42, lon: -3.7},
	{key: "isp-ae-etisalat", sub: "AE-DU", org: "Emirates Telecommunications Group Company PJSC", asn: 5384, country: "AE", city: "Dubai", state: "Dubai", kind: netinfo.KindISP, v4Size: 4, lat: 25.2, lon: 55.27},
	// the tenant's offices
	{key: "corp-us", sub: "US-NY", org: "Contoso Ltd (New York office)", asn: 64500, country: "US", city: "New York", state: "New York", kind: netinfo.KindCorporate, v4Size: 1, lat: 40.75, lon: -73.99},
	{key: "corp-gb", sub: "GB-LND", org: "Contoso Ltd (London office)", asn: 64501, country: "GB", city: "London", state: "England", kind: netinfo.KindCorporate, v4Size: 1, lat: 51.52, lon: -0.09},
	{key: "corp-de", sub: "DE-BE", org: "Contoso Ltd (Berlin office)", asn: 64502, country: "DE", city: "Berlin", state: "Berlin", kind: netinfo.KindCorporate, v4Size: 1, lat: 52.5, lon: 13.38},
	{key: "corp-in", sub: "IN-KA", org: "Contoso Ltd (Bengaluru office)", asn: 64503, country: "IN", city: "Bengaluru", state: "Karnataka", kind: netinfo.KindCorporate, v4Size: 1, lat: 12.93, lon: 77.62},
	// the tenant's secure-access (VPN) egress, before and after the change
	{key: "vpn-corp-old", sub: "US-CA", org: "ZSCALER, INC.", asn: 53813, country: "US", city: "San Jose", state: "California", kind: netinfo.KindVPN, v4Size: 1, lat: 37.34, lon: -121.89},
	{key: "vpn-corp-new", sub: "US-DC", org: "Zscaler Switzerland GmbH", asn: 62044, country: "US", city: "Washington", state: "District of Columbia", kind: netinfo.KindVPN, v4Size: 1, lat: 38.9, lon: -77.04},
	// hosting
	{key: "host-aws", sub: "US-VA", org: "Amazon.com, Inc.", asn: 16509, country: "US", city: "Ashburn", state: "Virginia", kind: netinfo.KindHosting, v4Size: 2, lat: 39.04, lon: -77.49},
	{key: "host-azure", sub: "US-VA", org: "Microsoft Corporation", asn: 8075, country: "US", city: "Boydton", state: "Virginia", kind: netinfo.KindHosting, v4Size: 2, lat: 36.67, lon: -78.39},
	{key: "host-do", sub: "NL-NH", org: "DigitalOcean, LLC", asn: 14061, country: "NL", city: "Amsterdam", state: "North Holland", kind: netinfo.KindHosting, v4Size: 1, lat: 52.37, lon: 4.9},
	{key: "host-ovh", sub: "FR-59", org: "OVH SAS", asn: 16276, country: "FR", city: "Roubaix", state: "Hauts-de-France", kind: netinfo.KindHosting, v4Size: 1, lat: 50.69, lon: 3.17},
	{key: "host-hetzner", sub: "DE-SN", org: "Hetzner Online GmbH", asn: 24940, country: "DE", city: "Falkenstein", state: "Saxony", kind: netinfo.KindHosting, v4Size: 1, lat: 50.48, lon: 12.37},
	{key: "host-vultr", sub: "JP-13", org: "The Constant Company, LLC", asn: 20473, country: "JP", city: "Tokyo", state: "Tokyo", kind: netinfo.KindHosting, v4Size: 1, lat: 35.68, lon: 139.69},
	{key: "host-linode", sub: "SG-01", org: "Akamai Connected Cloud", asn: 63949, country: "SG", city: "Singapore", state: "Singapore", kind: netinfo.KindHosting, v4Size: 1, lat: 1.29, lon: 103.85},
	// commercial VPN exits
	{key: "vpn-m247", sub: "RO-B", org: "M247 Europe SRL", asn: 9009, country: "RO", city: "Bucharest", state: "Bucuresti", kind: netinfo.KindVPN, v4Size: 1, lat: 44.43, lon: 26.1},
	{key: "vpn-datacamp", sub: "GB-LND", org: "Datacamp Limited", asn: 60068, country: "GB", city: "London", state: "England", kind: netinfo.KindVPN, v4Size: 1, lat: 51.51, lon: -0.13},
	{key: "vpn-mullvad", sub: "SE-AB", org: "31173 Services AB", asn: 39351, country: "SE", city: "Stockholm", state: "Stockholm", kind: netinfo.KindVPN, v4Size: 1, lat: 59.33, lon: 18.07},
	{key: "vpn-privatelayer", sub: "CH-ZH", org: "Private Layer INC", asn: 51852, country: "CH", city: "Zurich", state: "Zurich", kind: netinfo.KindVPN, v4Size: 1, lat: 47.37, lon: 8.54},
	// added after the networks above so their prefixes do not move:
	// the sanctioned backup app's cloud, and the cloud PCs' egress (hosting
	// ASNs no other activity in the tenant uses)
	{key: "host-gcp", sub: "US-IA", org: "Google LLC", asn: 396982, country: "US", city: "Council Bluffs", state: "Iowa", kind: netinfo.KindHosting, v4Size: 1, lat: 41.26, lon: -95.86},
	{key: "host-cloudpc", sub: "US-VA", org: "Amazon.com, Inc.", asn: 14618, country: "US", city: "Ashburn", state: "Virginia", kind: netinfo.KindHosting, v4Size: 1, lat: 39.04, lon: -77.49},
}

func buildNetworks() ([]*network, map[string]*network, error) {
	base4 := netip.MustParseAddr("198.18.0.0").As4()
	next24 := 0
	v6n := 0
	var out []*network
	byKey := map[string]*network{}
	for _, s := range netSpecs {
		var p netip.Prefix
		if s.v6 {
			v6n++
			a := netip.MustParseAddr("2001:db8::").As16()
			a[4], a[5] = byte(v6n>>8), byte(v6n)
			p = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		} else {
			size := s.v4Size
			bits := 24
			for sz := size; sz > 1; sz >>= 1 {
				bits--
			}
			// align to the block size
			if r := next24 % size; r != 0 {
				next24 += size - r
			}
			if next24+size > 512 {
				return nil, nil, fmt.Errorf("simulate: network plan exceeds 198.18.0.0/15")
			}
			a := base4
			a[1] += byte(next24 >> 8)
			a[2] = byte(next24)
			p = netip.PrefixFrom(netip.AddrFrom4(a), bits)
			next24 += size
		}
		n := &network{key: s.key, lat: s.lat, lon: s.lon, state: s.state, sub: s.sub, entry: netinfo.Entry{
			Prefix: p, ASN: s.asn, ASOrg: s.org, Country: s.country, City: s.city, Kind: s.kind,
		}}
		out = append(out, n)
		byKey[s.key] = n
	}
	return out, byKey, nil
}

// clientKind is the mail client a session uses.
type clientKind uint8

const (
	clientOutlookDesktop clientKind = iota // classic Outlook (MAPI, cached mode: Sync + Bind)
	clientNewOutlook                       // the new Outlook for Windows
	clientOWA                              // Outlook on the web
	clientMobile                           // Outlook for iOS/Android
	clientThirdParty                       // a third-party mail app through Graph
	numClients
)

// App is an Entra application the simulation uses.
type App struct {
	ID          string `json:"app_id"`
	DisplayName string `json:"display_name"`
	// ServicePrincipalID is the tenant's enterprise-app object id.
	ServicePrincipalID string `json:"service_principal_id,omitempty"`
	FirstParty         bool   `json:"first_party"`
}

// Well-known first-party application and resource ids.
var (
	appOffice     = App{ID: "d3590ed6-52b3-4102-aeff-aad2292ab01c", DisplayName: "Microsoft Office", FirstParty: true}
	appOWA        = App{ID: "9199bf20-a13f-4107-85dc-02114787ef48", DisplayName: "One Outlook Web", FirstParty: true}
	appMobile     = App{ID: "27922004-5251-4030-b22d-91ecd9a37ea4", DisplayName: "Outlook Mobile", FirstParty: true}
	appNewOutlook = App{ID: "5d661950-3475-41cd-a2c3-d671a3162bc1", DisplayName: "Microsoft Outlook", FirstParty: true}
	resExchange   = App{ID: "00000002-0000-0ff1-ce00-000000000000", DisplayName: "Office 365 Exchange Online", FirstParty: true}
	resGraph      = App{ID: "00000003-0000-0000-c000-000000000000", DisplayName: "Microsoft Graph", FirstParty: true}
)

// device is one of a user's devices.
type device struct {
	id      id16
	os      string // deviceDetail.operatingSystem
	browser string // deviceDetail.browser
	ua      string // user agent in sign-ins
	trust   string // deviceDetail.trustType
	managed bool
	mobile  bool
}

// User is a mailbox-owning member of the M365 tenant.
type User struct {
	Index       int    `json:"-"`
	UPN         string `json:"upn"`
	DisplayName string `json:"display_name"`
	ObjectID    string `json:"object_id"`
	VIP         bool   `json:"vip,omitempty"`
	Admin       bool   `json:"admin,omitempty"`
	Country     string `json:"country"`

	puid        string
	sid         string
	mailboxGUID string
	server      string // mailbox server name for message ids and OriginatingServer
	tzOffset    int64  // nanoseconds east of UTC
	workStart   int64  // local nanoseconds since midnight
	workLen     int64
	office      *network
	home        *network
	homeKey     uint64
	mobileNet   *network
	vpn         bool    // works through the corporate secure-access egress
	activity    float64 // scales daily volume
	desktop     device
	phone       *device
	client      clientKind // primary desktop client
	thirdParty  *App       // a third-party mail app, if any
	delegateOf  []*Mailbox // shared mailboxes this user reads
	mailbox     *Mailbox
	// per-client sign-in state: the Entra session and when it was
	// established interactively
	sess      [numClients]id16
	lastInter [numClients]int64
}

// Mailbox is an Exchange mailbox (a user's or a shared one).
type Mailbox struct {
	UPN    string `json:"upn"`
	Shared bool   `json:"shared,omitempty"`
	index  int
	guid   string
	sid    string
	server string
	owner  *User // nil for shared mailboxes
	// rate[i] is folder i's arrival period in ns (one message per period).
	rate [len(folderPaths)]int64
	fids [len(folderPaths)]string
}

// folderPaths are the mail folders every mailbox has, in UAL path form.
var folderPaths = [...]string{`\Inbox`, `\Sent Items`, `\Archive`, `\Inbox\Projects`, `\Inbox\Finance`, `\Deleted Items`, `\Drafts`}

// folderPerDay is each folder's message arrival rate per day.
var folderPerDay = [len(folderPaths)]float64{40, 12, 6, 6, 3, 8, 1}

// gwsUser is a member of the Google Workspace tenant.
type gwsUser struct {
	email     string
	profileID string
	home      *network
	homeKey   uint64
	tzOffset  int64
	workStart int64
	workLen   int64
	ua        string
}

// Tenant is the simulated organisation.
type Tenant struct {
	ID         string
	Domain     string
	OrgName    string // onmicrosoft.com name
	Users      []*User
	Shared     []*Mailbox
	Mailboxes  []*Mailbox // users' then shared
	ThirdParty []*App     // third-party mail apps users run
	Backup     App        // the migration/backup tool (service principal)
	GWSDomain  string
	GWSCust    string
	gws        []*gwsUser
	nets       []*network
	net        map[string]*network
	seed       uint64
	epoch      int64 // message numbering origin
}

var firstNames = []string{"Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kavya", "Liam", "Maya", "Nikolai", "Olivia", "Priya", "Quentin", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Xavier", "Yara", "Zoe", "Amir", "Bianca", "Carlos", "Dana", "Emeka", "Freya", "Gustav", "Hana", "Ivan", "Julia", "Kenji", "Lena", "Mateo", "Nora"}
var lastNames = []string{"Abbott", "Bauer", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Iyer", "Jansen", "Kowalski", "Lopez", "Muller", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Schmidt", "Tanaka", "Umar", "Varga", "Weber", "Xu", "Young", "Zhang", "Ahmed", "Brennan", "Costa", "Dietrich", "Eriksen", "Ferreira", "Gupta", "Hoffmann", "Ito", "Jovanovic", "Khan", "Lindqvist", "Moreau", "Novak"}

type region struct {
	country string
	tz      time.Duration
	weight  int
	office  string
	homes   []string
	mobile  string
}

var regions = []region{
	{country: "US", tz: -5 * time.Hour, weight: 50, office: "corp-us", homes: []string{"isp-us-comcast", "isp-us-verizon", "isp-us-charter"}, mobile: "mob-us-tmobile"},
	{country: "GB", tz: 0, weight: 20, office: "corp-gb", homes: []string{"isp-gb-bt", "isp-gb-virgin"}, mobile: "mob-gb-ee"},
	{country: "DE", tz: 1 * time.Hour, weight: 15, office: "corp-de", homes: []string{"isp-de-telekom"}, mobile: "mob-de-vodafone"},
	{country: "IN", tz: 5*time.Hour + 30*time.Minute, weight: 15, office: "corp-in", homes: []string{"isp-in-airtel"}, mobile: "mob-in-jio"},
}

var desktopProfiles = []device{
	{os: "Windows10", browser: "Edge 131.0.2903", trust: "Hybrid Azure AD joined", managed: true, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86"},
	{os: "Windows10", browser: "Chrome 131.0.0", trust: "Azure AD joined", managed: true, ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{os: "MacOs", browser: "Safari 17.6", trust: "Azure AD registered", managed: false, ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15"},
	{os: "MacOs", browser: "Chrome 131.0.0", trust: "Azure AD registered", managed: false, ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
}

var phoneProfiles = []device{
	{os: "Ios", browser: "Mobile Safari", trust: "Azure AD registered", managed: true, mobile: true, ua: "Outlook-iOS/723.4027091.prod.iphone (4.2448.0)"},
	{os: "Android", browser: "Rich Client 4.2448.0", trust: "Azure AD registered", managed: true, mobile: true, ua: "Outlook-Android/2.0"},
}

// buildTenant creates the organisation deterministically from the seed.
func buildTenant(seed uint64, users, sharedN int) (*Tenant, error) {
	nets, byKey, err := buildNetworks()
	if err != nil {
		return nil, err
	}
	g := newRNG(seed, strKey("tenant"))
	t := &Tenant{
		ID:        guid(g.id()),
		Domain:    "contoso.example",
		OrgName:   "contoso.onmicrosoft.com",
		GWSDomain: "fabrikam.example",
		nets:      nets,
		net:       byKey,
		seed:      seed,
	}
	t.GWSCust = "C0" + strings.ToLower(strconv.FormatUint(g.u64()%(36*36*36*36*36*36*36), 36))
	t.Backup = App{ID: guid(g.id()), DisplayName: "Keepwell Backup for Microsoft 365", ServicePrincipalID: guid(g.id())}
	for _, name := range []string{"Fernmail", "Teleport CRM Sync", "Quillbox Mail"} {
		t.ThirdParty = append(t.ThirdParty, &App{ID: guid(g.id()), DisplayName: name, ServicePrincipalID: guid(g.id())})
	}
	totalW := 0
	for _, r := range regions {
		totalW += r.weight
	}
	seen := map[string]int{}
	domainSID := fmt.Sprintf("S-1-5-21-%d-%d-%d", 1000000000+g.intn(1000000000), 1000000000+g.intn(1000000000), 1000000000+g.intn(1000000000))
	for i := 0; i < users; i++ {
		fn, ln := firstNames[g.intn(len(firstNames))], lastNames[g.intn(len(lastNames))]
		local := strings.ToLower(fn + "." + ln)
		if n := seen[local]; n > 0 {
			seen[local] = n + 1
			local += strconv.Itoa(n + 1)
		} else {
			seen[local] = 1
		}
		w := g.intn(totalW)
		var reg region
		for _, r := range regions {
			if w < r.weight {
				reg = r
				break
			}
			w -= r.weight
		}
		u := &User{
			Index:       i,
			UPN:         local + "@" + t.Domain,
			DisplayName: fn + " " + ln,
			ObjectID:    guid(g.id()),
			Country:     reg.country,
			puid:        fmt.Sprintf("10032%011X", g.u64()&0xffffffffff),
			sid:         fmt.Sprintf("%s-%d", domainSID, 1000+i*7+g.intn(7)),
			tzOffset:    int64(reg.tz),
			workStart:   int64(7*time.Hour+30*time.Minute) + int64(g.intn(120))*int64(time.Minute),
			workLen:     int64(8*time.Hour) + int64(g.intn(120))*int64(time.Minute),
			office:      byKey[reg.office],
			home:        byKey[reg.homes[g.intn(len(reg.homes))]],
			homeKey:     g.u64(),
			activity:    0.5 + g.float(),
			vpn:         g.chance(0.35),
		}
		if reg.mobile != "" {
			u.mobileNet = byKey[reg.mobile]
		}
		u.desktop = desktopProfiles[g.intn(len(desktopProfiles))]
		u.desktop.id = g.id()
		if g.chance(0.8) {
			p := phoneProfiles[g.intn(len(phoneProfiles))]
			p.id = g.id()
			u.phone = &p
		}
		switch x := g.float(); {
		case x < 0.60:
			u.client = clientOutlookDesktop
		case x < 0.90:
			u.client = clientOWA
		default:
			u.client = clientOutlookDesktop
			u.thirdParty = t.ThirdParty[g.intn(len(t.ThirdParty))]
		}
		mb := &Mailbox{UPN: u.UPN, index: len(t.Mailboxes), guid: guid(g.id()), sid: u.sid, owner: u}
		mb.server = serverName(g)
		u.server = mb.server
		u.mailboxGUID = mb.guid
		u.mailbox = mb
		t.Users = append(t.Users, u)
		t.Mailboxes = append(t.Mailboxes, mb)
	}
	// VIPs: about 3 % of users, at least two; the first VIP is a global admin.
	nVIP := max(2, users*3/100)
	for i := 0; i < nVIP && i < users; i++ {
		u := t.Users[(i*7919)%users]
		u.VIP = true
		u.activity *= 1.5
	}
	nAdmin := max(1, users/100)
	for i := 0; i < nAdmin && i < users; i++ {
		t.Users[(i*104729+13)%users].Admin = true
	}
	sharedNames := []string{"finance", "legal", "hr", "press", "support", "procurement", "board", "it-helpdesk"}
	for i := 0; i < sharedN; i++ {
		name := sharedNames[i%len(sharedNames)]
		if i >= len(sharedNames) {
			name += strconv.Itoa(i / len(sharedNames))
		}
		mb := &Mailbox{UPN: name + "@" + t.Domain, Shared: true, index: len(t.Mailboxes), guid: guid(g.id()), sid: fmt.Sprintf("%s-%d", domainSID, 900000+i), server: serverName(g)}
		t.Shared = append(t.Shared, mb)
		t.Mailboxes = append(t.Mailboxes, mb)
		for d := 0; d < 3 && users > 0; d++ {
			u := t.Users[g.intn(users)]
			u.delegateOf = append(u.delegateOf, mb)
		}
	}
	day := float64(24 * time.Hour)
	for _, mb := range t.Mailboxes {
		scale := 0.6 + g.float()
		if mb.owner != nil && mb.owner.VIP {
			scale *= 2
		}
		for f := range folderPaths {
			mb.rate[f] = int64(day / (folderPerDay[f] * scale))
		}
	}
	gwsN := max(4, users/5)
	for i := 0; i < gwsN; i++ {
		fn, ln := firstNames[g.intn(len(firstNames))], lastNames[g.intn(len(lastNames))]
		reg := regions[g.intn(2)] // the Workspace tenant is a US/UK firm
		gu := &gwsUser{
			email:     fmt.Sprintf("%s.%s%d@%s", strings.ToLower(fn), strings.ToLower(ln), i, t.GWSDomain),
			profileID: fmt.Sprintf("1%020d", g.u64()%1e18),
			home:      byKey[reg.homes[g.intn(len(reg.homes))]],
			homeKey:   g.u64(),
			tzOffset:  int64(reg.tz),
			workStart: int64(8*time.Hour) + int64(g.intn(90))*int64(time.Minute),
			workLen:   int64(8*time.Hour) + int64(g.intn(90))*int64(time.Minute),
			ua:        desktopProfiles[g.intn(len(desktopProfiles))].ua,
		}
		t.gws = append(t.gws, gu)
	}
	return t, nil
}

// serverName returns an Exchange Online mailbox server name such as
// BN7PR02MB4145.
func serverName(g rng) string {
	pods := []string{"BN7PR02", "DM6PR11", "SA1PR12", "AM9PR04", "DB8PR03", "PH0PR17", "LO2P265", "MA0PR01"}
	return fmt.Sprintf("%sMB%04d", pods[g.intn(len(pods))], g.intn(10000))
}

func (t *Tenant) vips() []*User {
	var out []*User
	for _, u := range t.Users {
		if u.VIP {
			out = append(out, u)
		}
	}
	return out
}

// messageID returns the InternetMessageId of message n in folder f of mb.
func (t *Tenant) messageID(mb *Mailbox, f, n int) string {
	return string(t.appendMessageID(nil, mb, f, n))
}

const upperHex = "0123456789ABCDEF"

// appendMessageID appends messageID(mb, f, n) without allocating.
func (t *Tenant) appendMessageID(dst []byte, mb *Mailbox, f, n int) []byte {
	h := hashKey(t.seed, 0x6d7367, uint64(mb.index), uint64(f), uint64(n))
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(h >> (8 * i))
	}
	h2 := mix(h)
	for i := 0; i < 8; i++ {
		b[8+i] = byte(h2 >> (8 * i))
	}
	switch h % 10 {
	case 0, 1, 2:
		// from outside the organisation
		dst = append(dst, "<CA+"...)
		var e [16]byte
		base64.RawURLEncoding.Encode(e[:], b[:12])
		dst = append(dst, e[:]...)
		return append(dst, "@mail.gmail.com>"...)
	case 3:
		dst = append(dst, '<')
		dst = hex.AppendEncode(dst, b[:8])
		dst = append(dst, '.')
		dst = hex.AppendEncode(dst, b[8:12])
		return append(dst, "@notifications.example.net>"...)
	}
	dst = append(dst, '<')
	for _, c := range b {
		dst = append(dst, upperHex[c>>4], upperHex[c&0xf])
	}
	dst = append(dst, '@')
	dst = append(dst, mb.server...)
	return append(dst, ".namprd02.prod.outlook.com>"...)
}

// messageSize is the stored size of a message, stable per message.
func (t *Tenant) messageSize(mb *Mailbox, f, n int) int64 {
	h := hashKey(t.seed, 0x73697a, uint64(mb.index), uint64(f), uint64(n))
	return int64(2048 + h%180000)
}

// folderID returns the store id of folder f in mb, in the LgAAAA… form.
func (t *Tenant) folderID(mb *Mailbox, f int) string {
	if mb.fids[f] == "" {
		mb.fids[f] = t.makeFolderID(mb, f)
	}
	return mb.fids[f]
}

func (t *Tenant) makeFolderID(mb *Mailbox, f int) string {
	var b [45]byte
	for i := 0; i < len(b); i += 8 {
		h := hashKey(t.seed, 0x666c64, uint64(mb.index), uint64(f), uint64(i))
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(h >> (8 * j))
		}
	}
	return "LgAAAAA" + base64.StdEncoding.EncodeToString(b[:]) + "AAAB"
}

// latest returns the sequence number of the newest message in folder f at t.
func (t *Tenant) latest(mb *Mailbox, f int, at int64) int {
	return int((at - t.epoch) / mb.rate[f])
}
