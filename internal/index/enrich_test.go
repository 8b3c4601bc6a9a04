package index

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/simulate"
)

// The UAL's mail reads carry an address but no ASN or country: with the
// network tables detection uses, the index fills them, so asn: and
// country: find mail reads; the tables are recorded, a rebuild with them
// equals the incremental index, and a change of tables is said.
func TestNetworksFillUALRows(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	nets := filepath.Join(simTenant(t), simulate.NetworksFile)
	dir := filepath.Join(t.TempDir(), "idx")
	x, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if note, err := x.UseNetworks(ctx, []string{nets}); err != nil || note != "" {
		t.Fatalf("first tables: note %q, %v", note, err)
	}
	ingest(t, data, tenantFiles(t), 3000, func(uint64) {
		if _, err := x.Update(ctx, data); err != nil {
			t.Fatal(err)
		}
	})
	res, err := x.query(ctx, `SELECT count(*) FILTER (WHERE asn <> 0 AND country <> ''), count(*) FROM mail_access`)
	if err != nil {
		t.Fatal(err)
	}
	filled, all := res.Rows[0][0].(int64), res.Rows[0][1].(int64)
	if all == 0 || filled < all*9/10 {
		t.Fatalf("%d of %d mail_access rows have an ASN and a country", filled, all)
	}
	// Without the tables, the same records give none: the rows' ASN came
	// from them, not from the records.
	plain, _ := rebuilt(t, data, Options{})
	if res, err := plain.query(ctx, `SELECT count(*) FROM mail_access WHERE asn <> 0`); err != nil || res.Rows[0][0].(int64) != 0 {
		t.Fatalf("UAL rows with an ASN of their own: %v %v", res.Rows, err)
	}
	// asn: finds the mail reads of one ASN.
	res, err = x.query(ctx, `SELECT asn FROM mail_access WHERE asn <> 0 GROUP BY asn ORDER BY count(*) DESC LIMIT 1`)
	if err != nil {
		t.Fatal(err)
	}
	asn := res.Rows[0][0]
	found, err := x.Search(ctx, Request{Query: "asn:" + fmt.Sprint(asn), Table: MailAccess, Limit: 100000})
	if err != nil || len(found.Rows) == 0 {
		t.Fatalf("asn:%v over mail_access: %d rows, %v", asn, len(found.Rows), err)
	}

	// Recorded: a rebuild that asks the index for its tables gives the
	// same rows.
	paths, err := x.RecordedNetworks(ctx)
	if err != nil || len(paths) != 1 || paths[0] != nets {
		t.Fatalf("recorded %v, %v; want %s", paths, err, nets)
	}
	re, err := Open(ctx, filepath.Join(t.TempDir(), "re"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if _, err := re.UseNetworks(ctx, paths); err != nil {
		t.Fatal(err)
	}
	if _, err := re.Rebuild(ctx, data); err != nil {
		t.Fatal(err)
	}
	sameRows(t, x, re, "the incremental index (against one rebuilt with the recorded tables)", "events", "mail_access", "signins")

	// Other tables (the same file changed) are said, with where the rows
	// made before end.
	changed := filepath.Join(t.TempDir(), "networks.csv")
	orig, err := os.ReadFile(nets)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(orig), "\n")
	if err := os.WriteFile(changed, []byte(strings.Join(lines[:len(lines)/2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	note, err := x.UseNetworks(ctx, []string{changed})
	if err != nil || !strings.Contains(note, "vigil reindex") || !strings.Contains(note, "networks.csv") {
		t.Fatalf("changed tables: note %q, %v", note, err)
	}
	if _, err := x.UseNetworks(ctx, []string{filepath.Join(t.TempDir(), "gone.csv")}); err == nil {
		t.Fatal("a missing network table was accepted")
	}
}
