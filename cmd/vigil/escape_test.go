package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Error messages quote what they are about (file names, record content),
// and an analyst's directory of exports is attacker-plantable: no control
// character from them reaches the terminal.
func TestErrorsEscapeControls(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "x\x1b]0;owned\x07\x1b[2J.json")
	code, _, errs := runVigil(t, "hunt", "--quiet", bad)
	if code != 2 {
		t.Fatalf("exit %d: %q", code, errs)
	}
	if strings.ContainsAny(errs, "\x1b\x07") {
		t.Errorf("stderr carries control characters: %q", errs)
	}
	if !strings.Contains(errs, `x\x1b]0;owned\x07\x1b[2J.json`) {
		t.Errorf("stderr does not name the file with its controls escaped: %q", errs)
	}
}

// The summary after a hunt names the sources and quarantine reasons it
// counted; the table names users and titles. None passes controls through.
func TestHuntTableAndSummaryEscapeControls(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "ual.json")
	rec := `{"CreationTime":"2024-05-01T10:00:00","Id":"11111111-2222-3333-4444-555555555555","Operation":"Set-Mailbox",` +
		`"RecordType":1,"UserId":"eve\u001b[31m@contoso.com","Workload":"Exchange","OrganizationId":"t",` +
		`"Parameters":[{"Name":"ForwardingSmtpAddress","Value":"smtp:drop\u001b]0;x\u0007@evil.example"}]}` + "\n"
	if err := os.WriteFile(in, []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runVigil(t, "hunt", "--quarantine", filepath.Join(dir, "q.jsonl"), in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "Mailbox Forwarding To SMTP Address Set") {
		t.Fatalf("the test record raised no detection:\n%s", out)
	}
	if strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("output carries control characters:\n%q\n%q", out, errs)
	}
	if !strings.Contains(out, `eve\x1b[31m@contoso.com`) {
		t.Errorf("table does not show the user with its controls escaped:\n%q", out)
	}
}

// A token's header and claims are the presenter's words: token check
// prints them with their controls escaped.
func TestTokenCheckEscapesControls(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(keys, []byte(`{"keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tok := b64(`{"alg":"RS256","kid":"k1","typ":"JWT"}`) + "." + b64(`{"iss":"x\u001b]0;owned\u0007","sub":"\u009b2J","exp":4102444800}`) + "." + b64("sig")
	code, out, errs := runVigil(t, "token", "check", "--keys", keys, "--issuer", "https://issuer.example", tok)
	if code != 1 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if strings.ContainsAny(out+errs, "\x1b\x07") {
		t.Errorf("token check output carries control characters:\n%q\n%q", out, errs)
	}
	if !strings.Contains(out, `iss=x\x1b]0;owned\x07`) || !strings.Contains(out, `sub=\u009b2J`) {
		t.Errorf("token check does not show the claims with their controls escaped:\n%q", out)
	}
}
