package sigma

import (
	"strings"
	"unsafe"

	"github.com/vigil-audit/vigil/internal/event"
)

// Logsource is a rule's logsource section.
type Logsource struct {
	Product  string `yaml:"product"`
	Service  string `yaml:"service"`
	Category string `yaml:"category"`
}

func (l Logsource) String() string {
	var parts []string
	for _, kv := range [][2]string{{"product", l.Product}, {"service", l.Service}, {"category", l.Category}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, " ")
}

// Route returns the vigil event sources (event.Event.Source values) a
// logsource applies to; none means the rule loads but never runs.
//
//	m365/inboxrule                → m365.inboxrule (vigil's own service name)
//	m365/* (any other service)    → m365.ual
//	azure/signinlogs              → entra.signin
//	azure/auditlogs, azure/pim    → entra.audit
//	azure/riskdetection           → entra.risk
//	azure/activitylogs            → azure.activity
//	azure (no service)            → all four Azure sources
//	gcp/google_workspace.<app>    → gws.<app>
//	google_workspace/<app>        → gws.<app>
func Route(l Logsource) []string {
	p, s := strings.ToLower(l.Product), strings.ToLower(l.Service)
	switch p {
	case "m365":
		if s == "inboxrule" { // vigil's own: Get-InboxRule snapshots
			return []string{"m365.inboxrule"}
		}
		return []string{"m365.ual"}
	case "azure":
		switch s {
		case "signinlogs":
			return []string{"entra.signin"}
		case "auditlogs", "pim":
			return []string{"entra.audit"}
		case "riskdetection":
			return []string{"entra.risk"}
		case "activitylogs":
			return []string{"azure.activity"}
		case "":
			return []string{"entra.signin", "entra.audit", "entra.risk", "azure.activity"}
		}
	case "gcp":
		if app, ok := strings.CutPrefix(s, "google_workspace."); ok && app != "" {
			return []string{"gws." + app}
		}
	case "google_workspace":
		if s != "" {
			return []string{"gws." + s}
		}
	}
	return nil
}

// fieldMap says how Sigma field names written for one log source's common
// export (Sentinel columns, CloudTrail-style names) find the values in
// vigil's events of that source. Every field is also looked up under its
// own name first (case-insensitively), so rules written against the
// source's own field names need no mapping.
type fieldMap struct {
	// aliases maps a canonical Sigma field name to more names to look up.
	// "@outcome" is "success"/"failure" from Event.Failed, "@raw" the raw
	// record text, "@const:x" the constant x, and a leading "~" strips the
	// JSON quotes Graph puts around modifiedProperties values.
	aliases map[string][]string
	// tryStrip: also look the name up without these prefixes;
	// tryAdd: also with these prefixes.
	tryStrip []string
	tryAdd   []string
}

// FieldMappings documents the mapping (docs/rules.md shows it).
func FieldMappings() map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for src, fm := range fieldMaps {
		out[src] = fm.aliases
	}
	out["gws.<app>"] = gwsMap("<app>").aliases
	return out
}

var azureGeneric = fieldMap{tryStrip: []string{"properties."}, tryAdd: []string{"properties."}}

var fieldMaps = map[string]fieldMap{
	"m365.ual": {aliases: map[string][]string{
		"eventsource": {"Workload"},
		"eventname":   {"Operation", "Name"},
		"status":      {"@outcome"},
		"payload":     {"@raw"},
	}},
	"entra.signin": {tryStrip: azureGeneric.tryStrip, tryAdd: azureGeneric.tryAdd, aliases: map[string][]string{
		"resulttype":        {"status.errorCode"},
		"resultdescription": {"status.failureReason"},
		"status":            {"@outcome", "status.failureReason", "status.additionalDetails"},
		"clientapp":         {"clientAppUsed"},
		"username":          {"userPrincipalName"},
		"location":          {"location.countryOrRegion"},
	}},
	"entra.audit": {tryStrip: azureGeneric.tryStrip, tryAdd: azureGeneric.tryAdd, aliases: map[string][]string{
		"operationname":                 {"activityDisplayName"},
		"activitydisplayname":           {"operationName"},
		"activitytype":                  {"activityDisplayName", "operationName"},
		"properties.message":            {"activityDisplayName", "operationName"},
		"status":                        {"result"},
		"target":                        {"targetResources"},
		"consentcontext.isadminconsent": {"~targetResources.modifiedProperties.ConsentContext.IsAdminConsent.newValue"},
	}},
	"entra.risk": azureGeneric,
	"azure.activity": {tryStrip: azureGeneric.tryStrip, tryAdd: azureGeneric.tryAdd, aliases: map[string][]string{
		"operationname":         {"operationName.value", "operation_name.value", "OperationNameValue"},
		"operationnamevalue":    {"operationName", "operationName.value", "operation_name.value"},
		"categoryvalue":         {"category", "category.value"},
		"resourceprovidervalue": {"resourceProviderName.value", "resource_provider_name.value", "resourceProviderName"},
		"resourceid":            {"resource_id"},
	}},
}

