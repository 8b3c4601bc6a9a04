package netinfo

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Load reads a table as users write it, in either format (sniffed: a
// JSON array or CSV). CSV columns are found by header name; prefix and
// asn are required, as_org, country, city and kind optional, others
// ignored. A plain address is a /32 or /128 prefix, host bits are
// cleared, kind is lower-cased and may be any word. The first bad row is
// an error naming its CSV line or array index and the reason.
func Load(r io.Reader) (*Table, error) { return load(r, false) }

// LoadStrict reads a table in the canonical form WriteCSV produces (or
// the same rows as a JSON array): the exact header
// prefix,asn,as_org,country,city,kind; every row has a CIDR prefix
// without host bits, a decimal asn, an upper-case ISO 3166-1 alpha-2
// country and a Known kind; JSON objects have no other keys. The first
// bad row is an error naming its CSV line or array index and the reason.
func LoadStrict(r io.Reader) (*Table, error) { return load(r, true) }

// LoadFile opens path and reads it with Load.
func LoadFile(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("network table: %w", err)
	}
	defer f.Close()
	t, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func load(r io.Reader, strict bool) (*Table, error) {
	br := bufio.NewReader(r)
	for {
		b, err := br.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("network table: empty input")
			}
			return nil, fmt.Errorf("network table: %w", err)
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = br.ReadByte()
			continue
		case 0xEF: // UTF-8 BOM, as spreadsheet exports write
			bom, _ := br.Peek(3)
			if bytes.Equal(bom, []byte{0xEF, 0xBB, 0xBF}) {
				_, _ = br.Discard(3)
				continue
			}
		case '[':
			return loadJSON(br, strict)
		}
		return loadCSV(br, strict)
	}
}

func loadJSON(r io.Reader, strict bool) (*Table, error) {
	var raw []struct {
		Prefix  string `json:"prefix"`
		ASN     *int64 `json:"asn"` // a pointer, to tell a missing asn from 0
		ASOrg   string `json:"as_org"`
		Country string `json:"country"`
		City    string `json:"city"`
		Kind    string `json:"kind"`
	}
	dec := json.NewDecoder(r)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("network table: decode JSON: %w", err)
	}
	es := make([]Entry, 0, len(raw))
	for i, x := range raw {
		asn := "0"
		if x.ASN != nil {
			asn = strconv.FormatInt(*x.ASN, 10)
		} else if strict {
			return nil, fmt.Errorf("network table: entry %d: missing asn", i)
		}
		e, err := parseEntry(strict, x.Prefix, asn, x.ASOrg, x.Country, x.City, x.Kind)
		if err != nil {
			return nil, fmt.Errorf("network table: entry %d: %w", i, err)
		}
		es = append(es, e)
	}
	return NewTable(es), nil
}

func loadCSV(r io.Reader, strict bool) (*Table, error) {
	cr := csv.NewReader(r)
	if strict {
		cr.FieldsPerRecord = len(header)
	}
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("network table: read CSV header: %w", err)
	}
	col := map[string]int{}
	if strict {
		for i, h := range header {
			if strings.TrimSpace(strings.ToLower(head[i])) != h {
				return nil, fmt.Errorf("network table: CSV header column %d is %q, want %q", i+1, head[i], h)
			}
			col[h] = i
		}
	} else {
		for i, h := range head {
			col[strings.ToLower(strings.TrimSpace(h))] = i
		}
		for _, need := range []string{"prefix", "asn"} {
			if _, ok := col[need]; !ok {
				return nil, fmt.Errorf("network table: CSV header has no %q column", need)
			}
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	var es []Entry
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("network table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		e, err := parseEntry(strict, get(rec, "prefix"), get(rec, "asn"), get(rec, "as_org"), get(rec, "country"), get(rec, "city"), get(rec, "kind"))
		if err != nil {
			return nil, fmt.Errorf("network table: line %d: %w", line, err)
		}
		es = append(es, e)
	}
	return NewTable(es), nil
}

// parseEntry validates one row, the same for both formats.
func parseEntry(strict bool, prefix, asn, org, country, city, kind string) (Entry, error) {
	var p netip.Prefix
	var err error
	if strict {
		p, err = netip.ParsePrefix(strings.TrimSpace(prefix))
		if err != nil {
			return Entry{}, fmt.Errorf("bad prefix %q: %w", prefix, err)
		}
		if p.Masked() != p {
			return Entry{}, fmt.Errorf("prefix %q has host bits set", prefix)
		}
	} else if p, err = ParsePrefix(prefix); err != nil {
		return Entry{}, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(asn), 10, 32)
	if err != nil {
		return Entry{}, fmt.Errorf("bad asn %q: %w", asn, err)
	}
	if !strict {
		return Entry{Prefix: p, ASN: uint32(n), ASOrg: strings.TrimSpace(org), Country: strings.TrimSpace(country),
			City: strings.TrimSpace(city), Kind: Kind(strings.ToLower(strings.TrimSpace(kind)))}, nil
	}
	if len(country) != 2 || strings.ToUpper(country) != country {
		return Entry{}, fmt.Errorf("country %q is not an upper-case ISO 3166-1 alpha-2 code", country)
	}
	k := Kind(strings.TrimSpace(kind))
	if !k.Known() {
		return Entry{}, fmt.Errorf("kind %q is not one of isp, corporate, hosting, vpn", kind)
	}
	return Entry{Prefix: p, ASN: uint32(n), ASOrg: org, Country: country, City: city, Kind: k}, nil
}

// ParsePrefix reads a prefix as Load does: a CIDR prefix, its host bits
// cleared, or a plain address as its /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address or prefix %q", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
	}
	return p.Masked(), nil
}
