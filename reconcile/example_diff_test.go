package reconcile_test

import (
	"fmt"
	"os"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// A plan from the desired state (nest.yaml and the pinned host keys) and
// the live one (here a snapshot written by hand; nestbot observes it, or
// reads it from a file with DecodeLive), rendered as the CLI prints it.
// RenderMarkdown gives the same plan as a pull request's comment, RenderJSON
// as JSON.
func ExampleDiff() {
	fleet, err := nest.Parse("nest.yaml", []byte(`version: 1
name: tiny
hosts:
  box:
    roles: [worker]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	desired := reconcile.Desired{Fleet: fleet, HostKeys: map[string]string{
		"box": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILI21mJgUue8ghvHeWv+BNlkWbHndxlNPBcYRkh68q27 root@box"}}
	live := &reconcile.Live{
		FormatVersion: reconcile.FormatVersion,
		ObservedAt:    time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		Repo: reconcile.Repo{Revision: "f00ba47",
			Changed: map[string][]string{"a1b2c3d": {"hosts/box/configuration.nix"}}},
		Tailnet: reconcile.Tailnet{Self: "nestbot", Nodes: []reconcile.Node{{Name: "box", Online: true}}},
		Hosts:   map[string]reconcile.HostRun{"box": {Revision: "a1b2c3d", Reachable: true}},
	}
	plan, err := reconcile.Diff(desired, live, reconcile.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := reconcile.RenderText(os.Stdout, plan, reconcile.TextOptions{}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// nestbot plan for tiny at f00ba47 (live state observed 2026-12-01 09:00:00 UTC)
	//
	// Hosts
	//
	//   # host.box will be switched in batch 1: worker: changed hosts/box/configuration.nix
	//   > host.box
	//       ~ revision = "a1b2c3d" -> "f00ba47"
	//
	// Plan: 0 to create, 0 to update, 0 to delete · 0 certs · 1 host
}
