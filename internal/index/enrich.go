package index

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vigil-audit/vigil/internal/detect/behavior"
)

// netTable is a network table the index enriches its rows from, as the
// meta key "networks" records it.
type netTable struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// enricher gives an address's ASN and country.
type enricher func(ip netip.Addr) (asn uint32, country string, ok bool)

// UseNetworks makes the index fill the ASN and country of rows whose
// record carries an address but neither (the Unified Audit Log's mail
// reads) from these network tables (vigil's CSV table or MaxMind .mmdb,
// as detection's networks), and records them, so that every later writer
// of the index (vigil ingest, search --wait) uses the same. note is not
// empty when the tables differ from those the index's rows were made with:
// the rows before keep their enrichment until vigil reindex.
func (x *Index) UseNetworks(ctx context.Context, paths []string) (note string, err error) {
	if x.readOnly {
		return "", fmt.Errorf("index: opened read-only")
	}
	tables := make([]netTable, 0, len(paths))
	var nets []behavior.Networks
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("index: network table %s: %w", p, err)
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			return "", fmt.Errorf("index: network table: %w", err)
		}
		var n behavior.Networks
		if strings.EqualFold(filepath.Ext(abs), ".mmdb") {
			n, err = behavior.OpenMMDBBytes(b)
		} else {
			n, err = behavior.LoadNetTableFile(abs)
		}
		if err != nil {
			return "", fmt.Errorf("index: network table %s: %w", abs, err)
		}
		sum := sha256.Sum256(b)
		tables = append(tables, netTable{Path: abs, SHA256: hex.EncodeToString(sum[:])})
		nets = append(nets, n)
	}
	old, err := x.recordedNetworks(ctx)
	if err != nil {
		return "", err
	}
	if !slices.Equal(old, tables) {
		next, err := x.Next(ctx)
		if err != nil {
			return "", err
		}
		if next > 0 {
			note = fmt.Sprintf("the network tables for ASN and country changed (%s, were %s): the rows of journal entries before %d keep the old ones until vigil reindex",
				describeTables(tables), describeTables(old), next)
		}
		b, _ := json.Marshal(tables)
		if err := x.setMeta(ctx, "networks", string(b)); err != nil {
			return "", err
		}
	}
	x.enrich = nil
	if len(nets) > 0 {
		all := behavior.CombineNetworks(nets...)
		x.enrich = func(ip netip.Addr) (uint32, string, bool) {
			ni, ok := all.Lookup(ip)
			return ni.ASN, ni.Country, ok && (ni.ASN != 0 || ni.Country != "")
		}
	}
	return note, nil
}

// RecordedNetworks are the paths of the network tables the index was last
// told to use (UseNetworks), for writers that have no configuration of
// their own.
func (x *Index) RecordedNetworks(ctx context.Context) ([]string, error) {
	ts, err := x.recordedNetworks(ctx)
	var out []string
	for _, t := range ts {
		out = append(out, t.Path)
	}
	return out, err
}

func (x *Index) recordedNetworks(ctx context.Context) ([]netTable, error) {
	v, err := x.meta(ctx, "networks")
	if err != nil || v == "" {
		return []netTable{}, err
	}
	var ts []netTable
	if err := json.Unmarshal([]byte(v), &ts); err != nil {
		return nil, fmt.Errorf("index: recorded network tables: %w", err)
	}
	if ts == nil {
		ts = []netTable{}
	}
	return ts, nil
}

func describeTables(ts []netTable) string {
	if len(ts) == 0 {
		return "none"
	}
	var names []string
	for _, t := range ts {
		names = append(names, filepath.Base(t.Path)+"@"+t.SHA256[:8])
	}
	return strings.Join(names, ", ")
}

// enrichRow fills r's ASN and country from the tables when its record
// names an address but neither.
func enrichRow(r *eventRow, e enricher) {
	if e == nil || r.asn != 0 || r.country != "" || !r.hasIP {
		return
	}
	// The address as ipKey parsed it, not parsed again.
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.ipHi)
	binary.BigEndian.PutUint64(b[8:], r.ipLo)
	if asn, country, ok := e(netip.AddrFrom16(b).Unmap()); ok {
		r.asn, r.country = asn, country
	}
}
