package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRulesCheck(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"rules", "check"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestRulesCheckSigmaHQ(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "data", "sigmahq-sigma", "rules")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared data not available (%s): %v", dir, err)
	}
	out, _, code := runRulesCheck(t, dir)
	if code != 0 || !strings.HasSuffix(out, "\n152 loaded, 0 refused\n") {
		t.Fatalf("exit %d, tail %q", code, out[max(0, len(out)-200):])
	}
	if n := strings.Count(out, "\nloaded   "); n != 151 { // the first line has no leading newline
		t.Errorf("%d loaded lines", n+1)
	}
}

func TestRulesCheckBuiltin(t *testing.T) {
	out, _, code := runRulesCheck(t)
	if code != 0 || !strings.Contains(out, " loaded, 0 refused\n") || !strings.Contains(out, "vigil/entra_password_spray.yml  Password Spray From One Address  [correlation value_count]") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestRulesCheckRefusalsAndPlaceholders(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rulesDir := filepath.Join(dir, "r")
	if err := os.Mkdir(rulesDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const head = "logsource:\n    product: m365\ndetection:\n    sel:\n"
	write("r/admins.yml", "title: Admin activity\n"+head+"        UserId|expand: '%Administrators%'\n    condition: sel\n")
	write("r/bad.yml", "title: Bad modifier\n"+head+"        UserId|sometimes: x\n    condition: sel\n")
	write("r/win.yml", "title: Windows\nlogsource:\n    product: windows\ndetection:\n    sel:\n        Image: x\n    condition: sel\n")
	out, _, code := runRulesCheck(t, rulesDir)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"refused  " + filepath.Join(rulesDir, "admins.yml") + "  Admin activity: selection sel (line 5): \"UserId|expand\": placeholder %Administrators% needs values",
		"refused  " + filepath.Join(rulesDir, "bad.yml") + "  Bad modifier: selection sel (line 5): \"UserId|sometimes\": unsupported modifier \"sometimes\"",
		"loaded   " + filepath.Join(rulesDir, "win.yml") + "  Windows  [no vigil source for logsource product=windows; never runs]",
		"1 loaded, 2 refused\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	ph := write("ph.yml", "Administrators: [admin@contoso.com, 'root*']\n")
	out, _, _ = runRulesCheck(t, "--placeholders", ph, filepath.Join(rulesDir, "admins.yml"))
	if !strings.HasSuffix(out, "1 loaded, 0 refused\n") {
		t.Errorf("with placeholders:\n%s", out)
	}
	if _, errOut, code := runRulesCheck(t, filepath.Join(dir, "missing")); code != 2 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing dir: exit %d, %q", code, errOut)
	}
}
