package behavior

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/incident"
)

// The shipped Storm-0558 file loads and matches inside its windows only.
func TestShippedStormIOCs(t *testing.T) {
	p := filepath.Join("..", "..", "..", "docs", "iocs", "storm0558.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shipped IOC file: %v", err)
	}
	s, err := LoadIOCFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 47 {
		t.Fatalf("%d indicators, want the 38 addresses and 9 other indicators of the brief", s.Len())
	}
	hits := s.matchIP("195.26.87.219")
	if len(hits) != 1 || !hits[0].InWindow(time.Date(2023, 6, 25, 23, 0, 0, 0, time.UTC)) || hits[0].InWindow(time.Date(2023, 6, 26, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("window of 195.26.87.219: %+v", hits)
	}
	if len(s.values["1ltmzakihirla_8z2bejvxewmqo"]) != 1 {
		t.Fatal("kid not indexed")
	}
}

func TestIOCFileErrors(t *testing.T) {
	for _, bad := range []string{
		"name: x\nindicators: []\n",
		"name: x\nindicators:\n  - {type: ip, value: not-an-ip}\n",
		"name: x\nindicators:\n  - {type: colour, value: red}\n",
		"name: x\nindicators:\n  - {type: ip, value: 1.2.3.4, first_seen: 2023-07-01, last_seen: 2023-06-01}\n",
		"name: x\nindicatorz: []\n",
	} {
		if _, err := ParseIOCs([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	good := string(DefaultYAML())
	if _, err := ParseConfig([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"unknown key":  good + "\nextra: 1\n",
		"bad duration": replace(good, "grace: 1h40m", "grace: soon"),
		"bad level":    replace(good, "tenant_level: high", "tenant_level: severe"),
		"bad regexp":   replace(good, "'PowerShell'", "'(unclosed'"),
		"version":      replace(good, "version: 1", "version: 2"),
		// A file from before the setting: not silently 0 (no waiting).
		"no max_source_lag":    replace(good, "max_source_lag: 6h", "# max_source_lag: 6h"),
		"no sigma_pair_level":  replace(good, "sigma_pair_level: high", "# sigma_pair_level: high"),
		"bad sigma_pair_level": replace(good, "sigma_pair_level: high", "sigma_pair_level: loud"),
		"max_source_lag":       replace(good, "max_source_lag: 6h", "max_source_lag: -1h"),
		"no max_mail_lag":      replace(good, "max_mail_lag: 36h", "# max_mail_lag: 36h"),
		"max_mail_lag":         replace(good, "max_mail_lag: 36h", "max_mail_lag: -1h"),
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	old := replace(good, "max_source_lag: 6h", "# max_source_lag: 6h")
	if _, err := ParseConfig([]byte(old)); err == nil || !strings.Contains(err.Error(), "orphan_token.max_source_lag is missing") {
		t.Errorf("a settings file without max_source_lag: %v, want it named as missing", err)
	}
	for edit, want := range map[string]string{"# sigma_pair_level: high": "incident.sigma_pair_level is missing", "sigma_pair_level: loud": `incident.sigma_pair_level: "loud" is not a level`} {
		if _, err := ParseConfig([]byte(replace(good, "sigma_pair_level: high", edit))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", edit, err, want)
		}
	}
	if c, err := ParseConfig([]byte(replace(good, "sigma_pair_level: high", `sigma_pair_level: ""`))); err != nil || c.IncidentConfig().SigmaPairLevel != "" {
		t.Errorf(`sigma_pair_level "": %v`, err)
	}
	old = replace(good, "max_mail_lag: 36h", "# max_mail_lag: 36h")
	if _, err := ParseConfig([]byte(old)); err == nil || !strings.Contains(err.Error(), "orphan_token.max_mail_lag is missing") {
		t.Errorf("a settings file without max_mail_lag: %v, want it named as missing", err)
	}
}

// replace replaces the first old in s; an old not there is a broken
// test case (it would fail to parse for the wrong reason).
func replace(s, old, new string) string {
	i := strings.Index(s, old)
	if i < 0 {
		panic(fmt.Sprintf("replace: %q is not in the settings", old))
	}
	return s[:i] + new + s[i+len(old):]
}

// TestIncidentDefaultsAgree keeps the incident section of default.yaml and
// incident.DefaultConfig (used where no settings file is read) in step:
// they are the same defaults written twice, once as settings and once as
// the grouping API's.
func TestIncidentDefaultsAgree(t *testing.T) {
	got, want := DefaultConfig().IncidentConfig(), incident.DefaultConfig()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("default.yaml incident section gives %+v, incident.DefaultConfig is %+v", got, want)
	}
}
