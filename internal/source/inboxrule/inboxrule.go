// Package inboxrule decodes Exchange Online mailbox-rule snapshots: the
// objects Get-InboxRule returns, exported as JSON (ConvertTo-Json) or CSV
// (Export-Csv, as Microsoft-Extractor-Suite's Get-MailboxRules writes
// them). A snapshot is an inventory, not an audit event: each record is
// one rule as it stood when the snapshot was taken, so its event carries
// the time it was observed, which the caller supplies.
//
// Besides the record's own fields it derives two for rules:
// ExternalRecipients (every SMTP address a rule forwards, redirects or
// forwards as an attachment to outside the mailbox owner's domain) and
// TargetFolders (the folder names a rule moves or copies messages to).
package inboxrule

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/record"
)

// Source is the event source of inbox-rule snapshot records.
const Source = "m365.inboxrule"

// Operation is the operation of every snapshot event: the cmdlet whose
// output the record is.
const Operation = "Get-InboxRule"

// Names of the fields Flatten derives.
const (
	FieldExternalRecipients = "ExternalRecipients"
	FieldTargetFolders      = "TargetFolders"
)

// actionKeys are Get-InboxRule's action properties (and the spellings of
// older Extractor-Suite exports); a snapshot record has several of them,
// an audit record none at the top level.
var actionKeys = []string{"ForwardTo", "ForwardAsAttachmentTo", "RedirectTo", "MoveToFolder", "MovetoFolder",
	"CopyToFolder", "CopytoFolder", "DeleteMessage", "SoftDeleteMessage"}

// recipientKeys hold the addresses a rule sends messages on to.
var recipientKeys = []string{"ForwardTo", "ForwardAsAttachmentTo", "RedirectTo"}

// folderKeys hold the folders a rule moves or copies messages to.
var folderKeys = []string{"MoveToFolder", "MovetoFolder", "CopyToFolder", "CopytoFolder"}

// Detect reports whether v is one inbox rule of a Get-InboxRule snapshot:
// a rule name (Name or RuleName) and at least two of the rule action
// properties.
func Detect(v *fastjson.Value) bool {
	if v.Get("Name") == nil && v.Get("RuleName") == nil {
		return false
	}
	n := 0
	for _, k := range actionKeys {
		if v.Get(k) != nil {
			n++
		}
	}
	return n >= 2
}

// Owner returns the mailbox the rule belongs to: the UPN an export added
// (UserName, UserPrincipalName), else MailboxOwnerId, else the mailbox
// part of Identity ("owner\rule id").
func Owner(v *fastjson.Value) string {
	if s := record.First(v, "UserName", "UserPrincipalName", "MailboxOwnerId"); s != "" {
		return s
	}
	id := record.Str(v, "Identity")
	if i := strings.LastIndexByte(id, '\\'); i > 0 {
		return id[:i]
	}
	return ""
}

// Decode fills e from rule v, observed at the given time. The record id is
// left empty: RuleIdentity names the rule, not this state of it, and a
// later snapshot of a changed rule must not be taken for a duplicate.
func Decode(v *fastjson.Value, observed time.Time, e *event.Event) error {
	owner := Owner(v)
	if owner == "" {
		return errors.New("inbox rule without a mailbox owner (UserName, UserPrincipalName, MailboxOwnerId or Identity)")
	}
	if observed.IsZero() {
		return errors.New("inbox rule snapshot without a time it was observed")
	}
	e.Time = observed.UTC()
	e.Source = Source
	e.Operation = Operation
	e.User = strings.ToLower(owner)
	e.Mailbox = e.User
	return nil
}

// Flatten adds the rule's fields and the derived ExternalRecipients and
// TargetFolders.
func Flatten(b *event.Builder, v *fastjson.Value, _ int) {
	b.Flatten("", v)
	for _, a := range ExternalRecipients(v) {
		b.AddString(FieldExternalRecipients, []byte(a))
	}
	for _, f := range TargetFolders(v) {
		b.AddString(FieldTargetFolders, []byte(f))
	}
}

// smtpRef matches one recipient as Exchange prints it:
// `"Display Name" [SMTP:user@example.com]` or `[EX:/o=ExchangeLabs/...]`.
var smtpRef = regexp.MustCompile(`\[(?i:(smtp|ex)):([^\]]*)\]`)

// ExternalRecipients returns, in order and once each, the SMTP addresses
// of v's forward, forward-as-attachment and redirect actions whose domain
// is not the owner's. Directory recipients (EX:) are internal. When the
// owner has no domain (MailboxOwnerId is a display name), every SMTP
// address counts as external. The tenant's other accepted domains count
// as external too: a snapshot does not list them.
func ExternalRecipients(v *fastjson.Value) []string {
	own := ""
	if o := Owner(v); strings.Contains(o, "@") {
		own = strings.ToLower(o[strings.LastIndexByte(o, '@')+1:])
	}
	var out []string
	seen := map[string]bool{}
	for _, k := range recipientKeys {
		for _, s := range stringsOf(v.Get(k)) {
			for _, a := range smtpAddresses(s) {
				la := strings.ToLower(a)
				d := la[strings.LastIndexByte(la, '@')+1:]
				if d == "" || d == own || seen[la] {
					continue
				}
				seen[la] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// smtpAddresses returns the SMTP addresses in one recipient value: those
// in [SMTP:...] references, or, when it has no references, the words
// holding an '@' (a bare address list).
func smtpAddresses(s string) []string {
	var out []string
	refs := smtpRef.FindAllStringSubmatch(s, -1)
	if len(refs) > 0 {
		for _, m := range refs {
			if strings.EqualFold(m[1], "smtp") && strings.Contains(m[2], "@") {
				out = append(out, strings.TrimSpace(m[2]))
			}
		}
		return out
	}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' || r == '\t' }) {
		w = strings.Trim(w, `"'<>`)
		if i := strings.IndexByte(w, '@'); i > 0 && i < len(w)-1 {
			out = append(out, w)
		}
	}
	return out
}

// TargetFolders returns the names of the folders v moves or copies
// messages to: the last segment of paths such as `owner:\Inbox\RSS Feeds`.
func TargetFolders(v *fastjson.Value) []string {
	var out []string
	for _, k := range folderKeys {
		for _, s := range stringsOf(v.Get(k)) {
			s = strings.TrimSpace(s)
			if i := strings.LastIndexByte(s, '\\'); i >= 0 {
				s = s[i+1:]
			}
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// stringsOf returns a string value, or the strings of an array.
func stringsOf(x *fastjson.Value) []string {
	if x == nil {
		return nil
	}
	switch x.Type() {
	case fastjson.TypeString:
		if s := record.Str(x); s != "" {
			return []string{s}
		}
	case fastjson.TypeArray:
		var out []string
		a, _ := x.Array()
		for _, el := range a {
			out = append(out, stringsOf(el)...)
		}
		return out
	}
	return nil
}
