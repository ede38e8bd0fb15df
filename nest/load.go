package nest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what Load reads: a nest.yaml is a few kilobytes.
const MaxFileSize = 4 << 20

// Load reads, decodes, validates and defaults the nest.yaml at path. On any
// mistake it returns Errors holding every one found, each at its position.
func Load(path string) (*Fleet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("nest: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)}}
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name is used in error positions.
func Parse(name string, data []byte) (*Fleet, error) {
	fleet, pos, decodeErrs := decodeFleet(name, data)
	errs := decodeErrs
	if fleet != nil {
		// Validate what did decode, so one run reports every mistake; a value
		// that failed to decode is not judged again.
		for _, e := range validate(name, fleet, pos) {
			if !underAny(e.Path, decodeErrs) {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs.bounded(name)
	}
	applyDefaults(fleet)
	return fleet, nil
}

// Locate is where in nest.yaml (data, as Load read it) the key path p is,
// or the nearest key above it that is there: for errors found by checks
// beyond the file's own (against the flake, say).
func Locate(name string, data []byte, p string) Pos {
	_, pos, _ := decodeFleet(name, data)
	c := &checker{file: name, pos: pos}
	return c.at(p)
}

func decodeFleet(name string, data []byte) (*Fleet, map[string]Pos, Errors) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Errors{{File: name, Msg: "file is empty", Hint: "start from examples/ducksnest/nest.yaml or run nestbot schema"}}
		}
		return nil, nil, Errors{syntaxError(name, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, Errors{{File: name, Pos: nodePos(&extra), Msg: "more than one YAML document", Hint: "remove the second \"---\" and what follows"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, nil, Errors{syntaxError(name, data, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	// pos gets about one entry per node: sized once, not rehashed
	// again and again on the way to a fleet of thousands of hosts.
	d := &decoder{file: name, pos: make(map[string]Pos, min(countNodes(root), maxNodes)), budget: len(data) + maxAliasBytes}
	var fleet Fleet
	if isNull(root) {
		return nil, nil, Errors{{File: name, Pos: nodePos(root), Msg: "file is empty", Hint: "start from examples/ducksnest/nest.yaml or run nestbot schema"}}
	}
	d.decode(root, reflect.ValueOf(&fleet).Elem(), "")
	if d.refused {
		return nil, nil, d.errs // a part of the document only: not validated
	}
	d.pos[""] = nodePos(root)
	for name, h := range fleet.Hosts {
		h.Name = name
	}
	return &fleet, d.pos, d.errs
}

// countNodes counts the nodes of the tree at n, aliases not followed.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func underAny(p string, errs Errors) bool {
	for _, e := range errs {
		if e.Path != "" && (p == e.Path || strings.HasPrefix(p, e.Path+".") || strings.HasPrefix(p, e.Path+"[")) {
			return true
		}
	}
	return false
}
