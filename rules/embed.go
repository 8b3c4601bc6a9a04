// Package rules holds vigil's built-in Sigma rules, embedded in the binary:
// SigmaHQ's cloud rules for Microsoft 365, Entra ID and Google Workspace
// (sigmahq/, DRL 1.1) and vigil's own rules (vigil/, Apache-2.0). The sigma
// package compiles them; this package only carries the files.
package rules

import "embed"

// FS holds sigmahq/ and vigil/ with their licences and READMEs; rule
// files end in .yml.
//
//go:embed sigmahq vigil
var FS embed.FS

// Dirs are the rule directories inside FS.
var Dirs = []string{"sigmahq", "vigil"}
