package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Claims are the validated claims of a token. Raw holds every claim as
// sent, for callers that need more than the named fields.
type Claims struct {
	Issuer          string
	Subject         string
	Audience        []string
	Expiry          time.Time // zero when absent
	NotBefore       time.Time
	IssuedAt        time.Time
	Tenant          string // tid
	AuthorizedParty string // azp (v2 tokens)
	AppID           string // appid (v1 tokens)
	UTI             string // Entra unique token identifier
	JTI             string
	ObjectID        string // oid
	Scope           string // scp
	Raw             map[string]json.RawMessage
}

const (
	maxMembers   = 256
	maxJSONDepth = 16
)

var errDuplicate = errors.New("duplicate member")

// decodeObject decodes a JSON object strictly: no duplicate member names
// (a parser differential lets "alg" or "iss" mean two things), no trailing
// data, a bounded member count and nesting depth.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	if d := jsonDepth(b); d > maxJSONDepth {
		return nil, fmt.Errorf("nesting depth %d exceeds %d", d, maxJSONDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]json.RawMessage, 16)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := t.(string)
		if !ok {
			return nil, errors.New("member name is not a string")
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w %q", errDuplicate, name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		m[name] = raw
		if len(m) > maxMembers {
			return nil, fmt.Errorf("more than %d members", maxMembers)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON object")
	}
	return m, nil
}

// jsonDepth returns the maximum bracket nesting of b, ignoring strings.
func jsonDepth(b []byte) int {
	depth, maxd, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			maxd = max(maxd, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return maxd
}

func memberString(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("%q is not a string", name)
	}
	return s, true, nil
}

// numericDate parses a NumericDate (RFC 7519 §2): a finite, non-negative
// number of seconds, possibly fractional, within a sane range.
func numericDate(m map[string]json.RawMessage, name string) (time.Time, error) {
	raw, ok := m[name]
	if !ok {
		return time.Time{}, nil
	}
	// encoding/json also decodes a string holding digits into json.Number;
	// RFC 7519 makes NumericDate a JSON number, so a string is refused.
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] == '"' {
		return time.Time{}, fmt.Errorf("%q is a string, not a NumericDate number", name)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, fmt.Errorf("%q is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("%q is not a valid NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func parseClaims(payload []byte) (*Claims, error) {
	m, err := decodeObject(payload)
	if err != nil {
		return nil, err
	}
	c := &Claims{Raw: m}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"iss", &c.Issuer}, {"sub", &c.Subject}, {"tid", &c.Tenant}, {"azp", &c.AuthorizedParty},
		{"appid", &c.AppID}, {"uti", &c.UTI}, {"jti", &c.JTI}, {"oid", &c.ObjectID}, {"scp", &c.Scope},
	} {
		s, _, err := memberString(m, f.name)
		if err != nil {
			return nil, err
		}
		*f.dst = s
	}
	if raw, ok := m["aud"]; ok {
		var one string
		if err := json.Unmarshal(raw, &one); err == nil {
			c.Audience = []string{one}
		} else if err := json.Unmarshal(raw, &c.Audience); err != nil {
			return nil, errors.New(`"aud" is neither a string nor an array of strings`)
		}
	}
	if c.Expiry, err = numericDate(m, "exp"); err != nil {
		return nil, err
	}
	if c.NotBefore, err = numericDate(m, "nbf"); err != nil {
		return nil, err
	}
	if c.IssuedAt, err = numericDate(m, "iat"); err != nil {
		return nil, err
	}
	return c, nil
}
