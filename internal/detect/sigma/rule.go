package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/vigil-audit/vigil/internal/event"
	"go.yaml.in/yaml/v3"
)

// Rule is one loaded Sigma detection or correlation rule.
type Rule struct {
	ID          string
	Name        string
	Title       string
	Status      string
	Level       string
	Description string
	Author      string
	Tags        []string
	File        string // path as given to the Compiler
	Doc         int    // 0-based YAML document within File
	Line        int    // line of the document's first key in File
	Logsource   Logsource
	// Sources are the event sources the rule runs on (see Route); empty
	// for correlation rules and for rules whose logsource vigil lacks.
	Sources []string
	// Correlation is the correlation type, "" for a detection rule.
	Correlation string

	ord        int
	det        map[string]*detection // per source; "" when unrouted
	corr       *correlation
	consumers  []*correlation
	standalone bool
}

// Key is how correlations and reports name the rule: its id, else name.
func (r *Rule) Key() string {
	if r.ID != "" {
		return r.ID
	}
	return r.Name
}

// Refusal is a rule (or file) that was not loaded, and why.
type Refusal struct {
	File   string
	Doc    int // -1 when the whole file was refused
	Line   int // line of the document (or of the YAML error) in File, 0 if unknown
	ID     string
	Title  string
	Reason string
}

// Options tune compilation.
type Options struct {
	// Placeholders supplies values for %name% placeholders of |expand
	// values; a rule using a placeholder without values is refused.
	Placeholders map[string][]string
}

// Compiler collects rule files and compiles them into a Ruleset. Files
// are parsed as they are added; compilation happens in Compile, once all
// files are known, so correlations can refer to rules in other files.
type Compiler struct {
	opts     Options
	docs     []*rawDoc
	refusals []Refusal
}

// NewCompiler returns an empty Compiler.
func NewCompiler(opts Options) *Compiler { return &Compiler{opts: opts} }

// Load compiles every .yml/.yaml file under dirs of fsys ("." for all).
func Load(fsys fs.FS, opts Options, dirs ...string) (*Ruleset, []Refusal, error) {
	c := NewCompiler(opts)
	if err := c.AddFS(fsys, dirs...); err != nil {
		return nil, nil, err
	}
	rs, ref := c.Compile()
	return rs, ref, nil
}

// AddFS adds every .yml/.yaml file under dirs (default "."), in lexical
// order. Only I/O errors are returned; bad rules become refusals.
func (c *Compiler) AddFS(fsys fs.FS, dirs ...string) error {
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	for _, d := range dirs {
		err := fs.WalkDir(fsys, d, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if de.IsDir() {
				return nil
			}
			ext := strings.ToLower(path.Ext(p))
			if ext != ".yml" && ext != ".yaml" {
				return nil
			}
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return fmt.Errorf("sigma: read rule %s: %w", p, err)
			}
			c.AddFile(p, data)
			return nil
		})
		if err != nil {
			return fmt.Errorf("sigma: load rules from %s: %w", d, err)
		}
	}
	return nil
}

// rawDoc is one YAML document as read.
type rawDoc struct {
	file string
	doc  int
	line int
	node *yaml.Node
	meta docMeta
	err  error
}

type docMeta struct {
	Title       string          `yaml:"title"`
	ID          string          `yaml:"id"`
	Name        string          `yaml:"name"`
	Status      string          `yaml:"status"`
	Description string          `yaml:"description"`
	Author      string          `yaml:"author"`
	Level       string          `yaml:"level"`
	Tags        []string        `yaml:"tags"`
	Logsource   *Logsource      `yaml:"logsource"`
	Detection   yaml.Node       `yaml:"detection"`
	Correlation *rawCorrelation `yaml:"correlation"`
	Generate    *bool           `yaml:"generate"`
	Filter      yaml.Node       `yaml:"filter"`
	Action      string          `yaml:"action"`
}

