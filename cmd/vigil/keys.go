package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/token"
)

func init() {
	register(command{name: "keys", summary: "audit published signing keys (keys audit)", run: runKeys})
}

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "audit" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return runKeysAudit(ctx, args[:1], stdout, stderr)
		}
		_ = runKeysAudit(ctx, []string{"-h"}, stdout, stderr)
		return usageError("unknown or missing subcommand; want audit")
	}
	return runKeysAudit(ctx, args[1:], stdout, stderr)
}

func runKeysAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys audit", stderr)
	failOn := fs.String("fail-on", "high", "exit 1 when a finding at or above this severity exists (info, low, medium, high)")
	format := fs.String("format", "table", "output format: table or json")
	maxAge := fs.String("max-age", "365d", "key age (from the certificate's notBefore) past which rotation is overdue; 0 disables")
	warn := fs.String("expiry-warning", "30d", "flag certificates expiring within this `DUR`")
	var previous locations
	fs.Var(&previous, "previous", "earlier snapshot `FILE|URL` of the input in the same position, to diff kids against (repeat once per input)")
	at := fs.String("at", "", "audit as of this RFC 3339 `TIME` instead of now")
	setHelp(fs, stderr, helpText{synopsis: "keys audit [flags] FILE|URL...",
		summary: "Audits the signing keys an issuer publishes (JWKS or OIDC discovery) and lists findings by severity; exit 1 at --fail-on or above.",
		args:    []argHelp{{"FILE|URL...", "JWKS or OIDC discovery documents, files or https URLs"}}})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError("keys audit needs at least one JWKS or discovery FILE|URL")
	}
	sev, err := token.ParseSeverity(*failOn)
	if err != nil {
		return usageError("--fail-on: %v", err)
	}
	if *format != "table" && *format != "json" {
		return usageError("--format must be table or json")
	}
	opts := token.KeyAuditOptions{Now: time.Now()}
	if opts.MaxAge, err = parseDays(*maxAge); err != nil {
		return usageError("--max-age: %v", err)
	}
	if opts.ExpiryWarning, err = parseDays(*warn); err != nil {
		return usageError("--expiry-warning: %v", err)
	}
	if *at != "" {
		if opts.Now, err = time.Parse(time.RFC3339, *at); err != nil {
			return usageError("--at: %v", err)
		}
	}
	var sets []*token.KeySet
	for _, loc := range pos {
		ks, err := loadKeySet(ctx, loc)
		if err != nil {
			return err
		}
		sets = append(sets, ks)
	}
	if len(previous) > 0 && len(previous) != len(pos) {
		return usageError("--previous given %d times for %d inputs: give one earlier snapshot per input, in the same order",
			len(previous), len(pos))
	}
	for _, loc := range previous {
		ks, err := loadKeySet(ctx, loc)
		if err != nil {
			return err
		}
		opts.Previous = append(opts.Previous, ks)
	}
	r, err := token.AuditKeys(sets, opts)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
	} else {
		printKeyReport(sanitize.TextWriter(stdout), r) // key sets are the publisher's words
	}
	if m, ok := r.Max(); ok && m >= sev {
		n := 0
		for _, f := range r.Findings {
			if f.Severity >= sev {
				n++
			}
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%d finding(s) at or above %s", n, sev)}
	}
	return nil
}

// locations collects a repeatable FILE|URL flag.
type locations []string

func (l *locations) String() string     { return strings.Join(*l, ",") }
func (l *locations) Set(v string) error { *l = append(*l, v); return nil }

// loadKeySet reads one JWKS or discovery document; a key source does the
// fetching so files, URLs and discovery behave as in validation.
func loadKeySet(ctx context.Context, loc string) (*token.KeySet, error) {
	quiet := slog.New(slog.DiscardHandler) // rejected entries become findings instead
	src, err := token.NewSource(loc, token.SourceOptions{Scope: token.Scope{KeySet: loc}, Logger: quiet})
	if err != nil {
		return nil, usageError("%v", err)
	}
	ks, err := src.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", loc, err)
	}
	return ks, nil
}

// parseDays accepts Go durations plus a "d" suffix for days.
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return v, nil
}

func printKeyReport(w io.Writer, r *token.KeyReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tTYPE\tSCOPE\tNOT BEFORE\tNOT AFTER\tAGE (DAYS)")
	for _, k := range r.Keys {
		age := "-" // no certificate: age unknown
		if k.AgeDays != nil {
			age = strconv.Itoa(*k.AgeDays)
		}
		fmt.Fprintf(tw, "%s\t%s/%d\t%s\t%s\t%s\t%s\n", k.KeyID, k.Type, k.Bits, k.Scope,
			dateOr(k.NotBefore), dateOr(k.NotAfter), age)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCODE\tKID\tSOURCE\tMESSAGE")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Code, f.KeyID, f.Source, f.Message)
	}
	tw.Flush()
}

func dateOr(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateOnly)
}
