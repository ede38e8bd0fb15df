package nest

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// WithAdmin returns nest.yaml's text with recipient added first to
// pki.admins (and "# comment" after it, if comment is not empty); every other
// byte is as it was. pki.admins must be a block list (one "- " line per
// admin), as nest.yaml writes it; WithAdmin says so when it is not, rather
// than leave the file without the admin.
func WithAdmin(src []byte, recipient, comment string) ([]byte, error) {
	if err := CheckRecipient(recipient); err != nil {
		return nil, fmt.Errorf("add an admin to nest.yaml: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("add an admin to nest.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("add an admin to nest.yaml: it is not a mapping of keys")
	}
	var admins *yaml.Node
	if pki := mappingValue(doc.Content[0], "pki"); pki != nil && pki.Kind == yaml.MappingNode {
		admins = mappingValue(pki, "admins")
	}
	if admins == nil || admins.Kind != yaml.SequenceNode || admins.Style&yaml.FlowStyle != 0 || len(admins.Content) == 0 {
		return nil, fmt.Errorf("add an admin to nest.yaml: pki.admins is not a block list of admins (one \"- \" line each); add %s by hand", recipient)
	}
	// The first admin's value follows its "- ": the new line starts where
	// that dash does, before the first admin's line.
	first := admins.Content[0]
	lines := bytes.SplitAfter(src, []byte("\n"))
	if first.Line < 1 || first.Line > len(lines) || first.Column < 3 {
		return nil, fmt.Errorf("add an admin to nest.yaml: pki.admins[0] is at %d:%d, not on a \"- \" line", first.Line, first.Column)
	}
	at := lines[first.Line-1]
	indent := first.Column - 3
	if len(at) < indent+2 || strings.TrimSpace(string(at[:indent])) != "" || string(at[indent:indent+2]) != "- " {
		return nil, fmt.Errorf("add an admin to nest.yaml: pki.admins[0] is not on a \"- \" line of its own (line %d)", first.Line)
	}
	line := string(at[:indent]) + "- " + recipient
	if comment != "" {
		line += "   # " + comment
	}
	var out bytes.Buffer
	for i, l := range lines {
		if i == first.Line-1 {
			out.WriteString(line + "\n")
		}
		out.Write(l)
	}
	return out.Bytes(), nil
}
