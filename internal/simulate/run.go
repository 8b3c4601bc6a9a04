package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-audit/vigil/internal/netinfo"
)

// File names Run writes (with the extension of the chosen format).
const (
	NetworksFile = "networks.csv"
	TruthFile    = "truth.json"
)

// Run generates the tenant's logs into dir (created if needed) and
// returns the ground truth it also writes to dir/truth.json. Output is a
// pure function of cfg: the same Config gives the same bytes.
func Run(ctx context.Context, cfg Config, dir string) (*Truth, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("simulate: create output directory: %w", err)
	}
	t, err := buildTenant(cfg.Seed, cfg.Users, cfg.SharedMailboxes)
	if err != nil {
		return nil, err
	}
	s := &sim{cfg: &cfg, t: t, ctx: ctx, progressEvery: 1 << 16, targeted: map[*User]bool{}}
	s.start = cfg.Start.UnixNano()
	s.end = cfg.Start.Add(time.Duration(cfg.Days) * 24 * time.Hour).UnixNano()
	s.now = s.start
	// Message numbering starts a year before the run so folders have history.
	t.epoch = s.start - 365*day
	s.thr = make([]throttleState, len(t.Mailboxes))
	for i := range s.out {
		if i == outGWS && cfg.NoWorkspace {
			continue
		}
		k, err := openSink(dir, i, cfg.Format)
		if err != nil {
			s.closeSinks()
			return nil, err
		}
		s.out[i] = k
	}
	err = s.generate()
	if cerr := s.closeSinks(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	truth := s.truth()
	if err := writeNetworks(dir, t); err != nil {
		return nil, err
	}
	truth.Files = append(truth.Files, FileInfo{Name: NetworksFile, Source: "networks", Format: "csv", Records: int64(len(t.nets))})
	b, err := json.MarshalIndent(truth, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("simulate: encode truth: %w", err)
	}
	b = append(b, '\n')
	if err := os.WriteFile(filepath.Join(dir, TruthFile), b, 0o644); err != nil {
		return nil, fmt.Errorf("simulate: write truth: %w", err)
	}
	// Hunting the output directory must read only the logs.
	ignore := "# not audit logs: the simulation's ground truth and network table\n" + TruthFile + "\n" + NetworksFile + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".vigilignore"), []byte(ignore), 0o644); err != nil {
		return nil, fmt.Errorf("simulate: write .vigilignore: %w", err)
	}
	return truth, nil
}

func (s *sim) closeSinks() error {
	var first error
	for i, k := range s.out {
		if k == nil {
			continue
		}
		if err := k.close(); err != nil && first == nil {
			first = err
		}
		s.fileInfo[i] = FileInfo{Name: filepath.Base(k.path), Format: k.kind(), Records: k.n, Bytes: k.bytes}
		s.out[i] = nil
	}
	return first
}

func writeNetworks(dir string, t *Tenant) error {
	var buf bytes.Buffer
	es := make([]netinfo.Entry, len(t.nets))
	for i, n := range t.nets {
		es[i] = n.entry
	}
	if err := netinfo.WriteCSV(&buf, es); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, NetworksFile), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("simulate: write networks: %w", err)
	}
	return nil
}

// generate plans every stream and runs the merge.
func (s *sim) generate() error {
	cfg := s.cfg
	if err := s.setupConfounders(); err != nil {
		return err
	}
	for _, name := range cfg.Campaigns {
		p := cfg.params(name)
		c := newCampaignState(name, p.m)
		var sc *script
		var err error
		switch name {
		case CampaignForgedToken:
			sc, err = s.setupForgedToken(c, p)
		case CampaignTokenReplay:
			sc, err = s.setupTokenReplay(c, p)
		case CampaignConsentPhish:
			sc, err = s.setupConsentPhish(c, p)
		case CampaignPasswordSpray:
			sc, err = s.setupPasswordSpray(c, p)
		case CampaignForgedCommonApp:
			sc, err = s.setupForgedCommonApp(c, p)
		}
		if err != nil {
			return err
		}
		sc.sort()
		s.camps = append(s.camps, c)
		s.add(sc)
	}
	for _, u := range s.t.Users {
		s.add(newUserStream(s, u))
	}
	if !cfg.NoWorkspace {
		for i, u := range s.t.gws {
			s.add(newGWSStream(s, u, i))
		}
	}
	for _, st := range s.pending {
		s.push(st)
	}
	s.pending = s.pending[:0]
	if err := s.run(); err != nil {
		return err
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Events: s.events, SimTime: tm(s.end), Fraction: 1})
	}
	return nil
}

func (s *sim) truth() *Truth {
	t := s.t
	tr := &Truth{Version: TruthVersion, Seed: s.cfg.Seed, Start: tm(s.start), End: tm(s.end)}
	ti := TenantInfo{TenantID: t.ID, Domain: t.Domain, OrganizationName: t.OrgName, Users: len(t.Users), WorkspaceDomain: t.GWSDomain,
		WorkspaceCustomer: t.GWSCust, WorkspaceUsers: len(t.gws), BackupApp: t.Backup, SharedMailboxes: []string{}, VIPs: []string{}, Admins: []string{}}
	if s.cfg.NoWorkspace {
		ti.WorkspaceUsers = 0
	}
	for _, mb := range t.Shared {
		ti.SharedMailboxes = append(ti.SharedMailboxes, mb.UPN)
	}
	for _, u := range t.Users {
		if u.VIP {
			ti.VIPs = append(ti.VIPs, u.UPN)
		}
		if u.Admin {
			ti.Admins = append(ti.Admins, u.UPN)
		}
	}
	for _, a := range t.ThirdParty {
		ti.ThirdPartyMailApps = append(ti.ThirdPartyMailApps, *a)
	}
	tr.Tenant = ti
	srcs := [numOut]string{"m365.ual", "entra.signin", "gws"}
	for i := range outNames {
		if s.fileInfo[i].Name == "" {
			continue
		}
		fi := s.fileInfo[i]
		fi.Source = srcs[i]
		tr.Files = append(tr.Files, fi)
	}
	tr.Campaigns = []CampaignTruth{}
	for _, c := range s.camps {
		tr.Campaigns = append(tr.Campaigns, c.truth())
	}
	tr.Confounders = []Confounder{}
	if s.unl != nil {
		s.unl.finish(s.benignReads)
	}
	for _, c := range s.confs {
		c.Label = LabelBenign
		if c.Expect == "" {
			c.Expect = ExpectNoIncident
		}
		tr.Confounders = append(tr.Confounders, *c)
	}
	return tr
}
