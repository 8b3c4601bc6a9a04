package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// verbs are the sub-commands whose work is one verb ("rules check").
var verbs = map[string]string{"rules": "check", "token": "check", "keys": "audit"}

// Every sub-command's -h gives, in order, its synopsis, a one-line
// description, its positional arguments and its flags, each default
// printed once; and exits 0.
func TestEveryCommandHelp(t *testing.T) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	flagLine := regexp.MustCompile(`^  --[a-z][a-z0-9-]*( \S+)?$`)
	for _, name := range names {
		invocations := [][]string{{name, "-h"}}
		if v, ok := verbs[name]; ok {
			invocations = append(invocations, []string{name, v, "-h"})
		}
		for _, args := range invocations {
			code, out, errs := runVigil(t, args...)
			if code != 0 || out != "" {
				t.Errorf("%v: exit %d, stdout %q", args, code, out)
			}
			lines := strings.Split(errs, "\n")
			want := "Usage: vigil " + name + " "
			if v, ok := verbs[name]; ok {
				want += v
			}
			if len(lines) < 8 || !strings.HasPrefix(lines[0], want) || lines[1] != "" || lines[2] == "" || lines[3] != "" {
				t.Errorf("%v: want synopsis, blank, one-line description, blank:\n%s", args, errs)
				continue
			}
			if !strings.HasPrefix(lines[4], "Arguments:") {
				t.Errorf("%v: no Arguments section:\n%s", args, errs)
			}
			fl := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Flags:") })
			if fl < 0 {
				t.Errorf("%v: no Flags section:\n%s", args, errs)
				continue
			}
			nflags := 0
			for i := fl + 1; i+1 < len(lines) && lines[i] != ""; i += 2 {
				if !flagLine.MatchString(lines[i]) || !strings.HasPrefix(lines[i+1], "    \t") {
					t.Errorf("%v: flag lines %q / %q not in the form \"  --name TYPE\" then its usage", args, lines[i], lines[i+1])
					break
				}
				nflags++
				if n := strings.Count(lines[i+1], "default"); n > 1 {
					t.Errorf("%v: %s names its default %d times: %q", args, lines[i], n, lines[i+1])
				}
			}
			if nflags == 0 && lines[fl] != "Flags: none" {
				t.Errorf("%v: flags section lists nothing:\n%s", args, errs)
			}
		}
	}
}
