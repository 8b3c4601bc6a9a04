package event

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// MailAccess is one mail-read record reduced to the facts detections and
// impact need: who read which mailbox, with which token and session, how
// (Sync, throttled) and which folders and messages.
type MailAccess struct {
	Time       time.Time
	Tenant     string
	User       string
	Mailbox    string
	AppID      string
	ClientApp  string
	IP         string
	SessionIDs []string // every session id the record carries (AADSessionId, SessionId)
	TokenID    string
	Sync       bool // MailAccessType=Sync: whole folders were synchronised
	Throttled  bool // IsThrottled=True: auditing for the mailbox stops for 24 h
	Items      int  // OperationCount or number of items
	Folders    []FolderRead
	RecordID   string
}

// FolderRead is one folder of an access and the messages read in it.
type FolderRead struct {
	Path     string
	Messages []string
}

var (
	symMailAccessType = Intern("OperationProperties.MailAccessType")
	symIsThrottled    = Intern("OperationProperties.IsThrottled")
	symAADSession     = Intern("AppAccessContext.AADSessionId")
	symSessionID      = Intern("SessionId")
)

// MailAccessFields are the source fields MailAccessHeader reads, worth
// passing to decoders as hot fields.
var MailAccessFields = []Sym{symMailAccessType, symIsThrottled, symAADSession, symSessionID}

// HotFields are the source fields the behaviours read from most records,
// worth passing to decoders as hot fields: MailAccessFields, and a
// sign-in's isInteractive (which sign-in stream it belongs to).
var HotFields = append(slices.Clip(MailAccessFields), Intern("isInteractive"))

// IsMailAccess reports whether e records mailbox items being read.
func IsMailAccess(e *Event) bool {
	return strings.EqualFold(e.Operation, "MailItemsAccessed")
}

// MailAccessOf reduces a mail-read event; ok is false for other events.
// The verbatim record is parsed once for its folders and, from the same
// parse, its session ids and access properties.
func MailAccessOf(e *Event) (MailAccess, bool) {
	if !IsMailAccess(e) {
		return MailAccess{}, false
	}
	// Detection and the index both ask, on one goroutine after the other:
	// the record is parsed for its folders once. The copy shares the
	// slices, which callers only read.
	if e.access != nil {
		return *e.access, true
	}
	a, ok := mailAccessFromRaw(e)
	if !ok {
		a, _ = MailAccessHeader(e)
		a.Folders = foldersOf(e)
	}
	e.access = &a
	return a, true
}

func mailAccessBase(e *Event) MailAccess {
	a := MailAccess{
		Time: e.Time, Tenant: e.Tenant, User: e.User, Mailbox: strings.ToLower(e.Mailbox),
		AppID: e.AppID, ClientApp: e.ClientAppID, IP: e.IP, TokenID: e.TokenID,
		Items: e.ItemCount, RecordID: e.RecordID,
	}
	if a.Mailbox == "" {
		a.Mailbox = e.User
	}
	return a
}

// mailAccessFromRaw reads the access from the record that holds its
// Folders; ok is false when the raw bytes have none (the flattened
// fields are used then).
func mailAccessFromRaw(e *Event) (MailAccess, bool) {
	raw := e.Raw
	if len(raw) == 0 || raw[0] != '{' {
		return MailAccess{}, false
	}
	p := folderParsers.Get()
	defer folderParsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return MailAccess{}, false
	}
	rec, arr := findFolderRecord(v, 0)
	if rec == nil {
		return MailAccess{}, false
	}
	return mailAccessFrom(e, rec, readFolders(arr)), true
}

// MailAccessOfRaw is MailAccessOf reading e's Raw, whatever a decoder
// supplied; ok is false when MailAccessOf would fall back on the
// flattened fields. It checks decoders against MailAccessOf's own reading.
func MailAccessOfRaw(e *Event) (MailAccess, bool) {
	if !IsMailAccess(e) {
		return MailAccess{}, false
	}
	return mailAccessFromRaw(e)
}

// SetMailAccess gives the mail-read event e the access MailAccessOf would
// read from its Raw, for a decoder that parsed the record already: rec is
// the parsed object that holds the Folders list (at the top of Raw, which
// starts with '{'), possibly parsed without that list, and folders is the
// list as readFolders reads it. MailAccessOf then parses nothing.
func SetMailAccess(e *Event, rec *fastjson.Value, folders []FolderRead) {
	a := mailAccessFrom(e, rec, folders)
	e.access = &a
}

// SetMailAccessParsed is SetMailAccess for a decoder that parsed all of
// e's Raw into v: the access is read from v as MailAccessOf would read it
// from a parse of Raw (nothing is set where it would fall back on the
// flattened fields).
func SetMailAccessParsed(e *Event, v *fastjson.Value) {
	if len(e.Raw) == 0 || e.Raw[0] != '{' {
		return
	}
	if rec, arr := findFolderRecord(v, 0); rec != nil {
		SetMailAccess(e, rec, readFolders(arr))
	}
}

