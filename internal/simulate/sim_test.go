package simulate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

func TestSameSeedSameBytes(t *testing.T) {
	cfg := testConfig()
	cfg.Users, cfg.Days = 20, 6
	run := func(c Config) string {
		dir := t.TempDir()
		if _, err := Run(context.Background(), c, dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a, b := run(cfg), run(cfg)
	for _, name := range []string{"ual.jsonl", "signins.jsonl", "gws.jsonl", NetworksFile, TruthFile} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same seed (%d vs %d bytes)", name, len(x), len(y))
		}
	}
	cfg.Seed++
	c := run(cfg)
	x, _ := os.ReadFile(filepath.Join(a, "ual.jsonl"))
	y, _ := os.ReadFile(filepath.Join(c, "ual.jsonl"))
	if bytes.Equal(x, y) {
		t.Error("a different seed gave the same UAL bytes")
	}
}

func recTime(t *testing.T, m map[string]any, key, layout string) time.Time {
	t.Helper()
	tt, err := time.Parse(layout, str(m, key))
	if err != nil {
		t.Fatalf("record %s: bad %s: %v", str(m, "Id"), key, err)
	}
	return tt.UTC()
}

// TestThrottling replays Exchange's rule over the output: a mailbox's
// record that makes more than the limit in the trailing 24 h carries
// IsThrottled=True, and nothing follows for that mailbox for 24 h.
func TestThrottling(t *testing.T) {
	f := getFixture(t)
	limit := testConfig().ThrottleLimit
	byMB := map[string][]map[string]any{}
	for _, r := range f.ual {
		if r["Operation"] == "MailItemsAccessed" {
			mb := str(r, "MailboxOwnerUPN")
			byMB[mb] = append(byMB[mb], r)
		}
	}
	throttledSeen := 0
	for mb, rs := range byMB {
		// records are written in time order
		var window []time.Time
		silentUntil := time.Time{}
		for _, r := range rs {
			ct := recTime(t, r, "CreationTime", layoutUAL)
			if ct.Before(silentUntil) {
				t.Fatalf("%s: record %s at %s inside the silent window ending %s", mb, str(r, "Id"), ct, silentUntil)
			}
			for len(window) > 0 && !window[0].After(ct.Add(-24*time.Hour)) {
				window = window[1:]
			}
			window = append(window, ct)
			want := len(window) > limit
			got := opProp(r, "IsThrottled") == "True"
			if got != want {
				t.Fatalf("%s: record %s: IsThrottled=%v, want %v (%d records in 24 h, limit %d)", mb, str(r, "Id"), got, want, len(window), limit)
			}
			if got {
				throttledSeen++
				silentUntil = ct.Add(24 * time.Hour)
				window = nil
			}
		}
	}
	if throttledSeen < 2 {
		t.Fatalf("want the backup tool's full backup and consent-phish's bulk read to be throttled; saw %d throttled records", throttledSeen)
	}
}

// TestMailAccessShapes checks Bind and Sync records: Bind itemises
// messages and counts them; Sync lists folders only.
func TestMailAccessShapes(t *testing.T) {
	f := getFixture(t)
	var binds, syncs int
	for _, r := range f.ual {
		if r["Operation"] != "MailItemsAccessed" {
			continue
		}
		folders, _ := r["Folders"].([]any)
		if len(folders) == 0 {
			t.Fatalf("record %s has no Folders", str(r, "Id"))
		}
		items := 0
		for _, fo := range folders {
			fm := fo.(map[string]any)
			if str(fm, "Path") == "" || str(fm, "Id") == "" {
				t.Fatalf("record %s: folder without Path/Id", str(r, "Id"))
			}
			fi, has := fm["FolderItems"].([]any)
			switch opProp(r, "MailAccessType") {
			case "Sync":
				if has {
					t.Fatalf("Sync record %s itemises messages", str(r, "Id"))
				}
			case "Bind":
				if len(fi) == 0 {
					t.Fatalf("Bind record %s has a folder without items", str(r, "Id"))
				}
				for _, it := range fi {
					id := str(it.(map[string]any), "InternetMessageId")
					if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || !strings.Contains(id, "@") {
						t.Fatalf("record %s: bad InternetMessageId %q", str(r, "Id"), id)
					}
				}
				items += len(fi)
			default:
				t.Fatalf("record %s: MailAccessType %q", str(r, "Id"), opProp(r, "MailAccessType"))
			}
		}
		n := r["OperationCount"].(interface{ String() string }).String()
		want := items
		if opProp(r, "MailAccessType") == "Sync" {
			syncs++
			want = len(folders)
		} else {
			binds++
		}
		if n != itoa(want) {
			t.Fatalf("record %s: OperationCount %s, want %d", str(r, "Id"), n, want)
		}
	}
	if binds == 0 || syncs == 0 {
		t.Fatalf("binds %d, syncs %d: want both", binds, syncs)
	}
}

