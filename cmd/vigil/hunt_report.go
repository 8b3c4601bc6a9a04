package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/source"

	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/incident"
	"github.com/vigil-audit/vigil/internal/netinfo"
	"github.com/vigil-audit/vigil/internal/report"
	"github.com/vigil-audit/vigil/internal/sanitize"
)

// huntReportConfig is what `vigil hunt --report DIR` needs beyond the
// events: the behaviour settings and the external knowledge the
// behaviours use.
type huntReportConfig struct {
	dir      string    // --report: where to write the report; "" for none
	config   string    // --config: behaviour settings YAML; "" for the built-in defaults
	networks multiFlag // --networks: network tables (CSV/JSON) or MaxMind-format .mmdb files
	iocs     multiFlag // --iocs: IOC files
	state    string    // --state: directory holding behaviour state between runs
	title    string    // report title
	opened   *openedNetworks
}

// openedNetworks keeps the --networks files once opened: the behaviours
// and the report use the same lookup.
type openedNetworks struct {
	nets behavior.Networks
	err  error
	done bool
}

func (c *huntReportConfig) enabled() bool { return c.dir != "" }

// feedsBehaviours reports whether a flag that only the behaviours use was
// given: such a flag turns the behaviours on rather than being ignored.
func (c *huntReportConfig) feedsBehaviours() bool {
	return c.config != "" || len(c.networks) > 0 || len(c.iocs) > 0 || c.state != ""
}

// addHuntReportFlags registers the report and behaviour flags on fs.
func addHuntReportFlags(fs *flag.FlagSet) *huntReportConfig {
	c := &huntReportConfig{opened: &openedNetworks{}}
	fs.StringVar(&c.dir, "report", "", "run the behaviours and write detections.jsonl, incidents.json, impact.csv and report.html into this directory")
	fs.StringVar(&c.config, "config", "", "behaviour settings YAML; implies --behaviours (default: the built-in settings, see docs/detections.md)")
	fs.Var(&c.networks, "networks", "IP → ASN/country/kind `FILE`: a table (networks.csv or JSON, as vigil simulate writes) or a MaxMind-format .mmdb; repeatable; implies --behaviours")
	fs.Var(&c.iocs, "iocs", "IOC `FILE` for the retro-hunt (D11), e.g. docs/iocs/storm0558.yaml; repeatable; implies --behaviours")
	fs.StringVar(&c.state, "state", "", "directory keeping behaviour baselines between runs (loaded if present, saved after); implies --behaviours")
	return c
}

// stateFile is the behaviour state's file name inside --state.
const stateFile = "behavior.state"

// huntResult is what a report run found, for summaries and tests.
type huntResult struct {
	alerts    int
	incidents []*incident.Incident
	dir       string
}

// writeHuntReport writes a run's result into dir.
func writeHuntReport(dir string, res *detect.Result, cfg huntReportConfig, in report.Inputs, learning time.Duration) (*huntResult, error) {
	nets, err := cfg.openNetworks()
	if err != nil {
		return nil, err
	}
	in.Late, in.Future = res.Stats.Late, res.Stats.Future
	r := &report.Report{Title: cfg.title, Alerts: res.Alerts, Incidents: res.Incidents, Reads: res.Stats.Reads,
		Events: int(res.Stats.Events), Sources: res.Stats.Sources, From: res.Stats.From, To: res.Stats.To, DescribeIP: describeIP(nets),
		Inputs: in, Learning: learning, Version: version, Generated: reportNow()}
	if err := report.Write(dir, r); err != nil {
		return nil, err
	}
	return &huntResult{alerts: res.Alerts.Len(), incidents: res.Incidents, dir: dir}, nil
}

// reportInputs says what a run read, for the report.
// reportNow is when a report says it was generated (tests pin it).
var reportNow = time.Now

func reportInputs(files []string, st source.Stats, quarantine string) report.Inputs {
	in := report.Inputs{Files: files, Records: st.Records, Quarantined: st.Quarantined, Reasons: st.Reasons, Skipped: st.Skipped, Damaged: st.Damaged}
	if st.Quarantined > 0 {
		in.QuarantineFile = quarantine
	}
	return in
}