// AddFile parses one file; several rules may share it as YAML documents
// separated by "---". A YAML syntax error refuses the whole file.
func (c *Compiler) AddFile(name string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*rawDoc
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.refusals = append(c.refusals, Refusal{File: name, Doc: -1, Reason: "invalid YAML: " + err.Error()})
			return
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue // empty document, e.g. a trailing ---
		}
		d := &rawDoc{file: name, doc: i, node: &n, line: n.Content[0].Line}
		if n.Content[0].Kind != yaml.MappingNode {
			d.err = refuse("document is not a map")
		} else if err := n.Decode(&d.meta); err != nil {
			d.err = refuse("invalid rule structure: %v", err)
		}
		docs = append(docs, d)
	}
	c.docs = append(c.docs, docs...)
}

var levels = map[string]bool{"": true, "informational": true, "low": true, "medium": true, "high": true, "critical": true}

// Compile compiles everything added so far. It can be called once.
func (c *Compiler) Compile() (*Ruleset, []Refusal) {
	rs := newRuleset()
	refusals := append([]Refusal(nil), c.refusals...)
	refuseDoc := func(d *rawDoc, reason string) {
		refusals = append(refusals, Refusal{File: d.file, Doc: d.doc, Line: d.line, ID: d.meta.ID, Title: d.meta.Title, Reason: reason})
	}
	byKey := map[string]*Rule{}       // id and name → loaded rule
	refusedKey := map[string]string{} // id and name → reason
	var corrDocs []*rawDoc
	for _, d := range c.docs {
		if d.err != nil {
			refuseDoc(d, d.err.Error())
			markRefused(refusedKey, d, d.err.Error())
			continue
		}
		if d.meta.Correlation != nil {
			corrDocs = append(corrDocs, d)
			continue
		}
		r, err := c.compileDetectionDoc(d)
		if err == nil {
			err = claimKeys(byKey, r)
		}
		if err != nil {
			refuseDoc(d, err.Error())
			markRefused(refusedKey, d, err.Error())
			continue
		}
		rs.add(r)
	}
	// Correlations may refer to each other in any order: resolve on demand
	// with cycle detection.
	pending := map[string]*rawDoc{}
	for _, d := range corrDocs {
		for _, k := range []string{d.meta.ID, d.meta.Name} {
			if k != "" {
				pending[k] = d
			}
		}
	}
	state := map[*rawDoc]int{} // 1 in progress, 2 done
	var resolve func(d *rawDoc) (*Rule, error)
	resolve = func(d *rawDoc) (*Rule, error) {
		switch state[d] {
		case 1:
			return nil, refuse("correlation chain has a cycle through %q", d.meta.Title)
		case 2:
			if r := byKey[docKey(d)]; r != nil {
				return r, nil
			}
			return nil, refuse("refers to a refused correlation %q", d.meta.Title)
		}
		state[d] = 1
		defer func() { state[d] = 2 }()
		lookup := func(ref string) (*Rule, error) {
			if r, ok := byKey[ref]; ok {
				return r, nil
			}
			if why, ok := refusedKey[ref]; ok {
				return nil, refuse("refers to refused rule %q (%s)", ref, why)
			}
			if pd, ok := pending[ref]; ok {
				return resolve(pd)
			}
			return nil, refuse("refers to unknown rule %q", ref)
		}
		r, err := c.compileCorrelationDoc(d, lookup)
		if err == nil {
			err = claimKeys(byKey, r)
		}
		if err != nil {
			refuseDoc(d, err.Error())
			markRefused(refusedKey, d, err.Error())
			return nil, err
		}
		rs.add(r)
		return r, nil
	}
	for _, d := range corrDocs {
		if state[d] == 0 {
			_, _ = resolve(d)
		}
	}
	rs.finish()
	sort.SliceStable(refusals, func(i, j int) bool {
		if refusals[i].File != refusals[j].File {
			return refusals[i].File < refusals[j].File
		}
		return refusals[i].Doc < refusals[j].Doc
	})
	return rs, refusals
}

