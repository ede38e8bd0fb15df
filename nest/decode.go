package nest

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the work of decoding one file, so that a file of aliases
// that expands exponentially (a "billion laughs") is refused, not followed.
const maxNodes = 200_000

// maxAliasBytes bounds what aliases may add to a document: the scalars
// decoded, aliases followed, may exceed the file's own size by at most this
// many bytes. A few aliased values cost nothing; a large value aliased
// thousands of times (each copy then repeated in an error) is refused
// before it is followed.
const maxAliasBytes = 64 << 10

// scalarParser is implemented by types written as one scalar (Duration, PortRange).
type scalarParser interface {
	parseScalar(string) error
}

// scalarOrMapping is implemented by types written as a mapping or as one
// scalar word (adopt: none).
type scalarOrMapping interface {
	parseScalarOrMapping(string) error
}

var (
	scalarParserType    = reflect.TypeFor[scalarParser]()
	scalarOrMappingType = reflect.TypeFor[scalarOrMapping]()
	secretRefType       = reflect.TypeFor[SecretRef]()
)

// decoder maps a yaml.Node tree onto the Go types strictly: an unknown key,
// a duplicate key or a value of the wrong kind is an error at its position.
// It records the position of every key path it sees, for the validator.
type decoder struct {
	file  string
	errs  Errors
	pos   map[string]Pos // path → position of its value
	nodes int
	// bytes counts the scalar bytes decoded, aliases followed; budget is
	// the most it may reach (the file's size plus maxAliasBytes).
	bytes, budget int
	refused       bool // the alias budget ran out; nothing more is decoded
	// fields caches structFields per type: a fleet's hosts are one
	// struct type read thousands of times.
	fields map[reflect.Type]map[string]fieldInfo
}

