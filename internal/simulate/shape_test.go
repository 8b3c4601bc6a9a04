package simulate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// sharedData locates ../shared/data next to the repository root, or
// skips: the real samples (some GPL/AGPL) are never copied into the repo.
func sharedData(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	d := filepath.Join(dir, "..", "shared", "data")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("real samples not available (%s): %v", d, err)
	}
	return d
}

// readRecords reads JSON lines or one JSON array (with a BOM) into
// generic values, numbers kept as json.Number.
func readRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF})
	var out []map[string]any
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		d := json.NewDecoder(bytes.NewReader(t))
		d.UseNumber()
		if err := d.Decode(&out); err != nil {
			panic(err)
		}
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// compareShape checks that sim has every field of real with the same JSON
// type, recursively. Nulls in the real record match anything (the type is
// unknown); OData annotations are not fields. Paths listed in except are
// known, explained differences and are skipped.
func compareShape(real, sim any, path string, except map[string]string, diffs *[]string) {
	if _, ok := except[path]; ok {
		return
	}
	if real == nil {
		return
	}
	if kindOf(real) != kindOf(sim) {
		*diffs = append(*diffs, fmt.Sprintf("%s: real %s, simulated %s", path, kindOf(real), kindOf(sim)))
		return
	}
	switch r := real.(type) {
	case map[string]any:
		s := sim.(map[string]any)
		for k, v := range r {
			if strings.Contains(k, "@odata") {
				continue
			}
			sv, ok := s[k]
			if !ok {
				*diffs = append(*diffs, fmt.Sprintf("%s: missing in simulated record", join(path, k)))
				continue
			}
			compareShape(v, sv, join(path, k), except, diffs)
		}
	case []any:
		s := sim.([]any)
		if len(s) == 0 {
			return
		}
		for _, re := range r {
			compareShape(re, matchElem(re, s), path+"[]", except, diffs)
		}
	}
}

// matchElem picks the simulated element to compare a real one with: the
// one with the same name in name/value lists, else the first.
func matchElem(re any, s []any) any {
	if m, ok := re.(map[string]any); ok {
		for _, k := range []string{"name", "Name"} {
			if n, ok := m[k].(string); ok {
				for _, se := range s {
					if sm, ok := se.(map[string]any); ok && sm[k] == n {
						return se
					}
				}
				return m // a name the simulator does not emit: nothing to compare
			}
		}
	}
	return s[0]
}

