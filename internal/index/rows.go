package index

import (
	"hash/fnv"
	"net/netip"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// Kinds of events, the column events.kind and what the signins and audits
// views select on.
const (
	KindSignin = "signin"
	KindMail   = "mail"
	KindAudit  = "audit"
)

// eventRow is one row of the events table.
type eventRow struct {
	idx              uint64
	sub              int32
	time             time.Time
	received         time.Time
	kind             string
	tenant           string
	source           string
	op               string
	result           string
	failed           bool
	actor            string
	app              string
	clientApp        string
	servicePrincipal string
	ip               string
	ipHi, ipLo       uint64
	hasIP            bool
	asn              uint32
	country          string
	userAgent        string
	session          string
	token            string
	mailbox          string
	recordID         string
	items            int32
}

// mailRow is one row of mail_access: one message read (Bind), or one
// folder synchronised (Sync, no message id).
type mailRow struct {
	idx        uint64
	sub        int32
	n          int32 // the row's number among its event's rows
	time       time.Time
	mailbox    string
	folder     string
	messageID  string
	accessType string
	throttled  bool
	actor      string
	app        string
	clientApp  string
	ip         string
	ipHi, ipLo uint64
	hasIP      bool
	asn        uint32
	country    string
	session    string
	token      string
}

// kindOf sorts an event into the signins, mail_access or audits family.
func kindOf(e *event.Event) string {
	switch {
	case e.Source == "entra.signin" || e.Source == "gws.login":
		return KindSignin
	case event.IsMailAccess(e):
		return KindMail
	default:
		return KindAudit
	}
}

// messageKey is the 64-bit FNV-1a hash of an InternetMessageId, stored
// beside it: the engine finds one message by scanning 8-byte keys instead
// of 60-byte strings (then compares the string, so collisions are harmless).
func messageKey(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// ipKey maps an address to 128 bits (IPv4 as IPv4-mapped IPv6) split in
// two, so CIDR terms become range conditions the engine can prune on.
func ipKey(s string) (hi, lo uint64, ok bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return 0, 0, false
	}
	b := a.As16()
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return hi, lo, true
}

func rowOf(idx uint64, sub int, received time.Time, e *event.Event) eventRow {
	r := eventRow{
		idx: idx, sub: int32(sub), time: e.Time.UTC(), received: received.UTC(), kind: kindOf(e),
		tenant: e.Tenant, source: e.Source, op: e.Operation, result: e.Result, failed: e.Failed,
		actor: strings.ToLower(e.User), app: strings.ToLower(e.AppID), clientApp: strings.ToLower(e.ClientAppID),
		servicePrincipal: e.ServicePrincipal, ip: e.IP, asn: e.ASN, country: e.Country,
		userAgent: e.UserAgent, session: e.SessionID, token: e.TokenID,
		mailbox: strings.ToLower(e.Mailbox), recordID: e.RecordID, items: int32(e.ItemCount),
	}
	r.ipHi, r.ipLo, r.hasIP = ipKey(e.IP)
	return r
}

// appendMailRows appends the mail_access rows of a mail-read event to
// out: one per message of a Bind, one per folder of a Sync (message id
// empty). A read whose record names no folder or message still gets one
// row, so every mail read is in the table.
func appendMailRows(out []mailRow, r *eventRow, e *event.Event) []mailRow {
	a, ok := event.MailAccessOf(e)
	if !ok {
		return out
	}
	first := len(out)
	base := mailRow{
		idx: r.idx, sub: r.sub, time: r.time, mailbox: a.Mailbox, accessType: "Bind", throttled: a.Throttled,
		actor: r.actor, app: r.app, clientApp: r.clientApp, ip: r.ip, ipHi: r.ipHi, ipLo: r.ipLo, hasIP: r.hasIP, asn: r.asn, country: r.country,
		session: r.session, token: r.token,
	}
	if a.Sync {
		base.accessType = "Sync"
	}
	if base.session == "" && len(a.SessionIDs) > 0 {
		base.session = a.SessionIDs[0]
	}
	for _, f := range a.Folders {
		if len(f.Messages) == 0 {
			m := base
			m.folder = f.Path
			out = append(out, m)
			continue
		}
		for _, id := range f.Messages {
			m := base
			m.folder, m.messageID = f.Path, id
			out = append(out, m)
		}
	}
	if len(out) == first {
		out = append(out, base)
	}
	for i := first; i < len(out); i++ {
		out[i].n = int32(i - first)
	}
	return out
}