// TestSignInLinks checks that every token a mail access uses was issued
// by a sign-in with the same session, user and issue time — except the
// forged tokens, which no sign-in issued.
func TestSignInLinks(t *testing.T) {
	f := getFixture(t)
	type issued struct {
		session, user, sp, created string
	}
	tokens := map[string]issued{}
	sessions := map[string]bool{}
	for _, s := range f.si {
		tok := str(s, "uniqueTokenIdentifier")
		if str(get(s, "status").(map[string]any), "failureReason") == "" {
			t.Fatalf("sign-in %s: no failureReason", str(s, "id"))
		}
		if e := get(s, "status", "errorCode").(interface{ String() string }).String(); e != "0" {
			continue
		}
		if _, dup := tokens[tok]; dup {
			t.Fatalf("token %s issued twice", tok)
		}
		tokens[tok] = issued{str(s, "sessionId"), str(s, "userPrincipalName"), str(s, "appId"), str(s, "createdDateTime")}
		if sid := str(s, "sessionId"); sid != "" {
			sessions[sid] = true
		}
	}
	forged := map[string]bool{}
	for _, c := range f.truth.Campaigns {
		for _, tok := range c.Actor.TokensWithoutSignIn {
			forged[tok] = true
		}
	}
	if len(forged) == 0 {
		t.Fatal("no forged tokens in truth")
	}
	// benign tokens without a sign-in record: exactly those truth lists
	unlinked := map[string]bool{}
	for _, c := range f.truth.Confounders {
		for _, tok := range c.TokensWithoutSignIn {
			if _, ok := tokens[tok]; ok {
				t.Fatalf("confounder %s lists token %s as having no sign-in, but a sign-in issued it", c.Name, tok)
			}
			unlinked[tok] = true
		}
	}
	checked, forgedSeen, unlinkedSeen := 0, 0, 0
	for _, r := range f.ual {
		tok := str(r, "AppAccessContext", "UniqueTokenId")
		if tok == "" {
			continue
		}
		sess := str(r, "AppAccessContext", "AADSessionId")
		if unlinked[tok] {
			unlinkedSeen++
			continue
		}
		if forged[tok] {
			forgedSeen++
			if _, ok := tokens[tok]; ok {
				t.Fatalf("forged token %s has a sign-in", tok)
			}
			if sessions[sess] {
				t.Fatalf("forged access %s uses a session a sign-in established", str(r, "Id"))
			}
			continue
		}
		is, ok := tokens[tok]
		if !ok {
			t.Fatalf("record %s (%s) uses token %s that no sign-in issued", str(r, "Id"), r["Operation"], tok)
		}
		if is.session != sess {
			t.Fatalf("record %s: AADSessionId %q, sign-in sessionId %q", str(r, "Id"), sess, is.session)
		}
		if sess != "" && str(r, "SessionId") != sess {
			t.Fatalf("record %s: SessionId %q differs from AADSessionId %q", str(r, "Id"), str(r, "SessionId"), sess)
		}
		switch {
		case is.user != "":
			if !strings.EqualFold(is.user, str(r, "UserId")) {
				t.Fatalf("record %s: UserId %s, token issued to %s", str(r, "Id"), str(r, "UserId"), is.user)
			}
		case str(r, "UserId") != is.sp:
			t.Fatalf("record %s: app-only UserId %s, token issued to app %s", str(r, "Id"), str(r, "UserId"), is.sp)
		}
		created, _ := time.Parse(layoutGraph, is.created)
		iat, _ := time.Parse(layoutUAL, str(r, "AppAccessContext", "IssuedAtTime"))
		ct, _ := time.Parse(layoutUAL, str(r, "CreationTime"))
		if !created.Equal(iat) || ct.Before(created) {
			t.Fatalf("record %s at %s: IssuedAtTime %s, sign-in at %s", str(r, "Id"), ct, iat, created)
		}
		checked++
	}
	if checked < 1000 || forgedSeen == 0 || unlinkedSeen == 0 {
		t.Fatalf("checked %d linked, %d forged and %d benign unlinked accesses", checked, forgedSeen, unlinkedSeen)
	}
}

