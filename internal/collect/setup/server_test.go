package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerSection(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600)
	cfg, err := Parse(filepath.Join(dir, "vigil.yaml"), []byte(`data: ./vigil-data
server:
  listen: 127.0.0.1:8443
  sinks:
    - type: webhook
      url: https://hooks.example.com/vigil
      secret_file: hook.secret
    - type: syslog
      address: siem.example.com:6514
      format: cef
    - type: file
      path: alerts.jsonl
    - type: file
      path: critical.jsonl
      min_severity: critical
`))
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := cfg.Sinks("1.0")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "webhook,syslog,file,file-2" {
		t.Fatalf("sinks %v", names)
	}
	if d, err := Parse("vigil.yaml", []byte("data: d\nserver:\n  max_detection_delay: 4s\n")); err != nil || d.Server.MaxDetectionDelay != 4*time.Second {
		t.Fatalf("max_detection_delay: %v", err)
	}
}

func TestServerSectionErrors(t *testing.T) {
	cases := map[string]string{
		"server:\n  listn: x\n":                                                            `:3: unknown key "listn"`,
		"server:\n  sinks:\n    - type: pager\n":                                           `:4: sink type "pager"`,
		"server:\n  sinks:\n    - type: webhook\n      url: https://x\n":                   `:4: a webhook sink needs exactly one of secret_file or secret_env`,
		"server:\n  sinks:\n    - type: file\n      path: a\n      smtp: b\n":              ``,
		"server:\n  sinks:\n    - type: file\n      path: a\n      min_severity: urgent\n": `:6: min_severity "urgent"`,
		"server:\n  tls_cert_file: c.pem\n":                                                `tls_cert_file and tls_key_file go together`,
		"server:\n  max_detection_delay: 100ms\n":                                          `:3: max_detection_delay 100ms: at least 500ms`,
		"server:\n  max_detection_delay: soon\n":                                           `line 3: cannot unmarshal`,
	}
	for text, want := range cases {
		_, err := Parse("vigil.yaml", []byte("data: d\n"+text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}

func TestServerNotifications(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "o365.authid"), []byte("auth-id-1\n"), 0o600)
	t.Setenv("VIGIL_TEST_GWS_TOKEN", "channel-token-2")
	cfg, err := Parse(filepath.Join(dir, "vigil.yaml"), []byte(issueExample+`server:
  notifications:
    - type: o365
      tenant: contoso
      secret_file: o365.authid
    - type: google
      tenant: contoso
      secret_env: VIGIL_TEST_GWS_TOKEN
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range cfg.Server.Notifications {
		s, err := cfg.NotificationSecret(n)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n.Type+"="+s)
	}
	if strings.Join(got, ",") != "o365=auth-id-1,google=channel-token-2" {
		t.Fatalf("notifications read as %v", got)
	}
	for text, want := range map[string]string{
		"  notifications:\n    - type: slack\n      tenant: contoso\n      secret_env: X\n":                                                                         `notification type "slack"`,
		"  notifications:\n    - type: o365\n      tenant: fabrikam\n      secret_env: X\n":                                                                         `notification tenant "fabrikam" is not among the tenants`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n":                                                                                               `exactly one of secret_file or secret_env`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n      secret_env: X\n    - type: o365\n      tenant: contoso\n      secret_env: Y\n":            `a second o365 notification`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n      secret_env: X\n      token: y\n":                                                          `unknown key "token"`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n      secret_env: X\n      address: http://vigil.example.com/api/v1/notify/o365/contoso\n":      `want an https URL`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n      secret_env: X\n      address: https://vigil.example.com/hook\n":                           `should end in /api/v1/notify/o365/contoso`,
		"  notifications:\n    - type: o365\n      tenant: contoso\n      secret_env: X\n      address: https://u:p@vigil.example.com/api/v1/notify/o365/contoso\n": `without credentials`,
	} {
		_, err := Parse("vigil.yaml", []byte(issueExample+"server:\n"+text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}