func join(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

func findSim(t *testing.T, recs []map[string]any, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	for _, r := range recs {
		if ok(r) {
			return r
		}
	}
	t.Fatalf("no simulated %s", what)
	return nil
}

// TestShapesMatchRealRecords compares every operation that appears both in
// the real samples and in the simulated output, field by field.
func TestShapesMatchRealRecords(t *testing.T) {
	data := sharedData(t)
	f := getFixture(t)
	type pair struct {
		name   string
		real   any
		sim    map[string]any
		except map[string]string
	}
	var pairs []pair

	isBind := func(r map[string]any) bool {
		return r["Operation"] == "MailItemsAccessed" && opProp(r, "MailAccessType") == "Bind"
	}
	bad := maliciousIDs(f.truth)
	unlinked := map[string]bool{}
	for _, tok := range confounder(t, f.truth, ConfUnlinkedTokens).TokensWithoutSignIn {
		unlinked[tok] = true
	}
	sanctioned := confounder(t, f.truth, ConfSanctionedApp)
	cloudNet := loadNets(t, f.dir)
	cloudASN := confounder(t, f.truth, ConfCloudPC).ASNs[0]
	// every kind of Bind record the simulator writes, benign and malicious
	binds := []struct {
		name string
		rec  map[string]any
	}{
		{"user", findSim(t, f.ual, "Bind MailItemsAccessed", func(r map[string]any) bool { return isBind(r) && str(r, "SessionId") != "" })},
		{"benign unlinked token", findSim(t, f.ual, "unlinked-token Bind", func(r map[string]any) bool {
			return isBind(r) && unlinked[str(r, "AppAccessContext", "UniqueTokenId")]
		})},
		{"sanctioned app, app-only", findSim(t, f.ual, "sanctioned app Bind", func(r map[string]any) bool {
			return isBind(r) && str(r, "UserId") == sanctioned.AppIDs[0]
		})},
		{"cloud PC", findSim(t, f.ual, "cloud PC Bind", func(r map[string]any) bool {
			if !isBind(r) {
				return false
			}
			e, ok := cloudNet.Lookup(parseAddr(str(r, "ClientIPAddress")))
			return ok && e.ASN == cloudASN
		})},
		{"forged, common client app", findSim(t, f.ual, "forged-token-common-app Bind", func(r map[string]any) bool {
			return isBind(r) && bad["m365.ual/"+str(r, "Id")] == CampaignForgedCommonApp
		})},
	}
	flattened := "the Defender export flattens these elements to PowerShell strings; their element shape is checked against the OfficeActivity row"
	for _, r := range readRecords(t, filepath.Join(data, "otrf-security-datasets", "Microsoft365DefenderEvents.json")) {
		if r["ActionType"] == "MailItemsAccessed" {
			for _, b := range binds {
				pairs = append(pairs, pair{"MailItemsAccessed (Defender RawEventData) vs " + b.name, r["RawEventData"], b.rec,
					map[string]string{"OperationProperties[]": flattened, "Folders[]": flattened}})
			}
		}
	}
	for _, r := range readRecords(t, filepath.Join(data, "otrf-security-datasets", "OfficeActivityEvents.json")) {
		if r["Operation"] != "MailItemsAccessed" {
			continue
		}
		// Sentinel keeps the nested collections as JSON strings.
		nested := map[string]any{}
		for _, k := range []string{"Folders", "OperationProperties"} {
			var v any
			d := json.NewDecoder(strings.NewReader(r[k].(string)))
			d.UseNumber()
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			nested[k] = v
		}
		for _, b := range binds {
			pairs = append(pairs, pair{"MailItemsAccessed (OfficeActivity nested columns) vs " + b.name, nested, b.rec, nil})
		}
	}

	login := findSim(t, f.ual, "UserLoggedIn", func(r map[string]any) bool { return r["Operation"] == "UserLoggedIn" })
	for _, r := range readRecords(t, filepath.Join(data, "plaso-test-data", "microsoft_audit_log.jsonl")) {
		if r["Operation"] == "UserLoggedIn" {
			pairs = append(pairs, pair{"UserLoggedIn (Management Activity API)", r, login, nil})
		}
	}
	for _, r := range readRecords(t, filepath.Join(data, "graph2otel-live-fixtures", "m365_unifiedaudit_graph_auditlogquery.jsonl")) {
		if r["operation"] == "UserLoggedIn" {
			pairs = append(pairs, pair{"UserLoggedIn (Graph auditLogRecord auditData)", r["auditData"], login, nil})
		}
	}

	bySignInID := map[string]map[string]any{}
	for _, r := range f.si {
		bySignInID[str(r, "id")] = r
	}
	interactives := map[string]map[string]any{
		"user":                          findSim(t, f.si, "interactive sign-in", func(r map[string]any) bool { return r["isInteractive"] == true && str(r, "userPrincipalName") != "" }),
		"admin portal (sanctioned app)": bySignInID[sanctioned.Records[0].ID],
		"cloud PC":                      bySignInID[confounder(t, f.truth, ConfCloudPC).Records[0].ID],
	}
	sps := map[string]map[string]any{
		"service principal": findSim(t, f.si, "service-principal sign-in", func(r map[string]any) bool {
			return str(r, "servicePrincipalId") != "" && str(r, "userPrincipalName") == ""
		}),
		"sanctioned app": findSim(t, f.si, "sanctioned app sign-in", func(r map[string]any) bool { return str(r, "appId") == sanctioned.AppIDs[0] }),
	}
	for _, r := range readRecords(t, filepath.Join(data, "graph2otel-live-fixtures", "entra_signins_graph_and_diagnostic.jsonl")) {
		if _, diag := r["category"]; diag {
			continue // Azure Monitor diagnostic envelope, not the Graph shape vigil simulate writes
		}
		for name, sim := range interactives {
			if sim == nil {
				t.Fatalf("no simulated %s sign-in", name)
			}
			pairs = append(pairs, pair{"signIn (Graph, live interactive) vs " + name, r, sim, nil})
		}
	}
	realSPs := readRecords(t, filepath.Join(data, "invictus-microsoft-extractor-suite", "20250502132320-servicePrincipal-SignInLogs.json"))
	for _, r := range realSPs[:min(len(realSPs), 20)] {
		for name, sim := range sps {
			pairs = append(pairs, pair{"signIn (Graph beta, service principal) vs " + name, r, sim, nil})
		}
	}

	tokenAct := findSim(t, f.gws, "Workspace token activity", func(r map[string]any) bool {
		ev, _ := r["events"].([]any)
		return str(r, "id", "applicationName") == "token" && len(ev) > 0 && ev[0].(map[string]any)["name"] == "activity"
	})
	relay := "the Defender relay re-serialises Reports API int64 and datetime values; the Reports API JSON (what vigil collects) has them as strings"
	for _, r := range readRecords(t, filepath.Join(data, "graph2otel-live-fixtures", "defender_cloudapp_identitylogon_advancedhunting.jsonl")) {
		raw, _ := get(r, "properties", "RawEventData").(map[string]any)
		if str(raw, "kind") == "admin#reports#activity" {
			pairs = append(pairs, pair{"Workspace token activity (Defender RawEventData)", raw, tokenAct,
				map[string]string{"id.time": relay, "id.uniqueQualifier": relay, "events[].parameters[].intValue": relay}})
		}
	}

	want := []string{"MailItemsAccessed", "UserLoggedIn", "signIn (Graph, live", "signIn (Graph beta", "Workspace token"}
	for _, w := range want {
		found := false
		for _, p := range pairs {
			found = found || strings.HasPrefix(p.name, w)
		}
		if !found {
			t.Errorf("no real sample for %q in %s", w, data)
		}
	}
	for _, p := range pairs {
		var diffs []string
		compareShape(p.real, p.sim, "", p.except, &diffs)
		sort.Strings(diffs)
		if len(diffs) > 0 {
			t.Errorf("%s: %d differences:\n  %s", p.name, len(diffs), strings.Join(diffs, "\n  "))
		}
	}
}

// TestAppRoleAssignmentMatchesRealAudit compares the simulated UAL mirror
// of "Add app role assignment to service principal" with the real Entra
// directory audit (Graph) record of that activity: the same activity name
// (the UAL adds a full stop), every modified property the real record
// carries, and the resource's service principal as the target.
func TestAppRoleAssignmentMatchesRealAudit(t *testing.T) {
	data := sharedData(t)
	f := getFixture(t)
	var real map[string]any
	for _, r := range readRecords(t, filepath.Join(data, "graph2otel-live-fixtures", "entra_directoryaudits.jsonl")) {
		if r["activityDisplayName"] == "Add app role assignment to service principal" {
			real = r
			break
		}
	}
	if real == nil {
		t.Fatalf("no real app role assignment in %s", data)
	}
	tgt := real["targetResources"].([]any)[0].(map[string]any)
	if str(tgt, "type") != "ServicePrincipal" {
		t.Fatalf("real target type %q", str(tgt, "type"))
	}
	n := 0
	for _, r := range f.ual {
		if r["Operation"] != str(real, "activityDisplayName")+"." {
			continue
		}
		n++
		names := map[string]string{}
		for _, p := range r["ModifiedProperties"].([]any) {
			pm := p.(map[string]any)
			names[str(pm, "Name")] = str(pm, "NewValue")
		}
		for _, p := range tgt["modifiedProperties"].([]any) {
			k := str(p.(map[string]any), "displayName")
			if v, ok := names[k]; !ok || v == "" {
				t.Errorf("record %s: modified property %s missing or empty", str(r, "Id"), k)
			}
		}
		// the target is the resource (Graph, Exchange), named as in the real record
		res := names["TargetId.ServicePrincipalNames"]
		var want string
		for _, a := range []App{resGraph, resExchange} {
			if a.ID == res {
				want = a.DisplayName
			}
		}
		found := false
		for _, x := range r["Target"].([]any) {
			found = found || str(x.(map[string]any), "ID") == want
		}
		if want == "" || !found {
			t.Errorf("record %s: resource %q not among the targets %v", str(r, "Id"), res, r["Target"])
		}
		if str(tgt, "displayName") == resGraph.DisplayName && res == resGraph.ID && names["AppRole.Id"] == "" {
			t.Errorf("record %s: no app role id", str(r, "Id"))
		}
	}
	if n < 2 {
		t.Fatalf("%d simulated app role assignments, want the sanctioned app's two", n)
	}
}

// TestCompareShapeDetects guards the comparator itself.
func TestCompareShapeDetects(t *testing.T) {
	real := map[string]any{"a": "x", "n": json.Number("1"), "o": map[string]any{"b": true}, "l": []any{map[string]any{"Name": "k", "Value": "v"}}, "z": nil}
	cases := []struct {
		sim  map[string]any
		want int
	}{
		{map[string]any{"a": "y", "n": json.Number("2"), "o": map[string]any{"b": false}, "l": []any{map[string]any{"Name": "k", "Value": "w"}}, "z": "anything"}, 0},
		{map[string]any{"a": json.Number("1"), "n": json.Number("2"), "o": map[string]any{"b": false}, "l": []any{}, "z": nil}, 1},
		{map[string]any{"a": "y", "n": "2", "o": map[string]any{}, "l": []any{map[string]any{"Name": "k", "Value": json.Number("3")}}}, 4},
	}
	for i, c := range cases {
		var d []string
		compareShape(real, c.sim, "", nil, &d)
		if len(d) != c.want {
			t.Errorf("case %d: %d differences %v, want %d", i, len(d), d, c.want)
		}
	}
}
