package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/token"
)

func init() {
	register(command{name: "token", summary: "check a JWT against an issuer's keys (token check)", run: runToken})
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return runTokenCheck(ctx, args[:1], stdout, stderr)
		}
		_ = runTokenCheck(ctx, []string{"-h"}, stdout, stderr)
		return usageError("unknown or missing subcommand; want check")
	}
	return runTokenCheck(ctx, args[1:], stdout, stderr)
}

func runTokenCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token check", stderr)
	keys := fs.String("keys", "", "JWKS or OIDC discovery `FILE|URL` (https) holding the issuer's keys")
	issuer := fs.String("issuer", "", "expected issuer; may contain {tenantid}, then --tenant is required")
	audience := fs.String("audience", "", "accepted audience (unchecked when empty)")
	tenant := fs.String("tenant", "", "accepted tenant id (tid)")
	at := fs.String("at", "", "validate as of this RFC 3339 `TIME` instead of now")
	skew := fs.Duration("skew", token.DefaultSkew, "clock skew allowed for exp/nbf/iat")
	asJSON := fs.Bool("json", false, "print the decision as JSON (the audit event plus every check)")
	setHelp(fs, stderr, helpText{synopsis: "token check --keys FILE|URL --issuer ISS [flags] TOKEN|-",
		summary: "Validates a JWT strictly against an issuer's published keys and prints every check: exit 0 valid, 1 rejected.",
		args:    []argHelp{{"TOKEN|-", "the compact JWT, or - to read it from stdin"}}})
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("token check takes exactly one TOKEN argument (or - for stdin)")
	}
	if *keys == "" || *issuer == "" {
		return usageError("--keys and --issuer are required")
	}
	now := time.Now
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageError("--at: %v", err)
		}
		now = func() time.Time { return t }
	}
	if strings.Contains(*issuer, "{tenant") && *tenant == "" {
		return usageError("--issuer is a tenant template: give --tenant")
	}
	raw := pos[0]
	if raw == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			return fmt.Errorf("reading token from stdin: %w", err)
		}
		raw = string(b)
	}
	// Shells and files add surrounding whitespace; a "Bearer " prefix is
	// what people paste from request logs.
	raw = strings.TrimSpace(raw)
	if s, ok := strings.CutPrefix(raw, "Bearer "); ok {
		raw = strings.TrimSpace(s)
	}

	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	src, err := token.NewSource(*keys, token.SourceOptions{Scope: token.Scope{KeySet: "cli", Issuer: *issuer},
		Now: now, Logger: quiet})
	if err != nil {
		return usageError("--keys: %v", err)
	}
	if _, err := src.Keys(ctx); err != nil {
		return fmt.Errorf("loading keys: %w", err)
	}
	ic := token.IssuerConfig{Name: "cli", Issuer: *issuer, Keys: []token.KeySource{src}}
	if *tenant != "" {
		ic.Tenants = []string{*tenant}
	}
	if *audience != "" {
		ic.Audiences = []string{*audience}
	} else {
		ic.AnyAudience = true
	}
	v, err := token.New(token.Config{Issuers: []token.IssuerConfig{ic}, Now: now, Skew: *skew, Logger: quiet})
	if err != nil {
		return usageError("%v", err)
	}
	d := v.Check(ctx, raw)
	if *asJSON {
		out := struct {
			token.Event
			Checks []token.CheckResult `json:"checks"`
		}{token.NewEvent(ctx, d), d.Checks}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("writing decision: %w", err)
		}
	} else {
		printDecision(sanitize.TextWriter(stdout), d) // claims are the presenter's words
	}
	if !d.Valid {
		return &exitError{code: 1, msg: fmt.Sprintf("token rejected: %s: %s", d.Reason, d.Detail)}
	}
	return nil
}

func printDecision(w io.Writer, d *token.Decision) {
	if d.Valid {
		fmt.Fprintln(w, "decision: VALID")
	} else {
		fmt.Fprintf(w, "decision: REJECTED (%s)\nreason:   %s\n", d.Reason, d.Detail)
	}
	h := d.Header
	fmt.Fprintf(w, "header:   alg=%s kid=%s x5t=%s typ=%s\n", h.Alg, h.Kid, h.X5t, h.Typ)
	if c := d.Claims; c != nil {
		fmt.Fprintf(w, "claims:   iss=%s tid=%s aud=%s azp=%s appid=%s sub=%s uti=%s jti=%s\n",
			c.Issuer, c.Tenant, strings.Join(c.Audience, ","), c.AuthorizedParty, c.AppID, c.Subject, c.UTI, c.JTI)
		fmt.Fprintf(w, "times:    iat=%s nbf=%s exp=%s\n", ts(c.IssuedAt), ts(c.NotBefore), ts(c.Expiry))
	}
	if k := d.Key; k != nil {
		fmt.Fprintf(w, "key:      kid=%s %s/%d set=%s source=%s thumbprint=%s cert_not_after=%s",
			k.ID, k.Type, k.Bits, k.Scope.KeySet, k.Scope.Source, k.Thumbprint, ts(k.NotAfter))
		if k.Issuer != "" {
			fmt.Fprintf(w, " issuer=%s", k.Issuer)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "checks:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range d.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Status, c.Name, c.Detail)
	}
	tw.Flush()
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