func docKey(d *rawDoc) string {
	if d.meta.ID != "" {
		return d.meta.ID
	}
	return d.meta.Name
}

func markRefused(m map[string]string, d *rawDoc, why string) {
	for _, k := range []string{d.meta.ID, d.meta.Name} {
		if k != "" {
			m[k] = why
		}
	}
}

func claimKeys(byKey map[string]*Rule, r *Rule) error {
	for _, k := range []string{r.ID, r.Name} {
		if k == "" {
			continue
		}
		if o, dup := byKey[k]; dup {
			return refuse("duplicate rule id or name %q (also in %s)", k, o.File)
		}
	}
	for _, k := range []string{r.ID, r.Name} {
		if k != "" {
			byKey[k] = r
		}
	}
	return nil
}

func (c *Compiler) newRule(d *rawDoc) (*Rule, error) {
	m := d.meta
	if strings.TrimSpace(m.Title) == "" {
		return nil, refuse("missing title")
	}
	lv := strings.ToLower(m.Level)
	if !levels[lv] {
		return nil, refuse("unknown level %q", m.Level)
	}
	return &Rule{ID: m.ID, Name: m.Name, Title: m.Title, Status: m.Status, Level: lv, Description: m.Description,
		Author: m.Author, Tags: m.Tags, File: d.file, Doc: d.doc, Line: d.line, standalone: true}, nil
}

func (c *Compiler) compileDetectionDoc(d *rawDoc) (*Rule, error) {
	m := d.meta
	switch {
	case m.Action != "":
		return nil, refuse("rule collections (action: %s) are not supported", m.Action)
	case m.Filter.Kind != 0:
		return nil, refuse("Sigma filter documents are not supported")
	case m.Detection.Kind == 0:
		return nil, refuse("no detection or correlation section")
	case m.Logsource == nil:
		return nil, refuse("missing logsource")
	}
	r, err := c.newRule(d)
	if err != nil {
		return nil, err
	}
	r.Logsource = *m.Logsource
	r.Sources = Route(r.Logsource)
	r.det = map[string]*detection{}
	srcs := r.Sources
	if len(srcs) == 0 {
		srcs = []string{""} // still compiled, so errors are reported
	}
	for _, s := range srcs {
		rc := &ruleCompiler{opts: &c.opts, source: s}
		det, err := rc.compileDetection(&m.Detection)
		if err != nil {
			return nil, err
		}
		r.det[s] = det
	}
	return r, nil
}

// ruleCompiler compiles one rule's detection for one source.
type ruleCompiler struct {
	opts   *Options
	source string
	res    map[string]*resolver
}

func (rc *ruleCompiler) resolver(name string) *resolver {
	if r, ok := rc.res[name]; ok {
		return r
	}
	if rc.res == nil {
		rc.res = map[string]*resolver{}
	}
	r := newResolver(name, rc.source)
	rc.res[name] = r
	return r
}

// detection is a compiled detection section.
type detection struct {
	sels []*selection
	cond *node
}

func (d *detection) match(e *event.Event) bool {
	return d.cond.eval(func(i int) bool { return d.sels[i].eval(e, nil) })
}

func (rc *ruleCompiler) compileDetection(n *yaml.Node) (*detection, error) {
	if n.Kind != yaml.MappingNode {
		return nil, refuse("detection must be a map")
	}
	det := &detection{}
	var conds []string
	var names []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch k {
		case "condition":
			switch v.Kind {
			case yaml.ScalarNode:
				conds = append(conds, v.Value)
			case yaml.SequenceNode:
				for _, c := range v.Content {
					if c.Kind != yaml.ScalarNode {
						return nil, refuse("condition list must hold strings")
					}
					conds = append(conds, c.Value)
				}
			default:
				return nil, refuse("condition must be a string or a list of strings")
			}
			continue
		case "timeframe":
			return nil, refuse("detection timeframe is obsolete (Sigma v1 aggregations); use a correlation rule")
		}
		sel, err := rc.compileSelection(k, v)
		if err != nil {
			return nil, fmt.Errorf("selection %s (line %d): %w", k, n.Content[i].Line, err)
		}
		det.sels = append(det.sels, sel)
		names = append(names, k)
	}
	if len(conds) == 0 {
		return nil, refuse("detection has no condition")
	}
	var kids []*node
	for _, c := range conds {
		nd, err := parseCondition(c, names)
		if err != nil {
			return nil, err
		}
		kids = append(kids, nd)
	}
	det.cond = kids[0]
	if len(kids) > 1 {
		det.cond = &node{op: nodeOr, kids: kids}
	}
	return det, nil
}