// gwsMap is the mapping for every gws.<app> source; rules written against
// the Cloud Logging export of Workspace name the service and event so.
func gwsMap(app string) fieldMap {
	svc := "@const:" + app + ".googleapis.com"
	return fieldMap{tryAdd: []string{"parameters.", "events.parameters."}, aliases: map[string][]string{
		"eventservice":                          {svc},
		"protopayload.servicename":              {svc},
		"eventname":                             {"operation", "events.name"},
		"protopayload.metadata.event.eventname": {"operation", "events.name"},
	}}
}

func mapFor(source string) fieldMap {
	if app, ok := strings.CutPrefix(source, "gws."); ok {
		return gwsMap(app)
	}
	return fieldMaps[source]
}

// derived values that are not fields of the record.
type derivedKind uint8

const (
	derivedOutcome derivedKind = iota + 1
	derivedRaw
)

// resolver finds the values of one rule field name in an event of one
// source. Values are the union over all candidate names (like the
// elements of an array field); if none has a value, the leaves under the
// names (objects such as Graph's status or targetResources) are used.
type resolver struct {
	name     string
	syms     []event.Sym
	unquote  []event.Sym
	derived  []derivedKind
	consts   []string
	prefixes []string // canonical "name." for the object fallback
}

func newResolver(name, source string) *resolver {
	fm := mapFor(source)
	r := &resolver{name: name}
	seen := map[event.Sym]bool{}
	addName := func(n string) {
		s := event.Intern(n)
		if !seen[s] {
			seen[s] = true
			r.syms = append(r.syms, s)
			r.prefixes = append(r.prefixes, event.CanonicalName(n)+".")
		}
	}
	addName(name)
	canon := event.CanonicalName(name)
	for _, a := range fm.aliases[canon] {
		switch {
		case a == "@outcome":
			r.derived = append(r.derived, derivedOutcome)
		case a == "@raw":
			r.derived = append(r.derived, derivedRaw)
		case strings.HasPrefix(a, "@const:"):
			r.consts = append(r.consts, strings.TrimPrefix(a, "@const:"))
		case strings.HasPrefix(a, "~"):
			r.unquote = append(r.unquote, event.Intern(a[1:]))
		default:
			addName(a)
		}
	}
	for _, p := range fm.tryStrip {
		if rest, ok := strings.CutPrefix(canon, p); ok && rest != "" {
			addName(rest)
		}
	}
	for _, p := range fm.tryAdd {
		if !strings.HasPrefix(canon, p) {
			addName(p + name)
		}
	}
	return r
}

// values returns the field's values; buf is scratch space the result may
// alias. The result must not be retained past the event.
func (r *resolver) values(e *event.Event, buf []event.Field) []event.Field {
	var first []event.Field
	n := 0
	for _, s := range r.syms {
		vs := e.Values(s)
		if len(vs) == 0 {
			continue
		}
		switch n {
		case 0:
			first = vs
		case 1:
			buf = append(buf, first...)
			fallthrough
		default:
			buf = append(buf, vs...)
		}
		n++
	}
	if len(r.unquote)+len(r.derived)+len(r.consts) > 0 {
		if n == 1 {
			buf = append(buf, first...)
		}
		start := len(buf)
		for _, s := range r.unquote {
			for _, f := range e.Values(s) {
				f.Value = strings.Trim(f.Value, `"`)
				buf = append(buf, f)
			}
		}
		for _, d := range r.derived {
			switch d {
			case derivedOutcome:
				v := "success"
				if e.Failed {
					v = "failure"
				}
				buf = append(buf, event.Field{Name: "@outcome", Value: v})
			case derivedRaw:
				if len(e.Raw) > 0 {
					// Zero-copy view: Raw is not modified while rules run.
					buf = append(buf, event.Field{Name: "@raw", Value: unsafe.String(&e.Raw[0], len(e.Raw))})
				}
			}
		}
		for _, c := range r.consts {
			buf = append(buf, event.Field{Name: r.name, Value: c})
		}
		if n > 0 || len(buf) > start {
			return buf
		}
	}
	switch n {
	case 0:
		// The leaves below the names. When the decoder's parse shows there
		// are none, the record is not flattened to find that out.
		none := true
		for _, s := range r.syms {
			if !e.NoneBelow(s) {
				none = false
				break
			}
		}
		if none {
			return buf
		}
		for _, f := range e.Fields() {
			for _, p := range r.prefixes {
				if len(f.Name) > len(p) && equalFoldASCII(f.Name[:len(p)], p) {
					buf = append(buf, f)
					break
				}
			}
		}
		return buf
	case 1:
		return first
	}
	return buf
}
