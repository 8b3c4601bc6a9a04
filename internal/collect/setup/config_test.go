package setup

import (
	"strings"
	"testing"
)

// issueExample is the vigil.yaml of the collector's interface, verbatim.
const issueExample = `# vigil.yaml
data: ./vigil-data            # journal directory
tenants:
  - name: contoso
    microsoft:
      tenant_id: 00000000-0000-0000-0000-000000000000
      client_id: 00000000-0000-0000-0000-000000000000
      client_secret_file: contoso.secret      # or certificate_file + private_key_file
      cloud: commercial                       # gcc | gcchigh | dod
      login_url: https://login.microsoftonline.com   # optional overrides (sovereign clouds, tests)
      manage_url: https://manage.office.com
      graph_url: https://graph.microsoft.com
      sources: [audit.exchange, audit.azureactivedirectory, audit.sharepoint, audit.general, signins, directory_audits, risk_detections]
    google:
      customer_id: C0123abcd
      service_account_file: sa.json
      subject: admin@example.com
      token_url: https://oauth2.googleapis.com/token
      reports_url: https://admin.googleapis.com
      applications: [login, token, gmail, admin, drive]
`

func TestParseIssueExample(t *testing.T) {
	cfg, err := Parse("/etc/vigil/vigil.yaml", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DataDir(); got != "/etc/vigil/vigil-data" {
		t.Errorf("data dir %q; want it relative to the config file", got)
	}
	m := cfg.Tenants[0].Microsoft
	if len(m.Sources) != 7 || m.ManageURL != "https://manage.office.com" || cfg.Resolve(m.ClientSecretFile) != "/etc/vigil/contoso.secret" {
		t.Errorf("microsoft section read as %+v", m)
	}
	if g := cfg.Tenants[0].Google; len(g.Applications) != 5 || g.Subject != "admin@example.com" {
		t.Errorf("google section read as %+v", g)
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse("v.yaml", []byte("data: d\ntenants:\n  - name: fabrikam\n    microsoft:\n      tenant_id: t\n      client_id: c\n      client_secret_env: FABRIKAM_SECRET\n      cloud: gcchigh\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Tenants[0].Microsoft
	if m.LoginURL != "https://login.microsoftonline.us" || m.ManageURL != "https://manage.office365.us" || m.GraphURL != "https://graph.microsoft.us" {
		t.Errorf("gcchigh endpoints: %s %s %s", m.LoginURL, m.ManageURL, m.GraphURL)
	}
	if len(m.Sources) != len(DefaultMicrosoftSources) {
		t.Errorf("default sources %v", m.Sources)
	}
}

// TestParseRejects: every refusal names the file, the line and the reason.
func TestParseRejects(t *testing.T) {
	base := strings.Replace(issueExample, "# vigil.yaml\n", "", 1)
	cases := []struct{ name, yaml, want string }{
		{"unknown key", strings.Replace(base, "      cloud: commercial", "      cloud: commercial\n      client_sercet: x", 1), `v.yaml:9: unknown key "client_sercet"`},
		{"unknown top key", "datum: x\n" + base, `v.yaml:1: unknown key "datum"`},
		{"http to a remote host", strings.Replace(base, "https://manage.office.com", "http://manage.office.com", 1), "v.yaml:10: manage_url: \"http://manage.office.com\": http is allowed only for loopback"},
		{"unknown source", strings.Replace(base, "audit.general,", "audit.generl,", 1), `v.yaml:12: unknown source "audit.generl"`},
		{"unknown application", strings.Replace(base, "[login, token,", "[login, tokens,", 1), `v.yaml:19: unknown application "tokens"`},
		{"two credentials", strings.Replace(base, "      cloud: commercial", "      certificate_file: c.pem\n      private_key_file: k.pem\n      cloud: commercial", 1), "v.yaml:4: give exactly one of client_secret_file"},
		{"bad cloud", strings.Replace(base, "cloud: commercial", "cloud: azurechina", 1), `v.yaml:8: cloud "azurechina"`},
		{"tenant name as a path", strings.Replace(base, "name: contoso", "name: ../etc", 1), `v.yaml:3: tenant name "../etc"`},
		{"no data", strings.Replace(base, "data: ./vigil-data            # journal directory\n", "", 1), "data (the journal directory) is required"},
		{"audit query outside the commercial cloud", strings.Replace(strings.Replace(base, "cloud: commercial", "cloud: gcchigh", 1), "risk_detections]", "risk_detections, audit.query]", 1), `v.yaml:12: audit.query (the Graph audit log query) is available in the commercial cloud only`},
		{"ftp", strings.Replace(base, "https://graph.microsoft.com", "ftp://graph.microsoft.com", 1), "scheme must be https"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("v.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://manage.office.com": true, "http://127.0.0.1:8080": true, "http://[::1]:9": true, "http://localhost:1": true,
		"http://10.0.0.1": false, "http://example.com": false, "https://user:pw@x.com": false, "manage.office.com": false,
	} {
		if err := checkURL(u); (err == nil) != ok {
			t.Errorf("checkURL(%q) = %v", u, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte("data: x\ntenants: [{name: a, google: {service_account_file: s, subject: a@b}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse("f.yaml", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		for _, tn := range cfg.Tenants {
			if m := tn.Microsoft; m != nil {
				for _, u := range []string{m.LoginURL, m.ManageURL, m.GraphURL} {
					if checkURL(u) != nil {
						t.Errorf("accepted URL %q", u)
					}
				}
			}
		}
	})
}
