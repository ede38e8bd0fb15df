// Command nestbot keeps a fleet of NixOS hosts — in AWS and on-prem, joined
// by a tailnet, running Kubernetes with its own PKI — in the state its git
// repository describes. This file only wires the command line; every verb is
// a thin call into a package.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitError carries an exit code other than 1 (e.g. 2: changes present).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// IO is where a command reads and writes; tests swap it.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	Getenv   func(string) string
	// IsTerminal reports whether Out is a terminal (for colour).
	IsTerminal func() bool
}

func main() {
	io := &IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, IsTerminal: func() bool { return stdoutIsTerminal() }}
	os.Exit(run(io, os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func run(io *IO, args []string) int {
	root := newRootCmd(io)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(io.Err, ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(io.Err, "Error:", err)
	return 1
}

func newRootCmd(io *IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "nestbot",
		Short: "GitOps for a NixOS fleet: cloud, tailnet, certificates and rollout from one repository",
		Long: `nestbot keeps a fleet of NixOS hosts in the state its git repository describes.

It reads nest.yaml, observes the live fleet (AWS, the tailnet, the hosts, the
certificates), and plans or applies the difference, plane by plane.

Every flag can also be set with an environment variable NESTBOT_<FLAG>
(upper case, dashes as underscores); a flag given on the command line wins.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return bindEnv(cmd, io.Getenv) },
	}
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetIn(io.In)
	root.AddCommand(
		newValidateCmd(io),
		newPlanCmd(io),
		newApplyCmd(io),
		newCertsCmd(io),
		newHostsCmd(io),
		newRolloutCmd(io),
		newServeCmd(io),
		newActionCmd(io),
		newDriftCmd(io),
		newLabCmd(io),
		newDemoCmd(io),
		newSchemaCmd(io),
		newVersionCmd(io),
	)
	return root
}

// bindEnv fills every flag the command line did not set from NESTBOT_<FLAG>.
func bindEnv(cmd *cobra.Command, getenv func(string) string) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := EnvName(f.Name)
		if v := getenv(name); v != "" {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName is the environment variable that sets a flag: --webhook-secret ↔ NESTBOT_WEBHOOK_SECRET.
func EnvName(flag string) string {
	return "NESTBOT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
