package sigma

import (
	"strings"

	"github.com/vigil-audit/vigil/internal/event"
)

// MatchedField is one field value that satisfied a rule.
type MatchedField struct {
	Field string // as the rule names it (without modifiers)
	Value string
}

// eval reports whether the item holds for e. If out is non-nil the first
// matching value of each satisfied test is appended to it.
func (it *fieldItem) eval(e *event.Event, out *[]MatchedField) bool {
	if it.keywords {
		return it.evalKeywords(e, out)
	}
	var scratch [8]event.Field
	vals := it.res.values(e, scratch[:0])
	switch it.op {
	case opExists:
		if (len(vals) > 0) == it.exists {
			if out != nil && len(vals) > 0 {
				*out = append(*out, MatchedField{it.field, vals[0].Value})
			}
			return true
		}
		return false
	case opFieldRef:
		return it.evalRef(e, vals, out)
	}
	if it.neq {
		// Some value differs from every listed value.
		for i := range vals {
			hit := false
			for j := range it.tests {
				if it.tests[j].test(&vals[i]) {
					hit = true
					break
				}
			}
			if !hit {
				if out != nil {
					*out = append(*out, MatchedField{it.field, vals[i].Value})
				}
				return true
			}
		}
		return false
	}
	if it.all {
		for j := range it.tests {
			if !it.testOne(&it.tests[j], vals, out) {
				return false
			}
		}
		return true
	}
	for j := range it.tests {
		if it.testOne(&it.tests[j], vals, out) {
			return true
		}
	}
	return false
}

func (it *fieldItem) testOne(t *valueTest, vals []event.Field, out *[]MatchedField) bool {
	if t.null && len(vals) == 0 {
		if out != nil {
			*out = append(*out, MatchedField{it.field, "null"})
		}
		return true
	}
	for i := range vals {
		if t.test(&vals[i]) {
			if out != nil {
				*out = append(*out, MatchedField{it.field, vals[i].Value})
			}
			return true
		}
	}
	return false
}

// evalKeywords searches every flattened source field's value (not the
// normalized names, which repeat source values).
func (it *fieldItem) evalKeywords(e *event.Event, out *[]MatchedField) bool {
	fs := e.Fields()
	one := func(t *valueTest) bool {
		for i := range fs {
			if t.test(&fs[i]) {
				if out != nil {
					*out = append(*out, MatchedField{fs[i].Name, fs[i].Value})
				}
				return true
			}
		}
		return false
	}
	if it.all {
		for j := range it.tests {
			if !one(&it.tests[j]) {
				return false
			}
		}
		return true
	}
	for j := range it.tests {
		if one(&it.tests[j]) {
			return true
		}
	}
	return false
}

func (it *fieldItem) evalRef(e *event.Event, vals []event.Field, out *[]MatchedField) bool {
	var scratch [8]event.Field
	cmp := func(a, b string) bool {
		if !it.refCased {
			a, b = strings.ToLower(a), strings.ToLower(b)
		}
		switch it.refKind {
		case kindContains:
			return strings.Contains(a, b)
		case kindPrefix:
			return strings.HasPrefix(a, b)
		case kindSuffix:
			return strings.HasSuffix(a, b)
		}
		return a == b
	}
	one := func(ref *resolver) bool {
		others := ref.values(e, scratch[:0])
		if len(vals) == 0 || len(others) == 0 {
			return false
		}
		if it.neq {
			for i := range vals {
				differs := true
				for j := range others {
					if cmp(vals[i].Value, others[j].Value) {
						differs = false
						break
					}
				}
				if differs {
					if out != nil {
						*out = append(*out, MatchedField{it.field, vals[i].Value})
					}
					return true
				}
			}
			return false
		}
		for i := range vals {
			for j := range others {
				if cmp(vals[i].Value, others[j].Value) {
					if out != nil {
						*out = append(*out, MatchedField{it.field, vals[i].Value})
					}
					return true
				}
			}
		}
		return false
	}
	if it.all {
		for _, r := range it.refs {
			if !one(r) {
				return false
			}
		}
		return true
	}
	for _, r := range it.refs {
		if one(r) {
			return true
		}
	}
	return false
}

// selection is one search identifier: an OR of AND-groups of items.
type selection struct {
	name   string
	groups [][]*fieldItem
}

func (s *selection) eval(e *event.Event, out *[]MatchedField) bool {
	for _, g := range s.groups {
		ok := true
		mark := 0
		if out != nil {
			mark = len(*out)
		}
		for _, it := range g {
			if !it.eval(e, out) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		if out != nil {
			*out = (*out)[:mark]
		}
	}
	return false
}
