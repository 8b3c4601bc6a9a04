package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/rules"
)

func init() {
	register(command{name: "rules", summary: "check Sigma rules (rules check): each rule loaded or refused, with the reason", run: runRules})
}

func runRules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rules check", stderr)
	phFile := fs.String("placeholders", "", "YAML `FILE` of placeholder values for |expand (name: [values])")
	setHelp(fs, stderr, helpText{synopsis: "rules check [--placeholders FILE] [DIR|FILE...]",
		summary: "Lists every Sigma rule as loaded or refused, with the reason; exit 1 when any is refused.",
		args:    []argHelp{{"DIR|FILE...", "rule files or directories of them; none checks the built-in rules"}}})
	if len(args) == 0 || args[0] != "check" {
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError("unknown or missing subcommand; want check")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	opts := sigma.Options{}
	if *phFile != "" {
		f, err := os.Open(*phFile)
		if err != nil {
			return fmt.Errorf("read placeholders: %w", err)
		}
		opts.Placeholders, err = sigma.ReadPlaceholders(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *phFile, err)
		}
	}
	c := sigma.NewCompiler(opts)
	if len(pos) == 0 {
		if err := c.AddFS(rules.FS, rules.Dirs...); err != nil {
			return err
		}
	}
	for _, p := range pos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := addRulePath(c, p); err != nil {
			return err
		}
	}
	rs, refused := c.Compile()
	type line struct {
		file string
		doc  int
		text string
	}
	var lines []line
	for _, r := range rs.Rules() {
		var where string
		switch {
		case r.Correlation != "":
			where = "correlation " + r.Correlation
		case len(r.Sources) == 0:
			where = "no vigil source for logsource " + r.Logsource.String() + "; never runs"
		default:
			where = strings.Join(r.Sources, ",")
		}
		lines = append(lines, line{r.File, r.Doc, fmt.Sprintf("loaded   %s  %s  [%s]", loc(r.File, r.Doc, r.Line), r.Title, where)})
	}
	for _, r := range refused {
		title := r.Title
		if title == "" {
			title = "-"
		}
		lines = append(lines, line{r.File, r.Doc, fmt.Sprintf("refused  %s  %s: %s", loc(r.File, r.Doc, r.Line), title, r.Reason)})
	}
	sort.SliceStable(lines, func(i, j int) bool {
		if lines[i].file != lines[j].file {
			return lines[i].file < lines[j].file
		}
		return lines[i].doc < lines[j].doc
	})
	for _, l := range lines {
		// Rule files come from third parties: no control reaches the terminal.
		fmt.Fprintln(stdout, sanitize.Line(l.text))
	}
	fmt.Fprintf(stdout, "%d loaded, %d refused\n", rs.Len(), len(refused))
	if len(refused) > 0 {
		return &exitError{code: 1}
	}
	return nil
}

// loc names a rule's file, with the line its YAML document starts on
// when it is not the file's first document.
func loc(file string, doc, line int) string {
	if doc > 0 && line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// addRulePath adds a rule file, or every .yml/.yaml file under a
// directory, naming files by their path as given.
func addRulePath(c *sigma.Compiler, p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		c.AddFile(p, data)
		return nil
	}
	return filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		ext := strings.ToLower(filepath.Ext(path))
		if d.IsDir() || ext != ".yml" && ext != ".yaml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		c.AddFile(path, data)
		return nil
	})
}
