package index

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/simulate"
	"github.com/vigil-audit/vigil/internal/source"
)

// tenant is a simulated tenant's logs, made once per test binary.
var tenantDir string

func simTenant(t testing.TB) string {
	t.Helper()
	if tenantDir != "" {
		return tenantDir
	}
	dir, err := os.MkdirTemp("", "vigil-index-sim")
	if err != nil {
		t.Fatal(err)
	}
	cfg := simulate.Config{Users: 20, Days: 4, Seed: 7, Start: simulate.DefaultStart, Format: simulate.Format("jsonl"),
		Campaigns: []string{"forged-token"}, Confounders: simulate.ConfounderNames, ThrottleLimit: 1000}
	if _, err := simulate.Run(context.Background(), cfg, dir); err != nil {
		t.Fatal(err)
	}
	tenantDir = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tenantDir != "" {
		os.RemoveAll(tenantDir)
	}
	os.Exit(code)
}

// ingest appends the records of files to the journal in data, in batches
// of batch entries, calling between(n) after each batch with the number
// of entries appended so far.
func ingest(t testing.TB, data string, files []string, batch int, between func(n uint64)) uint64 {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var cur []journal.Entry
	var n uint64
	flush := func() {
		if len(cur) == 0 {
			return
		}
		acks, err := j.AppendBatch(ctx, cur)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			if !a.Duplicate {
				n++
			}
		}
		cur = cur[:0]
		if between != nil {
			between(n)
		}
	}
	_, err = source.ReadPaths(ctx, files, source.Options{}, func(e *event.Event) error {
		cur = append(cur, journal.Entry{Source: e.Source, Origin: e.Origin.File, RecordID: e.RecordID, Raw: e.Raw})
		if len(cur) == batch {
			flush()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	flush()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

func tenantFiles(t testing.TB) []string {
	d := simTenant(t)
	return []string{filepath.Join(d, "ual.jsonl"), filepath.Join(d, "signins.jsonl"), filepath.Join(d, "gws.jsonl")}
}

// dump returns every row of every table in a fixed order, as text.
func dump(t *testing.T, x *Index) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tbl := range []string{"events", "mail_access", "unindexed", "signins", "audits"} {
		res, err := x.query(context.Background(), "SELECT * FROM "+tbl+" ORDER BY ALL")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Rows {
			out[tbl] = append(out[tbl], fmt.Sprint(r...))
		}
	}
	return out
}

// sameRows requires got's rows of tables to equal want's (the same journal
// indexed another way, named by what) and returns got's rows.
func sameRows(t *testing.T, got, want *Index, what string, tables ...string) map[string][]string {
	t.Helper()
	a, b := dump(t, got), dump(t, want)
	for _, tbl := range tables {
		if !slices.Equal(a[tbl], b[tbl]) {
			t.Errorf("%s: %s has %d rows, the other %d, or they differ", tbl, what, len(a[tbl]), len(b[tbl]))
		}
	}
	return a
}

// rebuilt is an index of the journal in data built from scratch.
func rebuilt(t *testing.T, data string, opts Options) (*Index, UpdateStats) {
	t.Helper()
	x, err := Open(context.Background(), filepath.Join(t.TempDir(), "full"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	st, err := x.Rebuild(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	return x, st
}

// TestMailRowsAgreeWithTheirEvents: a mail read's rows in mail_access
// carry its event's actor, apps, address, token, time and session (the
// writer shares those cells between the two tables' rows), and the
// fixture's mail reads have them.
func TestMailRowsAgreeWithTheirEvents(t *testing.T) {
	data := t.TempDir()
	ingest(t, data, tenantFiles(t), 3000, nil)
	x, _ := rebuilt(t, data, Options{})
	var rows, differ, actors, ips, times int
	err := x.db.QueryRowContext(t.Context(), `SELECT count(*),
		count(*) FILTER (WHERE m.actor IS DISTINCT FROM e.actor OR m.app IS DISTINCT FROM e.app
			OR m.client_app IS DISTINCT FROM e.client_app OR m.ip IS DISTINCT FROM e.ip
			OR m.ip_hi IS DISTINCT FROM e.ip_hi OR m.ip_lo IS DISTINCT FROM e.ip_lo OR m.asn IS DISTINCT FROM e.asn
			OR m.country IS DISTINCT FROM e.country OR m.token IS DISTINCT FROM e.token OR m.time IS DISTINCT FROM e.time
			OR (e.session IS NOT NULL AND m.session IS DISTINCT FROM e.session)),
		count(m.actor), count(m.ip), count(m.time)
		FROM mail_access m JOIN events e USING (idx, sub)`).Scan(&rows, &differ, &actors, &ips, &times)
	if err != nil {
		t.Fatal(err)
	}
	if differ != 0 {
		t.Errorf("%d of %d mail rows differ from their event's row", differ, rows)
	}
	if rows == 0 || actors != rows || ips == 0 || times != rows {
		t.Errorf("%d mail rows: %d with an actor, %d with an address, %d with a time", rows, actors, ips, times)
	}
}

func TestReindexEqualsIncremental(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	inc, err := Open(ctx, filepath.Join(t.TempDir(), "inc"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	updates := 0
	total := ingest(t, data, tenantFiles(t), 3000, func(n uint64) {
		// The incremental index follows the journal batch by batch, as
		// vigil ingest keeps it.
		st, err := inc.Update(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		if st.To != n {
			t.Fatalf("update read to %d, journal holds %d", st.To, n)
		}
		updates++
	})
	if updates < 3 {
		t.Fatalf("only %d incremental updates; the test needs several", updates)
	}
	full, st := rebuilt(t, data, Options{})
	if st.To != total || st.Events < total {
		t.Fatalf("rebuild: %+v, journal holds %d", st, total)
	}
	a := sameRows(t, inc, full, "incremental", "events", "mail_access", "signins", "audits")
	for _, tbl := range []string{"events", "mail_access", "signins", "audits"} {
		if len(a[tbl]) == 0 {
			t.Errorf("%s is empty", tbl)
		}
	}
	if len(a["unindexed"]) != 0 {
		t.Errorf("unindexed rows: %v", a["unindexed"][:min(3, len(a["unindexed"]))])
	}
	// A second update with nothing new changes nothing.
	st2, err := inc.Update(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Events != 0 || st2.To != total {
		t.Fatalf("idle update: %+v", st2)
	}
	s, err := inc.Status(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Behind != 0 || s.Next != total || s.Journal != total {
		t.Fatalf("status %+v, journal holds %d", s, total)
	}
}

// TestUpdateAfterInterruption: rows written past the recorded position by
// an update that was cut short are not duplicated by the next one.
func TestUpdateAfterInterruption(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	ingest(t, data, tenantFiles(t), 5000, nil)
	dir := t.TempDir()
	x, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Update(ctx, data); err != nil {
		t.Fatal(err)
	}
	want := dump(t, x)
	// Pretend the last commit of a process that stopped recorded only
	// half the journal.
	next, _ := x.Next(ctx)
	if err := x.setMeta(ctx, "next", strconv.FormatUint(next/2, 10)); err != nil {
		t.Fatal(err)
	}
	x.Close()
	if x, err = Open(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	s, err := x.Status(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Behind != next-next/2 {
		t.Fatalf("status says %d behind, want %d", s.Behind, next-next/2)
	}
	if _, err := x.Update(ctx, data); err != nil {
		t.Fatal(err)
	}
	got := dump(t, x)
	for tbl := range want {
		if !slices.Equal(want[tbl], got[tbl]) {
			t.Errorf("%s: %d rows before, %d after the redo", tbl, len(want[tbl]), len(got[tbl]))
		}
	}
}

// An update of this process that fails after loading its rows but before
// recording their position leaves rows past it; the next update redoes
// them instead of adding them twice.
func TestUpdateAfterFailedCommit(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	files := tenantFiles(t)
	x, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	want, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	failed := 0
	ingest(t, data, files, 4000, func(n uint64) {
		if _, err := want.Update(ctx, data); err != nil {
			t.Fatal(err)
		}
		if n > 4000 && failed == 0 {
			// The rows are loaded; recording their position fails.
			uctx, cancel := context.WithCancel(ctx)
			x.stepHook = func(step string) func() {
				if step == "set next" {
					cancel()
				}
				return func() {}
			}
			_, err := x.Update(uctx, data)
			x.stepHook = nil
			cancel()
			if err == nil {
				t.Fatal("update succeeded with its context cancelled before recording its position")
			}
			failed++
		}
		if _, err := x.Update(ctx, data); err != nil {
			t.Fatal(err)
		}
	})
	if failed == 0 {
		t.Fatal("no update failed")
	}
	w, g := dump(t, want), dump(t, x)
	for tbl := range w {
		if !slices.Equal(w[tbl], g[tbl]) {
			t.Errorf("%s: %d rows, after a failed commit %d", tbl, len(w[tbl]), len(g[tbl]))
		}
	}
}

// brute reads the tenant's files and returns the events f accepts.
func brute(t *testing.T, f func(e *event.Event) bool) []*event.Event {
	t.Helper()
	var out []*event.Event
	// The journal keeps one copy of a record delivered twice (the
	// simulator's duplicate-delivery confounder); so does the scan.
	seen := map[[2]string]bool{}
	_, err := source.ReadPaths(context.Background(), tenantFiles(t), source.Options{}, func(e *event.Event) error {
		if e.RecordID != "" {
			k := [2]string{e.Source, e.RecordID}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		if f(e) {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func indexed(t *testing.T) (*Index, string) {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	ingest(t, data, tenantFiles(t), 5000, nil)
	w, err := Open(ctx, Path(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Update(ctx, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	x, err := Open(ctx, Path(data), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x, data
}

func recordIDs(res *Result) []string {
	col := slices.Index(res.Columns, "record_id")
	var out []string
	for _, r := range res.Rows {
		if s, ok := r[col].(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func idsOf(evs []*event.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.RecordID)
	}
	slices.Sort(out)
	return out
}

// TestSearchMatchesBruteForce checks each query against a scan of the
// decoded files.
func TestSearchMatchesBruteForce(t *testing.T) {
	x, _ := indexed(t)
	all := brute(t, func(*event.Event) bool { return true })
	// Pick real values from the data.
	var user, ip, app, token string
	for _, e := range all {
		if e.Operation == "MailItemsAccessed" && e.TokenID != "" && e.IP != "" && strings.Contains(e.User, "@") && token == "" {
			user, ip, app, token = strings.ToLower(e.User), e.IP, strings.ToLower(e.AppID), e.TokenID
		}
	}
	if token == "" {
		t.Fatal("no mail access with a token in the simulated tenant")
	}
	prefix := ip[:strings.LastIndexByte(ip, '.')] + ".0/24"
	cases := []struct {
		q string
		f func(e *event.Event) bool
	}{
		{"user:" + strings.ToUpper(user), func(e *event.Event) bool { return strings.ToLower(e.User) == user }},
		{"ip:" + ip, func(e *event.Event) bool { return e.IP == ip }},
		{"ip:" + prefix, func(e *event.Event) bool { return strings.HasPrefix(e.IP, prefix[:len(prefix)-4]) }},
		{"token:" + token, func(e *event.Event) bool { return e.TokenID == token }},
		{"token:" + token + " op:mailitemsaccessed", func(e *event.Event) bool {
			return e.TokenID == token && strings.EqualFold(e.Operation, "MailItemsAccessed")
		}},
		{"ip:" + ip + " -op:mailitemsaccessed", func(e *event.Event) bool { return e.IP == ip && !strings.EqualFold(e.Operation, "MailItemsAccessed") }},
		{"app:" + app + " op:mailitemsaccessed", func(e *event.Event) bool {
			return strings.ToLower(e.AppID) == app && e.Operation == "MailItemsAccessed"
		}},
		{`user:` + user + ` AND NOT (op:MailItemsAccessed OR source:entra.signin)`, func(e *event.Event) bool {
			return strings.ToLower(e.User) == user && e.Operation != "MailItemsAccessed" && e.Source != "entra.signin"
		}},
		{`op:"Add service principal."`, func(e *event.Event) bool { return e.Operation == "Add service principal." }},
		{"since:2026-03-03 until:2026-03-04 kind:signin", func(e *event.Event) bool {
			return !e.Time.Before(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)) && e.Time.Before(time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)) &&
				(e.Source == "entra.signin" || e.Source == "gws.login")
		}},
	}
	for _, c := range cases {
		t.Run(c.q, func(t *testing.T) {
			res, err := x.Search(context.Background(), Request{Query: c.q, Limit: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			want := idsOf(brute(t, c.f))
			if len(want) == 0 {
				t.Fatal("the brute-force scan found nothing: the case tests nothing")
			}
			if got := recordIDs(res); !slices.Equal(got, want) {
				t.Fatalf("search found %d events, scan %d", len(got), len(want))
			}
			cnt, err := x.Search(context.Background(), Request{Query: c.q, Count: true})
			if err != nil {
				t.Fatal(err)
			}
			if n := cnt.Rows[0][0]; fmt.Sprint(n) != strconv.Itoa(len(want)) {
				t.Fatalf("--count says %v, scan %d", n, len(want))
			}
		})
	}
}

// TestMailAccessOneRowPerMessage: who read a message, from mail_access.
func TestMailAccessOneRowPerMessage(t *testing.T) {
	x, _ := indexed(t)
	// Count every (record, message) pair by reading the raw records.
	type read struct{ rec, msg string }
	var reads []read
	brute(t, func(e *event.Event) bool {
		if e.Operation != "MailItemsAccessed" {
			return false
		}
		var r struct {
			Folders []struct {
				FolderItems []struct{ InternetMessageId string }
			}
		}
		if err := json.Unmarshal(e.Raw, &r); err != nil {
			t.Fatal(err)
		}
		for _, f := range r.Folders {
			for _, it := range f.FolderItems {
				reads = append(reads, read{e.RecordID, it.InternetMessageId})
			}
		}
		return false
	})
	if len(reads) == 0 {
		t.Fatal("no message reads in the simulated tenant")
	}
	msg := reads[len(reads)/2].msg
	var want []string
	for _, r := range reads {
		if r.msg == msg {
			want = append(want, r.rec)
		}
	}
	slices.Sort(want)
	res, err := x.Search(context.Background(), Request{Query: "message:" + msg, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := recordIDs(res); !slices.Equal(slices.Compact(got), slices.Compact(want)) {
		t.Fatalf("message:%s found records %v, scan %v", msg, got, want)
	}
	var n int64
	row := x.db.QueryRow(`SELECT count(*) FROM mail_access WHERE internet_message_id IS NOT NULL`)
	if err := row.Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(reads)) {
		t.Fatalf("mail_access has %d message rows, the records list %d reads", n, len(reads))
	}
}

func TestSQLIsReadOnly(t *testing.T) {
	x, _ := indexed(t)
	ctx := context.Background()
	res, err := x.SQL(ctx, "SELECT count(*) FROM signins", 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Rows[0][0]) == "0" {
		t.Fatal("signins view is empty")
	}
	outside := filepath.Join(t.TempDir(), "out.csv")
	for _, stmt := range []string{
		"DELETE FROM events",
		"INSERT INTO alerts (rule) VALUES ('x')",
		"CREATE TABLE x (a INT)",
		"COPY events TO '" + outside + "'",
		"SELECT * FROM read_csv('/etc/passwd')",
		"SET enable_external_access = true",
		"ATTACH '" + outside + ".db' AS other",
	} {
		if _, err := x.SQL(ctx, stmt, 10); err == nil {
			t.Errorf("%s: accepted", stmt)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Error("COPY wrote a file")
	}
}

func TestTimeline(t *testing.T) {
	x, _ := indexed(t)
	all := brute(t, func(e *event.Event) bool { return e.SessionID != "" && e.Operation == "MailItemsAccessed" })
	sess := all[0].SessionID
	want := brute(t, func(e *event.Event) bool { return e.SessionID == sess })
	res, err := x.Timeline(context.Background(), TimelineRequest{Entity: "session", Value: sess})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("timeline has %d rows, scan %d", len(res.Rows), len(want))
	}
	ti := slices.Index(res.Columns, "time")
	for i := 1; i < len(res.Rows); i++ {
		if res.Rows[i][ti].(time.Time).Before(res.Rows[i-1][ti].(time.Time)) {
			t.Fatal("timeline not in time order")
		}
	}
	// Around the middle event, a zero window gives it with context.
	mid := res.Rows[len(res.Rows)/2][ti].(time.Time)
	around, err := x.Timeline(context.Background(), TimelineRequest{Entity: "session", Value: sess, Around: mid, Context: 2})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range around.Rows {
		kinds = append(kinds, r[0].(string))
	}
	if !slices.Contains(kinds, "window") || kinds[0] != "before" || kinds[len(kinds)-1] != "after" {
		t.Fatalf("around rows %v", kinds)
	}
}

// TestUndecodableEntriesAreKept: an entry that gives no event is listed in
// unindexed with its reason, not dropped.
func TestUndecodableEntriesAreKept(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendBatch(ctx, []journal.Entry{
		{Source: "m365.ual", Origin: "x", RecordID: "a", Raw: []byte(`2026-03-02,user@x,MailItemsAccessed,"{...}"`)},
		{Source: "m365.ual", Origin: "x", RecordID: "b", Raw: []byte(`{"CreationTime":"2026-03-02T10:00:00","Id":"b","Operation":"Send","RecordType":2,"UserId":"u@x.example","Workload":"Exchange"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	x, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	st, err := x.Update(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 1 || st.Unindexed != 1 {
		t.Fatalf("update %+v: want 1 event and 1 unindexed", st)
	}
	res, err := x.query(ctx, "SELECT idx, reason FROM unindexed")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != "0" || res.Rows[0][1].(string) == "" {
		t.Fatalf("unindexed rows %v", res.Rows)
	}
	t.Logf("reason: %s", res.Rows[0][1])
}

// TestHostileValuesRoundTrip: values are attacker-controlled; quotes,
// commas, newlines, NULs and invalid UTF-8 survive the load into the
// tables.
func TestHostileValuesRoundTrip(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	j, err := journal.Open(ctx, data, journal.Options{CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	raw := `{"CreationTime":"2026-03-02T10:00:00","Id":"h1","Operation":"MailItemsAccessed","RecordType":50,"UserId":"Eve@x.example",` +
		`"ClientInfoString":"a,\"b\"\r\nc\u0000d\\e` + "\xff" + `","ClientIPAddress":"2001:db8::7","Workload":"Exchange","MailboxOwnerUPN":"v@x.example",` +
		`"OperationProperties":[{"Name":"MailAccessType","Value":"Bind"}],"Folders":[{"Path":"\\Inbox,\"x\"","FolderItems":[{"InternetMessageId":"<a,\"b\"@c>"}]}]}`
	if _, err := j.Append(ctx, journal.Entry{Source: "m365.ual", Origin: "x", RecordID: "h1", Raw: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	x, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// An update and a rebuild (the bulk path) must both keep the values.
	if _, err := x.Update(ctx, data); err != nil {
		t.Fatal(err)
	}
	checkHostile(t, ctx, x)
	if _, err := x.Rebuild(ctx, data); err != nil {
		t.Fatal(err)
	}
	checkHostile(t, ctx, x)
}

func checkHostile(t *testing.T, ctx context.Context, x *Index) {
	t.Helper()
	res, err := x.query(ctx, "SELECT e.user_agent, e.actor, e.ip, m.folder, m.internet_message_id FROM events e JOIN mail_access m USING (idx, sub)")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"a,\"b\"\r\nc\uFFFDd\\e\uFFFD", "eve@x.example", "2001:db8::7", `\Inbox,"x"`, `<a,"b"@c>`}
	if len(res.Rows) != 1 || fmt.Sprint(res.Rows[0]) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", res.Rows, want)
	}
	got, err := x.Search(ctx, Request{Query: `ip:2001:db8::/64 "c` + "\uFFFD" + `d"`, Count: true})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Rows[0][0]) != "1" {
		t.Fatalf("search by IPv6 prefix and phrase: %v", got.Rows)
	}
	tl, err := x.Timeline(ctx, TimelineRequest{Entity: "ip", Value: "2001:db8::/32"})
	if err != nil || len(tl.Rows) != 1 {
		t.Fatalf("timeline of an IPv6 prefix: %v, %v", err, tl)
	}
}

// TestOtherSchemaVersion: an index of another version is refused with a
// pointer to reindex, and reindex (Fresh) replaces it.
func TestOtherSchemaVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	x, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.setMeta(ctx, "schema", "0"); err != nil {
		t.Fatal(err)
	}
	// An index of version 0 had no lookup indexes, and fewer columns.
	if err := x.dropLookupIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := x.db.ExecContext(ctx, "ALTER TABLE events DROP COLUMN items"); err != nil {
		t.Fatal(err)
	}
	x.Close()
	if _, err := Open(ctx, dir, Options{}); err == nil || !strings.Contains(err.Error(), "run vigil reindex") {
		t.Fatalf("old version opened: %v", err)
	}
	x, err = Open(ctx, dir, Options{Fresh: true})
	if err != nil {
		t.Fatalf("reindex over an old version: %v", err)
	}
	defer x.Close()
	data := t.TempDir()
	ingest(t, data, tenantFiles(t)[2:], 5000, nil)
	if st, err := x.Rebuild(ctx, data); err != nil || st.Events == 0 {
		t.Fatalf("rebuild: %+v %v", st, err)
	}
}

// TestReindexReplacesOldStorage: an index file in an older storage format
// of the engine opens and keeps working; reindex (Fresh) writes a new file
// in the current format, and its rows are there.
func TestReindexReplacesOldStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("duckdb", filepath.Join(dir, dbFile)+"?storage_compatibility_version=v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, "CREATE TABLE stale (a INTEGER)"); err != nil {
		t.Fatal(err)
	}
	old.Close()
	version := func(x *Index) string {
		t.Helper()
		var v string
		if err := x.db.QueryRowContext(ctx, `SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	x, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v := version(x); v != "v1.0.0+" {
		t.Fatalf("an open without reindex changed the storage version to %s", v)
	}
	x.Close()
	x, err = Open(ctx, dir, Options{Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if v := version(x); v != storageVersion+"+" {
		t.Fatalf("reindex left storage version %s, want %s+", v, storageVersion)
	}
	if _, err := x.db.ExecContext(ctx, "SELECT * FROM stale"); err == nil {
		t.Fatal("the old file's table is still there")
	}
	data := t.TempDir()
	ingest(t, data, tenantFiles(t)[2:], 5000, nil)
	st, err := x.Rebuild(ctx, data)
	if err != nil || st.Events == 0 {
		t.Fatalf("rebuild: %+v %v", st, err)
	}
	s, err := x.Status(ctx, data)
	if err != nil || s.Events != st.Events {
		t.Fatalf("status %+v %v, want %d events", s, err, st.Events)
	}
}

// TestSearchIsCancelled: a query stops when its context ends.
func TestSearchIsCancelled(t *testing.T) {
	x, _ := indexed(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Search(ctx, Request{Query: "user:*"}); err == nil {
		t.Fatal("a cancelled search answered")
	}
	// A cross join the engine cannot finish in a millisecond.
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := x.SQL(ctx, "SELECT count(*) FROM events a, events b, events c WHERE a.items + b.items = c.items", 10)
	if err == nil {
		t.Fatal("a timed-out SQL statement answered")
	}
	t.Logf("timeout: %v", err)
}

// The engine's buffer pool is bounded (DuckDB's own default is 80 % of the
// machine's memory): the default, or what the caller asks for.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		limit int64
		want  string
	}{{0, "4.0 GiB"}, {256 << 20, "256.0 MiB"}} {
		dir := t.TempDir()
		x, err := Open(t.Context(), dir, Options{MemoryLimit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		x.Close()
		if x, err = Open(t.Context(), dir, Options{MemoryLimit: c.limit, ReadOnly: true}); err != nil {
			t.Fatal(err)
		}
		res, err := x.SQL(t.Context(), "SELECT current_setting('memory_limit')", 1)
		x.Close()
		if err != nil || len(res.Rows) != 1 || fmt.Sprint(res.Rows[0][0]) != c.want {
			t.Errorf("memory limit %d: %v %v, want %s", c.limit, res, err, c.want)
		}
	}
}

// The engine keeps the changes of up to a checkpoint threshold in memory:
// it follows the memory limit down, so a small buffer pool is not filled
// by them.
func TestCheckpointThreshold(t *testing.T) {
	data := t.TempDir()
	ingest(t, data, tenantFiles(t)[2:], 5000, nil)
	for _, c := range []struct {
		limit int64
		want  string
	}{{0, "256.0 MiB"}, {512 << 20, "64.0 MiB"}, {64 << 20, "16.0 MiB"}} {
		x, err := Open(t.Context(), t.TempDir(), Options{MemoryLimit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		threshold := func(when string) {
			t.Helper()
			var got string
			err := x.db.QueryRowContext(t.Context(), "SELECT current_setting('checkpoint_threshold')").Scan(&got)
			if err != nil || got != c.want {
				t.Errorf("memory limit %d, %s: checkpoint threshold %q (%v), want %s", c.limit, when, got, err, c.want)
			}
		}
		threshold("opened")
		// A rebuild loads at the engine's default, then puts it back.
		if _, err := x.Rebuild(t.Context(), data); err != nil {
			t.Fatal(err)
		}
		threshold("after a rebuild")
		x.Close()
	}
}
