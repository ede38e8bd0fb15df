package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/internal/cli"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/spf13/cobra"
)

type validateOptions struct {
	IO    *IO
	File  string
	NoNix bool
	Nix   *rollout.LocalNix
}

func newValidateCmd(io *IO) *cobra.Command {
	opts := &validateOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check nest.yaml, the pinned host keys and (with nix) the flake's hosts; report every mistake at file:line:col",
		Long: `Validate reads nest.yaml and the pinned host keys and reports every mistake at
file:line:col. Where nix is installed it also evaluates the flake as it is in
the checkout: every host's flake attribute (hosts.<name>.flake_attribute, by
default its name) must be one of its nixosConfigurations, and a host whose
networking.hostName differs from its tailnet name is pointed out.`,
		Args: cobra.NoArgs,
		Example: `  nestbot validate
  nestbot validate -f examples/ducksnest/nest.yaml`,
		RunE: func(*cobra.Command, []string) error { return runValidate(opts) },
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	cmd.Flags().BoolVar(&opts.NoNix, "no-nix", false, "do not evaluate the flake, even where nix is installed")
	return cmd
}

func runValidate(opts *validateOptions) error {
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	f := d.Fleet
	inAWS := 0
	for _, h := range f.Hosts {
		if h.AWS != nil {
			inAWS++
		}
	}
	subnets, certs := 0, 0
	if f.AWS != nil {
		subnets = len(f.AWS.Subnets)
	}
	if f.PKI != nil {
		// The set as plans see it: the tree's layout, what it holds adopted.
		tree := map[string]pki.ObservedCert{}
		if obs, err := certtree.Observe(d.PKIDir(), time.Now()); err == nil {
			tree = obs
		}
		desire, err := pki.Desired(f, d.HostKeys, nil, tree)
		if err != nil {
			return &cli.ExitError{Code: 1, Msg: fmt.Sprintf("%s: %v", opts.File, err)}
		}
		certs = len(desire.Specs)
	}
	checked, notes := " The flake was not checked (no nix here).", []string(nil)
	if nix := cmp.Or(opts.Nix, &rollout.LocalNix{}); opts.NoNix {
		checked = ""
	} else if nix.Available() {
		var err error
		notes, err = d.CheckFlake(context.Background(), nix)
		var errs nest.Errors
		switch {
		case errors.As(err, &errs):
			return &cli.ExitError{Code: 1, Msg: fmt.Sprintf("%s\n%s in %s", errs.Error(), reconcile.Plural(len(errs), "error"), opts.File)}
		case err != nil:
			checked = ""
			notes = append(notes, fmt.Sprintf("the flake could not be evaluated, so its hosts were not checked: %v", err))
		default:
			checked = fmt.Sprintf(" The flake has every host (%s).", d.Fleet.Flake)
		}
	}
	defer func() {
		fmt.Fprint(opts.IO.Out, checked+"\n")
		for _, n := range notes {
			fmt.Fprintf(opts.IO.Err, "note: %s\n", n)
		}
	}()
	fmt.Fprintf(opts.IO.Out, "%s: valid. Fleet %s: %s (%d in AWS), %s, %s and keys.",
		opts.File, f.Name, reconcile.Plural(len(f.Hosts), "host"), inAWS, reconcile.Plural(subnets, "subnet"), reconcile.Plural(certs, "certificate"))
	return nil
}

// loadDesired reads nest.yaml and the host keys pinned beside it. Every
// mistake in nest.yaml is reported, one per line, and the count last.
//
// A nest.yaml that is not there says where nestbot looked and how to
// name another (-f).
func loadDesired(file string) (*fleet.Desired, error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		where := file
		if abs, err := filepath.Abs(file); err == nil {
			where = abs
		}
		return nil, fmt.Errorf("no %s at %s: run nestbot in the repository that holds it, or name it with -f FILE (or NESTBOT_FILE)", filepath.Base(file), where)
	}
	d, err := fleet.Load(file)
	var errs nest.Errors
	if errors.As(err, &errs) {
		noun := "errors"
		if len(errs) == 1 {
			noun = "error"
		}
		return nil, &cli.ExitError{Code: 1, Msg: fmt.Sprintf("%s\n%d %s in %s", errs.Error(), len(errs), noun, file)}
	}
	return d, err
}
