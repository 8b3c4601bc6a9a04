package source

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source/inboxrule"
)

// TestLazyLookupsMatchFlattened checks that the shortcuts a lazy event
// answers lookups with (exact normalized fields, eager fields read by
// path, names known missing, the top-level key filter) give what full
// flattening gives, for every field name of every fixture record, the
// objects above them, and names the records lack.
func TestLazyLookupsMatchFlattened(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.json*")
	if dir, err := filepath.Abs("../../../shared/data"); err == nil {
		if files, err := Expand([]string{dir}); err == nil {
			for _, f := range files {
				if filepath.Ext(f) != ".csv" && filepath.Base(f) != "logsource.json" {
					inputs = append(inputs, f)
				}
			}
		}
	}
	probe := []string{"eventName", "eventSource", "Name", "status", "user", "operation", "Operation", "Workload",
		"properties.message", "src_ip", "record_id", "time", "AppAccessContext.UniqueTokenId", "parameters.login_type"}
	read := func(f string, hot []event.Sym) []*event.Event {
		var evs []*event.Event
		_, err := ReadPaths(context.Background(), []string{f}, Options{Hot: hot}, func(e *event.Event) error { evs = append(evs, e); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	for _, f := range inputs {
		// The lazy events read every field name of the file up front
		// where they can (hot), to check those values too.
		full := read(f, nil)
		var hot []event.Sym
		for _, e := range full {
			for _, fl := range e.Fields() {
				for _, n := range withParents(fl.Name) {
					hot = append(hot, event.Intern(n))
				}
			}
		}
		for _, n := range probe {
			hot = append(hot, event.Intern(n))
		}
		lazy := read(f, hot)
		eager, workspace := 0, 0
		for _, e := range lazy {
			eager += len(e.Eager())
			if strings.HasPrefix(e.Source, "gws.") || e.Source == inboxrule.Source {
				// Workspace and inbox-rule events read nothing up front:
				// their flattening adds fields the record does not hold.
				workspace++
			}
		}
		if eager == 0 && workspace < len(lazy) {
			t.Errorf("%s: no field was read up front", f)
		}
		if len(full) != len(lazy) {
			t.Fatalf("%s: %d vs %d events", f, len(full), len(lazy))
		}
		for i := range full {
			names := append([]string(nil), probe...)
			for _, fl := range full[i].Fields() {
				names = append(names, withParents(fl.Name)...)
			}
			all := full[i].Fields()
			for _, n := range names {
				s := event.Intern(n)
				// Expected: the flattened fields of that name, else the
				// normalized field of that name.
				var a []event.Field
				for _, fl := range all {
					if fl.Sym == s {
						a = append(a, fl)
					}
				}
				if len(a) == 0 {
					if v := normalized(full[i], n); v != "" {
						a = []event.Field{{Value: v}}
					}
				}
				if lazy[i].NoneBelow(s) {
					for _, fl := range all {
						if strings.HasPrefix(fl.Sym.String(), s.String()+".") {
							t.Errorf("%s record %d: nothing said to be below %s, but flattening has %s", f, i, n, fl.Name)
						}
					}
				}
				b := lazy[i].Values(s)
				if len(a) != len(b) {
					t.Errorf("%s record %d field %s: flattened %d values, lazy %d", f, i, n, len(a), len(b))
					continue
				}
				for j := range a {
					// The expected normalized value carries no name or kind.
					if a[j].Value != b[j].Value || a[j].Sym != 0 && (a[j].Name != b[j].Name || a[j].Kind != b[j].Kind) {
						t.Errorf("%s record %d field %s[%d]: %+v vs %+v", f, i, n, j, a[j], b[j])
					}
				}
			}
		}
	}
}

// withParents returns a dotted name, the names above it ("a.b.c": "a",
// "a.b") and one below it that no record has.
func withParents(name string) []string {
	out := []string{name, name + ".nope"}
	for i := range len(name) {
		if name[i] == '.' {
			out = append(out, name[:i])
		}
	}
	return out
}

// normalized returns the struct field behind a normalized name.
func normalized(e *event.Event, name string) string {
	switch event.CanonicalName(name) {
	case "user":
		return e.User
	case "operation":
		return e.Operation
	case "src_ip":
		return e.IP
	case "record_id":
		return e.RecordID
	case "time":
		return e.Time.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
	}
	return ""
}
