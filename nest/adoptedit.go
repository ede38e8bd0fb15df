package nest

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Adoption is one adopt: {id: …} line at its place in nest.yaml: Path is the
// key path of the mapping that holds adopt, e.g. [aws subnets public-a] or
// [hosts ec2-controlplane aws].
type Adoption struct {
	Path []string
	ID   string
	// Comment, when set, is written after the line (what the resource is).
	Comment string
}

func (a Adoption) String() string { return strings.Join(a.Path, ".") + ".adopt: {id: " + a.ID + "}" }

// WithAdoptions returns the nest.yaml source src with adopt: {id: …} set at
// each adoption's path, replacing an adopt key that is there and making the
// mappings the path lacks. The rest of the file — comments, key order,
// flow or block style — is kept.
func WithAdoptions(src []byte, adoptions []Adoption) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("read nest.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("nest.yaml is not a mapping of keys")
	}
	for _, a := range adoptions {
		m := doc.Content[0]
		for _, key := range a.Path {
			next := mappingValue(m, key)
			if next == nil {
				next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, next)
			}
			if next.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%s is not a mapping in nest.yaml", strings.Join(a.Path, "."))
			}
			m = next
		}
		value := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: "id"}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: a.ID}}}
		if a.Comment != "" && m.Style != yaml.FlowStyle {
			value.LineComment = "# " + a.Comment
		}
		setMappingValue(m, "adopt", value)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("write nest.yaml: %w", err)
	}
	return out.Bytes(), nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setMappingValue(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// AdoptionsIn reads the adopt: {id: …} lines of a YAML fragment nested as
// nest.yaml nests them (the lines a plan prints when it stops before a
// twin), in the order they appear.
func AdoptionsIn(fragment []byte) ([]Adoption, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(fragment, &doc); err != nil {
		return nil, err
	}
	var out []Adoption
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		if n.Kind == yaml.DocumentNode {
			for _, c := range n.Content {
				walk(c, path)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if k == "adopt" {
				if id := mappingValue(v, "id"); id != nil {
					out = append(out, Adoption{Path: append([]string(nil), path...), ID: id.Value})
				}
				continue
			}
			walk(v, append(path, k))
		}
	}
	walk(&doc, nil)
	return out, nil
}
