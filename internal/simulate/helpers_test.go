package simulate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// testConfig is the run most tests read: small, every campaign and
// confounder on, a low throttle limit so throttling happens in a small
// tenant, and forged-token Sync forced on.
func testConfig() Config {
	return Config{
		Users: 40, Days: 14, Seed: 7,
		Campaigns:     CampaignNames,
		Confounders:   ConfounderNames,
		ThrottleLimit: 300,
		Params:        map[string]map[string]string{CampaignForgedToken: {"sync-per-day": "1", "targets": "2"}},
	}
}

type fixture struct {
	dir   string
	truth *Truth
	ual   []map[string]any
	si    []map[string]any
	gws   []map[string]any
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-simulate-test")
		if err != nil {
			fixErr = err
			return
		}
		tr, err := Run(context.Background(), testConfig(), dir)
		if err != nil {
			fixErr = err
			return
		}
		f := &fixture{dir: dir, truth: tr}
		for _, x := range []struct {
			name string
			dst  *[]map[string]any
		}{{"ual.jsonl", &f.ual}, {"signins.jsonl", &f.si}, {"gws.jsonl", &f.gws}} {
			*x.dst, fixErr = readJSONL(filepath.Join(dir, x.name))
			if fixErr != nil {
				return
			}
		}
		fix = f
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		os.RemoveAll(fix.dir)
	}
	os.Exit(code)
}

func readJSONL(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// get walks a dotted path through nested objects.
func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func str(m map[string]any, path ...string) string {
	s, _ := get(m, path...).(string)
	return s
}

// opProp returns a MailItemsAccessed OperationProperties value.
func opProp(m map[string]any, name string) string {
	ps, _ := m["OperationProperties"].([]any)
	for _, p := range ps {
		pm, _ := p.(map[string]any)
		if pm["Name"] == name {
			s, _ := pm["Value"].(string)
			return s
		}
	}
	return ""
}
