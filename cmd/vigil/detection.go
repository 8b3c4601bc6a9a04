package main

import (
	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/detect/behavior"
	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/source"
)

// serveDetection is the detection vigil serve runs over its journal, and
// vigil reindex runs once to fill the index's alerts and incidents: the
// built-in rules, the default behaviours and incident grouping, and the
// network tables given.
type serveDetection struct {
	rules *sigma.Ruleset
	bcfg  *behavior.Config
	nets  []behavior.Networks
	temp  string                  // the pipeline's access log
	mute  func(*alert.Alert) bool // the rules an admin disabled (nil: none)
}

func newServeDetection(netFiles []string, tempDir string) (*serveDetection, error) {
	rs, err := demoRules()
	if err != nil {
		return nil, err
	}
	d := &serveDetection{rules: rs, bcfg: behavior.DefaultConfig(), temp: tempDir}
	for _, f := range netFiles {
		n, err := loadNetworks(f)
		if err != nil {
			return nil, usageError("networks: %v", err)
		}
		d.nets = append(d.nets, n)
	}
	return d, nil
}

func (d *serveDetection) newPipeline(s detect.Sink) *detect.Pipeline {
	opts := behavior.Options{TempDir: d.temp}
	if len(d.nets) > 0 {
		opts.Networks = behavior.CombineNetworks(d.nets...)
	}
	ic := d.bcfg.IncidentConfig()
	return detect.New(detect.Config{Rules: d.rules, Behaviours: behavior.New(d.bcfg, opts), Incidents: &ic, TempDir: d.temp, Mute: d.mute,
		// The sink (the investigation index) keeps every alert.
		ForgetSettled: true}, s)
}

func (d *serveDetection) newDecoder() *source.Decoder {
	return source.NewDecoder(nil, d.hot())
}

// hot is what detection's decoder reads while it parses: the loaded
// rules' fields and the fields every detection looks up.
func (d *serveDetection) hot() []event.Sym {
	return append(d.rules.FieldSyms(), event.HotFields...)
}
