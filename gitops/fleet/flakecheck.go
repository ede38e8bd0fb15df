package fleet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// flakeCheckTimeout bounds the evaluations CheckFlake runs.
const flakeCheckTimeout = 2 * time.Minute

// CheckFlake checks nest.yaml's hosts against the flake as it is in the
// checkout, with nix where nestbot runs: every host's flake attribute must
// be one of the flake's nixosConfigurations (a mistake is a nest.Error at
// the host, with the attributes there are). It also returns notes: hosts
// whose networking.hostName is neither their tailnet name nor their own
// (tailscale names a node after the host name unless told otherwise).
func (d *Desired) CheckFlake(ctx context.Context, nix *rollout.LocalNix) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, flakeCheckTimeout)
	defer cancel()
	dir, err := filepath.Abs(d.Root)
	if err != nil {
		return nil, err
	}
	flakeDir, isGit := d.Fleet.Flake, false
	if repo := OpenRepo(dir); repo != nil {
		top := dir
		for _, err := os.Stat(filepath.Join(top, ".git")); err != nil; _, err = os.Stat(filepath.Join(top, ".git")) {
			top = filepath.Dir(top)
		}
		dir, flakeDir, isGit = top, repo.flakeDir(d.Fleet.Flake), true
	}
	co := rollout.WorkTree(dir, flakeDir, isGit)
	attrs, err := nix.FlakeAttributes(ctx, co)
	if err != nil {
		return nil, fmt.Errorf("read the flake's nixosConfigurations: %w", err)
	}
	var errs nest.Errors
	var found []string
	for _, name := range d.HostNames() {
		h := d.Fleet.Hosts[name]
		attr := h.FlakeAttr()
		if slices.Contains(attrs, attr) {
			found = append(found, attr)
			continue
		}
		p := "hosts." + name
		msg := fmt.Sprintf("host %s is nixosConfigurations.%s, which the flake in %s does not have", name, attr, d.Fleet.Flake)
		if h.FlakeAttribute != "" {
			p += ".flake_attribute"
		}
		hint := "set hosts." + name + ".flake_attribute to one of: " + strings.Join(attrs, ", ")
		if len(attrs) == 0 {
			hint = "the flake has no nixosConfigurations"
		}
		errs = append(errs, &nest.Error{File: d.File, Pos: nest.Locate(d.File, d.Source, p), Path: p, Msg: msg, Hint: hint})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	hostNames, err := nix.HostNames(ctx, co, found)
	if err != nil {
		return nil, fmt.Errorf("read the hosts' networking.hostName: %w", err)
	}
	var notes []string
	for _, name := range d.HostNames() {
		h := d.Fleet.Hosts[name]
		hn := hostNames[h.FlakeAttr()]
		if hn != "" && hn != h.NetworkingHostName() {
			notes = append(notes, fmt.Sprintf("host %s: its networking.hostName is %s, but nest.yaml gives it the host name %s (its certificates' directory and host name, and its tailnet node's name unless tailnet_name says otherwise); set hosts.%s.host_name: %s",
				name, hn, h.NetworkingHostName(), name, hn))
		}
	}
	return notes, nil
}
