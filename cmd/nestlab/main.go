// Command nestlab runs nestbot's lab on this machine: an EC2 endpoint, a
// tailnet with NixOS hosts, and a GitHub, all on loopback and in namespaces
// of its own, so that every nestbot verb can be driven against it exactly as
// against the real services (nestlab up), pull requests acted on from a
// shell (nestlab pr), and the whole story played (nestlab demo).
//
// It is a separate command from nestbot: the shipped binary links no
// stand-in and no test code.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/internal/cli"
)

// IO is where a command reads and writes; tests swap it.
type IO = cli.IO

func main() { os.Exit(run(cli.StdIO(), os.Args[1:])) }

// run executes the command line and returns the process exit code.
func run(io *IO, args []string) int { return cli.Run(io, newRootCmd(io), args) }

func newRootCmd(io *IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "nestlab",
		Short: "nestbot's lab: AWS, a tailnet with NixOS hosts, and GitHub, on this machine",
		Long: `nestlab starts, on loopback, everything nestbot talks to — an EC2 endpoint,
a tailnet with NixOS hosts, a GitHub — and plays nestbot's whole story in it.

Every flag can also be set with an environment variable NESTBOT_<FLAG>
(upper case, dashes as underscores); a flag given on the command line wins.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return cli.BindEnv(cmd, io.Getenv) },
	}
	root.AddCommand(newUpCmd(io), newLabPRCmd(io), newDemoCmd(io), newPrepareCmd(io))
	return root
}
