package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-audit/vigil/internal/simulate"
)

func TestSimulateCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := runSimulate(context.Background(), []string{"--out", dir, "--users", "12", "--days", "3", "--seed", "5",
		"--campaign", "token-replay,password-spray", "--param", "password-spray.targets=8", "--param", "token-replay.start-day=1",
		"--confounders", "travel,backup-tool", "--format", "csv"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, name := range []string{"ual.csv", "signins.jsonl", "gws.jsonl", "networks.csv", "truth.json"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	tr, err := simulate.LoadTruth(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Campaigns) != 2 || tr.Campaigns[1].Params["targets"] != "8" || tr.Campaigns[0].Params["start-day"] != "1" {
		t.Fatalf("campaigns %+v", tr.Campaigns)
	}
	if len(tr.Confounders) != 2 {
		t.Fatalf("confounders %+v", tr.Confounders)
	}
	if !strings.Contains(out.String(), "campaign token-replay") {
		t.Fatalf("summary: %s", out.String())
	}
	if errb.Len() != 0 {
		t.Fatalf("progress written to a non-terminal: %q", errb.String())
	}
}

func TestSimulateUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--out", "x", "--campaign", "nope"},
		{"--out", "x", "--param", "novalue"},
		{"--out", "x", "--campaign", "forged-token", "--param", "forged-token.bogus=1"},
		{"--out", "x", "--format", "xml"},
		{"--out", "x", "--start", "March"},
		{"--out", "x", "stray"},
	} {
		var out, errb bytes.Buffer
		err := runSimulate(context.Background(), args, &out, &errb)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
