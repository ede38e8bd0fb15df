package nest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// compileShippedSchema compiles nest.schema.json, the schema editors load,
// with a JSON Schema implementation nestbot did not write.
func compileShippedSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../nest.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("nest.schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatalf("nest.schema.json does not compile: %v", err)
	}
	return sch
}

// yamlAsJSON reads YAML as the JSON value an editor's YAML language server
// validates against the schema.
func yamlAsJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestExamplesValidateAgainstTheShippedSchema: every example nest.yaml is
// valid under nest.schema.json, and the schema refuses what Load refuses
// (an unknown key, a wrong type), so it is not vacuously permissive.
func TestExamplesValidateAgainstTheShippedSchema(t *testing.T) {
	sch := compileShippedSchema(t)
	files, err := filepath.Glob("../examples/*/nest.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example nest.yaml under examples/ (%v)", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(yamlAsJSON(t, data)); err != nil {
			t.Errorf("%s is not valid under nest.schema.json:\n%v", file, err)
		}
		for name, bad := range map[string]string{
			"unknown key": strings.Replace(string(data), "\nhosts:\n", "\ncolour: red\nhosts:\n", 1),
			"wrong type":  strings.Replace(string(data), "\nversion: 1\n", "\nversion: [1]\n", 1),
		} {
			if bad == string(data) {
				t.Fatalf("%s: %s: the example has no place to make the mistake", file, name)
			}
			if err := sch.Validate(yamlAsJSON(t, []byte(bad))); err == nil {
				t.Errorf("%s with a %s is valid under nest.schema.json", file, name)
			}
		}
	}
}