// mailAccessFrom reads the access from rec, the object that holds its
// Folders list, whose folders are given.
func mailAccessFrom(e *Event, rec *fastjson.Value, folders []FolderRead) MailAccess {
	a := mailAccessBase(e)
	// Compared as bytes, converted only when kept: the decoder calls this
	// for every mail access.
	ids := make([]string, 0, 2)
	add := func(b []byte) {
		if len(b) == 0 {
			return
		}
		for _, x := range ids {
			if x == string(b) {
				return
			}
		}
		ids = append(ids, string(b))
	}
	add([]byte(e.SessionID))
	for _, k := range []string{"AppAccessContext", "appAccessContext"} {
		if c := rec.Get(k); c != nil {
			add(c.GetStringBytes("AADSessionId"))
		}
	}
	add(rec.GetStringBytes("SessionId"))
	if len(ids) > 0 {
		a.SessionIDs = ids
	}
	prop := func(name []byte, v *fastjson.Value) {
		sync, throttled := bytes.EqualFold(name, []byte("MailAccessType")), bytes.EqualFold(name, []byte("IsThrottled"))
		if !sync && !throttled || v == nil {
			return
		}
		var val []byte
		if v.Type() == fastjson.TypeString {
			val = v.GetStringBytes()
		} else {
			val = []byte(v.String())
		}
		switch {
		case sync && bytes.EqualFold(val, []byte("Sync")):
			a.Sync = true
		case throttled && bytes.EqualFold(val, []byte("true")):
			a.Throttled = true
		}
	}
	if op := rec.Get("OperationProperties"); op != nil {
		switch op.Type() {
		case fastjson.TypeArray:
			for _, it := range op.GetArray() {
				prop(it.GetStringBytes("Name"), it.Get("Value"))
			}
		case fastjson.TypeObject:
			o, _ := op.Object()
			o.Visit(prop)
		}
	}
	a.Folders = folders
	if a.Items == 0 {
		a.Items = len(e.MessageIDs)
	}
	return a
}

// MailAccessHeader is MailAccessOf without the folders and messages, which
// cost a second parse of the record; detections that only count need no
// more.
func MailAccessHeader(e *Event) (MailAccess, bool) {
	if !IsMailAccess(e) {
		return MailAccess{}, false
	}
	a := mailAccessBase(e)
	a.SessionIDs = SessionIDs(e)
	for _, f := range e.Values(symMailAccessType) {
		if strings.EqualFold(f.Value, "Sync") {
			a.Sync = true
		}
	}
	for _, f := range e.Values(symIsThrottled) {
		if strings.EqualFold(f.Value, "true") {
			a.Throttled = true
		}
	}
	if a.Items == 0 {
		a.Items = len(e.MessageIDs)
	}
	return a, true
}

// SessionIDs returns the distinct session ids of a mail access: the
// normalized one and both UAL spellings, which are not always equal.
func SessionIDs(e *Event) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, x := range out {
			if x == s {
				return
			}
		}
		out = append(out, s)
	}
	add(e.SessionID)
	for _, f := range e.Values(symAADSession) {
		add(f.Value)
	}
	for _, f := range e.Values(symSessionID) {
		add(f.Value)
	}
	return out
}

// foldersOf pairs folders with their messages. The flattened fields lose
// which message sat in which folder, so the verbatim record is parsed
// again; records without Folders (or not JSON, such as CSV rows whose
// AuditData holds the JSON) fall back to the flat lists.
func foldersOf(e *Event) []FolderRead {
	if fs, ok := foldersFromRaw(e.Raw); ok {
		return fs
	}
	switch len(e.Folders) {
	case 0:
		if len(e.MessageIDs) == 0 {
			return nil
		}
		return []FolderRead{{Path: "", Messages: append([]string(nil), e.MessageIDs...)}}
	case 1:
		return []FolderRead{{Path: e.Folders[0], Messages: append([]string(nil), e.MessageIDs...)}}
	default:
		out := make([]FolderRead, 0, len(e.Folders)+1)
		for _, p := range e.Folders {
			out = append(out, FolderRead{Path: p})
		}
		if len(e.MessageIDs) > 0 {
			// Which folder each message was in is unknown here.
			out = append(out, FolderRead{Path: "", Messages: append([]string(nil), e.MessageIDs...)})
		}
		return out
	}
}

var folderParsers fastjson.ParserPool

func foldersFromRaw(raw []byte) ([]FolderRead, bool) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	// Every string is copied out before the parser goes back to the pool.
	p := folderParsers.Get()
	defer folderParsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return nil, false
	}
	_, arr := findFolderRecord(v, 0)
	if arr == nil {
		return nil, false
	}
	return readFolders(arr), true
}

func readFolders(arr []*fastjson.Value) []FolderRead {
	out := make([]FolderRead, 0, len(arr))
	for _, f := range arr {
		fr := FolderRead{Path: string(f.GetStringBytes("Path"))}
		if fr.Path == "" {
			fr.Path = string(f.GetStringBytes("path"))
		}
		items := f.GetArray("FolderItems")
		if items == nil {
			items = f.GetArray("folderItems")
		}
		for _, it := range items {
			id := it.GetStringBytes("InternetMessageId")
			if id == nil {
				id = it.GetStringBytes("internetMessageId")
			}
			if len(id) > 0 {
				fr.Messages = append(fr.Messages, string(id))
			}
		}
		out = append(out, fr)
	}
	return out
}

// findFolderRecord looks for the record holding the Folders array at the top level or one level
// down in the envelopes exports wrap the UAL record in (AuditData,
// RawEventData, auditData), including JSON held in a string.
func findFolderRecord(v *fastjson.Value, depth int) (*fastjson.Value, []*fastjson.Value) {
	if v == nil || depth > 2 {
		return nil, nil
	}
	for _, k := range []string{"Folders", "folders"} {
		if a := v.GetArray(k); a != nil {
			return v, a
		}
	}
	for _, k := range []string{"AuditData", "auditData", "RawEventData", "rawEventData"} {
		c := v.Get(k)
		if c == nil {
			continue
		}
		if c.Type() == fastjson.TypeString {
			var p fastjson.Parser
			inner, err := p.ParseBytes(c.GetStringBytes())
			if err != nil {
				continue
			}
			// Values stay valid: p is never reused.
			if r, a := findFolderRecord(inner, depth+1); a != nil {
				return r, a
			}
			continue
		}
		if r, a := findFolderRecord(c, depth+1); a != nil {
			return r, a
		}
	}
	return nil, nil
}