func (rc *ruleCompiler) compileSelection(name string, v *yaml.Node) (*selection, error) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	sel := &selection{name: name}
	switch v.Kind {
	case yaml.MappingNode:
		g, err := rc.compileMap(v)
		if err != nil {
			return nil, err
		}
		sel.groups = append(sel.groups, g)
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return nil, refuse("empty list")
		}
		var kw []*yaml.Node
		for _, el := range v.Content {
			if el.Kind == yaml.AliasNode {
				el = el.Alias
			}
			switch el.Kind {
			case yaml.MappingNode:
				g, err := rc.compileMap(el)
				if err != nil {
					return nil, err
				}
				sel.groups = append(sel.groups, g)
			case yaml.ScalarNode:
				kw = append(kw, el)
			default:
				return nil, refuse("lists of lists are not valid")
			}
		}
		if len(kw) > 0 {
			it, err := rc.compileItem("", &yaml.Node{Kind: yaml.SequenceNode, Content: kw})
			if err != nil {
				return nil, err
			}
			sel.groups = append(sel.groups, []*fieldItem{it})
		}
	case yaml.ScalarNode:
		it, err := rc.compileItem("", v)
		if err != nil {
			return nil, err
		}
		sel.groups = append(sel.groups, []*fieldItem{it})
	default:
		return nil, refuse("unsupported selection shape")
	}
	return sel, nil
}

func (rc *ruleCompiler) compileMap(m *yaml.Node) ([]*fieldItem, error) {
	if len(m.Content) == 0 {
		return nil, refuse("empty map")
	}
	var g []*fieldItem
	for i := 0; i+1 < len(m.Content); i += 2 {
		it, err := rc.compileItem(m.Content[i].Value, m.Content[i+1])
		if err != nil {
			return nil, err
		}
		g = append(g, it)
	}
	// Cheap exact tests first: the map is an AND, so order is free.
	sort.SliceStable(g, func(i, j int) bool { return itemCost(g[i]) < itemCost(g[j]) })
	return g, nil
}

func itemCost(it *fieldItem) int {
	switch {
	case it.keywords:
		return 4
	case it.op != opValues:
		return 2
	}
	c := 0
	for _, t := range it.tests {
		switch {
		case t.re != nil:
			c = max(c, 3)
		case t.str != nil && t.str.kind == kindExact:
		default:
			c = max(c, 1)
		}
	}
	return c
}

// ReadPlaceholders reads placeholder values for |expand from YAML of the
// form "name: [value, ...]" (a single string is one value).
func ReadPlaceholders(r io.Reader) (map[string][]string, error) {
	var raw map[string]yaml.Node
	if err := yaml.NewDecoder(r).Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string][]string{}, nil
		}
		return nil, fmt.Errorf("placeholders: %w", err)
	}
	out := make(map[string][]string, len(raw))
	for name, n := range raw {
		switch n.Kind {
		case yaml.ScalarNode:
			out[name] = []string{n.Value}
		case yaml.SequenceNode:
			for _, v := range n.Content {
				if v.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("placeholders: %s: values must be strings", name)
				}
				out[name] = append(out[name], v.Value)
			}
		default:
			return nil, fmt.Errorf("placeholders: %s: want a value or a list of values", name)
		}
		if len(out[name]) == 0 {
			return nil, fmt.Errorf("placeholders: %s has no values", name)
		}
	}
	return out, nil
}
