package nest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// SchemaID is where editors find the schema of nest.yaml.
const SchemaID = "https://github.com/ducksnest/nestbot/raw/main/nest.schema.json"

// Schema returns the JSON Schema (draft 2020-12) of nest.yaml, generated from
// the Go types, their yaml, doc, enum and required tags. It is deterministic.
func Schema() []byte {
	s := schemaFor(reflect.TypeFor[Fleet]())
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaID
	s["title"] = "nest.yaml"
	s["description"] = "The desired state of a nestbot fleet."
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic("nest: schema: " + err.Error()) // a bug in the types, not input
	}
	return append(out, '\n')
}

var (
	durationType  = reflect.TypeFor[Duration]()
	portRangeType = reflect.TypeFor[PortRange]()
	adoptType     = reflect.TypeFor[Adopt]()
)

func schemaFor(t reflect.Type) map[string]any {
	switch t {
	case durationType:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case portRangeType:
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 0, "maximum": 65535},
			map[string]any{"type": "string", "pattern": `^[0-9]+(-[0-9]+)?$`},
		}}
	}
	if t == adoptType {
		object := schemaOfStruct(t)
		return map[string]any{"oneOf": []any{object, map[string]any{"type": "string", "enum": []any{AdoptNone}}}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaFor(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaFor(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaFor(t.Elem())}
	case reflect.Struct:
		return schemaOfStruct(t)
	}
	panic("nest: schema: unsupported type " + t.String())
}

// schemaOfStruct is the schema of a mapping of the struct's keys.
func schemaOfStruct(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range Fields(t) {
		p := schemaFor(f.Type)
		p["description"] = f.Doc
		if f.Enum != nil {
			if p["type"] == "array" {
				p["items"] = map[string]any{"type": "string", "enum": f.Enum}
			} else {
				p["enum"] = f.Enum
			}
		}
		props[f.Key] = p
		if f.Required {
			required = append(required, f.Key)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}

// Field describes one key of nest.yaml, for the schema and the reference.
type Field struct {
	Key      string
	Doc      string
	Enum     []string
	Required bool
	Type     reflect.Type
}

// Fields lists the keys of a struct type in declaration order.
func Fields(t reflect.Type) []Field {
	var out []Field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" {
			continue
		}
		fd := Field{Key: key, Doc: f.Tag.Get("doc"), Required: f.Tag.Get("required") == "true", Type: f.Type}
		if e := f.Tag.Get("enum"); e != "" {
			fd.Enum = strings.Split(e, ",")
		}
		out = append(out, fd)
	}
	return out
}

// Reference returns the Markdown table of every nest.yaml key, for the README.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | description |\n| --- | --- | --- |\n")
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range Fields(t) {
			key := prefix + f.Key
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			typ, next, nextPrefix := typeName(ft), reflect.Type(nil), ""
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType && ft != portRangeType:
				next, nextPrefix = ft, key+"."
			case ft.Kind() == reflect.Map:
				next, nextPrefix = derefStruct(ft.Elem()), key+".<name>."
			case ft.Kind() == reflect.Slice && derefStruct(ft.Elem()) != nil:
				next, nextPrefix = derefStruct(ft.Elem()), key+"[]."
			}
			doc := f.Doc
			if f.Required {
				doc = "**Required.** " + doc
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", key, typ, markdownEscaper.Replace(doc))
			if next != nil {
				walk(next, nextPrefix)
			}
		}
	}
	walk(reflect.TypeFor[Fleet](), "")
	return b.String()
}

var markdownEscaper = strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;")

func derefStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t != durationType && t != portRangeType {
		return t
	}
	return nil
}

func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case portRangeType:
		return "port or range"
	case adoptType:
		return "mapping, or none"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Int:
		return "integer"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Map:
		return "map of " + typeName(t.Elem())
	case reflect.Struct:
		return "mapping"
	}
	return t.String()
}
