package eventtest

import (
	"slices"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
)

// View is everything a consumer can read of an event.
type View struct {
	Time                                            time.Time
	Tenant, Source, Operation, Result               string
	Failed                                          bool
	User, AppID, ClientAppID, ServicePrincipal, IP  string
	ASN                                             uint32
	Country, UserAgent, SessionID, TokenID, Mailbox string
	Folders, MessageIDs                             []string
	ItemCount                                       int
	RecordID, Raw                                   string
	Origin                                          event.Origin
	Eager, Fields                                   []event.Field
	// Probe holds the values of the names Of was asked to look up, read
	// before the event is flattened, so a lazy event's shortcuts answer.
	Probe map[string][]event.Field
	// Access is what detection and impact read of a mail access
	// (event.MailAccessOf).
	Access   event.MailAccess
	IsAccess bool
	// FromRaw is the access read from Raw, where it can be: Access must
	// be it.
	FromRaw   event.MailAccess
	FromRawOK bool
}

// Of returns e's view, looking up probe first.
func Of(e *event.Event, probe ...string) View {
	v := View{Time: e.Time, Tenant: e.Tenant, Source: e.Source, Operation: e.Operation, Result: e.Result,
		Failed: e.Failed, User: e.User, AppID: e.AppID, ClientAppID: e.ClientAppID, ServicePrincipal: e.ServicePrincipal,
		IP: e.IP, ASN: e.ASN, Country: e.Country, UserAgent: e.UserAgent, SessionID: e.SessionID, TokenID: e.TokenID,
		Mailbox: e.Mailbox, Folders: e.Folders, MessageIDs: e.MessageIDs, ItemCount: e.ItemCount, RecordID: e.RecordID,
		Raw: string(e.Raw), Origin: e.Origin, Eager: slices.Clone(e.Eager()), Probe: map[string][]event.Field{}}
	for _, n := range probe {
		v.Probe[n] = append([]event.Field(nil), e.Values(event.Intern(n))...)
	}
	v.Fields = e.Fields()
	v.Access, v.IsAccess = event.MailAccessOf(e)
	v.FromRaw, v.FromRawOK = event.MailAccessOfRaw(e)
	return v
}