// huntPipelineConfig builds the behaviours and incident grouping from the
// settings, networks and IOCs of cfg.
func huntPipelineConfig(cfg huntReportConfig) (detect.Config, time.Duration, error) {
	bcfg, err := behavior.LoadConfig(cfg.config)
	if err != nil {
		return detect.Config{}, 0, usageError("--config: %v", err)
	}
	opts := behavior.Options{}
	if opts.Networks, err = cfg.openNetworks(); err != nil {
		return detect.Config{}, 0, err
	}
	if len(cfg.iocs) > 0 {
		s, err := behavior.LoadIOCFiles(cfg.iocs...)
		if err != nil {
			return detect.Config{}, 0, usageError("--iocs: %v", err)
		}
		opts.IOCs = s
	}
	ic := bcfg.IncidentConfig()
	return detect.Config{Behaviours: behavior.New(bcfg, opts), Incidents: &ic}, bcfg.Learning.D(), nil
}

// openNetworks opens every --networks file as one lookup (earlier files
// win); nil when none is given.
func (c *huntReportConfig) openNetworks() (behavior.Networks, error) {
	if c.opened == nil {
		return c.loadAllNetworks()
	}
	if !c.opened.done {
		c.opened.nets, c.opened.err = c.loadAllNetworks()
		c.opened.done = true
	}
	return c.opened.nets, c.opened.err
}

func (c *huntReportConfig) loadAllNetworks() (behavior.Networks, error) {
	var nets []behavior.Networks
	for _, p := range c.networks {
		n, err := loadNetworks(p)
		if err != nil {
			return nil, usageError("--networks: %v", err)
		}
		nets = append(nets, n)
	}
	return behavior.CombineNetworks(nets...), nil
}

// describeIP names addresses' networks in the report; nil without a
// network table.
func describeIP(nets behavior.Networks) func(string) string {
	if nets == nil {
		return nil
	}
	return func(s string) string {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return ""
		}
		info, ok := nets.Lookup(ip)
		if !ok {
			return ""
		}
		return netinfo.Describe(info.ASN, info.Org, info.Country, info.Kind)
	}
}

// loadNetworks opens a network table or, by its extension, an MMDB.
func loadNetworks(path string) (behavior.Networks, error) {
	if strings.EqualFold(filepath.Ext(path), ".mmdb") {
		return behavior.OpenMMDB(path)
	}
	return behavior.LoadNetTableFile(path)
}

func loadState(eng *detect.Pipeline, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // first run
	}
	if err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	defer f.Close()
	if err := eng.LoadState(f); err != nil {
		return fmt.Errorf("--state %s: %w", path, err)
	}
	return nil
}

func saveState(eng *detect.Pipeline, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	if err := eng.SaveState(f); err != nil {
		f.Close()
		return fmt.Errorf("--state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("--state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("--state: %w", err)
	}
	return nil
}

// printReportSummary says in a few lines what the report holds.
func printReportSummary(w io.Writer, r *huntResult) {
	mbs := map[string]bool{}
	read := map[string]bool{} // a message two incidents read counts once
	incomplete := 0
	for _, inc := range r.incidents {
		for _, m := range inc.Impact.Mailboxes {
			mbs[m] = true
		}
		for _, rd := range inc.Impact.Reads {
			read[rd.Mailbox+"\x00"+rd.MessageID] = true
		}
		if !inc.Impact.EvidenceComplete {
			incomplete++
		}
	}
	fmt.Fprintf(w, "%d %s, %d %s\n", r.alerts, nounFor(r.alerts, "detection"), len(r.incidents), nounFor(len(r.incidents), "incident"))
	for _, inc := range r.incidents {
		ev := "evidence complete"
		if !inc.Impact.EvidenceComplete {
			ev = "evidence INCOMPLETE"
		}
		fmt.Fprintf(w, "  %s %-8s score %3d %s: %d messages in %d mailboxes, %s; signals %s\n", inc.ID, inc.Severity, inc.Score, sanitize.Line(inc.Title),
			inc.Impact.MessageCount, len(inc.Impact.Mailboxes), ev, sanitize.Line(strings.Join(inc.Signals, ",")))
	}
	fmt.Fprintf(w, "Read by intruders: %d messages in %d mailboxes", len(read), len(mbs))
	if incomplete > 0 {
		fmt.Fprintf(w, "; evidence incomplete for %d of %d incidents (Sync or throttled access: assume more was read)", incomplete, len(r.incidents))
	}
	fmt.Fprintln(w)
	abs, err := filepath.Abs(filepath.Join(r.dir, report.HTMLFile))
	if err != nil {
		abs = filepath.Join(r.dir, report.HTMLFile)
	}
	fmt.Fprintf(w, "Report: %s\n", abs)
}

// nounFor is noun, plural unless n is 1.
func nounFor(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
