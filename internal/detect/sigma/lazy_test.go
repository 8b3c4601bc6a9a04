package sigma

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// decodeLazy decodes records as hunt does: lazily, reading the names
// rules look up (hot) while each record is parsed.
func decodeLazy(t *testing.T, hot []event.Sym, js string) []*event.Event {
	t.Helper()
	d := source.NewDecoder(nil, hot)
	evs, err := d.Decode([]byte(js), event.Origin{File: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestSignInLookupsDoNotFlatten: the names Sigma's field mapping asks
// every sign-in for (ResultType → status.errorCode, Status → the status
// object, names no mapped field holds) are answered from the decoder's
// parse: matching the built-in rules flattens no Graph sign-in.
func TestSignInLookupsDoNotFlatten(t *testing.T) {
	rs := loadBuiltin(t)
	tests := []struct {
		name string // as a rule writes it
		want []string
	}{
		{"ResultType", []string{"0"}},
		{"ResultDescription", []string{"Other."}},
		{"Status", []string{"Other.", "", "success"}},
		{"DeviceDetail.trusttype", []string{""}},
		{"Location", []string{"US"}},
		{"ActivityDetails", nil},        // in no sign-in
		{"properties.message", nil},     // a diagnostic envelope's
		{"status.errorCode.nope", nil},  // below a scalar
		{"deviceDetail.nope", nil},      // absent below an object
		{"NetworkLocationDetails", nil}, // an empty list
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResolver(tt.name, "entra.signin")
			// As if a rule named it.
			e := decodeLazy(t, append(rs.FieldSyms(), r.syms...), graphSignIn)[0]
			if e.Source != "entra.signin" {
				t.Fatalf("decoded as %s", e.Source)
			}
			var got []string
			for _, f := range r.values(e, nil) {
				got = append(got, f.Value)
			}
			if e.Flattened() {
				t.Errorf("looking up %s flattened the sign-in", tt.name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	e := decodeLazy(t, rs.FieldSyms(), graphSignIn)[0]
	var titles []string
	rs.Match(e, func(d Detection) { titles = append(titles, d.Title) })
	if e.Flattened() {
		t.Errorf("matching the built-in rules flattened the sign-in")
	}
	// Status (an object and the outcome), DeviceDetail.trusttype.
	if !slices.Equal(titles, []string{"Suspicious SignIns From A Non Registered Device"}) {
		t.Errorf("detections %q, want the risky single-factor sign-in", titles)
	}
}

// realSamples are the shared real exports and the decoders' fixtures.
func realSamples(t *testing.T) []string {
	t.Helper()
	files, err := source.Expand([]string{sharedDir(t, "data"), filepath.Join("..", "..", "source", "testdata")})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.Contains(f, "sigmahq-sigma") || strings.Contains(f, "fuzz") {
			continue
		}
		switch filepath.Ext(f) {
		case ".json", ".jsonl", ".csv":
			out = append(out, f)
		}
	}
	return out
}

// TestLazyDetectionsEqualFlattened: the SigmaHQ cloud rules and the
// built-in rules detect the same things, with the same matched values,
// on the real samples whether lookups are answered from the decoder's
// parse or every event is flattened first.
func TestLazyDetectionsEqualFlattened(t *testing.T) {
	files := realSamples(t)
	run := func(load func(testing.TB) *Ruleset, lazy bool) (out []string, flattened, events int) {
		rs := load(t)
		opts := source.Options{}
		if lazy {
			opts.Hot = append(rs.FieldSyms(), event.HotFields...)
		}
		for _, f := range files {
			_, err := source.ReadPaths(context.Background(), []string{f}, opts, func(e *event.Event) error {
				events++
				if !lazy {
					e.Fields()
				}
				rs.Match(e, func(d Detection) {
					out = append(out, fmt.Sprintf("%s %s#%d %s %v", d.Rule.ID, filepath.Base(f), e.Origin.Index, d.Time, d.Fields))
				})
				if e.Flattened() {
					flattened++
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		rs.Flush(func(d Detection) { out = append(out, fmt.Sprintf("%s flush %s", d.Rule.ID, d.Time)) })
		return out, flattened, events
	}
	for name, load := range map[string]func(testing.TB) *Ruleset{"sigmahq": loadSigmaHQ, "builtin": loadBuiltin} {
		t.Run(name, func(t *testing.T) {
			flat, _, events := run(load, false)
			lazy, flattened, _ := run(load, true)
			if len(flat) == 0 {
				t.Fatal("no detections on the samples")
			}
			if !slices.Equal(flat, lazy) {
				t.Errorf("detections differ:\nflattened %q\nlazy      %q", flat, lazy)
			}
			t.Logf("%d events, %d detections, %d events flattened when lazy", events, len(flat), flattened)
		})
	}
}

// TestKeywordsStillSearchEveryField: a keyword rule needs every field of
// a lazily decoded sign-in, so it flattens the record and finds a value
// nested in an object no lookup read.
func TestKeywordsStillSearchEveryField(t *testing.T) {
	rs := mustCompile(t, "title: K\nid: 00000000-0000-4000-8000-000000000002\nlogsource:\n    product: azure\n"+
		"    service: signinlogs\ndetection:\n    keywords:\n        - boydton\n    condition: keywords\nlevel: low\n")
	e := decodeLazy(t, rs.FieldSyms(), graphSignIn)[0]
	var got []MatchedField
	rs.Match(e, func(d Detection) { got = append(got, d.Fields...) })
	if len(got) != 1 || got[0].Field != "location.city" || got[0].Value != "Boydton" {
		t.Errorf("keyword matches %+v, want location.city Boydton", got)
	}
	if !e.Flattened() {
		t.Error("a keyword search did not flatten the record")
	}
}
