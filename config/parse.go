package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a configuration file: anything larger is not a configuration.
const MaxFileSize = 1 << 20

// field is one value of the file (or one flag) with where it came from.
type field struct {
	name string     // as shown in errors: volumes[1].journal-max, --journal-max
	line int        // 0 for flags
	node *yaml.Node // nil when absent or null; a scalar node for flags too
}

func (f field) set() bool { return f.node != nil }

// value is a flag's value as a field.
func flagField(name, v string) field {
	if v == "" {
		return field{name: name}
	}
	return field{name: name, node: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}}
}

// parser collects every error of one file.
type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(name string, line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: name, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) fail(f field, format string, args ...any) {
	p.errorf(f.name, f.line, format, args...)
}

// MaxErrors is how many errors of one file are reported; a count of the rest follows.
const MaxErrors = 50

func (p *parser) result() error {
	if len(p.errs) == 0 {
		return nil
	}
	es := p.errs.sorted()
	if len(es) > MaxErrors {
		more := &Error{File: p.file, Msg: fmt.Sprintf("and %d more errors", len(es)-MaxErrors)}
		es = append(es[:MaxErrors:MaxErrors], more)
	}
	return es
}

// document decodes data into its root node: a single YAML document, or nil after an error.
func (p *parser) document(data []byte) *yaml.Node {
	if len(data) > MaxFileSize {
		p.errorf("", 0, "larger than %d bytes", MaxFileSize)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf("", 0, "empty configuration")
		} else {
			p.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf("", extra.Line, "a second YAML document: a configuration is one document")
		return nil
	} else if !errors.Is(err, io.EOF) {
		p.syntax(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		p.errorf("", 0, "empty configuration")
		return nil
	}
	root := doc.Content[0]
	if isNull(root) { // "---" alone, or only comments
		p.errorf("", 0, "empty configuration")
		return nil
	}
	if !p.noAliases(root) {
		return nil
	}
	return root
}

// syntax reports a YAML syntax error; yaml.v3 words them "yaml: line N: msg".
func (p *parser) syntax(err error) {
	msg := err.Error()
	var line int
	if n, err := fmt.Sscanf(msg, "yaml: line %d:", &line); n == 1 && err == nil {
		_, rest, _ := cutAfterColon(msg, 2)
		p.errorf("", line, "%s", rest)
		return
	}
	p.errorf("", 0, "%s", msg)
}

// cutAfterColon splits s after its n-th ": ".
func cutAfterColon(s string, n int) (string, string, bool) {
	i := 0
	for k := 0; k < n; k++ {
		j := bytes.Index([]byte(s[i:]), []byte(": "))
		if j < 0 {
			return s, "", false
		}
		i += j + 2
	}
	return s[:i], s[i:], true
}

// noAliases refuses aliases (*name), which merge keys need too: a configuration spells out
// each value, and an alias could expand a small file into a huge tree. The first one is
// reported.
func (p *parser) noAliases(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		p.errorf("", n.Line, "aliases (*%s) are not supported: write the value out", n.Value)
		return false
	}
	for _, c := range n.Content {
		if !p.noAliases(c) {
			return false
		}
	}
	return true
}

// mapping reads the mapping n (named name) whose keys must be among keys; it reports unknown,
// duplicate and non-string keys. Null values are absent.
func (p *parser) mapping(n *yaml.Node, name string, keys ...string) map[string]field {
	out := map[string]field{}
	if n.Kind != yaml.MappingNode {
		p.errorf(name, n.Line, "want a mapping of key: value, not %s", describe(n))
		return out
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fname := join(name, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode || k.Tag == "!!merge":
			p.errorf(name, k.Line, "want a field name, not %s", describe(k))
			continue
		case !known[k.Value]:
			if s := closest(k.Value, keys); s != "" {
				p.errorf(fname, k.Line, "unknown field (did you mean %s?)", s)
			} else {
				p.errorf(fname, k.Line, "unknown field")
			}
			continue
		case seen[k.Value] > 0:
			p.errorf(fname, k.Line, "given twice (first on line %d)", seen[k.Value])
			continue
		}
		seen[k.Value] = k.Line
		f := field{name: fname, line: k.Line}
		if !isNull(v) {
			f.node, f.line = v, v.Line
		}
		out[k.Value] = f
	}
	return out
}

// get returns field key of m, or an absent field named for errors at line.
func get(m map[string]field, path, key string, line int) field {
	if f, ok := m[key]; ok {
		return f
	}
	return field{name: join(path, key), line: line}
}

// entry is one key: value pair of a mapping whose keys are names (sites, ...).
type entry struct{ key, val *yaml.Node }

// entries reads the mapping f whose keys are names chosen by the operator, in file order,
// reporting duplicate and non-string keys.
func (p *parser) entries(f field) []entry {
	if !f.set() {
		return nil
	}
	n := f.node
	if n.Kind != yaml.MappingNode {
		p.fail(f, "want a mapping of name: entry, not %s", describe(n))
		return nil
	}
	var out []entry
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || k.Tag == "!!merge":
			p.errorf(f.name, k.Line, "want a name, not %s", describe(k))
		case seen[k.Value] > 0:
			p.errorf(join(f.name, k.Value), k.Line, "given twice (first on line %d)", seen[k.Value])
		default:
			seen[k.Value] = k.Line
			out = append(out, entry{k, v})
		}
	}
	return out
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "this"
}

// scalar returns f's value ("" when absent), reporting a non-scalar.
func (p *parser) scalar(f field) (string, bool) {
	if !f.set() {
		return "", false
	}
	if f.node.Kind != yaml.ScalarNode {
		p.fail(f, "want a value, not %s", describe(f.node))
		return "", false
	}
	return f.node.Value, true
}

func (p *parser) boolean(f field) bool {
	s, ok := p.scalar(f)
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(f, "%q: want true or false", s)
	return false
}

// integer parses f, defaulting to def, and checks it is within [min, max].
func (p *parser) integer(f field, def, min, max int) int {
	s, ok := p.scalar(f)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		p.fail(f, "%q: want a whole number from %d to %d", s, min, max)
		return def
	}
	return n
}

// list returns the items of the sequence f (nil when absent).
func (p *parser) list(f field) []*yaml.Node {
	if !f.set() {
		return nil
	}
	if f.node.Kind != yaml.SequenceNode {
		p.fail(f, "want a list (- item), not %s", describe(f.node))
		return nil
	}
	return f.node.Content
}

// ReadFile reads and parses the daemon configuration in file.
func ReadFile(file string) (*Host, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data)
}

// ReadServeFile reads and parses the replica configuration in file.
func ReadServeFile(file string) (*Serve, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	return ParseServe(file, data)
}

func readFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return data, nil
}

// closest returns the key within two edits of s, if any: a likely typo.
func closest(s string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (short keys only: a file's keys are
// bounded by MaxFileSize, and the distance gives up past 64 bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