func (d *decoder) errorf(n *yaml.Node, path, hint, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Pos: nodePos(n), Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func nodePos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Col: n.Column}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n, path, "write the values out instead of expanding aliases", "document is too large (more than %d values after aliases)", maxNodes)
		}
		return
	}
	if d.refused {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		if d.bytes+scalarBytes(n.Alias, maxAliasBytes+1) > d.budget {
			d.refused = true
			d.errorf(n, path, "write the values out instead of aliasing large ones; nothing after this alias was read", "refused: aliases expand the document by more than %d bytes", maxAliasBytes)
			return
		}
		d.decode(n.Alias, v, path)
		return
	}
	if n.Kind == yaml.ScalarNode {
		d.bytes += len(n.Value)
	}
	if path != "" {
		d.pos[path] = nodePos(n)
	}
	if isNull(n) {
		return // leave the zero value: "key:" with nothing is the same as no key
	}
	if v.Type() == secretRefType && n.Kind != yaml.MappingNode {
		// Never echo what is here: it may be the secret itself.
		d.errorf(n, path, "write {env: VARIABLE} or {file: path}; the secret itself never belongs in nest.yaml", "expected a reference to a secret, got %s", redactedKind(n))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(scalarParserType) {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "", "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(scalarParser).parseScalar(n.Value); err != nil {
			d.errorf(n, path, "", "%v", err)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && v.CanAddr() && v.Addr().Type().Implements(scalarOrMappingType) {
		if err := v.Addr().Interface().(scalarOrMapping).parseScalarOrMapping(n.Value); err != nil {
			d.errorf(n, path, "", "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		// The pointer has already recorded its position; the element's is the same.
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "write a list: [a, b] or one \"- item\" per line", "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			hint := ""
			if n.Kind == yaml.ScalarNode && !looksSecret(n.Value) {
				hint = fmt.Sprintf("quote it if you mean the text: %q", n.Value)
			}
			d.errorf(n, path, hint, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.errorf(n, path, "", "expected an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || int64(int(i)) != i {
			d.errorf(n, path, "", "%s is not an integer in range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(n, path, "write true or false", "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		panic("nest: decode: unsupported type " + v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "", "expected a mapping of keys, got %s", kindName(n))
		return
	}
	fields := d.structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "", "a key must be a plain name, got %s", kindName(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.errorf(k, path, "write the keys out", "merge keys (<<) are not supported")
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			d.errorf(k, join(path, k.Value), unknownKeyHint(k.Value, fields), "unknown key %q", k.Value)
			continue
		}
		if seen[k.Value] {
			d.errorf(k, join(path, k.Value), "remove one of them", "key %q appears twice", k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(f.index), join(path, k.Value))
		if f.enum != nil {
			d.checkEnum(val, v.Field(f.index), join(path, k.Value), f.enum)
		}
	}
	var missing []string
	for name, f := range fields {
		if f.required && !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	for _, name := range missing {
		where := path
		if where == "" {
			where = "top level"
		}
		d.errorf(n, join(path, name), "", "missing required key %q in %s", name, where)
	}
}

// checkEnum checks a string, or each string of a list, against the allowed values.
func (d *decoder) checkEnum(n *yaml.Node, v reflect.Value, path string, allowed []string) {
	check := func(n *yaml.Node, s, path string) {
		for _, a := range allowed {
			if s == a {
				return
			}
		}
		d.errorf(n, path, "use one of: "+strings.Join(allowed, ", "), "%q is not allowed", s)
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() != "" {
			check(n, v.String(), path)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i := 0; i < v.Len() && i < len(n.Content); i++ {
			check(n.Content[i], v.Index(i).String(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "", "expected a mapping of names, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.errorf(k, path, "", "a name must be a plain string, got %s", kindName(k))
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, p, "names must be unique; rename or remove one", "duplicate name %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.pos[p+"#key"] = nodePos(k)
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, e, p)
		if e.Kind() == reflect.Pointer && e.IsNil() {
			e.Set(reflect.New(e.Type().Elem())) // "laptop: {}" and "laptop:" are the same
		}
		v.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
}

type fieldInfo struct {
	index    int
	required bool
	enum     []string
}

// structFields is structFields(t), computed once per type; the map is
// shared, read only.
func (d *decoder) structFields(t reflect.Type) map[string]fieldInfo {
	if f, ok := d.fields[t]; ok {
		return f
	}
	if d.fields == nil {
		d.fields = map[reflect.Type]map[string]fieldInfo{}
	}
	f := structFields(t)
	d.fields[t] = f
	return f
}

func structFields(t reflect.Type) map[string]fieldInfo {
	out := map[string]fieldInfo{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		fi := fieldInfo{index: i, required: f.Tag.Get("required") == "true"}
		if e := f.Tag.Get("enum"); e != "" {
			fi.enum = strings.Split(e, ",")
		}
		out[name] = fi
	}
	return out
}

func unknownKeyHint(key string, fields map[string]fieldInfo) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	if best := closest(key, names); best != "" {
		return fmt.Sprintf("did you mean %q? valid keys here: %s", best, strings.Join(names, ", "))
	}
	return "valid keys here: " + strings.Join(names, ", ")
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := editDistance(s, c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
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

// scalarBytes is the size of the scalars under n, aliases followed, counted
// up to limit (past it, it stops and returns what it has).
func scalarBytes(n *yaml.Node, limit int) int {
	total := 0
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if total > limit || depth > 64 {
			total = limit + 1
			return
		}
		switch n.Kind {
		case yaml.ScalarNode:
			total += len(n.Value)
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(n.Alias, depth+1)
			}
		default:
			for _, c := range n.Content {
				walk(c, depth+1)
			}
		}
	}
	walk(n, 0)
	return total
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// redactedKind names the kind of a node without its value.
func redactedKind(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return "a value (not shown)"
	}
	return kindName(n)
}

// looksSecret reports whether a scalar looks like a credential, so that an
// error message never repeats it.
func looksSecret(s string) bool {
	for _, p := range []string{"tskey-", "AGE-SECRET-KEY-", "ghp_", "gho_", "ghs_", "github_pat_", "-----BEGIN", "AKIA", "ASIA"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func kindName(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && looksSecret(n.Value) {
		return "a value that looks like a secret (not shown)"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// lastLine is what follows the last newline.
func lastLine(data []byte) []byte { return data[bytes.LastIndexByte(data, '\n')+1:] }

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the messages of yaml.v3's parser, as against its
// scanner: the parser's errors count lines from 0 (go.yaml.in/yaml/v3,
// decode.go, parser.fail), the scanner's from 1.
var yamlParserErrors = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected '-' indicator", "did not find expected <document start>",
	"did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive",
	"found duplicate %YAML directive", "found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError turns a yaml.v3 parse error in data into an Error at its
// line. An error without a line is on the first one: yaml.v3 leaves line 0
// out. One past the last line is the end of the file.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if slices.Contains(yamlParserErrors, msg) {
		line++
	}
	if last := bytes.Count(data, []byte("\n")) + 1; line >= last && len(bytes.TrimSpace(lastLine(data))) == 0 {
		line, msg = last-1, msg+" (at the end of the file)"
	}
	return &Error{File: file, Pos: Pos{Line: max(line, 1), Col: 1}, Msg: "invalid YAML: " + msg}
}