// TestTruthMatchesRecords recomputes each campaign's impact from its
// records and compares it with truth.json.
func TestTruthMatchesRecords(t *testing.T) {
	f := getFixture(t)
	tr, err := LoadTruth(filepath.Join(f.dir, TruthFile))
	if err != nil {
		t.Fatal(err)
	}
	ual := map[string]map[string]any{}
	for _, r := range f.ual {
		ual[str(r, "Id")] = r
	}
	signins := map[string]map[string]any{}
	for _, s := range f.si {
		signins[str(s, "id")] = s
	}
	if len(tr.Campaigns) != len(CampaignNames) {
		t.Fatalf("%d campaigns in truth", len(tr.Campaigns))
	}
	malicious := map[string]string{}
	for _, c := range tr.Campaigns {
		if len(c.Records) == 0 || len(c.Impact) == 0 {
			t.Fatalf("%s: %d records, %d mailboxes", c.Name, len(c.Records), len(c.Impact))
		}
		type acc struct {
			first, last     time.Time
			n               int
			folders, msgs   map[string]bool
			sync, throttled bool
		}
		got := map[string]*acc{}
		for _, ref := range c.Records {
			var rec map[string]any
			switch ref.Source {
			case "m365.ual":
				rec = ual[ref.ID]
			case "entra.signin":
				rec = signins[ref.ID]
			default:
				t.Fatalf("%s: record source %q", c.Name, ref.Source)
			}
			if rec == nil {
				t.Fatalf("%s: record %s/%s not in the output", c.Name, ref.Source, ref.ID)
			}
			malicious[ref.Source+"/"+ref.ID] = c.Name
			if ref.Source != "m365.ual" || rec["Operation"] != "MailItemsAccessed" {
				continue
			}
			mb := str(rec, "MailboxOwnerUPN")
			a := got[mb]
			if a == nil {
				a = &acc{folders: map[string]bool{}, msgs: map[string]bool{}}
				got[mb] = a
			}
			ct := recTime(t, rec, "CreationTime", layoutUAL)
			if a.n == 0 || ct.Before(a.first) {
				a.first = ct
			}
			if ct.After(a.last) {
				a.last = ct
			}
			a.n++
			a.sync = a.sync || opProp(rec, "MailAccessType") == "Sync"
			a.throttled = a.throttled || opProp(rec, "IsThrottled") == "True"
			for _, fo := range rec["Folders"].([]any) {
				fm := fo.(map[string]any)
				a.folders[str(fm, "Path")] = true
				items, _ := fm["FolderItems"].([]any)
				for _, it := range items {
					a.msgs[str(it.(map[string]any), "InternetMessageId")] = true
				}
			}
		}
		for _, imp := range c.Impact {
			a := got[imp.Mailbox]
			if a == nil {
				if imp.Records != 0 || imp.Unlogged == nil {
					t.Fatalf("%s: truth mailbox %s has no records and no unlogged reads", c.Name, imp.Mailbox)
				}
				continue
			}
			if imp.Records != a.n || !imp.FirstAccess.Equal(a.first) || !imp.LastAccess.Equal(a.last) {
				t.Errorf("%s %s: truth %d records %s–%s, records say %d %s–%s", c.Name, imp.Mailbox, imp.Records, imp.FirstAccess, imp.LastAccess, a.n, a.first, a.last)
			}
			if !equalSet(imp.Folders, a.folders) || !equalSet(imp.MessageIDs, a.msgs) {
				t.Errorf("%s %s: folders/messages differ from the records (truth %d/%d, records %d/%d)", c.Name, imp.Mailbox, len(imp.Folders), len(imp.MessageIDs), len(a.folders), len(a.msgs))
			}
			reasons := map[string]EvidenceGap{}
			for _, g := range imp.Gaps {
				reasons[g.Reason] = g
			}
			if imp.Complete != (len(imp.Gaps) == 0) {
				t.Errorf("%s %s: complete=%v with %d gaps", c.Name, imp.Mailbox, imp.Complete, len(imp.Gaps))
			}
			if _, ok := reasons[GapSync]; ok != a.sync {
				t.Errorf("%s %s: sync gap %v, Sync records %v", c.Name, imp.Mailbox, ok, a.sync)
			}
			if a.throttled {
				if _, ok := reasons[GapThrottled]; !ok {
					t.Errorf("%s %s: a campaign record is throttled but truth has no throttled gap", c.Name, imp.Mailbox)
				}
			}
			if g, ok := reasons[GapThrottled]; ok && !a.throttled {
				// silenced by someone else's throttling: a throttled record for the mailbox precedes it within 24 h
				if !throttledBefore(t, f.ual, imp.Mailbox, g.First) {
					t.Errorf("%s %s: throttled gap at %s without a preceding IsThrottled record", c.Name, imp.Mailbox, g.First)
				}
			}
			if (imp.Unlogged != nil) != (a.sync || reasons[GapThrottled].Reason != "") && !a.throttled {
				t.Errorf("%s %s: unlogged reads %v, gaps %v", c.Name, imp.Mailbox, imp.Unlogged != nil, imp.Gaps)
			}
		}
	}
	// forged-token: targeted VIPs, script client, hosting/VPN networks, 00–09 UTC on weekdays.
	nets := loadNets(t, f.dir)
	for _, c := range tr.Campaigns {
		if c.Name != CampaignForgedToken {
			continue
		}
		for _, ref := range c.Records {
			r := ual[ref.ID]
			ct := recTime(t, r, "CreationTime", layoutUAL)
			if ct.Hour() >= 9 || ct.Weekday() == time.Saturday || ct.Weekday() == time.Sunday {
				t.Errorf("forged-token record %s at %s: outside 00–09 UTC on weekdays", ref.ID, ct)
			}
			if str(r, "ClientInfoString") != scriptUA {
				t.Errorf("forged-token record %s: ClientInfoString %q", ref.ID, str(r, "ClientInfoString"))
			}
			e, ok := nets.Lookup(parseAddr(str(r, "ClientIPAddress")))
			if !ok || (e.Kind != netinfo.KindHosting && e.Kind != netinfo.KindVPN) {
				t.Errorf("forged-token record %s: IP %s is %v, want hosting or vpn", ref.ID, str(r, "ClientIPAddress"), e.Kind)
			}
		}
		if len(c.Actor.ClientAppIDs) != 1 {
			t.Fatalf("forged-token client apps %v", c.Actor.ClientAppIDs)
		}
		// the client app id is new: no benign record uses it
		for _, r := range f.ual {
			if str(r, "ClientAppId") == c.Actor.ClientAppIDs[0] && malicious["m365.ual/"+str(r, "Id")] != c.Name {
				t.Fatalf("benign record %s uses the forged-token client app id", str(r, "Id"))
			}
		}
	}
	// actor IPs appear only in malicious records
	actorIP := map[string]bool{}
	for _, c := range tr.Campaigns {
		for _, ip := range c.Actor.IPs {
			if c.Name != CampaignConsentPhish || !strings.HasPrefix(ip, "198.18.") {
				actorIP[ip] = true
			}
		}
	}
	for _, s := range f.si {
		if actorIP[str(s, "ipAddress")] && malicious["entra.signin/"+str(s, "id")] == "" {
			t.Fatalf("benign sign-in %s from actor IP %s", str(s, "id"), str(s, "ipAddress"))
		}
	}
	if len(tr.Confounders) != len(ConfounderNames) {
		t.Fatalf("%d confounders in truth", len(tr.Confounders))
	}
}

