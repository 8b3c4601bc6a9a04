// Command vigil collects cloud mail and identity audit logs, keeps them in a
// tamper-evident journal, detects intrusions and assesses their impact.
//
// Each subcommand lives in its own file and registers itself with register;
// main only dispatches. Exit codes: 0 success, 1 a negative verdict (a
// rejected token, a failed verification), 2 usage or I/O errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/vigil-audit/vigil/internal/sanitize"
)

// command is one subcommand. run receives the arguments after the
// subcommand's name and returns an error; errors of type exitError carry
// their own exit code, all others exit 2.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("vigil: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// exitError asks main to exit with code after printing msg (if any).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is an exitError with code 2.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, "vigil", version)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vigil: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, errorLine(c.name, ee.msg))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, errorLine(c.name, err.Error()))
	return 2
}

// errorLine is how a command's error is shown: "vigil NAME: msg". A package
// error that already starts with the command's name ("simulate: ...") does
// not say it twice. Errors quote file names and record content, so their
// control characters are escaped.
func errorLine(name, msg string) string {
	msg = strings.TrimPrefix(msg, name+": ")
	return "vigil " + name + ": " + sanitize.Text(msg)
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func usage(w io.Writer) {
	fmt.Fprintln(w, "vigil: audit-log collection, tamper-evident journal and intrusion detection for cloud mail and identity")
	fmt.Fprintln(w, "\nUsage: vigil <command> [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vigil <command> -h' for a command's flags.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting, so
// run can map them to exit code 2.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vigil "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, allowing flags and positional arguments to be
// interleaved ("vigil hunt logs/ --format jsonl"), and returns the
// positional arguments. A lone "-" is positional (stdin); "--" ends flags.
// A parse failure becomes a usage error; -h returns flag.ErrHelp, which run
// turns into exit 0.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: 2}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if it stopped there; everything after is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// helpText is what a command's -h says above its flags.
type helpText struct {
	synopsis string    // after "vigil ": "hunt [flags] PATH..."
	summary  string    // one line: what the command does
	args     []argHelp // positional arguments, in order; none when empty
}

type argHelp struct{ name, what string }

// setHelp makes fs.Usage print, in this order: the synopsis, the one-line
// description, the positional arguments and the flags with their
// defaults. Each default is printed once: a flag whose usage already says
// its default (or that it is required) gets no "(default ...)" added.
func setHelp(fs *flag.FlagSet, w io.Writer, h helpText) {
	fs.Usage = func() { writeHelp(fs, w, h) }
}

func writeHelp(fs *flag.FlagSet, w io.Writer, h helpText) {
	summary := h.summary
	if summary != "" {
		summary = strings.ToUpper(summary[:1]) + summary[1:]
	}
	fmt.Fprintf(w, "Usage: vigil %s\n\n%s\n\nArguments:", h.synopsis, summary)
	if len(h.args) == 0 {
		fmt.Fprint(w, " none\n")
	} else {
		fmt.Fprintln(w)
		width := 0
		for _, a := range h.args {
			width = max(width, len(a.name))
		}
		for _, a := range h.args {
			fmt.Fprintf(w, "  %-*s  %s\n", width, a.name, a.what)
		}
	}
	fmt.Fprint(w, "\nFlags:")
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if n == 0 {
			fmt.Fprintln(w)
		}
		n++
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if !zeroDefault(f.DefValue) && !strings.Contains(usage, "default") && !strings.Contains(usage, "required") {
			if g, ok := f.Value.(flag.Getter); ok && isString(g.Get()) {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
		}
		fmt.Fprintln(w)
	})
	if n == 0 {
		fmt.Fprint(w, " none\n")
	}
}

func isString(v any) bool { _, ok := v.(string); return ok }

func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s", "[]", "map[]":
		return true
	}
	return false
}
