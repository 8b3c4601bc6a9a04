// Package browsertest finds the Chromium that browser tests drive. It is
// for tests only: CI installs Chromium and must run every browser test, so
// a missing browser fails there and only skips elsewhere.
package browsertest

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the path of the browser named by VIGIL_CHROMIUM, else
// the first of chromium, chromium-browser and google-chrome on the PATH.
// Without one it fails the test when CI is "true" and skips it otherwise.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{os.Getenv("VIGIL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: CI must run the browser tests (.ci/run installs it)")
	}
	t.Skip("chromium not found: browser tests skipped (install chromium, or set VIGIL_CHROMIUM)")
	return ""
}
