package appid

import (
	"regexp"
	"testing"
)

var guid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestTableIsWellFormed(t *testing.T) {
	apps, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) < 100 {
		t.Fatalf("%d applications listed, want the whole published table", len(apps))
	}
	for _, a := range apps {
		if !guid.MatchString(a.ID) || a.Name == "" || (a.Kind != "microsoft-first-party" && a.Kind != "microsoft-tenant-owned") {
			t.Errorf("bad row %+v", a)
		}
	}
}

func TestLookup(t *testing.T) {
	for id, want := range map[string]string{
		"00000002-0000-0ff1-ce00-000000000000":   "Office 365 Exchange Online",
		"00000003-0000-0000-C000-000000000000":   "Microsoft Graph",
		"{d3590ed6-52b3-4102-aeff-aad2292ab01c}": "Microsoft Office",
		"0cd196ee-71bf-4fd6-a57c-b491ffd4fb1e":   "Media Analysis and Transformation Service",
		"14d82eec-204b-4c2f-b7e8-296a70dab67e":   "Microsoft Graph Command Line Tools",
	} {
		if a, ok := Lookup(id); !ok || a.Name != want {
			t.Errorf("Lookup(%s) = %+v, %v; want %s", id, a, ok, want)
		}
	}
	if _, ok := Lookup("5a95e683-08ad-424e-a441-1d1aec52c02c"); ok {
		t.Error("an unlisted id was found")
	}
	if got := Label("00000003-0000-0000-c000-000000000000"); got != "Microsoft Graph (00000003-0000-0000-c000-000000000000)" {
		t.Errorf("Label = %q", got)
	}
	if got := Label("not-an-app"); got != "not-an-app" {
		t.Errorf("Label of an unlisted id = %q", got)
	}
}
