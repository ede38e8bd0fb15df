package nest_test

import (
	"errors"
	"fmt"

	"github.com/ducksnest/nestbot/nest"
)

// A nest.yaml read from bytes: Parse decodes it strictly, validates it and
// fills in the defaults. Load does the same for a file.
func ExampleParse() {
	f, err := nest.Parse("nest.yaml", []byte(`version: 1
name: tiny
hosts:
  box:
    roles: [worker]
    host_name: box-1
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	box := f.Hosts["box"]
	fmt.Println("fleet:", f.Name, "flake:", f.Flake)
	fmt.Println("host:", box.Name, box.Roles, "on-prem:", box.AWS == nil)
	fmt.Println("flake attribute:", box.FlakeAttr(), "tailnet node:", box.TailnetNode())
	// Output:
	// fleet: tiny flake: .
	// host: box [worker] on-prem: true
	// flake attribute: box tailnet node: box-1
}

// Every mistake in a file is reported at once, each at file:line:col with
// the key path and, where there is one, what to do about it.
func ExampleErrors() {
	_, err := nest.Parse("nest.yaml", []byte(`version: 1
name: Tiny
hosts:
  box:
    roles: [wroker]
`))
	fmt.Println(err)

	var es nest.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Printf("%s:%d:%d %s\n", e.File, e.Pos.Line, e.Pos.Col, e.Path)
		}
	}
	// Output:
	// nest.yaml:2:7: name: "Tiny" is not a valid name
	//     hint: use lower-case letters, digits and dashes, at most 63
	// nest.yaml:5:13: hosts.box.roles[0]: role "wroker" does not exist
	//     hint: use one of: control-plane, worker
	// nest.yaml:2:7 name
	// nest.yaml:5:13 hosts.box.roles[0]
}
