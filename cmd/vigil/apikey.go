package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/server/auth"
)

func init() {
	register(command{name: "apikey", summary: "create, list and revoke the API keys of vigil serve", run: runAPIKey})
}

// keyDir is where the server keeps its keys, inside the data directory.
func keyDir(data string) string { return filepath.Join(data, "server") }

func runAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	help := helpText{synopsis: "apikey create|list|revoke --data DIR [--name NAME --role ROLE] [ID|NAME]",
		summary: "Manages the API keys of vigil serve: a new key is printed once and stored only as its SHA-256; a revoked key is refused from the next request on, also by a server already running.",
		args: []argHelp{{"create|list|revoke", "create a key (needs --name and --role), list the keys, or revoke one"},
			{"ID|NAME", "the key to revoke (revoke only)"}}}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fs := newFlagSet("apikey", stderr)
		apikeyFlags(fs, true)
		writeHelp(fs, stderr, help)
		if len(args) == 0 {
			return usageError("a subcommand is required: create, list or revoke")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("apikey "+sub, stderr)
	data, name, role := apikeyFlags(fs, sub == "create")
	setHelp(fs, stderr, help)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	store, err := auth.Open(keyDir(*data))
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if len(pos) > 0 {
			return usageError("create takes no arguments (got %q)", pos[0])
		}
		r, err := auth.ParseRole(*role)
		if err != nil {
			return usageError("--role: %v", err)
		}
		plain, k, err := store.Create(*name, r)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created key %s (%s, role %s); it is shown once, store it now:\n", k.ID, k.Name, k.Role)
		fmt.Fprintln(stdout, plain)
	case "list":
		if len(pos) > 0 {
			return usageError("list takes no arguments")
		}
		keys, err := store.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tSTATUS")
		for _, k := range keys {
			status := "active"
			if !k.Active() {
				status = "revoked " + k.Revoked.Format("2006-01-02 15:04Z")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, sanitize.Line(k.Name), k.Role, k.Created.Format("2006-01-02 15:04Z"), status)
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 1 {
			return usageError("revoke takes one key id or name")
		}
		k, err := store.Revoke(pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s)\n", k.ID, sanitize.Line(k.Name))
	default:
		return usageError("unknown subcommand %q (want create, list or revoke)", sub)
	}
	return nil
}

// apikeyFlags defines apikey's flags on fs; --name and --role only for
// create (nil otherwise).
func apikeyFlags(fs *flag.FlagSet, create bool) (data, name, role *string) {
	data = fs.String("data", "vigil-data", "data `DIR` of vigil serve")
	if create {
		name = fs.String("name", "", "create: a name for the key (who or what uses it)")
		role = fs.String("role", "", "create: ingest (push only), viewer (read), analyst (read, triage) or admin")
	}
	return data, name, role
}