func throttledBefore(t *testing.T, ual []map[string]any, mb string, at time.Time) bool {
	for _, r := range ual {
		if r["Operation"] != "MailItemsAccessed" || str(r, "MailboxOwnerUPN") != mb || opProp(r, "IsThrottled") != "True" {
			continue
		}
		ct := recTime(t, r, "CreationTime", layoutUAL)
		if !ct.After(at) && at.Sub(ct) < 24*time.Hour {
			return true
		}
	}
	return false
}

func equalSet(a []string, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	if !sort.StringsAreSorted(a) {
		return false
	}
	for _, x := range a {
		if !b[x] {
			return false
		}
	}
	return true
}

func loadNets(t *testing.T, dir string) *netinfo.Table {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, NetworksFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nt, err := netinfo.LoadStrict(f)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

// TestNetworksCoverRecords checks that every client IP in the output is
// in the network table, with the ASN and country the sign-ins report.
func TestNetworksCoverRecords(t *testing.T) {
	f := getFixture(t)
	nt := loadNets(t, f.dir)
	for _, s := range f.si {
		e, ok := nt.Lookup(parseAddr(str(s, "ipAddress")))
		if !ok {
			t.Fatalf("sign-in %s: IP %s not in the network table", str(s, "id"), str(s, "ipAddress"))
		}
		asn := get(s, "autonomousSystemNumber").(interface{ String() string }).String()
		if asn != itoa(int(e.ASN)) || str(s, "location", "countryOrRegion") != e.Country {
			t.Fatalf("sign-in %s: ASN %s/%s, table %d/%s", str(s, "id"), asn, str(s, "location", "countryOrRegion"), e.ASN, e.Country)
		}
	}
	for _, r := range f.ual {
		ip := str(r, "ClientIPAddress")
		if ip == "" {
			ip = str(r, "ClientIP")
		}
		if ip == "" {
			continue
		}
		if _, ok := nt.Lookup(parseAddr(ip)); !ok {
			t.Fatalf("UAL %s: IP %s not in the network table", str(r, "Id"), ip)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown campaign", func(c *Config) { c.Campaigns = []string{"nope"} }, "unknown campaign"},
		{"unknown confounder", func(c *Config) { c.Confounders = []string{"nope"} }, "unknown confounder"},
		{"unknown param", func(c *Config) {
			c.Campaigns = []string{CampaignForgedToken}
			c.Params = map[string]map[string]string{CampaignForgedToken: {"bogus": "1"}}
		}, "no parameter"},
		{"param for disabled campaign", func(c *Config) { c.Params = map[string]map[string]string{CampaignTokenReplay: {"reads": "1"}} }, "not enabled"},
		{"bad param value", func(c *Config) {
			c.Campaigns = []string{CampaignForgedToken}
			c.Params = map[string]map[string]string{CampaignForgedToken: {"targets": "x"}}
		}, "targets"},
		{"too few users", func(c *Config) { c.Users = 3 }, "at least 10"},
		{"bad format", func(c *Config) { c.Format = "xml" }, "format"},
		{"start not midnight", func(c *Config) { c.Start = DefaultStart.Add(time.Hour) }, "midnight"},
		{"unknown victim", func(c *Config) {
			c.Campaigns = []string{CampaignTokenReplay}
			c.Params = map[string]map[string]string{CampaignTokenReplay: {"victim": "nobody@contoso.example"}}
		}, "no user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Users: 10, Days: 2}
			tc.mod(&c)
			_, err := Run(context.Background(), c, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Config{Users: 50, Days: 30}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("err %v, want cancellation", err)
	}
}

func TestAppendSeconds(t *testing.T) {
	for _, u := range []int64{0, 1, 59, 86399, 86400, 951782400, 1709251199, 1772409600, 4102444799, 253402300799} {
		want := time.Unix(u, 0).UTC().Format(layoutUAL)
		if got := string(appendSeconds(nil, u)); got != want {
			t.Errorf("%d: %s, want %s", u, got, want)
		}
	}
	g := newRNG(1, 1)
	for i := 0; i < 10000; i++ {
		u := int64(g.u64() % 253402300800)
		want := time.Unix(u, 0).UTC().Format(layoutUAL)
		if got := string(appendSeconds(nil, u)); got != want {
			t.Fatalf("%d: %s, want %s", u, got, want)
		}
	}
}
