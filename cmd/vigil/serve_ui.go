package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/vigil-audit/vigil/internal/collect/setup"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/index"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/server"
	"github.com/vigil-audit/vigil/internal/server/auth"
	"github.com/vigil-audit/vigil/internal/server/sink"
	"github.com/vigil-audit/vigil/internal/server/ui"
	"github.com/vigil-audit/vigil/rules"
)

// serveUIData is what the web interface of vigil serve shows: the
// watcher's live views, the journal, the rules and the sinks; searches and
// timelines through the followed index (nil with --no-index: an in-memory
// scan of what detection read).
func serveUIData(j server.Journal, idx *index.Follower, rs *sigma.Ruleset, bcfg *behavior.Config, cfg *setup.Config, sinks []sink.Sink,
	outbox *sink.Outbox, switches *server.RuleSwitches, changeLog journal.Log, forward server.Forwarder, replay bool, logger *slog.Logger) *server.UIData {
	var rows []ui.Rule
	for _, r := range rs.Rules() {
		rows = append(rows, ui.Rule{ID: r.ID, Title: r.Title, Level: r.Level, Kind: "sigma", Loaded: true, Enabled: true})
	}
	// The built-in set compiled again for the ones refused, with reasons.
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err == nil {
		_, refused := c.Compile()
		for _, r := range refused {
			rows = append(rows, ui.Rule{ID: r.ID, Title: filepath.Base(r.File), Kind: "sigma", Refused: r.Reason})
		}
	}
	for _, sig := range behavior.Signals() {
		rows = append(rows, ui.Rule{ID: sig, Title: incident.Means(sig), Level: "high", Kind: "behaviour", Loaded: true, Enabled: true})
	}
	var info []ui.Sink
	if cfg.Server != nil {
		for i, k := range cfg.Server.Sinks {
			target := k.URL
			switch k.Type {
			case "syslog":
				target = k.Address
			case "email":
				target = k.SMTP
			case "file":
				target = k.Path
			}
			name := k.Name
			if i < len(sinks) {
				name = sinks[i].Name()
			}
			info = append(info, ui.Sink{Name: name, Kind: k.Type, Target: target})
		}
	}
	return server.NewUIData(server.UIOptions{Journal: j, Index: idx, Rules: rows, Switches: switches, ChangeLog: changeLog, Sinks: sinks, SinkInfo: info, Outbox: outbox,
		Forward: forward, Learning: bcfg.Learning.D(), ReplayClock: replay, Logger: logger})
}

// printLoginLink prints a one-time admin login link for the web
// interface at every start, as Jupyter prints its token: valid once and
// for 15 minutes, so a copy left in a terminal's scrollback opens nothing
// later. It goes to stdout only, never to the log.
func printLoginLink(w io.Writer, srv *server.Server, base string, logger *slog.Logger) {
	p, err := srv.LoginPath(auth.RoleAdmin)
	if err != nil {
		logger.Warn("no login link for the web interface", "err", err)
		return
	}
	fmt.Fprintf(w, "vigil serve: web interface at %s%s; log in once within 15 minutes with:\n\n    %s%s\n\n", base, ui.Prefix, base, p)
}
