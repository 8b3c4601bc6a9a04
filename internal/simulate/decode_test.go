package simulate

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// TestDecodesWithoutQuarantine reads every generated file, in every
// format, with the decoders real data goes through: nothing may be
// quarantined, every record must come out under its expected source, and
// the normalized fields must carry the values the records hold.
func TestDecodesWithoutQuarantine(t *testing.T) {
	f := getFixture(t)
	dirs := map[Format]string{FormatJSONL: f.dir}
	counts := map[Format]map[string]int64{}
	addCounts := func(fm Format, tr *Truth) {
		counts[fm] = map[string]int64{}
		for _, fi := range tr.Files {
			counts[fm][fi.Name] = fi.Records
		}
	}
	addCounts(FormatJSONL, f.truth)
	for _, fm := range []Format{FormatJSON, FormatCSV} {
		cfg := testConfig()
		cfg.Users, cfg.Days, cfg.Format = 15, 5, fm
		dir := t.TempDir()
		tr, err := Run(context.Background(), cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		dirs[fm] = dir
		addCounts(fm, tr)
	}
	for fm, dir := range dirs {
		t.Run(string(fm), func(t *testing.T) {
			ext := ".jsonl"
			if fm == FormatJSON {
				ext = ".json"
			}
			ualName := "ual" + ext
			if fm == FormatCSV {
				ualName = "ual.csv"
			}
			files := map[string]string{ualName: "m365.ual", "signins" + ext: "entra.signin", "gws" + ext: "gws."}
			for name, wantSrc := range files {
				var q bytes.Buffer
				var n int64
				var bad []string
				tokens := 0
				st, err := source.ReadPaths(context.Background(), []string{filepath.Join(dir, name)}, source.Options{Quarantine: &q}, func(e *event.Event) error {
					n++
					if !strings.HasPrefix(e.Source, wantSrc) && len(bad) < 5 {
						bad = append(bad, e.Source+" "+e.Operation+" "+e.RecordID)
					}
					if e.Operation == "MailItemsAccessed" {
						if e.Mailbox == "" || e.IP == "" || e.ClientAppID == "" || len(e.Folders) == 0 {
							bad = append(bad, "MailItemsAccessed "+e.RecordID+" lacks normalized mailbox/ip/client app/folders")
						}
						if e.TokenID != "" {
							tokens++
						}
					}
					if e.Source == "entra.signin" && (e.TokenID == "" || e.IP == "" || e.ASN == 0 || e.Country == "") {
						bad = append(bad, "sign-in "+e.RecordID+" lacks normalized token/ip/asn/country")
					}
					return nil
				})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if st.Quarantined != 0 {
					t.Fatalf("%s: %d records quarantined (%v); first: %.600s", name, st.Quarantined, st.Reasons, q.String())
				}
				if want := counts[fm][name]; n != want || st.Records != want {
					t.Fatalf("%s: %d events from %d records, want %d", name, n, st.Records, want)
				}
				if n == 0 || len(bad) > 0 {
					t.Fatalf("%s: %d events; wrong: %v", name, n, bad)
				}
				if strings.HasPrefix(name, "ual") && tokens == 0 {
					t.Fatalf("%s: no MailItemsAccessed decoded with a token id", name)
				}
			}
			// The whole output directory hunts cleanly: .vigilignore keeps
			// truth.json and networks.csv out.
			st, err := source.ReadPaths(context.Background(), []string{dir}, source.Options{}, func(*event.Event) error { return nil })
			if err != nil || st.Quarantined != 0 || st.Files != 3 {
				t.Fatalf("reading %s as a directory: %v, %d files, %d quarantined %v", dir, err, st.Files, st.Quarantined, st.Reasons)
			}
		})
	}
}
